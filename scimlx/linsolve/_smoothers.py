"""Multigrid smoothers: damped Jacobi, Chebyshev (Jacobi-preconditioned), red-black Gauss-Seidel.

A smoother is a small Module ([`scimlx.linsolve.AbstractSmoother`][]) that the V-cycle of
[`scimlx.linsolve.multigrid`][] asks for two things: per-level data computed once when the
hierarchy is built (`init`), and one sweep on an iterate (`step`). Solid cells are held at zero.
With the sweeps used by the V-cycle (the same Jacobi/Chebyshev sweep before and after the
coarse correction, red-black before and black-red after) the V-cycle is a symmetric operator.
"""

import abc
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, PyTree

from ._operators import AbstractGridOperator


class AbstractSmoother(eqx.Module):
    """A multigrid smoother: one sweep `u -> u'` towards the solution of `A u = f`.

    Subclass it and implement `init` and `step`; pass an instance as
    `multigrid(op, smoother=...)`. The V-cycle calls `init` once per level (not the
    coarsest, which is solved exactly) when it is built, and `step` `pre` times before and
    `post` times after the coarse-grid correction. For the V-cycle to be symmetric (as a CG
    preconditioner needs), the post-smoothing sweep must be the adjoint of the
    pre-smoothing one (`post=True` says which one is asked for).

    !!! example

        ```python
        class Richardson(ls.AbstractSmoother):
            tau: float = eqx.field(static=True, default=0.2)

            def init(self, operator, diagonal):
                return None

            def step(self, operator, diagonal, data, f, u, *, post):
                fluid = ~operator.solid
                return u + jnp.where(fluid, self.tau * (f - operator.mv(u)) / diagonal, 0.0)
        ```
    """

    @abc.abstractmethod
    def init(self, operator: AbstractGridOperator, diagonal: Array) -> PyTree[Any]:
        """Per-level data (arrays or `None`), computed once when the V-cycle is built.

        **Arguments:**

        - `operator`: the level's grid operator (`operator.mv`, `operator.solid`).
        - `diagonal`: its diagonal, grid-shaped.

        **Returns:**

        Any pytree; it is handed back to `step` as `data`.
        """

    @abc.abstractmethod
    def step(
        self,
        operator: AbstractGridOperator,
        diagonal: Array,
        data: PyTree[Any],
        f: Array,
        u: Array,
        *,
        post: bool,
    ) -> Array:
        """One sweep on the iterate `u` for `A u = f`.

        **Arguments:**

        - `operator`, `diagonal`: the level's operator and its diagonal.
        - `data`: what `init` returned for this level.
        - `f`: right-hand side; `u`: iterate (both grid-shaped, zero on solid cells).
        - `post`: whether the sweep follows the coarse-grid correction (run the adjoint of
          the pre-smoothing sweep there).

        **Returns:**

        The new iterate, zero on solid cells.
        """


def _inverse_diagonal(diag: Array, fluid: Array, scale: Any = 1.0) -> Array:
    return jnp.where(fluid, scale / diag, jnp.zeros_like(diag))


class Jacobi(AbstractSmoother):
    """Damped Jacobi: `u <- u + omega D^{-1} (f - A u)`.

    **Arguments:**

    - `omega`: damping (default `None`: `0.8` in 1-D and 2-D, `6/7` in 3-D).
    """

    omega: float | None = eqx.field(static=True, default=None)

    def __check_init__(self):
        if self.omega is not None and not 0 < self.omega <= 2:
            raise ValueError(f"`omega` must be in (0, 2]; got {self.omega}.")

    def init(self, operator: AbstractGridOperator, diagonal: Array) -> None:
        return None

    def step(
        self,
        operator: AbstractGridOperator,
        diagonal: Array,
        data: None,
        f: Array,
        u: Array,
        *,
        post: bool,
    ) -> Array:
        omega = self.omega
        if omega is None:
            omega = 0.8 if u.ndim <= 2 else 6.0 / 7.0
        inv = _inverse_diagonal(diagonal, ~operator.solid, float(omega))
        return u + inv * (f - operator.mv(u))


class Chebyshev(AbstractSmoother):
    """Chebyshev smoother of `degree` on `D^{-1} A`, damping `[lower * lmax, lmax]`.

    `lmax` is estimated per level when the V-cycle is built (power iteration, see
    [`scimlx.linsolve.estimate_lmax`][], capped by the Gershgorin bound). One sweep costs
    `degree` operator products.

    **Arguments:**

    - `degree`: polynomial degree (default 2).
    - `lower`: lower end of the damped interval, as a fraction of `lmax` (default `0.125`).
    """

    degree: int = eqx.field(static=True, default=2)
    lower: float = eqx.field(static=True, default=0.125)

    def __check_init__(self):
        if not isinstance(self.degree, int) or self.degree < 1:
            raise ValueError(f"`degree` must be a positive integer; got {self.degree!r}.")
        if not 0 < self.lower < 1:
            raise ValueError(f"`lower` must be in (0, 1); got {self.lower}.")

    def init(self, operator: AbstractGridOperator, diagonal: Array) -> Array:
        bound = operator.spectral_bound(diagonal)
        return estimate_lmax(operator.mv, diagonal, ~operator.solid, bound=bound)

    def step(
        self,
        operator: AbstractGridOperator,
        diagonal: Array,
        data: Array,
        f: Array,
        u: Array,
        *,
        post: bool,
    ) -> Array:
        mv = operator.mv
        lmax = data
        inv = _inverse_diagonal(diagonal, ~operator.solid)
        lmin = lmax * self.lower
        theta = 0.5 * (lmax + lmin)
        delta = 0.5 * (lmax - lmin)
        sigma = theta / delta
        rho = 1.0 / sigma
        r = inv * (f - mv(u))
        d = r / theta
        for k in range(self.degree):
            u = u + d
            if k == self.degree - 1:
                break
            r = r - inv * mv(d)
            rho_new = 1.0 / (2.0 * sigma - rho)
            d = (rho_new * rho) * d + (2.0 * rho_new / delta) * r
            rho = rho_new
        return u


class RedBlackGaussSeidel(AbstractSmoother):
    """Red-black Gauss-Seidel for `(2d+1)`-point stencils: red cells, then black.

    Cells with even index sum are red. The post-smoothing sweep runs black first (the adjoint),
    so the V-cycle is symmetric.
    """

    def init(self, operator: AbstractGridOperator, diagonal: Array) -> None:
        return None

    def step(
        self,
        operator: AbstractGridOperator,
        diagonal: Array,
        data: None,
        f: Array,
        u: Array,
        *,
        post: bool,
    ) -> Array:
        idx = sum(jnp.indices(u.shape))
        red = (idx % 2) == 0
        order = (~red, red) if post else (red, ~red)
        inv = _inverse_diagonal(diagonal, ~operator.solid)
        for colour in order:
            u = u + jnp.where(colour, inv * (f - operator.mv(u)), jnp.zeros_like(u))
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

    - `mv`: the operator's matvec; `diag`: its diagonal `D`; `fluid`: boolean mask of the
        unknowns.
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
