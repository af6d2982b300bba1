"""Stiffness estimate from the stages of an explicit Runge--Kutta step."""

import functools

import diffrax as dfx
import equinox as eqx
import jax.numpy as jnp
import jax.tree_util as jtu
import numpy as np
import optimistix as optx
from jaxtyping import Array, Float, PyTree

from ._wrapped import AbstractForwardingSolver


# Stability sizes quoted by the reference implementation (LocalRegNeuralDE.jl,
# src/perform_step.jl: `alg_stability_size(Tsit5()) = 3.5068`). We compute the size from
# the tableau instead; a test checks the two agree for Tsit5.


def _explicit_tableau(solver, what: str) -> tuple[dfx.AbstractSolver, dfx.ButcherTableau]:
    """The innermost solver of `solver` (unwrapping wrappers) and its explicit tableau."""
    inner = solver
    while isinstance(inner, dfx.AbstractWrappedSolver):
        inner = inner.solver
    tableau = getattr(inner, "tableau", None)
    if not isinstance(tableau, dfx.ButcherTableau) or tableau.implicit:
        raise ValueError(
            f"{what} needs an explicit Runge--Kutta ODE solver "
            f"(e.g. diffrax.Tsit5 or diffrax.Dopri5); got {type(inner).__name__}."
        )
    return inner, tableau


def _tableau(solver) -> dfx.ButcherTableau:
    inner, tableau = _explicit_tableau(solver, "The stiffness estimate")
    if tableau.num_stages < 3 or not np.isclose(tableau.c[-1], tableau.c[-2]):
        raise ValueError(
            "The stiffness estimate needs a solver whose last two stages share a "
            f"node (Tsit5, Dopri5); {type(inner).__name__} does not."
        )
    return tableau


@functools.cache
def _stability_size_cached(key) -> float:
    _, b, a_rows = key
    b = np.asarray(b)
    s = len(b)
    a = np.zeros((s, s))
    for i, row in enumerate(a_rows):
        a[i + 1, : len(row)] = np.asarray(row)

    def amp(z):
        return abs(1 + z * b @ np.linalg.solve(np.eye(s) - z * a, np.ones(s)))

    xs = np.linspace(0.0, 10.0, 20001)
    bad = np.array([amp(-x) > 1 + 1e-12 for x in xs])
    first = int(np.argmax(bad[1:])) + 1
    # Refine the boundary by bisection.
    lo, hi = xs[first - 1], xs[first]
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if amp(-mid) <= 1 else (lo, mid)
    return float(lo)


def stability_region_size(solver: dfx.AbstractSolver) -> float:
    """Length of the real-axis stability interval `[-r, 0]` of an explicit RK solver.

    Computed from the solver's Butcher tableau as the first `x > 0` with
    `|R(-x)| > 1`, `R(z) = 1 + z b^T (I - zA)^{-1} 1` the stability function.

    **Arguments:**

    - `solver`: an explicit Runge--Kutta diffrax solver (possibly wrapped).

    **Returns:**

    `r` as a Python float (3.5068 for Tsit5, matching OrdinaryDiffEq.jl).
    """
    _, tableau = _explicit_tableau(solver, "`solver`")
    key = (
        tuple(tableau.c),
        tuple(np.asarray(tableau.b_sol, dtype=float)),
        tuple(tuple(np.asarray(r, dtype=float)) for r in tableau.a_lower),
    )
    return _stability_size_cached(key)


