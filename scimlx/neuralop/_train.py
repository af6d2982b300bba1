"""Training and evaluation of neural operators on `(a, u)` pairs, with `scimlx.fit`."""

import os
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, Float, PRNGKeyArray

from .._core import (
    AbstractSharding,
    check_finite,
    check_int,
    check_positive,
    default_batch,
    fit,
    FitResult,
)
from ._losses import rel_h1, rel_l2


class Normalised(eqx.Module):
    """Wrap an operator with scalar input / output standardisation (the reference's "GN").

    `Normalised(model, a_mean, a_std, u_mean, u_std)(a) = model((a - a_mean) / a_std) * u_std
    + u_mean`. The four scalars are static (not trained).

    **Arguments:** the wrapped `model` and the four Python floats.
    """

    model: Any
    a_mean: float = eqx.field(static=True)
    a_std: float = eqx.field(static=True)
    u_mean: float = eqx.field(static=True)
    u_std: float = eqx.field(static=True)

    def __call__(self, a: Float[Array, " cin *spatial"]) -> Float[Array, " cout *spatial"]:
        y = self.model((a - self.a_mean) / self.a_std)
        return y * self.u_std + self.u_mean


def normalised(model: Any, a: Float[Array, "N ..."], u: Float[Array, "N ..."]) -> Normalised:
    """Wrap `model` in [`scimlx.neuralop.Normalised`][] with the statistics of `a` and `u`."""
    return Normalised(
        model, float(jnp.mean(a)), float(jnp.std(a)), float(jnp.mean(u)), float(jnp.std(u))
    )


def operator_loss(metric: Callable[[Array, Array], Array] = rel_h1) -> Callable:
    """`loss(model, (a, u), key)` for [`scimlx.fit`][]: the batch mean of `metric`.

    **Arguments:**

    - `metric`: `metric(pred, true) -> scalar` on one example, e.g.
      [`scimlx.neuralop.rel_h1`][] (the reference's Darcy loss) or
      [`scimlx.neuralop.rel_l2`][].

    **Returns:**

    The loss function.
    """
    if not callable(metric):
        raise TypeError(f"`metric` must be a function (pred, true) -> scalar, got {metric!r}.")

    def loss(model, batch, key):
        a, u = batch
        pred = jax.vmap(model)(a)
        return jnp.mean(jax.vmap(metric)(pred, u.astype(pred.dtype)))

    return loss


def evaluate(
    model: Any,
    a: Float[Array, "N cin *spatial"],
    u: Float[Array, "N cout *spatial"],
    *,
    batch_size: int = 50,
) -> dict[str, float]:
    """Mean relative L2 and H1 errors of `model` on `(a, u)`, evaluated in chunks.

    **Arguments:**

    - `model`: maps one input `(cin, *spatial)` to `(cout, *spatial)`.
    - `a`, `u`: inputs and targets with a leading batch axis.
    - `batch_size`: examples per jitted call.

    **Returns:**

    `{"rel_l2": float, "rel_h1": float}`.
    """
    if a.shape[0] != u.shape[0]:
        raise ValueError(f"`a` and `u` must have the same length, got {a.shape[0]}, {u.shape[0]}.")

    @eqx.filter_jit
    def errs(m, a, u):
        pred = jax.vmap(m)(a)
        u = u.astype(pred.dtype)
        return jax.vmap(rel_l2)(pred, u), jax.vmap(rel_h1)(pred, u)

    l2s, h1s = [], []
    for s in range(0, a.shape[0], batch_size):
        l2, h1 = errs(model, a[s : s + batch_size], u[s : s + batch_size])
        l2s.append(np.asarray(l2))
        h1s.append(np.asarray(h1))
    return {
        "rel_l2": float(np.concatenate(l2s).mean()),
        "rel_h1": float(np.concatenate(h1s).mean()),
    }


def onecycle_schedule(steps: int, peak_value: float) -> optax.Schedule:
    """The reference's one-cycle learning-rate schedule, per step: torch's
    `OneCycleLR(max_lr=peak_value, total_steps=steps, div_factor=2, final_div_factor=100,
    pct_start=0.2)` (cosine annealing up from `peak_value / 2` for 20% of the steps, then
    down to `peak_value / 200`).

    **Arguments:**

    - `steps`: the length of the cycle (the run's optimiser steps).
    - `peak_value`: the peak learning rate.

    **Returns:**

    An `optax.Schedule`.
    """
    check_int("steps", steps, minimum=1)
    return optax.cosine_onecycle_schedule(
        steps, peak_value, pct_start=0.2, div_factor=2.0, final_div_factor=100.0
    )


