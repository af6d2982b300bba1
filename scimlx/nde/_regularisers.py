"""The built-in regularisers of the solver's heuristics and their competitors, each
defined by the hooks of `AbstractRegulariser` it needs."""

from typing import Literal

import diffrax as dfx
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
from jax.experimental.jet import jet
from jaxtyping import Array, Float

from .._core._checks import check_finite, check_positive, check_weight
from ._controller import ErrorEstimateController, read_error_estimate, scaled_error_norm
from ._nfe import nfe_formula
from ._regulariser import (
    AbstractRegulariser,
    builtin_stream,
    Integrand,
    Penalty,
    RegularisedProblem,
    require_adaptive,
    require_discrete_adjoint,
    require_key,
)
from ._sampler import StepSamplerSolver
from ._stiffness import read_stiffness, StiffnessEstimateSolver


class GlobalErrorEstimate(AbstractRegulariser):
    r"""Global error-estimate regularisation (ERNODE, Pal et al. 2021).

    $R_E = \sum_j \mathrm{EEst}_j |\Delta t_j|$ over the accepted steps, with
    $\mathrm{EEst}_j$ the controller's scaled error norm, accumulated by an
    [`scimlx.nde.ErrorEstimateController`][] in the same solve. Needs a discrete adjoint
    (`diffrax.RecursiveCheckpointAdjoint`, `diffrax.DirectAdjoint`).

    **Arguments:**

    - `weight`: multiplies $R_E$ in `penalty` (an array, so it can be annealed).
    - `reduction`: `"sum"` (the paper) or `"mean"` (over accepted steps; the reference
        code).

    ??? cite "Reference"

        ```bibtex
        @inproceedings{pal2021opening,
          title={Opening the Blackbox: Accelerating Neural Differential Equations by
                 Regularizing Internal Solver Heuristics},
          author={Pal, Avik and Ma, Yingbo and Shah, Viral and Rackauckas, Christopher},
          booktitle={ICML}, year={2021}}
        ```
    """

    weight: float | Float[Array, ""] = 1.0
    reduction: Literal["sum", "mean"] = eqx.field(static=True, default="sum")

    def __check_init__(self):
        check_weight("weight", self.weight)
        if self.reduction not in ("sum", "mean"):
            raise ValueError(f"`reduction` must be 'sum' or 'mean', got {self.reduction!r}.")

    def wrap_controller(self, controller, problem, key):
        require_discrete_adjoint(self, problem.adjoint)
        require_adaptive(self, controller)
        return ErrorEstimateController(controller)

    def penalty(self, problem, output):
        error = read_error_estimate(output.controller_state, self.reduction)
        return Penalty(self.weight * error.astype(problem.dtype), {"error": error})


class GlobalStiffness(AbstractRegulariser):
    r"""Global stiffness regularisation (SRNODE, Pal et al. 2021).

    $\mathrm{SEst}_j = |\hat\lambda_j| / r$ from the last two stages of Tsit5/Dopri5
    ($r$ the real stability-interval length), aggregated as
    $\sum_j \mathrm{SEst}_j|\Delta t_j|$ (`"sum"`, the paper) or $\max_j \mathrm{SEst}_j$
    (`"max"`, the reference code). Needs a discrete adjoint.

    **Arguments:**

    - `weight`: multiplies the penalty.
    - `aggregation`: `"sum"` or `"max"`.
    - `stability_size`: override $r$ (default: computed from the tableau, 3.5068 for
        Tsit5).
    """

    weight: float | Float[Array, ""] = 1.0
    aggregation: Literal["sum", "max"] = eqx.field(static=True, default="sum")
    stability_size: float | None = eqx.field(static=True, default=None)

    def __check_init__(self):
        check_weight("weight", self.weight)
        if self.stability_size is not None:
            check_finite("stability_size", self.stability_size)
            check_positive("stability_size", self.stability_size)
        if self.aggregation not in ("sum", "max"):
            raise ValueError(f"`aggregation` must be 'sum' or 'max', got {self.aggregation!r}.")

    def wrap_solver(self, solver, problem, key):
        require_discrete_adjoint(self, problem.adjoint)
        return StiffnessEstimateSolver(solver, self.stability_size)

    def penalty(self, problem, output):
        stiffness = read_stiffness(output.solver_state, self.aggregation)
        return Penalty(self.weight * stiffness.astype(problem.dtype), {"stiffness": stiffness})


