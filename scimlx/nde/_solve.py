"""`regularized_diffeqsolve`: one diffrax solve plus the regularization statistics."""

from collections.abc import Sequence
from typing import Any

import diffrax as dfx
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
from jax.experimental.jet import jet
from jaxtyping import Array, Float, PRNGKeyArray, PyTree, Real

from ._controller import ErrorEstimateController, read_error_estimate, scaled_error_norm
from ._nfe import count_nfe, nfe_formula
from ._nonfinite import classify_nonfinite, NonfiniteStop
from ._regularizers import (
    AbstractRegularizer,
    GlobalErrorEstimate,
    GlobalStiffness,
    KineticJacobian,
    LocalErrorEstimate,
    RandomEndTime,
    TaylorRegularizer,
)
from ._sampler import StepSamplerSolver
from ._stiffness import read_stiffness, StiffnessEstimateSolver


class RegularizedSolution(eqx.Module):
    """The result of [`scimlx.nde.regularized_diffeqsolve`][].

    **Fields:**

    - `solution`: the `diffrax.Solution` (augmented states removed from `ys`).
    - `penalty`: the weighted sum of all regularization terms (a scalar; 0 if none).
    - `components`: the unweighted terms by name (`"error"`, `"stiffness"`,
        `"local_error"`, `"kinetic"`, `"jacobian"`, `"taylor"`).
    - `stats`: `num_steps`, `num_accepted_steps`, `num_rejected_steps`, `nfe` (drift
        evaluations of the solve), `nfe_diffusion` (SDEs), `nfe_regularizer` (extra
        evaluations of the local step), `t1` (the end time used, random with STEER),
        and for the local regularizer `t_reg`, `dt_reg` (the sampled time and step).
    """

    solution: dfx.Solution
    penalty: Float[Array, ""]
    components: dict[str, Array]
    stats: dict[str, Array]

    @property
    def ys(self):
        return self.solution.ys

    @property
    def value(self):
        return self.solution.ys

    @property
    def result(self):
        return self.solution.result


_DISCRETE_ADJOINTS = (dfx.RecursiveCheckpointAdjoint, dfx.DirectAdjoint, dfx.ForwardMode)


def _is_sde(terms) -> bool:
    return any(
        isinstance(t, dfx.ControlTerm | dfx.AbstractBrownianPath)
        for t in jtu.tree_leaves(
            terms, is_leaf=lambda x: isinstance(x, dfx.ControlTerm | dfx.AbstractBrownianPath)
        )
    )


def _base_solver(solver):
    while isinstance(solver, StepSamplerSolver | StiffnessEstimateSolver):
        solver = solver.solver
    return solver


def _augmented_term(term: dfx.ODETerm, kinetic: bool, taylor_order: int | None, eps):
    vf = term.vector_field

    def aug_vf(t, y_aug, args):
        y, _ = y_aug
        extra = {}
        if kinetic:
            f, vjp = jax.vjp(lambda _y: vf(t, _y, args), y)
            (eps_j,) = vjp(eps)
            extra["kinetic"] = sum(jnp.sum(x**2) for x in jtu.tree_leaves(f))
            extra["jacobian"] = sum(jnp.sum(x**2) for x in jtu.tree_leaves(eps_j))
        else:
            f = vf(t, y, args)
        if taylor_order is not None:
            shape = jnp.shape(y)
            dtype = jnp.result_type(y)

            def g(zt):
                z = zt[:-1].reshape(shape)
                dz = jnp.ravel(vf(zt[-1], z, args)).astype(dtype)
                return jnp.concatenate([dz, jnp.ones(1, dtype)])

            zt = jnp.concatenate([jnp.ravel(y), jnp.asarray(t, dtype)[None]])
            first = jnp.concatenate([jnp.ravel(f).astype(dtype), jnp.ones(1, dtype)])
            derivs = [first]
            for _ in range(taylor_order - 1):
                _, out = jet(g, (zt,), (tuple(derivs),))
                derivs = [first] + list(out)
            extra["taylor"] = jnp.sum(derivs[taylor_order - 1][:-1] ** 2)
        dtype = jnp.result_type(*jtu.tree_leaves(y))
        extra = {k: jnp.asarray(v, dtype) for k, v in extra.items()}
        return f, extra

    return dfx.ODETerm(aug_vf)


