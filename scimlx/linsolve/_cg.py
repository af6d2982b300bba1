"""Preconditioned conjugate gradients with a norm-based stopping rule and full statistics."""

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
from jaxtyping import Array, Float


try:
    from scimlx._core._results import RESULTS
except ImportError:  # pragma: no cover
    import diffrax

    RESULTS = diffrax.RESULTS


def _dot(x, y):
    return jnp.sum(x * y)


def _pcg_loop(mv, prec, b, x0, rtol, atol, max_steps, stabilise_every):
    bnorm = jnp.sqrt(_dot(b, b))
    tol = atol + rtol * bnorm
    if x0 is None:
        x = jnp.zeros_like(b)
        r = b
        nmv = jnp.array(0)
    else:
        x = x0
        r = b - mv(x0)
        nmv = jnp.array(1)
    z = prec(r)
    p = z
    rz = _dot(r, z)
    rn = jnp.sqrt(_dot(r, r))
    hist = jnp.full((max_steps + 1,), jnp.nan, b.dtype).at[0].set(rn)
    # code: 0 converged/running, 2 breakdown (p^T A p <= 0), 3 non-finite
    code = jnp.where(jnp.isfinite(rn), 0, 3)

    def cond(c):
        x, r, z, p, rz, rn, k, nmv, hist, code = c
        return (rn > tol) & (k < max_steps) & (code == 0)

    def body(c):
        x, r, z, p, rz, rn, k, nmv, hist, code = c
        Ap = mv(p)
        pAp = _dot(p, Ap)
        bad = ~(pAp > 0)
        alpha = jnp.where(bad, 0.0, rz / jnp.where(bad, 1.0, pAp))
        x = x + alpha * p
        recompute = ((k + 1) % stabilise_every) == 0
        r = jax.lax.cond(recompute, lambda: b - mv(x), lambda: r - alpha * Ap)
        nmv = nmv + 1 + recompute.astype(nmv.dtype)
        z = prec(r)
        rz_new = _dot(r, z)
        beta = rz_new / jnp.where(rz == 0, 1.0, rz)
        p = z + beta * p
        rn = jnp.sqrt(_dot(r, r))
        code = jnp.where(bad & (rn > tol), 2, jnp.where(jnp.isfinite(rn), 0, 3))
        return x, r, z, p, rz_new, rn, k + 1, nmv, hist.at[k + 1].set(rn), code

    x, r, z, p, rz, rn, k, nmv, hist, code = jax.lax.while_loop(
        cond, body, (x, r, z, p, rz, rn, jnp.array(0), nmv, hist, code)
    )
    true_r = jnp.sqrt(_dot(b - mv(x), b - mv(x)))
    code = jnp.where((code == 0) & (rn > tol), 1, code)
    stats = {
        "num_steps": k,
        "num_mv": nmv + 1,
        "num_preconditioner": k + 1,
        "residual_history": hist,
        "residual_norm": rn,
        "true_residual_norm": true_r,
        "b_norm": bnorm,
        "code": code,
    }
    return x, code, stats


class PCG(lx.AbstractLinearSolver):
    """Preconditioned CG as a lineax solver, stopping on `|r|_2 <= atol + rtol |b|_2`.

    Unlike `lineax.CG` (element-wise test, which can stop on `0/0` when `b` has exact zeros)
    this uses the 2-norm of the residual only. Options: `preconditioner` (a positive
    semidefinite lineax operator, e.g. a [`scimlx.linsolve.VCycle`][]) and `y0`.
    """

    rtol: float
    atol: float
    max_steps: int = eqx.field(static=True, default=1000)
    stabilise_every: int = eqx.field(static=True, default=50)

    def __check_init__(self):
        for name in ("rtol", "atol"):
            v = getattr(self, name)
            if isinstance(v, int | float) and (v < 0 or v != v):
                raise ValueError(f"`{name}` must be a non-negative number; got {v}.")
        if isinstance(self.rtol, int | float) and isinstance(self.atol, int | float):
            if self.rtol == 0 and self.atol == 0:
                raise ValueError("At least one of `rtol` and `atol` must be positive.")
        if self.max_steps < 1:
            raise ValueError(f"`max_steps` must be >= 1; got {self.max_steps}.")

    def init(self, operator, options):
        if not lx.is_positive_semidefinite(operator):
            raise ValueError("`operator` must be tagged positive (semi)definite for PCG.")
        prec = options.get("preconditioner", None)
        if prec is not None and not lx.is_positive_semidefinite(prec):
            raise ValueError("`preconditioner` must be tagged positive (semi)definite.")
        return lx.linearise(operator), prec

    def compute(self, state, vector, options):
        operator, prec = state
        mv = operator.mv
        pf = (lambda r: r) if prec is None else prec.mv
        x, code, stats = _pcg_loop(
            mv,
            pf,
            vector,
            options.get("y0", None),
            self.rtol,
            self.atol,
            self.max_steps,
            self.stabilise_every,
        )
        result = lx.RESULTS.where(
            code == 0,
            lx.RESULTS.successful,
            lx.RESULTS.where(code == 1, lx.RESULTS.max_steps_reached, lx.RESULTS.breakdown),
        )
        return x, result, stats

    def transpose(self, state, options):
        operator, prec = state
        opts = {} if prec is None else {"preconditioner": prec.transpose()}
        return (operator.transpose(), None if prec is None else prec.transpose()), opts

    def conj(self, state, options):
        operator, prec = state
        return (lx.conj(operator), None if prec is None else lx.conj(prec)), options

    def assume_full_rank(self):
        return True