class LocalErrorEstimate(AbstractRegulariser):
    r"""Local error-estimate regularisation (Pal, Edelman, Rackauckas 2023).

    One extra solver step from a sampled state, penalty $\mathrm{EEst}\cdot|\Delta t|$.
    The sampled time, state and step size are constants for autodiff (as in the
    reference code), so the penalty is differentiable under every adjoint, including
    `diffrax.BacksolveAdjoint`.

    **Arguments:**

    - `weight`: multiplies the penalty.
    - `sampling`: `"unbiased"` ($t \sim U[t_0, t_1]$, state from the dense
        interpolant) or `"biased"` (uniform over the accepted steps, by reservoir
        sampling inside the solve).
    - `step_size`: `"solver"` (the accepted step that contains / starts at the sampled
        time; default) or `"initial"` (the controller's initial-step heuristic, as the
        reference code).

    ??? cite "Reference"

        ```bibtex
        @inproceedings{pal2023locally,
          title={Locally Regularized Neural Differential Equations: Some Black Boxes
                 Were Meant to Remain Closed!},
          author={Pal, Avik and Edelman, Alan and Rackauckas, Christopher},
          booktitle={ICML}, year={2023}}
        ```
    """

    weight: float | Float[Array, ""] = 1.0
    sampling: Literal["unbiased", "biased"] = eqx.field(static=True, default="unbiased")
    step_size: Literal["solver", "initial"] = eqx.field(static=True, default="solver")

    def __check_init__(self):
        check_weight("weight", self.weight)
        if self.sampling not in ("unbiased", "biased"):
            raise ValueError(f"`sampling` must be 'unbiased' or 'biased', got {self.sampling!r}.")
        if self.step_size not in ("solver", "initial"):
            raise ValueError(f"`step_size` must be 'solver' or 'initial', got {self.step_size!r}.")

    def wrap_solver(self, solver, problem, key):
        require_adaptive(self, problem.stepsize_controller)
        key = require_key(self, key)
        t_reg = jax.random.uniform(
            builtin_stream(key, 2), (), problem.t1.dtype, problem.t0, problem.t1
        )
        return StepSamplerSolver(solver, self.sampling, t_reg, builtin_stream(key, 3))

    def penalty(self, problem, output):
        _, _, t_s, y_s, dt_s = output.solver_state
        solver = _unwrapped(problem.solver)
        value, t_s, dt = _one_step_error(
            self.step_size, problem, solver, t_s, output.unaugment(y_s), dt_s
        )
        # One step from a fresh `solver.init`: FSAL solvers evaluate f0 in `init` and
        # again in their first step (counted in tests/test_nde_transforms.py).
        formula = nfe_formula(solver, sde=problem.is_sde)
        nfe = -1 if formula is None else formula[0][0] + 2 * formula[0][1]
        return Penalty(
            self.weight * value.astype(problem.dtype),
            {"local_error": value},
            {"t_reg": t_s, "dt_reg": dt},
            nfe=nfe,
        )


class RandomEndTime(AbstractRegulariser):
    r"""STEER (Ghosh et al. 2020): integrate to a random end time
    $T \sim U[t_1 - b, t_1 + b]$ during training. Adds no penalty.

    **Arguments:**

    - `half_width`: $b$ (must be smaller than $t_1 - t_0$).
    """

    half_width: float = 0.5

    def __check_init__(self):
        check_finite("half_width", self.half_width)
        check_positive("half_width", self.half_width, allow_zero=True)

    def end_time(self, problem, key):
        key = require_key(self, key)
        t1 = problem.t1
        return t1 + jax.random.uniform(
            builtin_stream(key, 0), (), t1.dtype, -self.half_width, self.half_width
        )

    def max_end_time(self, t1):
        return t1 + self.half_width

    def penalty(self, problem, output):
        return Penalty(jnp.zeros((), problem.dtype))


class KineticJacobian(AbstractRegulariser):
    r"""RNODE (Finlay et al. 2020): $\int \|f\|^2\,dt$ and $\int \|\nabla_y f\|_F^2\,dt$,
    the Frobenius norm by Hutchinson's estimator $\|\epsilon^\top \nabla_y f\|^2$
    ($\epsilon \sim N(0, I)$ drawn once per solve), integrated in an augmented state.
    ODEs only.

    **Arguments:**

    - `weight_kinetic`, `weight_jacobian`: multiply the two integrals in `penalty`.
    """

    weight_kinetic: float | Float[Array, ""] = 1.0
    weight_jacobian: float | Float[Array, ""] = 1.0

    def __check_init__(self):
        check_weight("weight_kinetic", self.weight_kinetic)
        check_weight("weight_jacobian", self.weight_jacobian)

    def integrand(self, problem, key) -> Integrand:
        key = require_key(self, key)
        probe = builtin_stream(key, 1)
        eps = jtu.tree_map(
            lambda x: jax.random.normal(probe, jnp.shape(x), jnp.result_type(x)), problem.y0
        )
        vf = problem.terms.vector_field

        def kinetic_jacobian(t, y, args, f):
            _, vjp = jax.vjp(lambda _y: vf(t, _y, args), y)
            (eps_j,) = vjp(eps)
            return {
                "kinetic": sum(jnp.sum(x**2) for x in jtu.tree_leaves(f)),
                "jacobian": sum(jnp.sum(x**2) for x in jtu.tree_leaves(eps_j)),
            }

        return kinetic_jacobian

    def penalty(self, problem, output):
        kinetic, jacobian = output.integrals["kinetic"], output.integrals["jacobian"]
        value = self.weight_kinetic * kinetic + self.weight_jacobian * jacobian
        return Penalty(value, {"kinetic": kinetic, "jacobian": jacobian})


