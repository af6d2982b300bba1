"""Preconditioned conjugate gradients with a norm-based stopping rule and full statistics."""

import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
from jaxtyping import Array, Float

from .._core import Solution
from .._core._checks import Tolerance
from ._iterative import (
    BREAKDOWN,
    check_loop_fields,
    check_problem,
    dot,
    lineax_result,
    loop_solution,
    MAX_STEPS,
    NONFINITE,
    STAGNATION,
    stagnation_update,
    SUCCESSFUL,
)
from ._sharding import constrain, GridSharding


def _pcg_loop(
    mv, prec, b, x0, rtol, atol, max_steps, recompute_every, stagnation_window=100, sharding=None
):
    b = constrain(sharding, b)
    bnorm = jnp.sqrt(dot(b, b))
    tol = atol + rtol * bnorm
    if x0 is None:
        x = jnp.zeros_like(b)
        r = b
        nmv = jnp.array(0)
    else:
        x = x0
        r = b - mv(x0)
        nmv = jnp.array(1)
    x, r = constrain(sharding, x, r)
    z = constrain(sharding, prec(r))
    p = z
    rz = dot(r, z)
    rn = jnp.sqrt(dot(r, r))
    hist = jnp.full((max_steps + 1,), jnp.nan, b.dtype).at[0].set(rn)
    # code (see `_iterative`): converged/running, max steps, breakdown (p^T A p <= 0),
    # non-finite, stagnation (less than 10 % progress in `stagnation_window` steps)
    code = jnp.where(jnp.isfinite(rn), SUCCESSFUL, NONFINITE)
    zero = jnp.array(0)

    def cond(c):
        x, r, z, p, rz, rn, k, nmv, hist, code, ref, since = c
        return (rn > tol) & (k < max_steps) & (code == SUCCESSFUL)

    def body(c):
        x, r, z, p, rz, rn, k, nmv, hist, code, ref, since = c
        Ap = constrain(sharding, mv(p))
        pAp = dot(p, Ap)
        bad = ~(pAp > 0)
        alpha = jnp.where(bad, 0.0, rz / jnp.where(bad, 1.0, pAp))
        x = x + alpha * p
        r = r - alpha * Ap
        # the true residual every `recompute_every` steps, and before declaring convergence
        # (so a drifting recursive residual never reports success)
        recompute = (((k + 1) % recompute_every) == 0) | (jnp.sqrt(dot(r, r)) <= tol)
        r = jax.lax.cond(recompute, lambda: b - mv(x), lambda: r)
        nmv = nmv + 1 + recompute.astype(nmv.dtype)
        x, r = constrain(sharding, x, r)
        z = constrain(sharding, prec(r))
        rz_new = dot(r, z)
        beta = rz_new / jnp.where(rz == 0, 1.0, rz)
        p = constrain(sharding, z + beta * p)
        rn = jnp.sqrt(dot(r, r))
        ref, since, stagnated = stagnation_update(rn, ref, since, k + 1, stagnation_window)
        code = jnp.where(
            bad & (rn > tol), BREAKDOWN, jnp.where(jnp.isfinite(rn), SUCCESSFUL, NONFINITE)
        )
        code = jnp.where((code == SUCCESSFUL) & stagnated & (rn > tol), STAGNATION, code)
        return x, r, z, p, rz_new, rn, k + 1, nmv, hist.at[k + 1].set(rn), code, ref, since

    x, r, z, p, rz, rn, k, nmv, hist, code, _, _ = jax.lax.while_loop(
        cond, body, (x, r, z, p, rz, rn, zero, nmv, hist, code, rn, zero)
    )
    rt = b - mv(x)
    true_r = jnp.sqrt(dot(rt, rt))
    code = jnp.where((code == SUCCESSFUL) & ~(true_r <= tol), MAX_STEPS, code)
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

    rtol: Tolerance
    atol: Tolerance
    max_steps: int = eqx.field(static=True, default=1000)
    recompute_every: int = eqx.field(static=True, default=50)
    stagnation_window: int = eqx.field(static=True, default=100)
    sharding: GridSharding | None = None

    def __check_init__(self):
        check_loop_fields(self)

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
            self.recompute_every,
            self.stagnation_window,
            self.sharding,
        )
        return x, lineax_result(code), stats

    def transpose(self, state, options):
        operator, prec = state
        opts = {} if prec is None else {"preconditioner": prec.transpose()}
        return (operator.transpose(), None if prec is None else prec.transpose()), opts

    def conj(self, state, options):
        operator, prec = state
        return (lx.conj(operator), None if prec is None else lx.conj(prec)), options

    def assume_full_rank(self):
        return True


