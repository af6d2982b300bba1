"""Training and evaluation of latent models on irregular time-series classification."""

import dataclasses
import os

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax
from jaxtyping import Array, Float, Int, PRNGKeyArray

from .._core import fit, steps_per_epoch
from .._core._checks import (
    check_finite,
    check_int,
    check_labels,
    check_nonempty,
    check_positive,
)
from ._models import AbstractLatentModel
from ._path import ControlPath, make_path


class PathBatch(eqx.Module):
    """Controlled paths of a whole data set, with their grids, lengths and labels.

    Built once by [`scimlx.sde.paths_from_data`][]; index with `batch[idx]`.
    """

    paths: ControlPath  # leaves with a leading batch axis
    times: Float[Array, "N L"]
    lengths: Int[Array, " N"]
    labels: Array

    def __len__(self):
        return self.times.shape[0]

    def __getitem__(self, idx):
        return PathBatch(
            jax.tree.map(lambda x: x[idx], self.paths),
            self.times[idx],
            self.lengths[idx],
            self.labels[idx],
        )


def _check_nonempty(batch, name):
    check_nonempty(name, len(batch), what="series")


def _check_labels(model, batch, name):
    """Labels must be class indices of the model's readout (`out_size`; checked on the
    host)."""
    check_labels(f"{name}.labels", np.asarray(batch.labels), model.readout.layers[-1].out_features)


def _check_positive_int(value, name):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"`{name}` must be a positive int, got {value!r}.")


@eqx.filter_jit
def _batched_paths(times, values, lengths, interpolation, time_channel, mask_channel):
    return jax.vmap(
        lambda t, v, n: make_path(
            t,
            v,
            n,
            interpolation=interpolation,
            time_channel=time_channel,
            mask_channel=mask_channel,
        )
    )(times, values, lengths)


def paths_from_data(
    data,
    *,
    interpolation: str = "hermite",
    time_channel: bool = True,
    mask_channel: bool = False,
    dtype=None,
) -> PathBatch:
    """Build the controlled paths of a data set once (vmapped [`scimlx.sde.make_path`][]).

    **Arguments:**

    - `data`: a [`scimlx.data.TimeSeriesData`][] (or anything with `times`, `values`,
      `lengths`, `labels`).
    - `interpolation`, `time_channel`, `mask_channel`: as in `make_path`.
    - `dtype`: float dtype (default: that of `data.values`).

    **Returns:**

    A [`scimlx.sde.PathBatch`][].
    """
    values = np.asarray(data.values)
    dtype = values.dtype if dtype is None else dtype
    times = np.asarray(data.times)
    lengths = np.asarray(data.lengths)
    for i in range(times.shape[0]):  # host-side validation with a clear message
        n = int(lengths[i])
        if n < 1 or n > times.shape[1]:
            raise ValueError(f"series {i}: length {n} outside [1, {times.shape[1]}].")
        if n > 1 and not np.all(np.diff(times[i, :n]) > 0):
            raise ValueError(f"series {i}: `times` must be strictly increasing.")
    paths = _batched_paths(
        jnp.asarray(times, dtype),
        jnp.asarray(values, dtype),
        jnp.asarray(lengths),
        interpolation,
        time_channel,
        mask_channel,
    )
    return PathBatch(
        paths, jnp.asarray(times, dtype), jnp.asarray(lengths), jnp.asarray(data.labels)
    )


def _final_states(model, batch: PathBatch, key, solve_options):
    keys = jr.split(key, len(batch))
    return jax.vmap(lambda p, t, n, k: model.final_state(p, t, n, key=k, **solve_options))(
        batch.paths, batch.times, batch.lengths, keys
    )


def _logits(model, batch: PathBatch, key, solve_options):
    """Inference-mode logits (stored readout statistics, no dropout)."""
    return jax.vmap(model.readout)(_final_states(model, batch, key, solve_options))


def classification_loss(
    model: AbstractLatentModel,
    batch: PathBatch,
    key: PRNGKeyArray,
    **solve_options,
) -> Float[Array, ""]:
    """Training loss: mean cross-entropy of the class logits over a batch (one SDE sample per
    series; a batch-norm readout (`"official"`, `"batchnorm"`) uses the batch's statistics
    and dropout, as in training)."""
    zs = _final_states(model, batch, key, solve_options)
    logits = model.readout.batch_call(zs, key=jr.fold_in(key, 7919))
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, batch.labels))


