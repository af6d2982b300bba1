"""A minimal, resumable optax training loop."""

import dataclasses
import math
import os
import tempfile
import time
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax
from jaxtyping import PRNGKeyArray

from ._checks import check_int
from ._fingerprint import callable_digest, tree_digest, tree_signature
from ._persistence import clean_orphans, load, read_header, save
from ._progress import ProgressBar
from ._sharding import AbstractSharding, to_host


@dataclasses.dataclass(frozen=True)
class FitResult:
    """What [`scimlx.fit`][] returns.

    - `model`: the trained model (the best one by validation if `validate` was given).
    - `last_model`: the model after the last step taken.
    - `opt_state`: the optimiser state after the last step.
    - `losses`: training loss of every step, a NumPy array of length `step`.
    - `step`: the number of steps taken (fewer than asked if early stopping fired).
    - `validations`: `(step, value)` pairs of every validation round.
    - `best_validation`: the best validation value, or `None`.
    - `stopped_early`: whether early stopping ended the run.
    - `first_step_seconds`: wall time of this call's first step, which includes compiling
      the step unless an earlier call with the same `loss`, `optimiser` and model
      structure compiled it already.
    - `seconds`: wall time of all steps taken by this call.
    """

    model: Any
    last_model: Any
    opt_state: Any
    losses: np.ndarray
    step: int
    validations: tuple
    best_validation: float | None
    stopped_early: bool
    first_step_seconds: float
    seconds: float


@eqx.filter_jit
def _train_step(loss, optimiser, static, has_aux, sharding, p, o, b, key, step):
    # Module level, so that its compilation is cached across calls of `fit` with the
    # same `loss`, `optimiser` and model structure (e.g. a resumed run, or a sweep).
    # The step's key is derived inside, sparing the host two eager dispatches per step.
    _, k = _step_keys(key, step)

    def _loss(p, b, k):
        out = loss(eqx.combine(p, static), b, k)
        return out if has_aux else (out, {})

    (value, aux), grads = eqx.filter_value_and_grad(_loss, has_aux=True)(p, b, k)
    # optax mixes Python floats with its int32 step count, which JAX's strict dtype
    # promotion (used in our tests, and by careful users) rejects: run the update
    # itself under standard promotion.
    with jax.numpy_dtype_promotion("standard"):
        updates, o = optimiser.update(grads, o, eqx.filter(p, eqx.is_inexact_array))
    p = eqx.apply_updates(p, updates)
    if sharding is not None:
        p, o = sharding.constrain_state((p, o))
    return p, o, value, aux


_SYNC_EVERY = 16


def _identity(params, opt_state, optimiser, key) -> dict:
    """What a checkpoint must agree on to be resumed by this run."""
    return {
        "model": tree_signature(params),
        "optimiser_state": tree_signature(opt_state),
        "optimiser": callable_digest(optimiser),
        "key": tree_digest(key),
    }


_IDENTITY_WORDS = {
    "model": "the model's structure (its trained leaves, their shapes or dtypes) differs",
    "optimiser_state": "the optimiser state's structure differs (another optimiser)",
    "optimiser": "the optimiser differs (another optimiser or other hyperparameters)",
    "key": "`key` differs",
}


def _check_identity(checkpoint, meta: dict, identity: dict) -> None:
    saved = meta.get("identity")
    if not isinstance(saved, dict):  # written by an older scimlx: nothing to compare
        return
    differ = [k for k in identity if k in saved and saved[k] != identity[k]]
    if differ:
        reasons = "; ".join(_IDENTITY_WORDS[k] for k in differ)
        raise ValueError(
            f"`checkpoint` {os.fspath(checkpoint)!r} was written by another run: {reasons}. "
            "Resume with the same model, optimiser and key, or give a new checkpoint path "
            "(or delete the file) to start afresh."
        )


