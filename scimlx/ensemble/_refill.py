"""Lane-refill scheduling of adaptive differential-equation members.

`jax.vmap(diffeqsolve)` turns the solver's `while_loop` into one batched loop that runs
until the slowest member is done: a batch costs `max(steps) x batch` member-steps. Here a
fixed number of *lanes* step together in one jitted `while_loop`; when a lane's member
reaches `t1` (or fails), its final state is written out and the lane loads the next
unprocessed member. A batch then costs about `mean(steps) x members` member-steps, plus a
short tail while the last lanes drain.

The step is diffrax's own: `solver.init`/`solver.step` and the step-size controller's
`init`/`adapt_step_size`, with the same book-keeping as `diffrax.diffeqsolve`'s loop
(clipping to `t1`, rejected-step selects, first-failure results, `max_steps`), so a
member's result equals `diffeqsolve(..., saveat=SaveAt(t1=True))` on that member.
"""

import functools
from collections.abc import Callable
from typing import Any

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optimistix as optx
from jaxtyping import Array, ArrayLike, Int, PyTree, Shaped

from .._core._checks import check_int, check_nonempty, check_range
from .._core._results import code_names, code_of, item_with_codes


# diffrax's marker for "root-finder tolerances taken from the step-size controller", read from
# its public constructor (`diffrax.with_stepsize_controller_tols`).
_USE_CONTROLLER_TOLS = diffrax.with_stepsize_controller_tols(optx.Newton)().rtol


class DiffEqProblem(eqx.Module):
    """One member's differential equation: what `DiffEqMember.problem` returns.

    **Fields:**

    - `terms`: the diffrax terms (e.g. `ODETerm(f)`, or a `MultiTerm` of drift and
      diffusion with a Brownian path built from the member's key).
    - `y0`: the initial state (a pytree of arrays).
    - `args`: passed to the vector field.
    - `t0`, `t1`: the time interval; `t1 > t0`.
    - `dt0`: the first step size (`None` lets an adaptive controller choose it).
    """

    terms: Any
    y0: PyTree[ArrayLike]
    args: Any = None
    t0: ArrayLike = 0.0
    t1: ArrayLike = 1.0
    dt0: ArrayLike | None = None


class DiffEqMember(eqx.Module):
    """An ensemble member that is one `diffrax.diffeqsolve`, described so that the
    runner can schedule its steps (see `run_ensemble(..., schedule="refill")`).

    Calling it on one member's input runs `diffrax.diffeqsolve(..., saveat=SaveAt(t1=True),
    throw=False)`: that is what `schedule="vmap"` vmaps, and the reference that the
    refill schedule reproduces.

    **Fields:**

    - `problem`: a function of one member's input returning a `DiffEqProblem`.
    - `solver`: a diffrax solver (e.g. `Tsit5()`).
    - `stepsize_controller`: a diffrax step-size controller (e.g.
      `PIDController(rtol=1e-6, atol=1e-8)`); default `ConstantStepSize()`.
    - `max_steps`: the step limit per member; a member that reaches it is reported as
      `max_steps_reached`.
    - `adjoint`: the adjoint of the `diffeqsolve` call (`schedule="vmap"`, and the
      runner's shape probe); e.g. `DirectAdjoint()` for an `UnsafeBrownianPath`. The
      refill loop itself is a forward-only `while_loop`.
    """

    problem: Callable[[Any], DiffEqProblem]
    solver: diffrax.AbstractSolver
    stepsize_controller: diffrax.AbstractStepSizeController = diffrax.ConstantStepSize()
    max_steps: int = eqx.field(static=True, default=4096)
    adjoint: diffrax.AbstractAdjoint = diffrax.RecursiveCheckpointAdjoint()

    def __check_init__(self):
        if int(self.max_steps) < 1:
            raise ValueError(f"`max_steps` must be a positive integer, got {self.max_steps}.")

    def __call__(self, x: Any) -> diffrax.Solution:
        p = self.problem(x)
        return diffrax.diffeqsolve(
            p.terms,
            self.solver,
            p.t0,
            p.t1,
            p.dt0,
            p.y0,
            args=p.args,
            stepsize_controller=self.stepsize_controller,
            saveat=diffrax.SaveAt(t1=True),
            max_steps=self.max_steps,
            adjoint=self.adjoint,
            throw=False,
        )


