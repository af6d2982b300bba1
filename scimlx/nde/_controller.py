"""A step-size controller wrapper that accumulates the global error-estimate penalty."""

from collections.abc import Callable
from typing import Any, Literal

import diffrax as dfx
import equinox as eqx
import jax.numpy as jnp
import jax.tree_util as jtu
from jaxtyping import Array, Float, PyTree


def scaled_error_norm(
    y0: PyTree,
    y1: PyTree,
    y_error: PyTree,
    *,
    rtol: Any,
    atol: Any,
    norm: Callable[[PyTree], Any],
) -> Float[Array, ""]:
    """The controller's scaled error `norm(y_error / (atol + max(|y0|, |y1|) rtol))`.

    Non-finite entries of `y_error` or `y1` are replaced by zero/`y0` *before* the
    division, so that the value and its gradient stay finite (callers mask the result
    of a non-finite step with `jnp.where`).

    **Arguments:**

    - `y0`, `y1`: the state at the start and end of the step.
    - `y_error`: the solver's local error estimate.
    - `rtol`, `atol`, `norm`: as in `diffrax.PIDController`.

    **Returns:**

    The scalar `EEst` (a step is accepted by a PID controller iff `EEst < 1`).
    """

    def _scale(_y0, _y1, _e):
        finite = jnp.isfinite(_e) & jnp.isfinite(_y1)
        _e = jnp.where(finite, _e, jnp.zeros_like(_e))
        _y1 = jnp.where(jnp.isfinite(_y1), _y1, _y0)
        _y = jnp.maximum(jnp.abs(_y0), jnp.abs(_y1))
        return _e / (atol + _y * rtol)

    return jnp.asarray(norm(jtu.tree_map(_scale, y0, y1, y_error)))


def _all_finite(tree: PyTree) -> Array:
    leaves = [jnp.all(jnp.isfinite(x)) for x in jtu.tree_leaves(tree)]
    if len(leaves) == 0:
        return jnp.array(True)
    return jnp.stack(leaves).all()


class AbstractControllerWrapper(dfx.AbstractAdaptiveStepSizeController):
    """An adaptive controller wrapping another: its tolerances and norm are the wrapped
    controller's (diffrax reads them, e.g. for implicit solvers' root finders)."""

    controller: eqx.AbstractVar[dfx.AbstractAdaptiveStepSizeController]

    @property
    def rtol(self):  # pyright: ignore
        return self.controller.rtol

    @property
    def atol(self):  # pyright: ignore
        return self.controller.atol

    @property
    def norm(self):  # pyright: ignore
        return self.controller.norm


class ErrorEstimateController(AbstractControllerWrapper):
    r"""Wraps an adaptive step-size controller and accumulates $R_E = \sum_j
    \mathrm{EEst}_j |\Delta t_j|$ over the accepted steps of the same solve.

    The controller's decisions (accept/reject, next step) are exactly those of the
    wrapped controller; in addition its state carries `(inner_state, R_E, n_accepted,
    sum_eest)`. Read it with `diffrax.SaveAt(controller_state=True)` and
    [`scimlx.nde.read_error_estimate`][]. The penalty is differentiable through
    `diffrax.RecursiveCheckpointAdjoint` and `diffrax.DirectAdjoint` (unlike the PID
    controller's own error, it is not `stop_gradient`-ed); the step sizes themselves
    stay constants for autodiff, as in diffrax. Rejected steps and non-finite errors
    contribute an exact zero (with a finite zero gradient).

    **Arguments:**

    - `controller`: any `diffrax.AbstractAdaptiveStepSizeController` (its `rtol`,
        `atol` and `norm` define `EEst`).
    """

    controller: dfx.AbstractAdaptiveStepSizeController

    def __check_init__(self):
        if not isinstance(self.controller, dfx.AbstractAdaptiveStepSizeController):
            raise TypeError(
                "`controller` must be an adaptive diffrax step-size controller "
                f"(e.g. diffrax.PIDController), got {type(self.controller).__name__}."
            )

    def wrap(self, direction):
        return ErrorEstimateController(self.controller.wrap(direction))

    def init(self, terms, t0, t1, y0, dt0, args, func, error_order):
        tnext, inner = self.controller.init(terms, t0, t1, y0, dt0, args, func, error_order)
        dtype = jnp.result_type(*jtu.tree_leaves(y0), jnp.asarray(t0))
        zero = jnp.zeros((), dtype)
        return tnext, (inner, zero, jnp.array(0, jnp.int32), zero)

    def adapt_step_size(
        self, t0, t1, y0, y1_candidate, args, y_error, error_order, controller_state
    ):
        inner, r_sum, n_acc, eest_sum = controller_state
        keep, next_t0, next_t1, made_jump, inner, result = self.controller.adapt_step_size(
            t0, t1, y0, y1_candidate, args, y_error, error_order, inner
        )
        if y_error is None:
            raise RuntimeError(
                "ErrorEstimateController needs a solver that provides error estimates."
            )
        finite = _all_finite(y_error) & _all_finite(y1_candidate)
        use = jnp.asarray(keep) & finite
        # Safe values: a rejected or non-finite step must not reach the gradient.
        safe_err = jtu.tree_map(lambda e: jnp.where(use, e, jnp.zeros_like(e)), y_error)
        safe_y1 = jtu.tree_map(lambda a, b: jnp.where(use, a, b), y1_candidate, y0)
        eest = scaled_error_norm(
            y0, safe_y1, safe_err, rtol=self.rtol, atol=self.atol, norm=self.norm
        ).astype(r_sum.dtype)
        dt = jnp.abs(jnp.asarray(t1 - t0)).astype(r_sum.dtype)
        r_sum = r_sum + jnp.where(use, eest * dt, jnp.zeros_like(eest))
        eest_sum = eest_sum + jnp.where(use, eest, jnp.zeros_like(eest))
        n_acc = n_acc + jnp.where(keep, 1, 0).astype(jnp.int32)
        return keep, next_t0, next_t1, made_jump, (inner, r_sum, n_acc, eest_sum), result


def read_error_estimate(
    controller_state: PyTree, reduction: Literal["sum", "mean"] = "sum"
) -> Float[Array, ""]:
    """Reads $R_E$ from the final state of an [`scimlx.nde.ErrorEstimateController`][].

    **Arguments:**

    - `controller_state`: `sol.controller_state` of a solve with
        `SaveAt(controller_state=True)`.
    - `reduction`: `"sum"` (the paper's $\\sum_j \\mathrm{EEst}_j|\\Delta t_j|$) or
        `"mean"` (the reference code's mean over accepted steps of the same terms).

    **Returns:**

    The scalar penalty.
    """
    _, r_sum, n_acc, _ = controller_state
    if reduction == "sum":
        return r_sum
    if reduction == "mean":
        return r_sum / jnp.maximum(n_acc, 1).astype(r_sum.dtype)
    raise ValueError(f"`reduction` must be 'sum' or 'mean', got {reduction!r}.")
