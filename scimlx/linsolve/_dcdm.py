"""The deep conjugate-direction method (DCDM): direction map, loss, training, solve."""

import os
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
import optax
from jaxtyping import Array, Float, PRNGKeyArray

from .._core import fit, Solution
from .._core._checks import Tolerance
from ._cd import cd_solve


class DCDMDirection(eqx.Module):
    r"""The DCDM direction map $r \mapsto m \odot f(\sqrt{n}\, r / \|r\|_2)$.

    The network `model` (called as `model(r_hat, mask)`, in its own dtype, typically
    float32) sees the residual normalised to unit root-mean-square over the $n$ grid cells.
    (The paper normalises to unit 2-norm; with a network that has biases, unit RMS keeps
    the input's entries O(1) at every grid size, so a model trained at one size sees
    inputs of the same scale at another.) its output is cast back to the residual's dtype
    (typically float64, the outer loop's) and zeroed on solid cells (`mask == 0`).

    **Arguments:**

    - `model`: a direction network, e.g. [`scimlx.linsolve.DCDMNet`][] or
      [`scimlx.linsolve.LearnedMGNet`][].
    - `mask`: 1 on fluid cells, 0 on solid cells, or `None` (all fluid).
    """

    model: Any
    mask: Array | None = None

    def __call__(self, r: Float[Array, "*shape"]) -> Float[Array, "*shape"]:
        nr = jnp.sqrt(jnp.sum(r * r))
        x = r * (r.size**0.5 / jnp.where(nr > 0, nr, 1.0))
        m = None if self.mask is None else self.mask.astype(r.dtype)
        q = jnp.asarray(self.model(x, m)).astype(r.dtype)
        return q if m is None else q * m


def dcdm_loss(
    model: Any,
    operator: lx.AbstractLinearOperator,
    r: Float[Array, "*shape"],
    mask: Float[Array, "*shape"] | None = None,
) -> Float[Array, ""]:
    r"""The scale-invariant DCDM loss of one residual, $\|r - (q^\top r / q^\top A q) A q\|_2^2$.

    With $q = $ [`scimlx.linsolve.DCDMDirection`][]`(model, mask)(r)`. The factor is the
    $A$-norm-optimal step along $q$, so the loss does not depend on the scale of the
    network's output; it needs no solutions, only $A$ and residual samples. For unit $r$
    it is 0 for $q \propto A^{-1} r$; it is not bounded by 1 (the step is optimal in the
    $A$-norm of the error, not in the 2-norm of the residual: an untrained CNN scores about
    1.3 on Ritz right-hand sides, $q = r$ about 0.7, a classical V-cycle about 0.07).
    Batch with `jax.vmap`.

    **Arguments:**

    - `model`: the direction network.
    - `operator`: the SPD lineax operator $A$.
    - `r`: a residual (unit norm for training).
    - `mask`: fluid mask (1 fluid, 0 solid) or `None`.

    **Returns:**

    The scalar loss.
    """
    q = DCDMDirection(model, mask)(r)
    Aq = operator.mv(q)
    qAq = jnp.sum(q * Aq)
    qr = jnp.sum(q * r)
    ok = qAq > 0
    res = r - jnp.where(ok, qr / jnp.where(ok, qAq, 1.0), 0.0) * Aq
    return jnp.sum(res * res)


@eqx.filter_jit
def _sample_batch(vectors, masks, weights, key, batch_size: int):
    S = vectors.shape[0]
    k1, k2 = jax.random.split(key)
    scenes = jax.random.randint(k1, (batch_size,), 0, S)
    coeffs = jax.random.normal(k2, (batch_size, vectors.shape[1]), vectors.dtype) * weights[None]

    def one(args):
        s, c = args
        b = jnp.tensordot(c, vectors[s], axes=1)
        return b / jnp.linalg.norm(b), masks[s]

    return jax.lax.map(one, (scenes, coeffs))