# ------------------------------------------------------------------------------------
# One lane: diffrax's loop body, unbatched.
# ------------------------------------------------------------------------------------


def _code(res) -> Array:
    return code_of(res)


def _setup(member: DiffEqMember, x):
    """Member input -> (terms, solver, controller, y0, args, t0, t1, dt0) as diffeqsolve
    would use them (time dtype, promoted state, implicit solvers' tolerances)."""
    p = member.problem(x)
    if not isinstance(p, DiffEqProblem):
        raise TypeError(f"`problem` must return a DiffEqProblem, got {type(p).__name__}.")
    timelikes = [v for v in (p.t0, p.t1, p.dt0) if v is not None]
    with jax.numpy_dtype_promotion("standard"):
        time_dtype = jnp.result_type(*timelikes)
    if not jnp.issubdtype(time_dtype, jnp.floating):
        time_dtype = jnp.zeros(()).dtype
    t0 = jnp.asarray(p.t0, time_dtype)
    t1 = jnp.asarray(p.t1, time_dtype)
    dt0 = None if p.dt0 is None else jnp.asarray(p.dt0, time_dtype)

    def promote(yi):
        with jax.numpy_dtype_promotion("standard"):
            return jnp.asarray(yi, jnp.result_type(yi, time_dtype))

    y0 = jax.tree.map(promote, p.y0)
    solver = member.solver
    controller = member.stepsize_controller
    if isinstance(solver, diffrax.AbstractImplicitSolver) and isinstance(
        controller, diffrax.AbstractAdaptiveStepSizeController
    ):
        # As diffeqsolve: root-finder tolerances marked "use the controller's".
        attrs = [
            a
            for a in ("rtol", "atol", "norm")
            if getattr(solver.root_finder, a) is _USE_CONTROLLER_TOLS
        ]
        if attrs:
            solver = eqx.tree_at(
                lambda s: tuple(getattr(s.root_finder, a) for a in attrs),
                solver,
                tuple(getattr(controller, a) for a in attrs),
            )
    return p.terms, solver, controller, y0, p.args, t0, t1, dt0


class _Lane(eqx.Module):
    """The loop state of one lane (one member in flight)."""

    tprev: Array
    tnext: Array
    t1: Array
    t1_floor: Array
    y: Any
    solver_state: Any
    controller_state: Any
    made_jump: Any  # a bool array, or absent (None) when statically False
    result: Array  # int32 RESULTS code, first failure
    num_steps: Array
    num_accepted: Array
    num_rejected: Array


def _lane_init(member: DiffEqMember, x, static_jump: bool) -> _Lane:
    terms, solver, controller, y0, args, t0, t1, dt0 = _setup(member, x)
    t1 = eqx.error_if(
        t1,
        t1 < t0,
        "DiffEqProblem: the lane-refill schedule needs t1 >= t0 (for a backward-in-time "
        "solve use schedule=VmapSchedule()).",
    )
    error_order = solver.error_order(terms)
    tnext, cstate = controller.init(terms, t0, t1, y0, dt0, args, solver.func, error_order)
    tnext = jnp.minimum(tnext, t1)
    sstate = solver.init(terms, t0, tnext, y0, args)
    # diffeqsolve's threshold t1 - 100 ULP: a tnext beyond it is rounded to t1.
    t1_floor = jax.lax.fori_loop(
        0, 100, lambda _, t: jnp.nextafter(t, -jnp.inf), t1, unroll=True
    )  # unrolled: one fused elementwise chain, not 100 loop iterations per refill
    zero = jnp.zeros((), jnp.int32)
    return _Lane(
        tprev=t0,
        tnext=jnp.asarray(tnext, t0.dtype),
        t1=t1,
        t1_floor=t1_floor,
        y=y0,
        solver_state=sstate,
        controller_state=cstate,
        made_jump=None if static_jump else jnp.array(False),
        result=zero,
        num_steps=zero,
        num_accepted=zero,
        num_rejected=zero,
    )


