"""`regularised_diffeqsolve`: one diffrax solve plus the regularisation statistics."""

from collections.abc import Sequence
from typing import Any

import diffrax as dfx
import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray, PyTree, Real

from ._nfe import count_nfe
from ._nonfinite import classify_nonfinite, NonfiniteStop
from ._regulariser import (
    AbstractRegulariser,
    Integrand,
    Penalty,
    RegularisedProblem,
    RegulariserOutput,
)


class RegularisedSolution(eqx.Module):
    """The result of [`scimlx.nde.regularised_diffeqsolve`][].

    **Fields:**

    - `solution`: the `diffrax.Solution` (augmented states removed from `ys`).
    - `penalty`: the weighted sum of all regularisation terms (a scalar; 0 if none).
    - `components`: the unweighted terms by name, from every regulariser's
        [`scimlx.nde.Penalty`][] (built-ins: `"error"`, `"stiffness"`, `"local_error"`,
        `"kinetic"`, `"jacobian"`, `"taylor"`).
    - `stats`: `num_steps`, `num_accepted_steps`, `num_rejected_steps`, `nfe` (drift
        evaluations of the solve), `nfe_diffusion` (SDEs), `nfe_regulariser` (extra
        evaluations the penalties made, e.g. the local step), `t1` (the end time used,
        random with STEER), and the regularisers' own statistics (the local
        regulariser's `t_reg`, `dt_reg`: the sampled time and step).
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


class _Plan(eqx.Module):
    """The diffrax solve that realises the regularisers' hooks, and where each one's
    share of it is: which regularisers wrapped the solver/controller (in order) and the
    names of each one's integrals."""

    terms: PyTree[dfx.AbstractTerm]
    solver: dfx.AbstractSolver
    controller: dfx.AbstractStepSizeController
    y0: PyTree[Array]
    saveat: dfx.SaveAt
    wrapped_solver: tuple[bool, ...] = eqx.field(static=True)
    wrapped_controller: tuple[bool, ...] = eqx.field(static=True)
    integral_names: tuple[tuple[str, ...], ...] = eqx.field(static=True)

    @property
    def augmented(self) -> bool:
        return any(self.integral_names)


def _checked_regularisers(regularisers) -> tuple[AbstractRegulariser, ...]:
    regs = tuple(regularisers)
    for r in regs:
        if not isinstance(r, AbstractRegulariser):
            raise TypeError(
                "`regularisers` must hold scimlx.nde.AbstractRegulariser instances, got "
                f"{type(r).__name__}."
            )
    kinds = [type(r) for r in regs]
    if len(set(kinds)) != len(kinds):
        raise ValueError("`regularisers` may hold at most one regulariser of each type.")
    return regs


def _problem(regs, key, terms, solver, t0, t1, dt0, y0, args, controller, saveat, adjoint):
    """The user's problem with times as arrays of one dtype and the end time every
    regulariser's `end_time` asks for."""
    t0 = jnp.asarray(t0)
    dtype_t = jnp.result_type(t0, jnp.asarray(t1), float)
    problem = RegularisedProblem(
        terms, solver, t0.astype(dtype_t), jnp.asarray(t1, dtype_t), dt0, y0, args,
        controller, saveat, adjoint,
    )  # fmt: skip
    for r in regs:
        t1 = jnp.asarray(r.end_time(problem, key), dtype_t)
        problem = eqx.tree_at(lambda p: p.t1, problem, t1)
    return problem


def _augmented(problem: RegularisedProblem, regs, integrands: list[Integrand | None]):
    """Terms and initial state that carry the integrands' integrals beside `y`, and the
    names of each regulariser's integrals."""
    users = [type(r).__name__ for r, fn in zip(regs, integrands) if fn is not None]
    if not isinstance(problem.terms, dfx.ODETerm):
        raise ValueError(
            f"`terms`: {', '.join(users)} integrate a penalty along the solution and need "
            "`terms` to be a single diffrax.ODETerm."
        )
    subs = problem.saveat.subs
    if not isinstance(subs, dfx.SubSaveAt) or not (subs.t1 or subs.ts is not None):
        raise ValueError(
            f"`saveat`: {', '.join(users)} need a `saveat` with t1=True or ts (a single "
            "SubSaveAt); the integral is read at the last saved time."
        )
    vf, y0, args = problem.terms.vector_field, problem.y0, problem.args
    dtype = problem.dtype
    shapes = [
        {}
        if fn is None
        else jax.eval_shape(lambda fn=fn: fn(problem.t0, y0, args, vf(problem.t0, y0, args)))
        for fn in integrands
    ]
    names = tuple(tuple(sorted(s)) for s in shapes)
    flat = [n for ns in names for n in ns]
    if len(set(flat)) != len(flat):
        raise ValueError(f"`regularisers`: two integrands return the same name ({flat}).")
    active = [fn for fn in integrands if fn is not None]

    def aug_vf(t, y_aug, args):
        y, _ = y_aug
        f = vf(t, y, args)
        extra = {}
        for fn in active:
            extra.update(fn(t, y, args, f))
        return f, {k: jnp.asarray(v, dtype) for k, v in extra.items()}

    extra0 = {n: jnp.zeros(s[n].shape, dtype) for s in shapes for n in s}
    return dfx.ODETerm(aug_vf), (y0, extra0), names