class TaylorRegulariser(AbstractRegulariser):
    r"""TayNODE (Kelly et al. 2020): $R_K = \int \|d^K y / dt^K\|^2 dt$, the $K$-th
    total derivative of the solution computed by Taylor-mode AD
    (`jax.experimental.jet`), integrated in an augmented state. ODEs only.

    **Arguments:**

    - `weight`: multiplies $R_K$.
    - `order`: $K \geq 2$.
    """

    weight: float | Float[Array, ""] = 1.0
    order: int = eqx.field(static=True, default=2)

    def __check_init__(self):
        check_weight("weight", self.weight)
        if self.order < 2:
            raise ValueError(f"`order` must be >= 2, got {self.order}.")

    def integrand(self, problem, key) -> Integrand:
        vf = problem.terms.vector_field
        order = self.order

        def taylor(t, y, args, f):
            shape = jnp.shape(y)
            dtype = jnp.result_type(y)

            def g(zt):
                z = zt[:-1].reshape(shape)
                dz = jnp.ravel(vf(zt[-1], z, args)).astype(dtype)
                return jnp.concatenate([dz, jnp.ones(1, dtype)])

            zt = jnp.concatenate([jnp.ravel(y), jnp.asarray(t, dtype)[None]])
            first = jnp.concatenate([jnp.ravel(f).astype(dtype), jnp.ones(1, dtype)])
            derivs = [first]
            for _ in range(order - 1):
                _, out = jet(g, (zt,), (tuple(derivs),))
                derivs = [first] + list(out)
            return {"taylor": jnp.sum(derivs[order - 1][:-1] ** 2)}

        return taylor

    def penalty(self, problem, output):
        taylor = output.integrals["taylor"]
        return Penalty(self.weight * taylor, {"taylor": taylor})


def _unwrapped(solver: dfx.AbstractSolver) -> dfx.AbstractSolver:
    """`solver` without scimlx's observing wrappers (which add no evaluations)."""
    while isinstance(solver, StepSamplerSolver | StiffnessEstimateSolver):
        solver = solver.solver
    return solver


def _one_step_error(
    step_size: str,
    problem: RegularisedProblem,
    solver: dfx.AbstractSolver,
    t_s: Float[Array, ""],
    y_s,
    dt_s: Float[Array, ""],
):
    """`EEst * |dt|` of one step of `solver` from the sampled `(t_s, y_s)`, all three
    constants for autodiff; also the time and step used."""
    t_s = jax.lax.stop_gradient(t_s)
    y_s = jax.lax.stop_gradient(y_s)
    dt = jax.lax.stop_gradient(dt_s)
    terms, args, t1 = problem.terms, problem.args, problem.t1
    controller = problem.stepsize_controller
    if step_size == "initial":
        if not isinstance(controller, dfx.PIDController):
            raise ValueError(
                "`stepsize_controller`: LocalErrorEstimate(step_size='initial') needs a "
                f"diffrax.PIDController, got {type(controller).__name__}."
            )
        init_ctrl = eqx.tree_at(
            lambda c: (c.dtmin, c.dtmax), controller, (None, None), is_leaf=lambda x: x is None
        )
        tnext, _ = init_ctrl.init(
            terms, t_s, t1, y_s, None, args, solver.func, solver.error_order(terms)
        )
        dt = jax.lax.stop_gradient(tnext - t_s)
    if problem.is_sde:
        # The Brownian path is only defined up to t1.
        dt = jnp.minimum(dt, jnp.asarray(t1, dt.dtype) - t_s)
    dt = jnp.maximum(dt, 0.0)
    t_end = t_s + dt
    state = solver.init(terms, t_s, t_end, y_s, args)
    y1, y_err, _, _, _ = solver.step(terms, t_s, t_end, y_s, args, state, False)
    if y_err is None:
        raise ValueError("`solver`: LocalErrorEstimate needs a solver with an error estimate.")
    eest = scaled_error_norm(
        y_s, y1, y_err, rtol=controller.rtol, atol=controller.atol, norm=controller.norm
    )
    value = eest * jnp.abs(dt).astype(eest.dtype)
    return jnp.where(jnp.isfinite(value), value, jnp.zeros_like(value)), t_s, dt