def reference_optimiser(
    steps: int,
    *,
    learning_rate: float = 1e-3,
    weight_decay: float = 1e-4,
    schedule: Callable[[int, float], optax.Schedule] = onecycle_schedule,
) -> optax.GradientTransformation:
    """The FNO/MgNO papers' optimiser: Adam with coupled L2 weight decay (their `Adam.py`:
    `weight_decay * params` added to the gradient) and the one-cycle schedule of
    [`scimlx.neuralop.onecycle_schedule`][].

    **Arguments:**

    - `steps`: the run's optimiser steps (the schedule's length).
    - `learning_rate`: the schedule's peak learning rate.
    - `weight_decay`: the L2 coefficient (non-negative).
    - `schedule`: `schedule(steps, learning_rate) -> optax.Schedule`; e.g.
      `lambda n, lr: optax.cosine_decay_schedule(lr, n)` for cosine decay.

    **Returns:**

    `optax.chain(optax.add_decayed_weights(weight_decay), optax.adam(schedule(steps,
    learning_rate)))`.
    """
    check_int("steps", steps, minimum=1)
    check_finite("learning_rate", learning_rate)
    check_positive("learning_rate", learning_rate)
    check_finite("weight_decay", weight_decay)
    check_positive("weight_decay", weight_decay, allow_zero=True)
    return optax.chain(
        optax.add_decayed_weights(weight_decay), optax.adam(schedule(steps, learning_rate))
    )


def train_operator(
    model: Any,
    a: Float[Array, "N cin *spatial"],
    u: Float[Array, "N cout *spatial"],
    *,
    optimiser: optax.GradientTransformation,
    steps: int,
    key: PRNGKeyArray,
    batch_size: int = 8,
    loss: Callable[[Array, Array], Array] = rel_h1,
    progress: bool = True,
    checkpoint: str | os.PathLike | None = None,
    validate: Callable[[Any], float] | None = None,
    validate_every: int = 100,
    patience: int | None = None,
    sharding: AbstractSharding | None = None,
) -> FitResult:
    """Train a neural operator on `(a, u)` pairs with [`scimlx.fit`][].

    Every step draws `batch_size` pairs at random (without replacement) and minimises the
    batch mean of `loss`. The papers' optimiser is
    [`scimlx.neuralop.reference_optimiser`][]`(steps)`; any optax optimiser works.

    **Arguments:**

    - `model`: the operator (e.g. `normalised(MgNO(...), a, u)`).
    - `a`, `u`: training inputs and targets, leading batch axis.
    - `optimiser`: an `optax.GradientTransformation`.
    - `steps`: optimiser steps (`epochs * scimlx.steps_per_epoch(len(a), batch_size)` for
      a number of epochs); `batch_size`: examples per step.
    - `key`: PRNG key (minibatches).
    - `loss`: `loss(pred, true) -> scalar` on one example:
      [`scimlx.neuralop.rel_h1`][] (the reference's Darcy loss) or
      [`scimlx.neuralop.rel_l2`][].
    - `progress`, `checkpoint`, `validate`, `validate_every`, `patience`: passed to
      [`scimlx.fit`][].
    - `sharding`: passed to [`scimlx.fit`][]; e.g. [`scimlx.DataParallel`][]`(mesh,
      "batch")` trains data-parallel, each step's `batch_size` pairs split over the
      mesh axis `"batch"` (so `batch_size` must be a multiple of its device count).

    **Returns:**

    A [`scimlx.FitResult`][].
    """
    return fit(
        operator_loss(loss),
        model,
        optimiser,
        steps=steps,
        key=key,
        batch=default_batch((a, u), batch_size),
        progress=progress,
        checkpoint=checkpoint,
        validate=validate,
        validate_every=validate_every,
        patience=patience,
        sharding=sharding,
        desc=f"train {type(getattr(model, 'model', model)).__name__}",
    )