@eqx.filter_jit
def pcg_solve(
    operator: lx.AbstractLinearOperator,
    b: Float[Array, "*shape"],
    *,
    preconditioner: lx.AbstractLinearOperator | None = None,
    rtol: Tolerance = 1e-6,
    atol: Tolerance = 0.0,
    max_steps: int = 1000,
    recompute_every: int = 50,
    x0: Float[Array, "..."] | None = None,  # shape checked below, with a clear message
    throw: bool = True,
    stagnation_window: int = 100,
    sharding: GridSharding | None = None,
) -> Solution:
    """Solve `A x = b` (A SPD) by preconditioned conjugate gradients.

    Stops when `|r|_2 <= atol + rtol |b|_2` (no element-wise test, so right-hand sides with
    exact zeros, e.g. on solid cells, are fine); reaching `max_steps` is reported as
    `RESULTS.max_steps_reached`; `stagnation_window` steps without a 10 % reduction of the
    residual norm stop the solve with `RESULTS.stagnation` (the residual reached is in
    `stats["residual_norm"]`). Success is declared on the true residual `b - A x`, recomputed
    before stopping. Runs through `lineax.linear_solve`, so gradients with respect to
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
    - `recompute_every`: recompute `r = b - A x` every this many steps.
    - `x0`: initial guess (the shape and dtype of `b`).
    - `throw`: raise on failure.
    - `stagnation_window`: steps allowed without a 10 % reduction of `|r|_2` (`0`: off).
    - `sharding`: a [`scimlx.linsolve.GridSharding`][] to split the grid vectors over a
        device mesh (default: wherever JAX puts them). Build the preconditioner with the
        same `sharding`.

    **Returns:**

    A [`scimlx.Solution`][]. `result` is `successful` (the true residual `|b - A x|_2`
    meets the tolerance), `max_steps_reached`, `breakdown` (non-positive curvature
    `p^T A p <= 0`), `stagnation` or `nonfinite`. `stats` holds:

    - `num_steps`: iterations taken;
    - `num_mv`: operator products, including residual recomputations and the final true
      residual;
    - `num_preconditioner`: preconditioner applications;
    - `residual_history`: `|r_i|_2`, length `max_steps + 1`, NaN after the last step;
    - `residual_norm`: the last `|r|_2` of the iteration;
    - `true_residual_norm`: `|b - A x|_2` of the returned `value`;
    - `b_norm`: `|b|_2`.
    """
    struct = check_problem(operator, b, x0)
    if preconditioner is not None:
        if not isinstance(preconditioner, lx.AbstractLinearOperator):
            raise TypeError(
                f"`preconditioner` must be a lineax operator; got {type(preconditioner)}."
            )
        pin, pout = preconditioner.in_structure(), preconditioner.out_structure()
        if pin != struct or pout != struct:
            raise ValueError(
                f"`preconditioner` acts on {getattr(pin, 'shape', pin)} "
                f"({getattr(pin, 'dtype', '')}) -> {getattr(pout, 'shape', pout)}, but the "
                f"operator on {struct.shape} ({struct.dtype}): it was built for another grid "
                "(build it from this operator, e.g. `multigrid(operator)`)."
            )
    solver = PCG(
        rtol=rtol,
        atol=atol,
        max_steps=max_steps,
        recompute_every=recompute_every,
        stagnation_window=stagnation_window,
        sharding=sharding,
    )
    options = {}
    if preconditioner is not None:
        # the preconditioner changes the path, not the solution: no gradient through it
        options["preconditioner"] = jax.tree_util.tree_map(
            lambda x: jax.lax.stop_gradient(x) if eqx.is_array(x) else x, preconditioner
        )
    if x0 is not None:
        options["y0"] = x0
    sol = lx.linear_solve(operator, b, solver, options=options, throw=False)
    return loop_solution(constrain(sharding, sol.value), sol.stats, throw=throw)
