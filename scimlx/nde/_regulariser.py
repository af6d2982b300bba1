"""The regulariser extension point: what a regulariser may change in a solve, and what it
reads back from it."""

import abc
from collections.abc import Callable
from typing import Any

import diffrax as dfx
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
from jaxtyping import Array, PRNGKeyArray, PyTree, Real


class RegularisedProblem(eqx.Module):
    """The problem of one [`scimlx.nde.regularised_diffeqsolve`][] call, as the user gave it,
    passed to every hook of an [`scimlx.nde.AbstractRegulariser`][].

    **Fields:** `terms`, `solver`, `t0`, `t1`, `dt0`, `y0`, `args`, `stepsize_controller`,
    `saveat`, `adjoint`, as in `diffrax.diffeqsolve`. `t0` and `t1` are arrays of one
    floating dtype; `t1` is the end time actually integrated to (after every
    regulariser's `end_time`).
    """

    terms: PyTree[dfx.AbstractTerm]
    solver: dfx.AbstractSolver
    t0: Real[Array, ""]
    t1: Real[Array, ""]
    dt0: Any
    y0: PyTree[Array]
    args: Any
    stepsize_controller: dfx.AbstractStepSizeController
    saveat: dfx.SaveAt
    adjoint: dfx.AbstractAdjoint

    @property
    def is_sde(self) -> bool:
        """Whether `terms` hold a `diffrax.ControlTerm` or a Brownian path."""
        kinds = dfx.ControlTerm | dfx.AbstractBrownianPath
        leaves = jtu.tree_leaves(self.terms, is_leaf=lambda x: isinstance(x, kinds))
        return any(isinstance(t, kinds) for t in leaves)

    @property
    def dtype(self):
        """The floating dtype of the state (penalties are returned in it)."""
        return jnp.result_type(*jtu.tree_leaves(self.y0))


class RegulariserOutput(eqx.Module):
    """What one regulariser reads back from the solve, passed to its `penalty` hook.

    **Fields:**

    - `solution`: the `diffrax.Solution` (its `ys` without any augmented state).
    - `solver_state`: the final state of the solver wrapper this regulariser's
        `wrap_solver` returned (`None` if it returned the solver unchanged).
    - `controller_state`: likewise for `wrap_controller`.
    - `integrals`: this regulariser's integrals (the names its `integrand` returns) at
        the last saved time; empty if it has no integrand.
    - `augmented`: whether the solve's state was augmented by integrands (of any
        regulariser); then states seen by solver wrappers are `(y, integrals)`, and
        `unaugment` gives `y`.
    """

    solution: dfx.Solution
    solver_state: PyTree | None
    controller_state: PyTree | None
    integrals: dict[str, Array]
    augmented: bool = eqx.field(static=True)

    def unaugment(self, y: PyTree) -> PyTree:
        """The user's state from a state of the (possibly augmented) solve."""
        return y[0] if self.augmented else y


class Penalty(eqx.Module):
    """What a regulariser's `penalty` hook returns.

    **Fields:**

    - `value`: the weighted penalty, a scalar added to
        [`scimlx.nde.RegularisedSolution`][]`.penalty`.
    - `components`: unweighted terms by name (merged into `.components`; names must not
        collide with another regulariser's).
    - `stats`: extra statistics by name (merged into `.stats`).
    - `nfe`: vector-field evaluations the penalty made outside the solve (summed into
        `stats["nfe_regulariser"]`; `-1` if unknown).
    """

    value: Array = eqx.field(converter=jnp.asarray)
    components: dict[str, Array] = eqx.field(default_factory=dict)
    stats: dict[str, Array] = eqx.field(default_factory=dict)
    nfe: int = eqx.field(static=True, default=0)


Integrand = Callable[[Any, PyTree, Any, PyTree], dict[str, Array]]


