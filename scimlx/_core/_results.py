"""The failure codes every scimlx solve reports."""

import diffrax


class RESULTS(diffrax.RESULTS):  # pyright: ignore[reportGeneralTypeIssues]
    """Outcome of a scimlx solve or study, extending `diffrax.RESULTS`.

    `diffrax.RESULTS` already contains lineax's and optimistix's codes (`successful`,
    `max_steps_reached`, `singular`, `breakdown`, `stagnation`, `nonfinite`, ...), so a
    result coming out of a diffrax or lineax solve can be compared with these members
    directly. scimlx adds the codes below.

    Solves take `throw: bool = True`. With `throw=True` a failure raises (also under
    `jit`, through `eqx.error_if`). Under `jax.vmap` pass `throw=False` and read
    `sol.result` per batch element, e.g. `sol.result == scimlx.RESULTS.successful`.
    """

    successful = ""
    invalid_input = "An input violated the documented requirements (see the argument's docs)."
    negative_curvature = (
        "A search direction had non-positive curvature d^T A d <= 0: the operator is not "
        "positive definite on the search space, or the direction map failed."
    )


def is_successful(result: RESULTS):
    """`True` (as a scalar boolean array) where `result` is `RESULTS.successful`."""
    return result == RESULTS.successful
