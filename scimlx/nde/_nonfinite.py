"""Report a solve that meets NaN/inf as `nonfinite`, rather than `max_steps_reached`."""

import diffrax as dfx
import jax.numpy as jnp

from ._controller import _all_finite, AbstractControllerWrapper


class NonfiniteStop(AbstractControllerWrapper):
    """Wraps an adaptive step-size controller; ends the solve with `RESULTS.nonfinite`
    when a step is non-finite and no smaller step is possible.

    A step whose candidate state or error estimate holds NaN/inf is rejected by the
    wrapped controller, which shrinks the step. If the NaN is the state's own (it
    depends on the current time and state, not on the step size), the step shrinks
    until `t + dt == t`, after which a plain solve spins until `max_steps` and reports
    `max_steps_reached`. This wrapper stops there and reports `nonfinite` instead. Its
    accept/reject decisions and step sizes are exactly those of the wrapped controller.
    """

    controller: dfx.AbstractAdaptiveStepSizeController

    def wrap(self, direction):
        return NonfiniteStop(self.controller.wrap(direction))

    def init(self, terms, t0, t1, y0, dt0, args, func, error_order):
        return self.controller.init(terms, t0, t1, y0, dt0, args, func, error_order)

    def adapt_step_size(
        self, t0, t1, y0, y1_candidate, args, y_error, error_order, controller_state
    ):
        keep, next_t0, next_t1, made_jump, state, result = self.controller.adapt_step_size(
            t0, t1, y0, y1_candidate, args, y_error, error_order, controller_state
        )
        finite = _all_finite(y1_candidate)
        if y_error is not None:
            finite = finite & _all_finite(y_error)
        dt = jnp.asarray(next_t1 - next_t0)
        stuck = jnp.invert(jnp.isfinite(dt)) | (dt <= 0) | (next_t0 + dt == next_t0)
        nonfinite = jnp.invert(finite) & jnp.invert(jnp.asarray(keep)) & stuck
        result = dfx.RESULTS.where(nonfinite, dfx.RESULTS.nonfinite, result)
        return keep, next_t0, next_t1, made_jump, state, result


def classify_nonfinite(result, ys):
    """`result`, with a successful solve whose saved values hold NaN/inf marked
    `nonfinite` (e.g. a fixed-step solve that diverged)."""
    bad = jnp.invert(_all_finite(ys)) & (result == dfx.RESULTS.successful)
    return dfx.RESULTS.where(bad, dfx.RESULTS.nonfinite, result)