def stiffness_from_stages(tableau: dfx.ButcherTableau, ks: PyTree, dt: Array) -> Float[Array, ""]:
    r"""Shampine's eigenvalue estimate $|\hat\lambda| = \|k_s - k_{s-1}\| /
    (|\Delta t| \|g_s - g_{s-1}\|)$ from one ERK step (stages `k_i = Δt f_i`).

    **Arguments:**

    - `tableau`: the solver's explicit Butcher tableau (its last two stages share a node).
    - `ks`: the stages of the step, leading axis the stage (`dense_info["k"]` of Tsit5 or
        Dopri5).
    - `dt`: the step size.

    **Returns:**

    $|\hat\lambda|$, or 0 when the denominator vanishes.
    """
    s = tableau.num_stages
    w = np.zeros(s)
    w[: len(tableau.a_lower[s - 2])] += tableau.a_lower[s - 2]
    w[: len(tableau.a_lower[s - 3])] -= tableau.a_lower[s - 3]
    num = optx.rms_norm(jtu.tree_map(lambda k: k[s - 1] - k[s - 2], ks))
    den = optx.rms_norm(
        jtu.tree_map(lambda k: jnp.tensordot(jnp.asarray(w, k.dtype), k, axes=1), ks)
    )
    den = den * jnp.abs(dt)
    ok = (den > 0) & jnp.isfinite(den) & jnp.isfinite(num)
    return jnp.where(ok, num / jnp.where(ok, den, 1.0), 0.0)


class StiffnessEstimateSolver(AbstractForwardingSolver):
    r"""Wraps Tsit5/Dopri5 and accumulates a stiffness penalty over accepted steps.

    Each step computes $\mathrm{SEst}_j = |\hat\lambda_j| / r$ with $\hat\lambda_j$
    Shampine's estimate from the two last stages (which share the node `c = 1`) and $r$
    the solver's real stability-interval length; the solver state carries
    `(inner_state, Σ SEst_j |Δt_j|, max_j SEst_j, Σ SEst_j)`. Because diffrax only keeps
    the solver state of accepted steps, rejected steps never enter. Read it with
    `SaveAt(solver_state=True)` and [`scimlx.nde.read_stiffness`][].

    **Arguments:**

    - `solver`: `diffrax.Tsit5()` or `diffrax.Dopri5()` (any explicit RK solver whose
        last two stages share a node).
    """

    solver: dfx.AbstractAdaptiveSolver
    stability_size: float = eqx.field(static=True)

    def __init__(self, solver: dfx.AbstractSolver, stability_size: float | None = None):
        _tableau(solver)
        self.solver = solver  # pyright: ignore
        if stability_size is None:
            stability_size = stability_region_size(solver)
        self.stability_size = float(stability_size)

    def init(self, terms, t0, t1, y0, args):
        dtype = jnp.result_type(*jtu.tree_leaves(y0), jnp.asarray(t0))
        zero = jnp.zeros((), dtype)
        return (self.solver.init(terms, t0, t1, y0, args), zero, zero, zero)

    def step(self, terms, t0, t1, y0, args, solver_state, made_jump):
        inner, s_sum, s_max, s_plain = solver_state
        y1, y_error, dense_info, inner, result = self.solver.step(
            terms, t0, t1, y0, args, inner, made_jump
        )
        dt = jnp.asarray(t1 - t0)
        lam = stiffness_from_stages(_tableau(self.solver), dense_info["k"], dt)
        sest = (lam / self.stability_size).astype(s_sum.dtype)
        adt = jnp.abs(dt).astype(s_sum.dtype)
        state = (inner, s_sum + sest * adt, jnp.maximum(s_max, sest), s_plain + sest)
        return y1, y_error, dense_info, state, result


def read_stiffness(solver_state: PyTree, aggregation: str = "sum") -> Float[Array, ""]:
    """Reads the stiffness penalty from the final state of a
    [`scimlx.nde.StiffnessEstimateSolver`][].

    **Arguments:**

    - `solver_state`: `sol.solver_state` of a solve with `SaveAt(solver_state=True)`.
    - `aggregation`: `"sum"` ($\\sum_j \\mathrm{SEst}_j|\\Delta t_j|$, the paper),
        `"max"` ($\\max_j \\mathrm{SEst}_j$, the reference code) or `"plain_sum"`
        ($\\sum_j \\mathrm{SEst}_j$).

    **Returns:**

    The scalar penalty.
    """
    _, s_sum, s_max, s_plain = solver_state
    if aggregation == "sum":
        return s_sum
    if aggregation == "max":
        return s_max
    if aggregation == "plain_sum":
        return s_plain
    raise ValueError(f"`aggregation` must be 'sum', 'max' or 'plain_sum', got {aggregation!r}.")
