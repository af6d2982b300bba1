"""The default step-size controller of the latent models: the observation grid."""

import equinox as eqx


class ObservationGrid(eqx.Module):
    """Step once per interval of the save times `ts` (usually a series' observation grid).

    The default `stepsize_controller` of [`scimlx.sde.AbstractLatentModel.solve`][]: the
    paper's scheme (Euler on the observation grid), with the Brownian motion a
    [`scimlx.sde.GridBrownianPath`][] on the same grid. It stands in for
    `diffrax.StepTo(ts)` where `ts` is not known when the options are written (one set of
    options for a batch of series of different grids, as in
    [`scimlx.sde.train_classifier`][]).

    **Arguments:**

    - `scan`: `True` (default): step with `jax.lax.scan`, differentiated directly
        (the fastest to compile and to run; no `adjoint`, no `max_steps`). `False`: the same
        steps through `diffrax.diffeqsolve` with `diffrax.StepTo(ts)` (identical values),
        for diffrax's step loop, error handling and `adjoint` (default
        `diffrax.RecursiveCheckpointAdjoint` storing every step).
    """

    scan: bool = eqx.field(static=True, default=True)