def _local_penalty(
    reg: LocalErrorEstimate,
    sample,
    terms,
    solver,
    controller,
    t1,
    args,
    sde: bool,
):
    _, _, t_s, y_s, dt_s = sample
    t_s = jax.lax.stop_gradient(t_s)
    y_s = jax.lax.stop_gradient(y_s)
    dt = jax.lax.stop_gradient(dt_s)
    if reg.step_size == "initial":
        if not isinstance(controller, dfx.PIDController):
            raise ValueError(
                "LocalErrorEstimate(step_size='initial') needs a diffrax.PIDController."
            )
        init_ctrl = eqx.tree_at(
            lambda c: (c.dtmin, c.dtmax), controller, (None, None), is_leaf=lambda x: x is None
        )
        tnext, _ = init_ctrl.init(
            terms, t_s, t1, y_s, None, args, solver.func, solver.error_order(terms)
        )
        dt = jax.lax.stop_gradient(tnext - t_s)
    if sde:
        # The Brownian path is only defined up to t1.
        dt = jnp.minimum(dt, jnp.asarray(t1, dt.dtype) - t_s)
    dt = jnp.maximum(dt, 0.0)
    t_end = t_s + dt
    state = solver.init(terms, t_s, t_end, y_s, args)
    y1, y_err, _, _, _ = solver.step(terms, t_s, t_end, y_s, args, state, False)
    if y_err is None:
        raise ValueError("LocalErrorEstimate needs a solver with an error estimate.")
    eest = scaled_error_norm(
        y_s, y1, y_err, rtol=controller.rtol, atol=controller.atol, norm=controller.norm
    )
    value = eest * jnp.abs(dt).astype(eest.dtype)
    return jnp.where(jnp.isfinite(value), value, jnp.zeros_like(value)), t_s, dt