def _lane_step(member: DiffEqMember, x, lane: _Lane):
    """diffrax's `loop.body_fun` for one lane (no saving, events or progress meter)."""
    terms, solver, controller, _, args, _, t1, _ = _setup(member, x)
    made_jump = False if lane.made_jump is None else lane.made_jump
    y, y_error, _, sstate, solver_result = solver.step(
        terms, lane.tprev, lane.tnext, lane.y, args, lane.solver_state, made_jump
    )
    y_error = jax.tree.map(lambda e: jnp.where(jnp.isnan(e), jnp.inf, e), y_error)
    keep, tprev, tnext, new_jump, cstate, ctrl_result = controller.adapt_step_size(
        lane.tprev,
        lane.tnext,
        lane.y,
        y,
        args,
        y_error,
        solver.error_order(terms),
        lane.controller_state,
    )
    tprev = jnp.minimum(tprev, t1)
    clip = tnext > lane.t1_floor
    tnext = jnp.where(clip, jnp.where(keep, t1, tprev + 0.5 * (t1 - tprev)), tnext)
    y = jax.tree.map(lambda a, b: jnp.where(keep, a, b), y, lane.y)
    sstate = jax.tree.map(lambda a, b: jnp.where(keep, a, b), sstate, lane.solver_state)
    s_code = jnp.where(keep, _code(solver_result), 0)
    result = jnp.where(lane.result == 0, s_code, lane.result)
    result = jnp.where(result == 0, _code(ctrl_result), result)
    if lane.made_jump is None:
        jump = None
    else:
        jump = jnp.where(keep, jnp.asarray(new_jump), lane.made_jump)
    new = _Lane(
        tprev=jnp.asarray(tprev, lane.tprev.dtype),
        tnext=jnp.asarray(tnext, lane.tnext.dtype),
        t1=lane.t1,
        t1_floor=lane.t1_floor,
        y=y,
        solver_state=sstate,
        controller_state=cstate,
        made_jump=jump,
        result=result.astype(jnp.int32),
        num_steps=lane.num_steps + 1,
        num_accepted=lane.num_accepted + jnp.where(keep, 1, 0).astype(jnp.int32),
        num_rejected=lane.num_rejected + jnp.where(keep, 0, 1).astype(jnp.int32),
    )
    return new, new_jump


def _running(lane: _Lane, max_steps: int) -> Array:
    """diffrax's `cond_fun` plus the `max_steps` bound."""
    return (lane.tprev < lane.t1) & (lane.result == 0) & (lane.num_steps < max_steps)


def _static_jump(member: DiffEqMember, x0) -> bool:
    """Whether `made_jump` stays statically False (as diffeqsolve resolves it at trace
    time): then the solver is traced with `made_jump=False`, which skips e.g. the
    re-evaluation of an FSAL vector field."""
    lane = eqx.filter_eval_shape(_lane_init, member, x0, True)
    _, new_jump = eqx.filter_eval_shape(_lane_step, member, x0, lane)
    return new_jump is False


# ------------------------------------------------------------------------------------
# The refill loop.
# ------------------------------------------------------------------------------------


def _where_lanes(mask, new, old):
    def sel(a, b):
        m = mask.reshape(mask.shape + (1,) * (jnp.ndim(a) - 1))
        return jnp.where(m, a, b)

    return jax.tree.map(sel, new, old)


