"""Number of vector-field evaluations (NFE) of a diffrax solve."""

import diffrax as dfx
import jax.numpy as jnp
from jaxtyping import Array, Int


# (per step, once per solve) evaluations of the drift and of the diffusion, measured by
# counting vector-field calls with `jax.debug.callback` (tests/test_nde_transforms.py checks
# Tsit5, Dopri5, HalfSolver(Heun), and SPaRK and Heun on SDEs). Rejected steps cost the same
# as accepted ones.
_ODE_TABLE: dict[type, tuple[int, int]] = {
    dfx.Tsit5: (6, 1),
    dfx.Dopri5: (6, 1),
    dfx.Heun: (2, 0),
    dfx.Ralston: (2, 0),
    dfx.Midpoint: (2, 0),
    dfx.Euler: (1, 0),
}
_SDE_TABLE: dict[type, tuple[tuple[int, int], tuple[int, int]]] = {
    dfx.Heun: ((2, 0), (2, 0)),
    dfx.SPaRK: ((3, 0), (6, 0)),
    dfx.SRA1: ((2, 0), (1, 1)),
    dfx.ShARK: ((2, 0), (1, 1)),
    dfx.EulerHeun: ((1, 0), (2, 0)),
    dfx.Euler: ((1, 0), (1, 0)),
}


def _unwrap(solver):
    # Our own wrappers add no evaluations; HalfSolver is handled explicitly.
    while isinstance(solver, dfx.AbstractWrappedSolver) and not isinstance(solver, dfx.HalfSolver):
        solver = solver.solver
    return solver


def nfe_formula(
    solver: dfx.AbstractSolver, *, sde: bool = False
) -> tuple[tuple[int, int], tuple[int, int]] | None:
    """Evaluations of `(drift, diffusion)` a solver makes as `(per_step, per_solve)`.

    **Arguments:**

    - `solver`: a diffrax solver (possibly wrapped by a scimlx regulariser wrapper, or
        by `diffrax.HalfSolver`).
    - `sde`: whether the terms are an SDE (drift + diffusion).

    **Returns:**

    `((a, b), (c, d))` with `NFE_drift = a * num_steps + b`, `NFE_diffusion = c *
    num_steps + d` (`num_steps` includes rejected steps), or `None` for solvers not in
    the table.
    """
    solver = _unwrap(solver)
    if isinstance(solver, dfx.HalfSolver):
        inner = nfe_formula(solver.solver, sde=sde)
        if inner is None:
            return None
        (a, b), (c, d) = inner
        if b != 0 or d != 0:
            # FSAL solvers inside HalfSolver: the count depends on the rejections.
            return None
        return (3 * a, 0), (3 * c, 0)
    if sde:
        return _SDE_TABLE.get(type(solver))
    entry = _ODE_TABLE.get(type(solver))
    return None if entry is None else (entry, (0, 0))


def count_nfe(
    solver: dfx.AbstractSolver, num_steps: Int[Array, ""] | int, *, sde: bool = False
) -> tuple[Int[Array, ""], Int[Array, ""]]:
    """NFE of a solve from its step count (`sol.stats["num_steps"]`).

    **Arguments:**

    - `solver`: the solver used.
    - `num_steps`: accepted + rejected steps.
    - `sde`: whether the terms are an SDE.

    **Returns:**

    `(nfe_drift, nfe_diffusion)` as integer arrays (`-1` for a solver not in the
    table).
    """
    formula = nfe_formula(solver, sde=sde)
    n = jnp.asarray(num_steps)
    if formula is None:
        return jnp.full_like(n, -1), jnp.full_like(n, -1)
    (a, b), (c, d) = formula
    return a * n + b, c * n + d