def train_dcdm(
    model: Any,
    make_operator: Callable[[Array], lx.AbstractLinearOperator],
    masks: Float[Array, " scenes *shape"],
    vectors: Float[Array, " scenes m *shape"],
    *,
    optimiser: optax.GradientTransformation,
    steps: int,
    key: PRNGKeyArray,
    batch_size: int = 10,
    low: int | None = None,
    low_scale: float = 9.0,
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: int = 100,
    validate: Callable[[Any], float] | None = None,
    validate_every: int = 100,
    patience: int | None = None,
    progress: bool = True,
    max_seconds: float | None = None,
):
    r"""Train a DCDM direction network on Ritz right-hand sides with `scimlx.fit`.

    Every step draws `batch_size` residuals: a scene $s$ at random, then
    $r = \sum_i c_i v^{(s)}_i / \|\cdot\|$ with $c_i \sim N(0,1)$ times `low_scale` for the
    `low` lowest Ritz vectors (see [`scimlx.linsolve.ritz_rhs`][]), and minimises the mean
    [`scimlx.linsolve.dcdm_loss`][] with $A = $ `make_operator(masks[s])`.
    Checkpoint/resume, progress bar and validation are `scimlx.fit`'s.

    **Arguments:**

    - `model`: initial direction network.
    - `make_operator`: `mask -> operator`, traceable in `mask` (it is vmapped).
    - `masks`: fluid masks (1 fluid, 0 solid), one per training scene.
    - `vectors`: Ritz vectors per scene, ascending (from [`scimlx.linsolve.ritz_pairs`][]),
      may be float32 to save memory.
    - `optimiser`: an `optax.GradientTransformation`; the paper's is
      `optax.adam(1e-4)`.
    - `steps`, `key`: number of optimiser steps and PRNG key.
    - `batch_size`: residuals per step (10 in the paper).
    - `low`, `low_scale`: the sampler's weighting (default $m/2 + m/20$ and 9).
    - `checkpoint`, `checkpoint_every`, `validate`, `validate_every`, `patience`,
      `progress`, `max_seconds` (a wall-clock budget: train for a fixed time, at most
      `steps` steps): passed to `scimlx.fit`.

    **Returns:**

    `scimlx.fit`'s `FitResult` (`.model`, `.losses`, ...).
    """
    masks = jnp.asarray(masks)
    vectors = jnp.asarray(vectors)
    if vectors.ndim != masks.ndim + 1 or vectors.shape[0] != masks.shape[0]:
        raise ValueError(
            f"`vectors` must have shape (scenes, m, *shape) matching `masks` (scenes, *shape); "
            f"got {vectors.shape} and {masks.shape}."
        )
    if vectors.shape[2:] != masks.shape[1:]:
        raise ValueError(
            f"grid shapes differ: `vectors` {vectors.shape[2:]}, `masks` {masks.shape[1:]}."
        )
    if batch_size < 1:
        raise ValueError(f"`batch_size` must be >= 1, got {batch_size}.")
    m = vectors.shape[1]
    low = m // 2 + m // 20 if low is None else low
    weights = jnp.where(jnp.arange(m) < low, low_scale, 1.0).astype(vectors.dtype)
    op_dtype = make_operator(masks[0]).in_structure().dtype

    def batch(step, key):
        del step
        rs, ms = _sample_batch(vectors, masks, weights, key, batch_size)
        return rs.astype(op_dtype), ms

    def loss(model, batch, key):
        del key
        rs, ms = batch

        def one(r, msk):
            mk = msk.astype(r.dtype)
            return dcdm_loss(model, make_operator(msk), r, mk)

        return jnp.mean(jax.vmap(one)(rs, ms))

    return fit(
        loss,
        model,
        optimiser,
        steps=steps,
        key=key,
        batch=batch,
        progress=progress,
        desc="dcdm",
        checkpoint=checkpoint,
        checkpoint_every=checkpoint_every,
        validate=validate,
        validate_every=validate_every,
        patience=patience,
        max_seconds=max_seconds,
    )


@eqx.filter_jit
def dcdm_solve(
    operator: lx.AbstractLinearOperator,
    b: Float[Array, "*shape"],
    model: Any,
    *,
    mask: Float[Array, "*shape"] | None = None,
    k: int = 2,
    rtol: Tolerance = 1e-6,
    atol: Tolerance = 0.0,
    max_steps: int = 200,
    recompute_every: int = 50,
    x0: Float[Array, "*shape"] | None = None,
    stall_tol: float = 1e-6,
    throw: bool = True,
) -> Solution:
    r"""Solve $Ax = b$ with DCDM: [`scimlx.linsolve.cd_solve`][] with a network direction.

    Each step feeds $r/\|r\|$ to the network, $A$-orthogonalises its output against the
    last `k` directions (2 in the paper) and takes the exact line search.

    **Arguments:**

    - `operator`: SPD lineax operator (tagged positive semidefinite) on the grid.
    - `b`: right-hand side on the grid (zero on solid cells).
    - `model`: the direction network.
    - `mask`: fluid mask (1 fluid, 0 solid), or `None`.
    - `k`, `rtol`, `atol`, `max_steps`, `recompute_every`, `x0`, `throw`: as for
      [`scimlx.linsolve.cd_solve`][] (stop at $\|r\|_2 \le$ `atol` + `rtol` $\|b\|_2$).
    - `stall_tol`: residual fallback for stalled network directions (default `1e-6`;
      `0` is the paper's loop exactly), see [`scimlx.linsolve.cd_solve`][].

    **Returns:**

    A [`scimlx.Solution`][], as from [`scimlx.linsolve.cd_solve`][] (the same `result`
    codes and `stats` keys; `stats["num_direction_evals"]` counts network calls).

    ??? cite "Reference"

        ```bibtex
        @inproceedings{kaneda2023deep,
          title={A Deep Conjugate Direction Method for Iteratively Solving Linear Systems},
          author={Kaneda, Ayano and Akar, Osman and Chen, Jingyu and Kala, Victoria
                  and Hyde, David and Teran, Joseph},
          booktitle={International Conference on Machine Learning},
          pages={15720--15736},
          year={2023}
        }
        ```
    """
    return cd_solve(
        operator,
        b,
        direction=DCDMDirection(model, mask),
        k=k,
        rtol=rtol,
        atol=atol,
        max_steps=max_steps,
        recompute_every=recompute_every,
        x0=x0,
        stall_tol=stall_tol,
        throw=throw,
    )