def refill_batch(
    member: DiffEqMember,
    xs: Any,
    n_valid: Int[ArrayLike, ""] | None = None,
    *,
    lanes: int,
    refill_fraction: float = 1 / 16,
) -> tuple[diffrax.Solution, Array]:
    """The lane-refill loop over a batch of members (traceable; no jit of its own).

    **Arguments:**

    - `member`: the `DiffEqMember`.
    - `xs`: the members' inputs, a pytree with a leading member axis.
    - `n_valid`: only the first `n_valid` members are solved (the rest are padding and
      come back as zeros with code 0). Default: all.
    - `lanes`: members in flight at once (at most the batch size).
    - `refill_fraction`: finished lanes are refilled together once at least this
      fraction of the lanes is waiting (or no lane is running), which amortises the
      refill's gather/scatter and `solver.init` over several finished lanes.

    **Returns:**

    `(solution, iterations)`: a batched `diffrax.Solution` as `jax.vmap(member)` would give
    (`ts`, `ys` saved at the end only, `result`, `stats`), and the number of loop
    iterations (each steps every lane once).
    """
    n = int(jnp.shape(jax.tree.leaves(xs)[0])[0])
    lanes = max(1, min(int(lanes), n))
    n_valid = jnp.asarray(n if n_valid is None else n_valid, jnp.int32)
    static_jump = _static_jump(member, jax.tree.map(lambda x: x[0], xs))
    threshold = max(1, int(round(lanes * refill_fraction)))
    init_v = jax.vmap(lambda x: _lane_init(member, x, static_jump))
    step_v = jax.vmap(lambda x, lane: _lane_step(member, x, lane)[0])
    refill = functools.partial(_refill, init_v, xs, n_valid, member.max_steps)

    def cond(state):
        _, _, held, running, nxt, _, _ = state
        return jnp.any(running) | jnp.any(held >= 0) | (nxt < n_valid)

    def body(state):
        _, _, held, running, nxt, _, _ = state
        n_run = jnp.sum(running, dtype=jnp.int32)
        waiting = jnp.sum((held >= 0) & jnp.invert(running), dtype=jnp.int32)
        can_load = nxt < n_valid
        need = ((waiting >= threshold) & can_load) | (n_run == 0)
        state = jax.lax.cond(need, refill, lambda s: s, state)
        lane_x, lane, held, running, nxt, outputs, it = state
        stepped = step_v(lane_x, lane)
        lane = _where_lanes(running, stepped, lane)
        running = running & _running(lane, member.max_steps)
        it = (it + jnp.where(n_run > 0, 1, 0)).astype(jnp.int32)
        return lane_x, lane, held, running, nxt, outputs, it

    state = jax.lax.while_loop(cond, body, _initial_state(init_v, xs, n, lanes))
    return _solution(member, xs, state[5]), state[6]


def _outputs_of(lane: _Lane) -> tuple:
    """What is written out of a lane when its member is done."""
    vals = (lane.tprev, lane.y, lane.result, lane.num_steps, lane.num_accepted)
    return vals + (lane.num_rejected,)


def _initial_state(init_v, xs, n: int, lanes: int) -> tuple:
    """The refill loop's state before the first refill: no lane holds a member."""
    lane_x = jax.tree.map(lambda x: x[:lanes], xs)
    lane0 = init_v(lane_x)
    outputs = jax.tree.map(lambda a: jnp.zeros((n,) + a.shape[1:], a.dtype), _outputs_of(lane0))
    return (
        lane_x,
        lane0,
        jnp.full((lanes,), -1, jnp.int32),  # member index held by each lane, -1: none
        jnp.zeros((lanes,), bool),  # running: the lane's member is unfinished
        jnp.zeros((), jnp.int32),  # next member to load
        outputs,
        jnp.zeros((), jnp.int32),  # iterations
    )


def _refill(init_v, xs, n_valid, max_steps: int, state: tuple) -> tuple:
    """Write out the finished lanes' members, and load the next members into free lanes."""
    lane_x, lane, held, running, nxt, outputs, it = state
    n = int(jnp.shape(jax.tree.leaves(xs)[0])[0])
    finished = (held >= 0) & jnp.invert(running)
    idx = jnp.where(finished, held, n)  # n: out of range, dropped
    outputs = jax.tree.map(lambda o, v: o.at[idx].set(v, mode="drop"), outputs, _outputs_of(lane))
    # Free lanes: finished ones and never-used ones.
    free = jnp.invert(running)
    rank = jnp.cumsum(free.astype(jnp.int32), dtype=jnp.int32) - 1
    new_id = (nxt + rank).astype(jnp.int32)
    load = free & (new_id < n_valid)
    take = jnp.clip(new_id, 0, n - 1)
    new_x = jax.tree.map(lambda x: x[take], xs)
    lane_x = _where_lanes(load, new_x, lane_x)
    lane = _where_lanes(load, init_v(lane_x), lane)
    held = jnp.where(load, new_id, jnp.where(free, -1, held))
    nxt = (nxt + jnp.sum(load, dtype=jnp.int32)).astype(jnp.int32)
    # As diffeqsolve's loop: the condition is checked before the first step (t0 == t1).
    running = running | (load & _running(lane, max_steps))
    return lane_x, lane, held, running, nxt, outputs, it