def evaluation_loss(
    model: AbstractLatentModel,
    batch: PathBatch,
    key: PRNGKeyArray,
    **solve_options,
) -> Float[Array, ""]:
    """Inference-mode mean cross-entropy over a batch (stored readout statistics, no dropout)."""
    logits = _logits(model, batch, key, solve_options)
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, batch.labels))


@eqx.filter_jit
def _final_states_jit(model, batch, key, solve_options):
    return _final_states(model, batch, key, solve_options)


def calibrate_readout(
    model: AbstractLatentModel,
    batch: PathBatch,
    *,
    key: PRNGKeyArray,
    chunk: int = 256,
    **solve_options,
) -> AbstractLatentModel:
    """Set a batch-norm readout's statistics from a data set (usually the training set).

    The readout's `Linear -> BatchNorm` normalises with batch statistics in training; for
    inference on one example it needs fixed statistics. Instead of torch's running average
    over training batches, this computes them from the final latent states of `batch` under
    the current weights (one SDE sample per series). Other readouts are returned unchanged.

    **Arguments:**

    - `model`: the model.
    - `batch`: a [`scimlx.sde.PathBatch`][] (labels unused).
    - `key`: PRNG key for the Brownian motions.
    - `chunk`: series per compiled call.
    - `solve_options`: passed to the model's `solve`.

    **Returns:**

    The model with `readout.running_mean` / `readout.running_var` set.
    """
    if not model.readout.uses_statistics:
        return model
    _check_nonempty(batch, "batch")
    _check_positive_int(chunk, "chunk")
    zs = []
    for start in range(0, len(batch), chunk):
        sub = batch[np.arange(start, min(start + chunk, len(batch)))]
        zs.append(_final_states_jit(model, sub, jr.fold_in(key, start), solve_options))
    head = model.readout.with_statistics(jnp.concatenate(zs))
    return eqx.tree_at(lambda m: m.readout, model, head)


@eqx.filter_jit
def _probs(model, batch, key, samples, solve_options):
    keys = jr.split(key, samples)
    return jax.vmap(lambda k: jax.nn.softmax(_logits(model, batch, k, solve_options)))(keys)


def predict_proba(
    model: AbstractLatentModel,
    batch: PathBatch,
    *,
    key: PRNGKeyArray,
    samples: int = 1,
    chunk: int = 256,
    **solve_options,
) -> tuple[np.ndarray, np.ndarray]:
    """Class probabilities averaged over `samples` SDE solutions, and their spread.

    **Arguments:**

    - `model`, `batch`: the model and the data.
    - `key`: PRNG key for the Brownian motions.
    - `samples`: number of SDE samples per series (uncertainty from the noise).
    - `chunk`: series per compiled call (bounds memory).

    **Returns:**

    `(mean, std)`, each `(N, classes)`: the mean and standard deviation over the samples of
    the predicted probabilities (std is zero for ODE/CDE models or `samples == 1`).
    """
    _check_nonempty(batch, "batch")
    _check_positive_int(chunk, "chunk")
    _check_positive_int(samples, "samples")
    means, stds = [], []
    for start in range(0, len(batch), chunk):
        sub = batch[np.arange(start, min(start + chunk, len(batch)))]
        p = np.asarray(_probs(model, sub, jr.fold_in(key, start), samples, solve_options))
        means.append(p.mean(0))
        stds.append(p.std(0))
    return np.concatenate(means), np.concatenate(stds)


def evaluate(
    model: AbstractLatentModel,
    batch: PathBatch,
    *,
    key: PRNGKeyArray,
    samples: int = 1,
    **solve_options,
) -> dict:
    """Accuracy, mean cross-entropy and mean predictive std on a labelled set."""
    _check_nonempty(batch, "batch")
    _check_labels(model, batch, "batch")
    mean, std = predict_proba(model, batch, key=key, samples=samples, **solve_options)
    labels = np.asarray(batch.labels)
    acc = float(np.mean(mean.argmax(1) == labels))
    nll = float(-np.mean(np.log(np.clip(mean[np.arange(len(labels)), labels], 1e-12, None))))
    return {"accuracy": acc, "loss": nll, "predictive_std": float(std.mean())}


