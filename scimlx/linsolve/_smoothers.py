"""Multigrid smoothers: damped Jacobi, Chebyshev (Jacobi-preconditioned), red-black Gauss-Seidel.

All act on grid-shaped arrays with an operator `A` (a callable `u -> A u`), its diagonal `D`
and a fluid mask (solid cells are held at zero). Each returns the new iterate. With the sweeps
used by `VCycle` (the same Jacobi/Chebyshev before and after, red-black before and black-red
after) the V-cycle is a symmetric operator.
"""

from collections.abc import Callable

import jax
import jax.numpy as jnp
from jaxtyping import Array


def jacobi(
    mv: Callable[[Array], Array],
    f: Array,
    u: Array,
    diag: Array,
    fluid: Array,
    *,
    sweeps: int = 1,
    omega: float = 0.8,
) -> Array:
    """Damped Jacobi: `u <- u + omega D^{-1} (f - A u)`, `sweeps` times.

    **Arguments:**

    - `mv`: the operator's matvec; `f`: right-hand side; `u`: iterate; `diag`: the diagonal
      `D`; `fluid`: boolean mask of the unknowns (others stay zero).
    - `sweeps`: number of sweeps; `omega`: damping.

    **Returns:**

    The new iterate.
    """
    inv = jnp.where(fluid, omega / diag, jnp.zeros_like(diag))
    for _ in range(sweeps):
        u = u + inv * (f - mv(u))
    return u


def chebyshev(
    mv: Callable[[Array], Array],
    f: Array,
    u: Array,
    diag: Array,
    fluid: Array,
    *,
    lmax: Array,
    degree: int = 3,
    lower: float = 0.125,
) -> Array:
    """Chebyshev smoother of `degree` on `D^{-1} A`, targeting `[lower * lmax, lmax]`.

    **Arguments:**

    - `mv`, `f`, `u`, `diag`, `fluid`: as in [`scimlx.linsolve.jacobi`][].
    - `lmax`: upper bound of the spectrum of `D^{-1} A` (see `estimate_lmax`).
    - `degree`: polynomial degree (operator products).
    - `lower`: lower end of the damped interval, as a fraction of `lmax`.

    **Returns:**

    The new iterate.
    """
    inv = jnp.where(fluid, 1.0 / diag, jnp.zeros_like(diag))
    lmin = lmax * lower
    theta = 0.5 * (lmax + lmin)
    delta = 0.5 * (lmax - lmin)
    sigma = theta / delta
    rho = 1.0 / sigma
    r = inv * (f - mv(u))
    d = r / theta
    for k in range(degree):
        u = u + d
        if k == degree - 1:
            break
        r = r - inv * mv(d)
        rho_new = 1.0 / (2.0 * sigma - rho)
        d = (rho_new * rho) * d + (2.0 * rho_new / delta) * r
        rho = rho_new
    return u


def red_black_gauss_seidel(
    mv: Callable[[Array], Array],
    f: Array,
    u: Array,
    diag: Array,
    fluid: Array,
    *,
    sweeps: int = 1,
    reverse: bool = False,
) -> Array:
    """Red-black Gauss-Seidel for (2d+1)-point stencils: red cells then black (or reversed).

    Cells with even index sum are red. Use `reverse=False` before and `reverse=True` after the
    coarse-grid correction for a symmetric V-cycle.

    **Arguments:**

    - `mv`, `f`, `u`, `diag`, `fluid`: as in [`scimlx.linsolve.jacobi`][].
    - `sweeps`: number of (red + black) sweeps.
    - `reverse`: black first.

    **Returns:**

    The new iterate.
    """
    idx = sum(jnp.indices(u.shape))
    red = (idx % 2) == 0
    order = (~red, red) if reverse else (red, ~red)
    inv = jnp.where(fluid, 1.0 / diag, jnp.zeros_like(diag))
    for _ in range(sweeps):
        for colour in order:
            u = u + jnp.where(colour, inv * (f - mv(u)), jnp.zeros_like(u))
    return u


def estimate_lmax(
    mv: Callable[[Array], Array],
    diag: Array,
    fluid: Array,
    *,
    key: Array | None = None,
    steps: int = 12,
    safety: float = 1.1,
    bound: Array | float = 2.0,
) -> Array:
    """Estimate the largest eigenvalue of `D^{-1} A` on the fluid cells by power iteration.

    **Arguments:**

    - `mv`, `diag`, `fluid`: as in [`scimlx.linsolve.jacobi`][].
    - `key`: PRNG key for the start vector (default a fixed key).
    - `steps`: power iterations; `safety`: factor applied to the estimate.
    - `bound`: an upper bound of the spectrum (default `2`, the Gershgorin bound for a
        diagonally dominant `A`; pass the operator's own Gershgorin bound otherwise).

    **Returns:**

    A scalar upper estimate (never above `bound * safety`).
    """
    key = jax.random.key(0) if key is None else key
    inv = jnp.where(fluid, 1.0 / diag, jnp.zeros_like(diag))
    v = jnp.where(fluid, jax.random.uniform(key, diag.shape, diag.dtype) + 0.5, 0.0)
    lam = jnp.asarray(1.0, diag.dtype)
    for _ in range(steps):
        w = inv * mv(v)
        lam = jnp.sqrt(jnp.sum(w * w)) / jnp.sqrt(jnp.sum(v * v))
        v = w / jnp.sqrt(jnp.sum(w * w))
    return jnp.minimum(lam * safety, bound * safety)