def _plan(problem: RegularisedProblem, regs, key) -> _Plan:
    """Compose the regularisers' solver, controller and integrand hooks into one solve."""
    solver, wrapped_solver = problem.solver, []
    for r in regs:
        new = r.wrap_solver(solver, problem, key)
        wrapped_solver.append(new is not solver)
        solver = new
    controller, wrapped_controller = problem.stepsize_controller, []
    for r in regs:
        new = r.wrap_controller(controller, problem, key)
        wrapped_controller.append(new is not controller)
        controller = new
    if isinstance(controller, dfx.AbstractAdaptiveStepSizeController):
        controller = NonfiniteStop(controller)
    integrands = [r.integrand(problem, key) for r in regs]
    terms, y0, names = problem.terms, problem.y0, tuple(() for _ in regs)
    if any(fn is not None for fn in integrands):
        terms, y0, names = _augmented(problem, regs, integrands)
    saveat = problem.saveat
    saveat = dfx.SaveAt(
        subs=saveat.subs,
        dense=saveat.dense,
        solver_state=saveat.solver_state or any(wrapped_solver),
        controller_state=saveat.controller_state or any(wrapped_controller),
        made_jump=saveat.made_jump,
    )
    return _Plan(
        terms, solver, controller, y0, saveat,
        tuple(wrapped_solver), tuple(wrapped_controller), names,
    )  # fmt: skip


def _run(problem: RegularisedProblem, plan: _Plan, max_steps: int, throw: bool) -> dfx.Solution:
    sol = dfx.diffeqsolve(
        plan.terms,
        plan.solver,
        problem.t0,
        problem.t1,
        problem.dt0,
        plan.y0,
        problem.args,
        saveat=plan.saveat,
        stepsize_controller=plan.controller,
        adjoint=problem.adjoint,
        max_steps=max_steps,
        throw=throw,
    )
    # NaN/inf in a solve is `nonfinite`, never `successful` nor `max_steps_reached`.
    result = classify_nonfinite(sol.result, sol.ys)
    if throw:
        result = result.error_if(result, result != dfx.RESULTS.successful)
    return eqx.tree_at(lambda s: s.result, sol, result)


def _layers(state, wrapped: tuple[bool, ...]) -> list:
    """Each regulariser's share of a nested wrapper state `(inner_state, ...)`, or `None`."""
    own: list = [None] * len(wrapped)
    for i in reversed(range(len(wrapped))):
        if wrapped[i]:
            own[i] = state
            state = state[0]
    return own


def _outputs(problem: RegularisedProblem, plan: _Plan, sol: dfx.Solution):
    """The user's solution (augmented state and wrapper states removed) and what each
    regulariser reads back from the solve."""
    extra = {}
    if plan.augmented:
        ys, extra = sol.ys
        sol = eqx.tree_at(lambda s: s.ys, sol, ys)
    solver_states = _layers(sol.solver_state, plan.wrapped_solver)
    controller_states = _layers(sol.controller_state, plan.wrapped_controller)
    saveat = problem.saveat
    sol = eqx.tree_at(
        lambda s: (s.solver_state, s.controller_state),
        sol,
        (
            sol.solver_state if saveat.solver_state else None,
            sol.controller_state if saveat.controller_state else None,
        ),
        is_leaf=lambda x: x is None,
    )
    outputs = [
        RegulariserOutput(sol, s, c, {n: extra[n][-1] for n in names}, plan.augmented)
        for s, c, names in zip(solver_states, controller_states, plan.integral_names)
    ]
    return sol, outputs