@eqx.filter_jit
def regularized_diffeqsolve(
    terms: PyTree[dfx.AbstractTerm],
    solver: dfx.AbstractSolver,
    t0: int | float | Real[Array, ""],
    t1: int | float | Real[Array, ""],
    dt0: int | float | Real[Array, ""] | None,
    y0: PyTree[Array],
    args: Any = None,
    *,
    regularizers: Sequence[AbstractRegularizer] = (),
    stepsize_controller: dfx.AbstractStepSizeController = dfx.ConstantStepSize(),
    saveat: dfx.SaveAt = dfx.SaveAt(t1=True),
    adjoint: dfx.AbstractAdjoint = dfx.RecursiveCheckpointAdjoint(),
    max_steps: int = 4096,
    throw: bool = True,
    key: PRNGKeyArray | None = None,
) -> RegularizedSolution:
    r"""`diffrax.diffeqsolve` plus solver-heuristic regularization in the same solve.

    Global regularizers wrap the controller ([`scimlx.nde.ErrorEstimateController`][])
    or the solver ([`scimlx.nde.StiffnessEstimateSolver`][]); the local regularizer
    samples a step inside the solve ([`scimlx.nde.StepSamplerSolver`][]) and takes one
    extra step after it; RNODE/TayNODE integrate their penalty in an augmented state;
    STEER draws the end time.

    **Arguments:**

    - `terms`, `solver`, `t0`, `t1`, `dt0`, `y0`, `args`, `stepsize_controller`,
        `saveat`, `adjoint`, `max_steps`, `throw`: as `diffrax.diffeqsolve`
        (`t0 < t1`).
    - `regularizers`: a sequence of at most one of each of
        [`scimlx.nde.GlobalErrorEstimate`][], [`scimlx.nde.GlobalStiffness`][],
        [`scimlx.nde.LocalErrorEstimate`][], [`scimlx.nde.RandomEndTime`][],
        [`scimlx.nde.KineticJacobian`][], [`scimlx.nde.TaylorRegularizer`][].
    - `key`: PRNG key, needed by the local, STEER and RNODE regularizers.

    **Returns:**

    A [`scimlx.nde.RegularizedSolution`][]; the loss is `task_loss + sol.penalty`.

    **Raises:**

    `ValueError` for a global regularizer with an adjoint that cannot differentiate it
    (`BacksolveAdjoint` silently gives zero gradient for controller/solver state), a
    missing `key`, or an unsupported solver.
    """
    regs = tuple(regularizers)
    kinds = [type(r) for r in regs]
    for r in regs:
        if not isinstance(r, AbstractRegularizer):
            raise TypeError(
                f"`regularizers` must hold scimlx.nde regularizers, got {type(r).__name__}."
            )
    if len(set(kinds)) != len(kinds):
        raise ValueError("`regularizers` may hold at most one regularizer of each type.")
    by = {type(r): r for r in regs}
    er: GlobalErrorEstimate | None = by.get(GlobalErrorEstimate)
    sr: GlobalStiffness | None = by.get(GlobalStiffness)
    local: LocalErrorEstimate | None = by.get(LocalErrorEstimate)
    steer: RandomEndTime | None = by.get(RandomEndTime)
    rnode: KineticJacobian | None = by.get(KineticJacobian)
    tay: TaylorRegularizer | None = by.get(TaylorRegularizer)

    if (er is not None or sr is not None) and not isinstance(adjoint, _DISCRETE_ADJOINTS):
        raise ValueError(
            "Global solver-heuristic regularizers (GlobalErrorEstimate, GlobalStiffness) "
            "are accumulated inside the solver loop and need a discrete adjoint "
            "(diffrax.RecursiveCheckpointAdjoint or diffrax.DirectAdjoint); "
            f"{type(adjoint).__name__} would silently give them zero gradient. Use "
            "LocalErrorEstimate for continuous adjoints."
        )
    needs_adaptive = er is not None or local is not None
    if needs_adaptive and not isinstance(
        stepsize_controller, dfx.AbstractAdaptiveStepSizeController
    ):
        raise ValueError(
            "Error-estimate regularizers need an adaptive `stepsize_controller` (e.g. "
            "diffrax.PIDController), whose rtol/atol/norm define EEst."
        )
    if (local is not None or steer is not None or rnode is not None) and key is None:
        raise ValueError(
            "`key` is required by LocalErrorEstimate, RandomEndTime and "
            "KineticJacobian regularizers."
        )
    sde = _is_sde(terms)
    if (rnode is not None or tay is not None) and not isinstance(terms, dfx.ODETerm):
        raise ValueError(
            "KineticJacobian and TaylorRegularizer need `terms` to be a single diffrax.ODETerm."
        )
    keys = jax.random.split(key if key is not None else jax.random.key(0), 4)

    t0 = jnp.asarray(t0)
    dtype_t = jnp.result_type(t0, jnp.asarray(t1), float)
    t0 = t0.astype(dtype_t)
    t1 = jnp.asarray(t1, dtype_t)
    if steer is not None:
        t1 = t1 + jax.random.uniform(keys[0], (), dtype_t, -steer.half_width, steer.half_width)

    # Augmented state for integral penalties.
    augmented = rnode is not None or tay is not None
    run_terms, run_y0, run_saveat = terms, y0, saveat
    if augmented:
        subs = saveat.subs
        if not isinstance(subs, dfx.SubSaveAt) or not (subs.t1 or subs.ts is not None):
            raise ValueError(
                "KineticJacobian/TaylorRegularizer need a `saveat` with t1=True or ts "
                "(a single SubSaveAt); the integral is read at the last saved time."
            )
        eps = jtu.tree_map(
            lambda x: jax.random.normal(keys[1], jnp.shape(x), jnp.result_type(x)), y0
        )
        run_terms = _augmented_term(
            terms, rnode is not None, None if tay is None else tay.order, eps
        )
        dtype = jnp.result_type(*jtu.tree_leaves(y0))
        zero = jnp.zeros((), dtype)
        extra0 = {}
        if rnode is not None:
            extra0 = {"kinetic": zero, "jacobian": zero}
        if tay is not None:
            extra0["taylor"] = zero
        run_y0 = (y0, extra0)

    run_solver = solver
    if sr is not None:
        run_solver = StiffnessEstimateSolver(run_solver, sr.stability_size)
    if local is not None:
        t_reg = jax.random.uniform(keys[2], (), dtype_t, t0, t1)
        run_solver = StepSamplerSolver(run_solver, local.sampling, t_reg, keys[3])
    controller = stepsize_controller
    if isinstance(controller, dfx.AbstractAdaptiveStepSizeController):
        controller = NonfiniteStop(controller)
    if er is not None:
        controller = ErrorEstimateController(stepsize_controller)
    want_solver_state = sr is not None or local is not None
    run_saveat = dfx.SaveAt(
        subs=saveat.subs,
        dense=saveat.dense,
        solver_state=saveat.solver_state or want_solver_state,
        controller_state=saveat.controller_state or er is not None,
        made_jump=saveat.made_jump,
    )
    sol = dfx.diffeqsolve(
        run_terms,
        run_solver,
        t0,
        t1,
        dt0,
        run_y0,
        args,
        saveat=run_saveat,
        stepsize_controller=controller,
        adjoint=adjoint,
        max_steps=max_steps,
        throw=throw,
    )
    # NaN/inf in a solve is `nonfinite`, never `successful` nor `max_steps_reached`.
    result = classify_nonfinite(sol.result, sol.ys)
    if throw:
        result = result.error_if(result, result != dfx.RESULTS.successful)
    sol = eqx.tree_at(lambda s: s.result, sol, result)
    dtype = jnp.result_type(*jtu.tree_leaves(y0))
    components: dict[str, Array] = {}
    penalty = jnp.zeros((), dtype)
    if er is not None:
        components["error"] = read_error_estimate(sol.controller_state, er.reduction)
        penalty = penalty + er.weight * components["error"].astype(dtype)
    solver_state = sol.solver_state
    sample = None
    if local is not None:
        sample = solver_state
        solver_state = solver_state[0]
    if sr is not None:
        components["stiffness"] = read_stiffness(solver_state, sr.aggregation)
        penalty = penalty + sr.weight * components["stiffness"].astype(dtype)
    nfe_reg = jnp.array(0, jnp.int32)
    if local is not None:
        if augmented:
            inner, count, t_s, y_s, dt_s = sample
            sample = (inner, count, t_s, y_s[0], dt_s)
        base = _base_solver(solver)
        components["local_error"], components["_t"], components["_dt"] = _local_penalty(
            local, sample, terms, base, stepsize_controller, t1, args, sde
        )
        penalty = penalty + local.weight * components["local_error"].astype(dtype)
        # One step from a fresh `solver.init`: FSAL solvers evaluate f0 in `init` and
        # again in their first step (counted in tests/test_nde_transforms.py).
        formula = nfe_formula(base, sde=sde)
        nfe_reg = jnp.array(-1 if formula is None else formula[0][0] + 2 * formula[0][1])
        t_reg_used, dt_reg_used = components.pop("_t"), components.pop("_dt")
    ys = sol.ys
    if augmented:
        ys_y, extra = ys
        for name in extra:
            components[name] = extra[name][-1]
        if rnode is not None:
            penalty = (
                penalty
                + rnode.weight_kinetic * components["kinetic"]
                + rnode.weight_jacobian * components["jacobian"]
            )
        if tay is not None:
            penalty = penalty + tay.weight * components["taylor"]
        sol = eqx.tree_at(lambda s: s.ys, sol, ys_y)
    nfe, nfe_diff = count_nfe(solver, sol.stats["num_steps"], sde=sde)
    stats = {
        "num_steps": sol.stats["num_steps"],
        "num_accepted_steps": sol.stats["num_accepted_steps"],
        "num_rejected_steps": sol.stats["num_rejected_steps"],
        "nfe": nfe,
        "nfe_diffusion": nfe_diff,
        "nfe_regularizer": jnp.asarray(nfe_reg),
        "t1": t1,
    }
    if local is not None:
        stats["t_reg"] = t_reg_used
        stats["dt_reg"] = dt_reg_used
    # Drop the (large) wrapper states from the returned solution.
    sol = eqx.tree_at(
        lambda s: (s.solver_state, s.controller_state),
        sol,
        (
            sol.solver_state if saveat.solver_state else None,
            sol.controller_state if saveat.controller_state else None,
        ),
        is_leaf=lambda x: x is None,
    )
    return RegularizedSolution(sol, penalty, components, stats)