def default_batch_size(n_total: int) -> int:
    """The reference protocol's batch size: the largest power of two <= N/2, in [16, 128],
    where N is the size of the whole data set (train + validation + test)."""
    b = 16
    while b * 2 <= n_total / 2 and b < 128:
        b *= 2
    return min(b, max(n_total, 1))


def reference_optimiser(learning_rate: float, steps_per_epoch: int) -> optax.GradientTransformation:
    """The paper's optimiser for [`scimlx.sde.train_classifier`][]: Adam, L2 weight decay
    `learning_rate / 100` added to the gradient (as `torch.optim.Adam(weight_decay=...)`),
    the learning rate halved every 10 epochs (`StepLR(10, 0.5)`).

    The paper's learning rate is `1e-3 * batch_size / 16` (or the result of its search);
    with the batch size from [`scimlx.sde.default_batch_size`][] (at most the training
    set's size):

    ```python
    bs = min(sde.default_batch_size(len(train) + 2 * len(val)), len(train))
    spe = scimlx.steps_per_epoch(len(train), bs)
    res = sde.train_classifier(
        model, train, val, optimiser=sde.reference_optimiser(1e-3 * bs / 16, spe),
        steps=100 * spe, batch_size=bs, key=key,
    )
    ```

    For gradient clipping, chain it in front:
    `optax.chain(optax.clip_by_global_norm(1.0), sde.reference_optimiser(lr, spe))`.

    **Arguments:**

    - `learning_rate`: the initial learning rate (a positive number; an array under
      `optax.inject_hyperparams`).
    - `steps_per_epoch`: optimiser steps per epoch, from [`scimlx.steps_per_epoch`][].

    **Returns:**

    An `optax.GradientTransformation`.
    """
    check_finite("learning_rate", learning_rate)
    check_positive("learning_rate", learning_rate)
    check_int("steps_per_epoch", steps_per_epoch, minimum=1)
    schedule = optax.exponential_decay(
        learning_rate, transition_steps=10 * steps_per_epoch, decay_rate=0.5, staircase=True
    )
    return optax.chain(optax.add_decayed_weights(learning_rate / 100), optax.adam(schedule))


def train_classifier(
    model: AbstractLatentModel,
    train: PathBatch,
    val: PathBatch | None = None,
    *,
    optimiser: optax.GradientTransformation,
    steps: int,
    batch_size: int,
    key: PRNGKeyArray,
    patience: int | None = 11,
    min_epochs: int = 22,
    progress: bool = True,
    checkpoint: str | os.PathLike | None = None,
    **solve_options,
):
    """Train a classifier with [`scimlx.fit`][] on the cross-entropy of its class logits.

    Epochs visit each training series once, in a fresh random order, in batches of
    `batch_size`; the last batch of an epoch holds the remainder (as a
    `DataLoader(drop_last=False)`), so an epoch is
    [`scimlx.steps_per_epoch`][]`(len(train), batch_size)` steps. With `val`, the
    validation loss is computed at the end of every epoch (inference mode, after
    [`scimlx.sde.calibrate_readout`][] on `train`) and the best-validation weights are
    returned. Early stopping follows the reference code's rule `(epoch > 20) & (patient >
    10)` (0-based epochs): the run stops after `patience` epochs in a row without
    improvement, at the end of epoch `min_epochs` (1-based) or later; that is `scimlx.fit`
    with `validate_every` one epoch, `patience` and `min_steps = min_epochs` epochs.
    The paper's optimiser and batch size are [`scimlx.sde.reference_optimiser`][] and
    [`scimlx.sde.default_batch_size`][] (of train + 2 x validation, i.e. the whole set for
    a 70/15/15 split).

    **Arguments:**

    - `model`: the initial model; its readout's `out_size` is the number of classes, and
      labels must lie in `[0, out_size)`.
    - `train`, `val`: [`scimlx.sde.PathBatch`][] sets (`val=None`: no validation, no early
      stopping).
    - `optimiser`: an `optax.GradientTransformation`, e.g.
      [`scimlx.sde.reference_optimiser`][].
    - `steps`: optimiser steps; `epochs * scimlx.steps_per_epoch(len(train), batch_size)`
      for whole epochs.
    - `batch_size`: series per step (a batch size above `len(train)` takes the whole set).
    - `key`: PRNG key (batch order, Brownian motions).
    - `patience`: epochs without improvement of the validation loss before stopping
      (default 11; `None`: never stop early). Used with `val` only.
    - `min_epochs`: the first epoch (1-based) at whose end the run may stop early
      (default 22).
    - `progress`: progress bar.
    - `checkpoint`: file path for resumable checkpoints (saved every 10 epochs and at the
      end).
    - `solve_options`: passed to the model's `solve` (e.g.
      `stepsize_controller=scimlx.sde.ObservationGrid(scan=False)`).

    **Returns:**

    The [`scimlx.FitResult`][] of `scimlx.fit` (with a batch-norm readout, `model` and
    `last_model` have their readout statistics set from `train` by
    [`scimlx.sde.calibrate_readout`][]).
    """
    _check_training_arguments(model, train, val, steps, batch_size, patience, min_epochs)
    batch_fn, spe = _epoch_batches(train, batch_size, key)
    calibrate = _Calibration(train, jr.fold_in(key, 778), solve_options)
    validate = None if val is None else _Validation(calibrate, val, jr.fold_in(key, 777))
    patience = patience if val is not None else None
    result = fit(
        _ClassificationLoss(solve_options),
        model,
        optimiser,
        steps=steps,
        key=key,
        batch=batch_fn,
        progress=progress,
        desc=type(model).__name__,
        checkpoint=checkpoint,
        checkpoint_every=10 * spe,
        validate=validate,
        validate_every=spe,
        patience=patience,
        min_steps=0 if patience is None else min_epochs * spe,
    )
    if model.readout.uses_statistics:  # inference statistics for the returned models
        result = dataclasses.replace(
            result, model=calibrate(result.model), last_model=calibrate(result.last_model)
        )
    return result