def _penalties(problem: RegularisedProblem, regs, outputs):
    """The summed penalty, the components and statistics by name, and the extra NFE."""
    penalty = jnp.zeros((), problem.dtype)
    components: dict[str, Array] = {}
    stats: dict[str, Array] = {}
    nfe = 0
    for r, output in zip(regs, outputs):
        p = r.penalty(problem, output)
        if not isinstance(p, Penalty):
            raise TypeError(
                f"{type(r).__name__}.penalty must return a scimlx.nde.Penalty, got "
                f"{type(p).__name__}."
            )
        for name, mine, theirs in (
            ("component", p.components, components),
            ("stat", p.stats, stats),
        ):
            clash = set(mine) & set(theirs)
            if clash:
                raise ValueError(
                    f"`regularisers`: {type(r).__name__} repeats the {name} names {sorted(clash)}."
                )
            theirs.update(mine)
        penalty = penalty + p.value
        nfe = -1 if (nfe < 0 or p.nfe < 0) else nfe + p.nfe
    return penalty, components, stats, nfe


@eqx.filter_jit
def regularised_diffeqsolve(
    terms: PyTree[dfx.AbstractTerm],
    solver: dfx.AbstractSolver,
    t0: int | float | Real[Array, ""],
    t1: int | float | Real[Array, ""],
    dt0: int | float | Real[Array, ""] | None,
    y0: PyTree[Array],
    args: Any = None,
    *,
    regularisers: Sequence[AbstractRegulariser] = (),
    stepsize_controller: dfx.AbstractStepSizeController = dfx.ConstantStepSize(),
    saveat: dfx.SaveAt = dfx.SaveAt(t1=True),
    adjoint: dfx.AbstractAdjoint = dfx.RecursiveCheckpointAdjoint(),
    max_steps: int = 4096,
    throw: bool = True,
    key: PRNGKeyArray | None = None,
) -> RegularisedSolution:
    r"""`diffrax.diffeqsolve` plus solver-heuristic regularisation in the same solve.

    The regularisers' hooks ([`scimlx.nde.AbstractRegulariser`][]) are composed in the
    order given: each may set the end time (STEER), wrap the solver
    ([`scimlx.nde.StiffnessEstimateSolver`][], [`scimlx.nde.StepSamplerSolver`][]) or
    the step-size controller ([`scimlx.nde.ErrorEstimateController`][]), and add
    integrands carried in an augmented state (RNODE, TayNODE); after the one solve, each
    reads its penalty from its share of the output. An adaptive controller is also
    wrapped so that a solve meeting NaN/inf ends as `RESULTS.nonfinite`.

    **Arguments:**

    - `terms`, `solver`, `t0`, `t1`, `dt0`, `y0`, `args`, `stepsize_controller`,
        `saveat`, `adjoint`, `max_steps`, `throw`: as `diffrax.diffeqsolve`
        (`t0 < t1`).
    - `regularisers`: a sequence of [`scimlx.nde.AbstractRegulariser`][]s, at most one
        of each type: the built-in [`scimlx.nde.GlobalErrorEstimate`][],
        [`scimlx.nde.GlobalStiffness`][], [`scimlx.nde.LocalErrorEstimate`][],
        [`scimlx.nde.RandomEndTime`][], [`scimlx.nde.KineticJacobian`][],
        [`scimlx.nde.TaylorRegulariser`][], or your own subclass.
    - `key`: PRNG key, passed to every regulariser (needed by the local, STEER and
        RNODE regularisers).

    **Returns:**

    A [`scimlx.nde.RegularisedSolution`][]; the loss is `task_loss + sol.penalty`.

    **Raises:**

    `ValueError`, from the regulariser concerned and naming the argument, for a global
    regulariser with an adjoint that cannot differentiate it (`BacksolveAdjoint` silently
    gives zero gradient for controller/solver state), a non-adaptive controller for an
    error-estimate regulariser, a missing `key`, or an unsupported solver.
    """
    regs = _checked_regularisers(regularisers)
    problem = _problem(
        regs, key, terms, solver, t0, t1, dt0, y0, args, stepsize_controller, saveat, adjoint
    )
    plan = _plan(problem, regs, key)
    sol, outputs = _outputs(problem, plan, _run(problem, plan, max_steps, throw))
    penalty, components, extra_stats, nfe_reg = _penalties(problem, regs, outputs)
    nfe, nfe_diff = count_nfe(solver, sol.stats["num_steps"], sde=problem.is_sde)
    stats = {
        "num_steps": sol.stats["num_steps"],
        "num_accepted_steps": sol.stats["num_accepted_steps"],
        "num_rejected_steps": sol.stats["num_rejected_steps"],
        "nfe": nfe,
        "nfe_diffusion": nfe_diff,
        "nfe_regulariser": jnp.asarray(nfe_reg, jnp.int32),
        "t1": problem.t1,
    }
    clash = set(stats) & set(extra_stats)
    if clash:
        raise ValueError(f"`regularisers`: statistics {sorted(clash)} are reserved names.")
    return RegularisedSolution(sol, penalty, components, stats | extra_stats)