def _solution(member: DiffEqMember, xs, outputs: tuple) -> diffrax.Solution:
    """The members' written-out final states -> a batched `diffrax.Solution` as
    `jax.vmap(member)` would give."""
    tfinal, yfinal, code, n_steps, n_acc, n_rej = outputs
    # As diffeqsolve: a member that stopped before t1 while "successful" ran out of steps.
    t1s = jax.vmap(lambda x: _setup(member, x)[6])(xs)
    code = jnp.where((code == 0) & (tfinal < t1s), _max_steps_code(), code)
    t0s = jax.vmap(lambda x: _setup(member, x)[5])(xs)
    return diffrax.Solution(
        t0=t0s,
        t1=t1s,
        ts=tfinal[:, None],
        ys=jax.tree.map(lambda y: y[:, None], yfinal),
        interpolation=None,
        stats={
            "num_steps": n_steps,
            "num_accepted_steps": n_acc,
            "num_rejected_steps": n_rej,
            "max_steps": member.max_steps,
        },
        result=_result_item(code),
        solver_state=None,
        controller_state=None,
        made_jump=None,
        event_mask=None,
    )


def _max_steps_code() -> int:
    return code_names(diffrax.RESULTS).index("max_steps_reached")


def _result_item(code):
    """A batched `diffrax.RESULTS` item holding the integer codes `code`."""
    return item_with_codes(code, diffrax.RESULTS)


@eqx.filter_jit
def _refill_jit(member, xs, *, lanes, refill_fraction):
    return refill_batch(member, xs, lanes=lanes, refill_fraction=refill_fraction)


def refill_solve(
    member: DiffEqMember,
    inputs: PyTree[Shaped[ArrayLike, "members ..."]],
    *,
    lanes: int = 1024,
    refill_fraction: float = 1 / 16,
) -> diffrax.Solution:
    """Solve every member of a batch with the lane-refill schedule.

    Equivalent to `jax.vmap(member)(inputs)` (each member solved as by
    `diffrax.diffeqsolve(..., saveat=SaveAt(t1=True), throw=False)`), but the batch costs
    about its *mean* step count per member instead of its *maximum*: `lanes` members are
    in flight at once and a lane that finishes loads the next member.

    **Arguments:**

    - `member`: a `DiffEqMember`.
    - `inputs`: the members' inputs, a pytree with a leading member axis.
    - `lanes`: members in flight at once (1024 ran best for small systems on a 2-core
      CPU; on accelerators use many more).
    - `refill_fraction`: finished lanes are refilled together once this fraction of the
      lanes is waiting.

    **Returns:**

    A batched `diffrax.Solution` (`ys` with a time axis of length one, `result` per
    member: failures such as `max_steps_reached` are reported per member, never raised).
    """
    if not isinstance(member, DiffEqMember):
        raise TypeError(f"`member` must be a DiffEqMember, got {type(member).__name__}.")
    lanes = check_int("lanes", lanes, minimum=1)
    check_range("refill_fraction", refill_fraction, lower=0.0, upper=1.0, lower_open=True)
    leaves = jax.tree.leaves(inputs)
    if not leaves:
        raise ValueError("`inputs` has no array leaves: nothing to solve.")
    sizes = {int(np.shape(x)[0]) if np.ndim(x) else -1 for x in leaves}
    if -1 in sizes or len(sizes) != 1:
        raise ValueError(
            "Every leaf of `inputs` needs the same leading member axis, got leading sizes "
            f"{sorted(sizes)} (-1: a scalar)."
        )
    check_nonempty("inputs", sizes.pop(), what="members")
    return _refill_jit(member, inputs, lanes=int(lanes), refill_fraction=float(refill_fraction))[0]