class AbstractRegulariser(eqx.Module):
    """Base class of the regularisers accepted by [`scimlx.nde.regularised_diffeqsolve`][].

    A regulariser is a set of hooks, which the solve composes over all its regularisers
    in the order given, never asking which class it has:

    1. `end_time(problem, key)`: the end time to integrate to (STEER draws one).
    2. `wrap_solver(solver, problem, key)` and `wrap_controller(controller, problem,
        key)`: a diffrax solver or step-size controller wrapper that observes the solve
        (the global and local regularisers). A wrapper must keep the wrapped one's state
        as the first element of its state tuple, `(inner_state, ...)`, as
        `scimlx.nde.StiffnessEstimateSolver` does.
    3. `integrand(problem, key)`: a function `(t, y, args, f) -> {name: value}` (with
        `f` the vector field at `(t, y)`) whose integrals over the solve are carried in an
        augmented state (RNODE, TayNODE); `None` for none. Needs a single
        `diffrax.ODETerm` and a `saveat` with `t1=True` or `ts`.
    4. `penalty(problem, output)`, the one required hook: a
        [`scimlx.nde.Penalty`][] from a [`scimlx.nde.RegulariserOutput`][].

    Every hook but `penalty` has a default that changes nothing, so a subclass defines
    only what it needs. Hooks check their own requirements (adjoint, controller, key) and
    raise a `ValueError` naming the argument. All regularisers receive the same `key`
    (`None` if the user passed none); draw from `jax.random.fold_in(key, <constant>)` to
    stay independent of the built-ins. `max_end_time` bounds `end_time` by a Python float
    (Brownian paths of SDE models are built up to it).

    !!! example

        ```python
        class FinalStateL2(nde.AbstractRegulariser):
            weight: float = 1.0

            def penalty(self, problem, output):
                value = jnp.sum(output.solution.ys[-1] ** 2)
                return nde.Penalty(self.weight * value, {"final_l2": value})
        ```
    """

    def end_time(self, problem: RegularisedProblem, key: PRNGKeyArray | None) -> Array:
        """The end time to integrate to (default: `problem.t1`)."""
        del key
        return problem.t1

    def max_end_time(self, t1: float) -> float:
        """An upper bound of `end_time` for a nominal end time `t1` (default: `t1`)."""
        return t1

    def wrap_solver(
        self, solver: dfx.AbstractSolver, problem: RegularisedProblem, key: PRNGKeyArray | None
    ) -> dfx.AbstractSolver:
        """The solver to use (default: `solver` unchanged)."""
        del problem, key
        return solver

    def wrap_controller(
        self,
        controller: dfx.AbstractStepSizeController,
        problem: RegularisedProblem,
        key: PRNGKeyArray | None,
    ) -> dfx.AbstractStepSizeController:
        """The step-size controller to use (default: `controller` unchanged)."""
        del problem, key
        return controller

    def integrand(self, problem: RegularisedProblem, key: PRNGKeyArray | None) -> Integrand | None:
        """Integrands carried in an augmented state (default: `None`, none)."""
        del problem, key
        return None

    @abc.abstractmethod
    def penalty(self, problem: RegularisedProblem, output: RegulariserOutput) -> Penalty:
        """The penalty and its components, read from the solve's output."""


# Checks that hooks make of the problem; each names the argument and the regulariser.

_DISCRETE_ADJOINTS = (dfx.RecursiveCheckpointAdjoint, dfx.DirectAdjoint, dfx.ForwardMode)


def require_discrete_adjoint(reg: AbstractRegulariser, adjoint: dfx.AbstractAdjoint) -> None:
    if not isinstance(adjoint, _DISCRETE_ADJOINTS):
        raise ValueError(
            f"`adjoint`: {type(reg).__name__} is accumulated inside the solver loop and "
            "needs a discrete adjoint (diffrax.RecursiveCheckpointAdjoint or "
            f"diffrax.DirectAdjoint); {type(adjoint).__name__} would silently give it zero "
            "gradient. Use LocalErrorEstimate for continuous adjoints."
        )


def require_adaptive(reg: AbstractRegulariser, controller: Any) -> None:
    if not isinstance(controller, dfx.AbstractAdaptiveStepSizeController):
        raise ValueError(
            f"`stepsize_controller`: {type(reg).__name__} needs an adaptive step-size "
            "controller (e.g. diffrax.PIDController), whose rtol/atol/norm define EEst; got "
            f"{type(controller).__name__}."
        )


def require_key(reg: AbstractRegulariser, key: Any) -> PRNGKeyArray:
    if key is None:
        raise ValueError(f"`key` is required by the {type(reg).__name__} regulariser.")
    return key


def builtin_stream(key: PRNGKeyArray, i: int) -> PRNGKeyArray:
    """Stream `i` of the four the built-in regularisers draw from: 0 STEER's end time,
    1 RNODE's probe, 2 the local regulariser's time, 3 its reservoir."""
    return jax.random.split(key, 4)[i]
