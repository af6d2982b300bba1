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

from .._core import default_batch, fit, FitResult
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


_LOSSES = {"l2": rel_l2, "h1": rel_h1}


def operator_loss(kind: str = "h1") -> Callable:
    """`loss(model, (a, u), key)` for [`scimlx.fit`][]: the batch mean of `rel_l2` or `rel_h1`."""
    if kind not in _LOSSES:
        raise ValueError(f"`kind` must be one of {sorted(_LOSSES)}, got {kind!r}.")
    fn = _LOSSES[kind]

    def loss(model, batch, key):
        a, u = batch
        pred = jax.vmap(model)(a)
        return jnp.mean(jax.vmap(fn)(pred, u.astype(pred.dtype)))

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


def train_operator(
    model: Any,
    a: Float[Array, "N cin *spatial"],
    u: Float[Array, "N cout *spatial"],
    *,
    steps: int,
    key: PRNGKeyArray,
    batch_size: int = 8,
    learning_rate: float = 1e-3,
    weight_decay: float = 1e-4,
    loss: str = "h1",
    schedule: str = "onecycle",
    progress: bool = True,
    checkpoint: str | os.PathLike | None = None,
    validate: Callable[[Any], float] | None = None,
    validate_every: int = 100,
) -> FitResult:
    """Train a neural operator on `(a, u)` pairs with [`scimlx.fit`][] and optax.

    Adam with coupled L2 weight decay (the FNO/MgNO `Adam.py`), and a one-cycle (the
    reference's `OneCycleLR(div_factor=2, final_div_factor=100, pct_start=0.2)`, per step) or
    cosine schedule.

    **Arguments:**

    - `model`: the operator (e.g. `normalised(MgNO(...), a, u)`).
    - `a`, `u`: training inputs and targets, leading batch axis.
    - `steps`: optimiser steps; `batch_size`: examples per step.
    - `key`: PRNG key (minibatches).
    - `learning_rate`: peak learning rate; `weight_decay`: L2 coefficient.
    - `loss`: `"h1"` (the reference's Darcy loss) or `"l2"` (relative errors).
    - `schedule`: `"onecycle"`, `"cosine"` or `"constant"`.
    - `progress`, `checkpoint`, `validate`, `validate_every`: passed to [`scimlx.fit`][].

    **Returns:**

    A [`scimlx.FitResult`][].
    """
    if schedule == "onecycle":
        sched = optax.cosine_onecycle_schedule(
            steps, learning_rate, pct_start=0.2, div_factor=2.0, final_div_factor=100.0
        )
    elif schedule == "cosine":
        sched = optax.cosine_decay_schedule(learning_rate, steps)
    elif schedule == "constant":
        sched = learning_rate
    else:
        raise ValueError(f"`schedule` must be onecycle, cosine or constant, got {schedule!r}.")
    opt = optax.chain(optax.add_decayed_weights(weight_decay), optax.adam(sched))
    return fit(
        operator_loss(loss),
        model,
        opt,
        steps=steps,
        key=key,
        batch=default_batch((a, u), batch_size),
        progress=progress,
        checkpoint=checkpoint,
        validate=validate,
        validate_every=validate_every,
        desc=f"train {type(getattr(model, 'model', model)).__name__}",
    )