def _check_writable(checkpoint) -> None:
    """Fail before training if the checkpoint cannot be written."""
    path = os.fspath(checkpoint)
    if os.path.isdir(path):
        raise ValueError(f"`checkpoint` must be a file path, got the directory {path!r}.")
    directory = os.path.dirname(os.path.abspath(path)) or "."
    try:
        os.makedirs(directory, exist_ok=True)
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as e:
        raise ValueError(
            f"`checkpoint` {path!r} cannot be written ({e.strerror or e}): choose a writable "
            "folder. Checked before the first step so that no training is lost."
        ) from None
    if os.path.exists(path) and not os.access(path, os.W_OK):
        raise ValueError(f"`checkpoint` {path!r} exists but is not writable.")


def _resume(checkpoint, state: dict, steps: int, validate_every: int, identity: dict) -> dict:
    """Loads a checkpoint written by `fit`, possibly by a run asked for another `steps`
    (to train on from where it stopped)."""
    meta = read_header(checkpoint).get("metadata", {})
    _check_identity(checkpoint, meta, identity)
    saved_steps = int(meta.get("steps", steps))
    saved_n_val = int(meta.get("n_validations", saved_steps // validate_every + 2))
    like = dict(state)
    like["losses"] = np.full((saved_steps,), np.nan)
    like["val_steps"] = np.full((saved_n_val,), -1, dtype=np.int64)
    like["val_values"] = np.full((saved_n_val,), np.nan)
    loaded = load(checkpoint, like=like)
    taken = int(loaded["step"])
    if taken > steps:
        raise ValueError(
            f"`checkpoint` {os.fspath(checkpoint)!r} has already taken {taken} steps, more than "
            f"`steps`={steps}. Ask for at least {taken} steps, or use another checkpoint path."
        )
    losses = np.full((steps,), np.nan)
    losses[:taken] = np.asarray(loaded["losses"])[:taken]
    val_steps = np.asarray(loaded["val_steps"])
    val_values = np.asarray(loaded["val_values"])
    kept = val_steps >= 0
    n_kept = int(kept.sum())
    new_val_steps = np.full((n_kept + steps // validate_every + 2,), -1, np.int64)
    new_val_values = np.full(new_val_steps.shape, np.nan)
    new_val_steps[:n_kept] = val_steps[kept]
    new_val_values[:n_kept] = val_values[kept]
    loaded = dict(loaded)
    loaded.update(losses=losses, val_steps=new_val_steps, val_values=new_val_values)
    return loaded


def _step_keys(key, step):
    k = jr.fold_in(key, step)
    return jr.split(k)


_step_keys_jit = jax.jit(_step_keys)


def _check_arguments(
    steps, checkpoint_every, validate, validate_every, patience, min_steps, max_seconds, sharding
) -> None:
    if steps < 0:
        raise ValueError(f"`steps` must be non-negative, got {steps}.")
    if checkpoint_every <= 0:
        raise ValueError(f"`checkpoint_every` must be positive, got {checkpoint_every}.")
    if validate_every <= 0:
        raise ValueError(f"`validate_every` must be positive, got {validate_every}.")
    if patience is not None and validate is None:
        raise ValueError("`patience` needs `validate`.")
    check_int("min_steps", min_steps, minimum=0)
    if min_steps > 0 and patience is None:
        raise ValueError("`min_steps` needs `patience` (it delays early stopping).")
    if max_seconds is not None and not max_seconds >= 0:
        raise ValueError(f"`max_seconds` must be non-negative, got {max_seconds}.")
    if sharding is not None and not isinstance(sharding, AbstractSharding):
        raise TypeError(
            "`sharding` must be a `scimlx.AbstractSharding` (e.g. `scimlx.DataParallel(mesh, "
            f"'batch')`) or None, got {type(sharding).__name__}."
        )


def _fresh_state(params, opt_state, steps: int, validate_every: int) -> dict:
    """Training state that survives a restart: everything the next step depends on."""
    return {
        "params": params,
        "opt_state": opt_state,
        "best_params": params,
        "losses": np.full((steps,), np.nan),
        "val_steps": np.full((steps // validate_every + 2,), -1, dtype=np.int64),
        "val_values": np.full((steps // validate_every + 2,), np.nan),
        "step": np.array(0, dtype=np.int64),
        "best": np.array(np.inf),
        "bad_rounds": np.array(0, dtype=np.int64),
        "stopped": np.array(False),
    }


_DEVICE_STATE = ("params", "opt_state", "best_params")


@dataclasses.dataclass(frozen=True)
class _Checkpoint:
    """Where a run's state is saved atomically, and what a resumed run must agree on."""

    path: str | os.PathLike | None
    steps: int
    identity: dict | None
    sharding: AbstractSharding | None

    @classmethod
    def open(cls, path, state: dict, steps, validate_every, optimiser, key, sharding):
        """The checkpoint of this run, and the state to start from (resumed if `path`
        exists). The path is checked for writing first."""
        if path is None:
            return cls(None, steps, None, sharding), state
        identity = _identity(state["params"], state["opt_state"], optimiser, key)
        _check_writable(path)
        clean_orphans(path)
        if os.path.exists(path):
            state = _resume(path, state, steps, validate_every, identity)
        return cls(path, steps, identity, sharding), state

    def save(self, state: dict) -> None:
        if self.path is None:
            return
        if self.sharding is not None:
            # Host arrays, so that any layout (and any number of devices) can resume;
            # a collective when a layout shards the state across processes.
            state = dict(state)
            for name in _DEVICE_STATE:
                state[name] = to_host(state[name])
            if jax.process_index() != 0:
                return
        meta = {
            "step": int(state["step"]),
            "steps": self.steps,
            "n_validations": len(state["val_steps"]),
            "identity": self.identity,
        }
        save(self.path, state, metadata=meta)


def _place(sharding: AbstractSharding | None, static, key, state: dict):
    """Lay the state out with `sharding` (in place); returns the placed static part of the
    model and key. Also turns the NumPy bookkeeping into host copies (the loaded ones may
    be jax arrays)."""
    step_key = key
    if sharding is not None:
        # Everything the compiled step reads goes in with its layout; the batch per step.
        static = sharding.place_state(static)
        step_key = sharding.place_state(key)
        for name in _DEVICE_STATE:
            state[name] = sharding.place_state(state[name])
    for name in ("losses", "val_steps", "val_values"):
        state[name] = np.array(state[name])
    return static, step_key


def _n_rounds(state: dict) -> int:
    return int(np.sum(state["val_steps"] >= 0))


@dataclasses.dataclass(frozen=True)
class _Validation:
    """One validation round: records the value, keeps the best model, decides early
    stopping."""

    validate: Callable[[Any], float]
    static: Any
    patience: int | None
    min_steps: int

    def __call__(self, state: dict, step: int) -> None:
        value = float(self.validate(eqx.combine(state["params"], self.static)))
        if not math.isfinite(value):
            # Refuse rather than keep an earlier model silently: a NaN never compares
            # better, so the initial model would be handed back as "the best".
            raise FloatingPointError(
                f"`validate` returned a non-finite value ({value}) at step {step}. Check "
                "the validation data and the model's outputs for NaNs; the training state "
                "up to here is in `checkpoint` (if given)."
            )
        n_rounds = _n_rounds(state)
        state["val_steps"][n_rounds] = step
        state["val_values"][n_rounds] = value
        if value < float(state["best"]):
            state["best"] = np.array(value)
            state["best_params"] = state["params"]
            state["bad_rounds"] = np.array(0, dtype=np.int64)
        else:
            state["bad_rounds"] = np.array(int(state["bad_rounds"]) + 1, dtype=np.int64)
        if (
            self.patience is not None
            and int(state["bad_rounds"]) >= self.patience
            and step >= self.min_steps
        ):
            state["stopped"] = np.array(True)


@dataclasses.dataclass
class _Losses:
    """Losses stay on the device until a sync point (every `_SYNC_EVERY` steps, and before
    validating, checkpointing or returning): converting each one to a Python float at once
    would block JAX's asynchronous dispatch on every step."""

    state: dict
    bar: ProgressBar
    pending: list = dataclasses.field(default_factory=list)

    def add(self, step: int, value, aux) -> None:
        self.pending.append((step, (value, aux)))

    def sync(self) -> None:
        last = None
        for s, (v, a) in self.pending:
            last = (float(v), a)
            if not math.isfinite(last[0]):
                raise FloatingPointError(
                    f"The loss became non-finite ({last[0]}) at step {s}. Lower the "
                    "learning rate, check the data for NaNs, or clip gradients."
                )
            self.state["losses"][s] = last[0]
        self.pending.clear()
        if last is not None:
            self.bar.set_postfix(loss=last[0], **{k: float(v) for k, v in last[1].items()})


@dataclasses.dataclass(frozen=True)
class _Loop:
    """The host loop: one compiled step per iteration, and what happens between steps
    (loss syncs, validation, checkpoints, the time budget)."""

    loss: Callable
    optimiser: optax.GradientTransformation
    static: Any
    has_aux: bool
    sharding: AbstractSharding | None
    key: PRNGKeyArray  # as given, for the batch keys
    step_key: PRNGKeyArray  # as placed, for the compiled step
    batch: Callable | None
    steps: int
    validation: _Validation | None
    validate_every: int
    checkpoint: _Checkpoint
    checkpoint_every: int
    max_seconds: float | None

    def step(self, p, o, step: int):
        step_arr = np.asarray(step, dtype=np.int32)
        b = None if self.batch is None else self.batch(step, _step_keys_jit(self.key, step_arr)[0])
        if self.sharding is not None and b is not None:
            b = self.sharding.place_batch(b)
        return _train_step(
            self.loss, self.optimiser, self.static, self.has_aux, self.sharding, p, o, b,
            self.step_key, step_arr,
        )  # fmt: skip

    def train(self, state: dict, *, progress: bool, desc: str) -> tuple[float, float]:
        """`run` under a progress bar."""
        start = int(state["step"])
        bar = ProgressBar(
            self.steps,
            desc,
            unit="step",
            disable=not progress,
            initial=min(start, self.steps),
            note="compiling the training step..." if start < self.steps else None,
        )
        try:
            return self.run(state, bar)
        finally:
            bar.close()

    def run(self, state: dict, bar: ProgressBar) -> tuple[float, float]:
        """Train from `state["step"]` on, updating `state` in place. Returns the wall time
        of the first step and of all steps."""
        losses = _Losses(state, bar)
        start = step = int(state["step"])
        steps, first_step_s, t_start = self.steps, 0.0, time.perf_counter()
        while step < steps and not bool(state["stopped"]):
            p, o, value, aux = self.step(state["params"], state["opt_state"], step)
            losses.add(step, value, aux)
            if step == start:
                losses.sync()
                first_step_s = time.perf_counter() - t_start
            step += 1
            state["params"], state["opt_state"] = p, o
            state["step"] = np.array(step, dtype=np.int64)
            validating = self.validation is not None and (
                step % self.validate_every == 0 or step == steps
            )
            saving = step % self.checkpoint_every == 0 and step < steps
            synced = validating or saving or step == steps or len(losses.pending) >= _SYNC_EVERY
            out_of_time = (
                self.max_seconds is not None
                and (synced or step == start + 1)
                and time.perf_counter() - t_start >= self.max_seconds
            )
            if synced or out_of_time:
                losses.sync()
            if validating:
                assert self.validation is not None
                self.validation(state, step)
            bar.update(1)
            if saving:
                self.checkpoint.save(state)
            if out_of_time:
                break
        # Every way out of the loop (step == steps, early stopping right after a
        # validation, or the time budget) has synced already: nothing is pending here.
        if self.validation is not None and step == start and _n_rounds(state) == 0:
            self.validation(state, step)
        seconds = time.perf_counter() - t_start
        self.checkpoint.save(state)
        return first_step_s, seconds


def _result(state: dict, static, validated: bool, first_step_s: float, seconds: float):
    n_val = _n_rounds(state)
    validations = tuple(
        (int(s), float(v)) for s, v in zip(state["val_steps"][:n_val], state["val_values"][:n_val])
    )
    last_model = eqx.combine(state["params"], static)
    best_model = eqx.combine(state["best_params"], static) if validated else last_model
    return FitResult(
        model=best_model,
        last_model=last_model,
        opt_state=state["opt_state"],
        losses=np.asarray(state["losses"][: int(state["step"])]),
        step=int(state["step"]),
        validations=validations,
        best_validation=float(state["best"]) if validated else None,
        stopped_early=bool(state["stopped"]),
        first_step_seconds=first_step_s,
        seconds=seconds,
    )


def fit(
    loss: Callable[..., Any],
    model: Any,
    optimiser: optax.GradientTransformation,
    *,
    steps: int,
    key: PRNGKeyArray,
    batch: Callable[[int, PRNGKeyArray], Any] | None = None,
    has_aux: bool = False,
    filter_spec: Callable[[Any], bool] = eqx.is_inexact_array,
    progress: bool = True,
    desc: str = "fit",
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: int = 100,
    validate: Callable[[Any], float] | None = None,
    validate_every: int = 100,
    patience: int | None = None,
    min_steps: int = 0,
    max_seconds: float | None = None,
    sharding: AbstractSharding | None = None,
) -> FitResult:
    """Train `model` with `optimiser` on `loss` for `steps` steps, resumably.

    Each step draws its randomness from `jax.random.fold_in(key, step)`, and the batch
    from `batch(step, batch_key)`, so a run that is stopped and resumed from its last
    checkpoint reproduces the uninterrupted run exactly.

    **Arguments:**

    - `loss`: `loss(model, batch, key) -> scalar` (or `(scalar, aux)` if `has_aux`).
    - `model`: the initial model (any pytree). Leaves selected by `filter_spec`
      (default: floating-point arrays) are trained; the rest is held fixed.
    - `optimiser`: an `optax.GradientTransformation`.
    - `steps`: the total number of optimiser steps, including those already taken by a
      resumed checkpoint (so a checkpoint of a shorter run resumes and trains on).
    - `key`: a PRNG key.
    - `batch`: `batch(step, key) -> batch`, called outside `jit` (it may use NumPy);
      it must be a pure function of its arguments for resumes to be exact. `None` passes
      `batch=None` to `loss`.
    - `has_aux`: whether `loss` returns `(value, aux)`; `aux` must be a dict of scalars,
      shown on the progress bar.
    - `filter_spec`: which leaves of `model` to train.
    - `progress`: show a progress bar (see [`scimlx.ProgressBar`][]).
    - `desc`: the bar's label.
    - `checkpoint`: a file path. If it exists the run resumes from it; every
      `checkpoint_every` steps and at the end, the training state is saved there
      atomically (a kill mid-write keeps the previous checkpoint). The path is checked
      for writing before the first step. A checkpoint written with another model
      structure, optimiser (state structure or hyperparameters) or `key` is refused
      with a `ValueError` saying which.
    - `validate`: `validate(model) -> float`, lower is better; evaluated every
      `validate_every` steps and at the end. The best model is kept. A non-finite
      value (NaN or inf) raises a `FloatingPointError` (the last checkpoint, if any,
      holds the state of the previous save).
    - `patience`: stop after this many validation rounds in a row without improvement.
    - `min_steps`: early stopping ends the run only at a validation round at step
      `min_steps` or later (the rounds before count towards `patience` all the same);
      e.g. "stop after 11 epochs without improvement, but not before the end of epoch 22"
      is `validate_every=E, patience=11, min_steps=22 * E` for epochs of `E` steps.
    - `max_seconds`: a wall-clock budget for this call's steps: the run ends after the
      first step that finishes past it (checked at the loss sync points, every few steps),
      with `step < steps`, checkpointed; a later call with the same `checkpoint` trains
      on. For fixed-time training on machines of unknown speed.
    - `sharding`: how to lay the training out over devices, e.g.
      [`scimlx.DataParallel`][]`(mesh, "batch")`: each batch split along its leading
      axis over the mesh axis `"batch"`, the model and optimiser state replicated; XLA
      inserts the all-reduce of the gradients. `None` (default) trains on one device.
      Checkpoints hold host arrays whatever the layout, so a run on 8 devices resumes
      on 1 and vice versa. With several processes (`jax.distributed`), `batch` returns
      this process's rows, every process calls `fit` alike, and process 0 writes the
      checkpoint (which every process reads to resume: put it on a shared file system).

    **Returns:**

    A [`scimlx.FitResult`][].
    """
    _check_arguments(
        steps,
        checkpoint_every,
        validate,
        validate_every,
        patience,
        min_steps,
        max_seconds,
        sharding,
    )
    params, static = eqx.partition(model, filter_spec)
    state = _fresh_state(params, optimiser.init(params), steps, validate_every)
    ckpt, state = _Checkpoint.open(
        checkpoint, state, steps, validate_every, optimiser, key, sharding
    )
    static, step_key = _place(sharding, static, key, state)
    validation = None if validate is None else _Validation(validate, static, patience, min_steps)
    loop = _Loop(
        loss, optimiser, static, has_aux, sharding, key, step_key, batch, steps, validation,
        validate_every, ckpt, checkpoint_every, max_seconds,
    )  # fmt: skip
    first_step_s, seconds = loop.train(state, progress=progress, desc=desc)
    return _result(state, static, validate is not None, first_step_s, seconds)


def default_batch(data: Any, batch_size: int) -> Callable[[int, PRNGKeyArray], Any]:
    """A `batch` function for [`scimlx.fit`][]: a random minibatch of `data` per step.

    `data` is a pytree of arrays with a common leading axis; each step takes
    `batch_size` rows without replacement, drawn from the step's key.
    """
    leaves = jax.tree_util.tree_leaves(data)
    if not leaves:
        raise ValueError("`data` must contain at least one array.")
    n = leaves[0].shape[0]
    for leaf in leaves:
        if leaf.shape[0] != n:
            raise ValueError(
                f"`data` arrays must share their leading axis; got {n} and {leaf.shape[0]}."
            )
    if not 0 < batch_size <= n:
        raise ValueError(f"`batch_size` must be in [1, {n}], got {batch_size}.")

    def _batch(step: int, key: PRNGKeyArray):
        idx = jr.choice(key, n, (batch_size,), replace=False)
        return jax.tree_util.tree_map(lambda x: jnp.asarray(x)[idx], data)

    return _batch


def steps_per_epoch(n: int, batch_size: int) -> int:
    """The number of steps that visit each of `n` examples once in batches of
    `batch_size`, the last batch holding the remainder: `ceil(n / batch_size)`.

    Trainers count in steps; a run of `epochs` epochs is
    `steps=epochs * scimlx.steps_per_epoch(n, batch_size)`.

    **Arguments:**

    - `n`: the number of training examples (at least 1).
    - `batch_size`: examples per step (at least 1; a batch size above `n` is one step
      per epoch).

    **Returns:**

    A Python `int`.
    """
    n = check_int("n", n, minimum=1)
    batch_size = check_int("batch_size", batch_size, minimum=1)
    return -(-n // batch_size)