def _check_training_arguments(model, train, val, steps, batch_size, patience, min_epochs):
    _check_nonempty(train, "train")
    _check_labels(model, train, "train")
    if val is not None:
        _check_nonempty(val, "val")
        _check_labels(model, val, "val")
    _check_positive_int(steps, "steps")
    _check_positive_int(batch_size, "batch_size")
    if patience is not None:
        _check_positive_int(patience, "patience")
    if isinstance(min_epochs, bool) or not isinstance(min_epochs, int) or min_epochs < 0:
        raise ValueError(f"`min_epochs` must be a non-negative int, got {min_epochs!r}.")


def _epoch_batches(train: PathBatch, batch_size: int, key):
    """`scimlx.fit`'s `batch(step, key)` visiting every series once per epoch in a fresh
    order (seeded by `key` and the epoch; the last batch holds the remainder), and the
    number of steps per epoch."""
    n = len(train)
    bs = min(batch_size, n)
    spe = steps_per_epoch(n, bs)
    seed = int(jr.randint(jr.fold_in(key, 12345), (), 0, 2**30))

    def batch_fn(step, _key):
        epoch, i = divmod(step, spe)
        perm = np.random.default_rng([seed, epoch]).permutation(n)
        return train[perm[i * bs : (i + 1) * bs]]

    return batch_fn, spe


# The loss and the validation's compiled call are Modules and module-level functions, not
# closures: `scimlx.fit` compiles its step once per loss, and a fresh closure per call of
# `train_classifier` would compile every run anew.


class _ClassificationLoss(eqx.Module):
    """`classification_loss` with the model's solve options, as `scimlx.fit`'s loss."""

    solve_options: dict

    def __call__(self, model, batch, key):
        return classification_loss(model, batch, key, **self.solve_options)


@eqx.filter_jit
def _evaluation_loss_jit(model, batch, key, solve_options):
    return evaluation_loss(model, batch, key, **solve_options)


class _Calibration(eqx.Module):
    """`calibrate_readout` on the training set with a fixed key."""

    train: PathBatch
    key: PRNGKeyArray
    solve_options: dict

    def __call__(self, model):
        return calibrate_readout(model, self.train, key=self.key, **self.solve_options)


class _Validation(eqx.Module):
    """The validation loss in inference mode, after calibrating the readout on `train`."""

    calibrate: _Calibration
    val: PathBatch
    key: PRNGKeyArray

    def __call__(self, model) -> float:
        model = self.calibrate(model)
        return float(_evaluation_loss_jit(model, self.val, self.key, self.calibrate.solve_options))