class Solution(eqx.Module):
    """Result of [`scimlx.linsolve.pcg_solve`][].

    - `value`: the solution.
    - `result`: a `scimlx.RESULTS` (`successful`, `max_steps_reached`, `breakdown`
      (non-positive curvature), `nonfinite`).
    - `stats`: `num_steps`, `num_mv` (operator products incl. residual recomputations and the
      final true residual), `num_preconditioner`, `residual_history` (length
      `max_steps + 1`, NaN after the last step), `residual_norm`, `true_residual_norm`,
      `b_norm`.
    """

    value: Array
    result: Any
    stats: dict[str, Any]


def _to_results(code):
    nonfinite = RESULTS.nonfinite if "nonfinite" in RESULTS._name_to_item else RESULTS.breakdown
    return RESULTS.where(
        code == 0,
        RESULTS.successful,
        RESULTS.where(
            code == 1,
            RESULTS.max_steps_reached,
            RESULTS.where(code == 2, RESULTS.breakdown, nonfinite),
        ),
    )


@eqx.filter_jit
def pcg_solve(
    operator: lx.AbstractLinearOperator,
    b: Float[Array, "*shape"],
    *,
    preconditioner: lx.AbstractLinearOperator | None = None,
    rtol: float = 1e-6,
    atol: float = 0.0,
    max_steps: int = 1000,
    stabilise_every: int = 50,
    x0: Float[Array, "*shape"] | None = None,
    throw: bool = True,
) -> Solution:
    """Solve `A x = b` (A SPD) by preconditioned conjugate gradients.

    Stops when `|r|_2 <= atol + rtol |b|_2` (no element-wise test, so right-hand sides with
    exact zeros, e.g. on solid cells, are fine); reaching `max_steps` is reported as
    `RESULTS.max_steps_reached`. Runs through `lineax.linear_solve`, so gradients with respect to
    `b` and the operator's arrays (e.g. a diffusion coefficient) come from lineax's implicit
    rule (a transposed solve); `vmap` over right-hand sides works (pass `throw=False` and read
    `sol.result` per element; the batch runs until its slowest element converges).

    **Arguments:**

    - `operator`: a lineax operator tagged positive semidefinite (e.g. a
        [`scimlx.linsolve.DiffusionOperator`][]).
    - `b`: right-hand side, the operator's input shape.
    - `preconditioner`: an SPD lineax operator approximating `A^{-1}`, e.g. a
        [`scimlx.linsolve.VCycle`][].
    - `rtol`, `atol`: tolerances of the 2-norm test; `max_steps`: iteration cap (and
        length of the residual history minus one).
    - `stabilise_every`: recompute `r = b - A x` every this many steps.
    - `x0`: initial guess.
    - `throw`: raise on failure.

    **Returns:**

    A [`scimlx.linsolve.Solution`][].
    """
    if not isinstance(operator, lx.AbstractLinearOperator):
        raise TypeError(f"`operator` must be a lineax operator; got {type(operator)}.")
    struct = operator.in_structure()
    if b.shape != struct.shape or b.dtype != struct.dtype:
        raise ValueError(
            f"`b` must have shape {struct.shape} and dtype {struct.dtype} (the operator's "
            f"input); got {b.shape}, {b.dtype}."
        )
    solver = PCG(rtol=rtol, atol=atol, max_steps=max_steps, stabilise_every=stabilise_every)
    options = {}
    if preconditioner is not None:
        # the preconditioner changes the path, not the solution: no gradient through it
        options["preconditioner"] = jax.tree_util.tree_map(
            lambda x: jax.lax.stop_gradient(x) if eqx.is_array(x) else x, preconditioner
        )
    if x0 is not None:
        options["y0"] = x0
    sol = lx.linear_solve(operator, b, solver, options=options, throw=False)
    result = _to_results(sol.stats["code"])
    value = sol.value
    if throw:
        value = result.error_if(value, result != RESULTS.successful)
    stats = {k: v for k, v in sol.stats.items() if k != "code"}
    return Solution(value=value, result=result, stats=stats)
