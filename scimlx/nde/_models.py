"""Neural ODE / SDE models whose solves carry the regularisation statistics."""

from collections.abc import Callable, Sequence

import diffrax as dfx
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import lineax as lx
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from .._core._checks import (
    check_controller_tolerances,
    check_finite,
    check_int,
    check_last_axis,
    check_ndim,
    check_ordered,
    check_positive,
    error_if_nonfinite,
)
from ._regulariser import AbstractRegulariser
from ._solve import regularised_diffeqsolve, RegularisedSolution


def _default_controller() -> dfx.PIDController:
    return dfx.PIDController(rtol=1.4e-8, atol=1.4e-8)


def _check_solve_options(
    dim, t0, t1, dt0, max_steps, stepsize_controller, extra: dict | None = None
) -> None:
    """The checks shared by the neural ODE and SDE constructors."""
    check_int("dim", dim, minimum=1)
    check_finite("t0", t0)
    check_finite("t1", t1)
    check_ordered("t0", t0, "t1", t1)
    if dt0 is not None:
        check_finite("dt0", dt0)
        check_positive("dt0", dt0)
    check_int("max_steps", max_steps, minimum=1)
    check_controller_tolerances(stepsize_controller)
    for name, value in (extra or {}).items():
        check_finite(name, value)
        check_positive(name, value)


def _check_vector_field(name: str, fn: Callable, t, y_row: jax.ShapeDtypeStruct, dim: int) -> None:
    """`fn(t, y_row)` must map a `(dim,)` state to a `(dim,)` derivative: checked on
    shapes only (no computation), so that a field of another width is named instead of
    failing deep inside the solver with an XLA shape error."""
    try:
        out = jax.eval_shape(fn, t, y_row)
    except Exception as e:  # the field could not even take a `(dim,)` state
        raise ValueError(
            f"`{name}` must map a state of shape ({dim},) (the model's `dim`) to its "
            f"derivative, but calling it on one failed: {type(e).__name__}: {e}"
        ) from e
    shapes = [tuple(x.shape) for x in jax.tree.leaves(out)]
    if shapes != [(dim,)]:
        raise ValueError(
            f"`{name}` must return an array of shape ({dim},) (the model's `dim`) for a "
            f"state of shape ({dim},), got {shapes[0] if len(shapes) == 1 else shapes}."
        )


def _checked_times(ts, t0: float, t1: float):
    """Save times: 1-D, finite, non-decreasing, within `[t0, t1]`."""
    check_ndim("ts", ts, 1)
    if np.shape(ts)[0] == 0:
        raise ValueError("`ts` must hold at least one save time, got an empty array.")
    if not any(isinstance(x, jax.core.Tracer) for x in [ts]):
        arr = np.asarray(ts)
        check_finite("ts", arr)
        if np.any(np.diff(arr) < 0):
            raise ValueError(f"`ts` must be non-decreasing, got {arr}.")
        if arr[0] < t0 or arr[-1] > t1:
            raise ValueError(
                f"`ts` must lie in [t0, t1] = [{t0}, {t1}], got values from {arr[0]} to {arr[-1]}."
            )
        return ts
    ts = error_if_nonfinite("ts", ts)
    bad = jnp.any(jnp.diff(ts) < 0) | (ts[0] < t0) | (ts[-1] > t1)
    return eqx.error_if(ts, bad, f"`ts` must be non-decreasing and lie in [t0, t1] = [{t0}, {t1}].")


def _apply_rows(fn: Callable, y: Array, dim: int) -> Array:
    """Applies a per-example map `fn: (dim,) -> (k,)` over all leading axes of `y`."""
    lead = y.shape[:-1]
    flat = y.reshape((-1, dim))
    out = jax.vmap(fn)(flat)
    return out.reshape(lead + out.shape[-1:])


class _RowwiseField(eqx.Module):
    """`f(t, y, args)` applied to every row of a batched state `(*batch, dim)`."""

    vector_field: Callable
    dim: int = eqx.field(static=True)

    def __call__(self, t, y, args):
        return _apply_rows(lambda r: self.vector_field(t, r, args), y, self.dim)


class MLPVectorField(eqx.Module):
    r"""The time-dependent MLP vector field of the TayNODE/ERNODE MNIST experiments,
    $f(t, y) = \tanh(W_2 [\tanh(W_1 [y; t] + b_1); t] + b_2)$, with an optional
    input map (e.g. `y ** 3` for the spiral).

    **Arguments:**

    - `dim`: state size.
    - `width`: hidden width.
    - `key`: PRNG key for the initialisation.
    - `cube_input`: feed `y ** 3` instead of `y` (the spiral ODE's architecture).
    - `final_activation`: apply `tanh` on the output (default) or not.
    """

    layer1: eqx.nn.Linear
    layer2: eqx.nn.Linear
    dim: int = eqx.field(static=True)
    cube_input: bool = eqx.field(static=True)
    final_activation: bool = eqx.field(static=True)

    def __init__(
        self,
        dim: int,
        width: int,
        *,
        key: PRNGKeyArray,
        cube_input: bool = False,
        final_activation: bool = True,
    ):
        if dim <= 0 or width <= 0:
            raise ValueError(f"`dim` and `width` must be positive, got {dim}, {width}.")
        k1, k2 = jr.split(key)
        self.layer1 = eqx.nn.Linear(dim + 1, width, key=k1, dtype=jnp.float64)
        self.layer2 = eqx.nn.Linear(width + 1, dim, key=k2, dtype=jnp.float64)
        self.dim = dim
        self.cube_input = cube_input
        self.final_activation = final_activation

    def __call__(
        self, t: Float[Array, ""] | float, y: Float[Array, " dim"], args=None
    ) -> Float[Array, " dim"]:
        t = jnp.asarray(t, y.dtype)[None]
        x = y**3 if self.cube_input else y
        h = jnp.tanh(self.layer1(jnp.concatenate([x, t])))
        out = self.layer2(jnp.concatenate([h, t]))
        return jnp.tanh(out) if self.final_activation else out


class _AbstractRegularisedDE(eqx.Module):
    """A neural differential equation on states `(*batch, dim)`, solved over `[t0, t1]` by
    [`scimlx.nde.regularised_diffeqsolve`][] with the model's solver options."""

    dim: eqx.AbstractVar[int]
    solver: eqx.AbstractVar[dfx.AbstractSolver]
    stepsize_controller: eqx.AbstractVar[dfx.AbstractStepSizeController]
    adjoint: eqx.AbstractVar[dfx.AbstractAdjoint]
    t0: eqx.AbstractVar[float]
    t1: eqx.AbstractVar[float]
    dt0: eqx.AbstractVar[float | None]
    max_steps: eqx.AbstractVar[int]

    def _checked_y0(self, y0: Array) -> Array:
        """`y0` with last axis `dim`, checked for NaN/inf."""
        check_last_axis("y0", y0, self.dim, what="the model's `dim`")
        return error_if_nonfinite("y0", y0)

    def _solve(self, terms, y0, *, saveat, regularisers, throw, key) -> RegularisedSolution:
        """`terms` solved from `y0` with the model's solver, controller, adjoint, interval,
        first step and step budget."""
        return regularised_diffeqsolve(
            terms,
            self.solver,
            self.t0,
            self.t1,
            self.dt0,
            y0,
            regularisers=tuple(regularisers),
            stepsize_controller=self.stepsize_controller,
            saveat=saveat,
            adjoint=self.adjoint,
            max_steps=self.max_steps,
            throw=throw,
            key=key,
        )


class NeuralODE(_AbstractRegularisedDE):
    """A neural ODE `y' = f_θ(t, y)` solved with any diffrax solver, controller and
    adjoint, returning the solution with regularisation statistics.

    The state may carry leading batch axes (`y0` of shape `(*batch, dim)`): the vector
    field acts on one example and is mapped over them, and the batch is integrated as
    one state with shared adaptive steps, as in the reference implementations (so the
    prediction NFE is that of the batch).

    **Arguments:**

    - `vector_field`: an equinox module `f(t, y, args) -> dy/dt` on one example `(dim,)`.
    - `dim`: state size.
    - `solver`, `stepsize_controller`, `adjoint`: diffrax objects (defaults: Tsit5, PID
        with `rtol = atol = 1.4e-8`, `RecursiveCheckpointAdjoint`).
    - `t0`, `t1`, `dt0`, `max_steps`: integration interval, first step, step budget.
    """

    vector_field: eqx.Module
    dim: int = eqx.field(static=True)
    solver: dfx.AbstractSolver = eqx.field(static=True)
    stepsize_controller: dfx.AbstractStepSizeController = eqx.field(static=True)
    adjoint: dfx.AbstractAdjoint = eqx.field(static=True)
    t0: float = eqx.field(static=True)
    t1: float = eqx.field(static=True)
    dt0: float | None = eqx.field(static=True)
    max_steps: int = eqx.field(static=True)

    def __init__(
        self,
        vector_field: eqx.Module,
        dim: int,
        *,
        solver: dfx.AbstractSolver = dfx.Tsit5(),
        stepsize_controller: dfx.AbstractStepSizeController | None = None,
        adjoint: dfx.AbstractAdjoint = dfx.RecursiveCheckpointAdjoint(),
        t0: float = 0.0,
        t1: float = 1.0,
        dt0: float | None = 0.01,
        max_steps: int = 4096,
    ):
        _check_solve_options(dim, t0, t1, dt0, max_steps, stepsize_controller)
        self.vector_field = vector_field
        self.dim = dim
        self.solver = solver
        self.stepsize_controller = (
            _default_controller() if stepsize_controller is None else stepsize_controller
        )
        self.adjoint = adjoint
        self.t0 = float(t0)
        self.t1 = float(t1)
        self.dt0 = dt0
        self.max_steps = max_steps

    def _terms(self) -> dfx.ODETerm:
        # A Module, not a closure: its arrays stay traced arguments of the jitted solve and
        # its static part compares equal from call to call, so a new `y0` or new parameter
        # values reuse the compiled solve (a fresh lambda would recompile every call).
        return dfx.ODETerm(_RowwiseField(self.vector_field, self.dim))

    def __call__(
        self,
        y0: Float[Array, "*batch dim"],
        *,
        ts: Float[Array, " times"] | None = None,
        regularisers: Sequence[AbstractRegulariser] = (),
        key: PRNGKeyArray | None = None,
        throw: bool = True,
    ) -> RegularisedSolution:
        """Solves from `y0`.

        **Arguments:**

        - `y0`: initial state `(*batch, dim)`.
        - `ts`: save times (default: only `t1`).
        - `regularisers`: see [`scimlx.nde.regularised_diffeqsolve`][].
        - `key`: PRNG key (local, STEER, RNODE regularisers).
        - `throw`: raise on solver failure (use `False` under `vmap`, read `.result`).

        **Returns:**

        A [`scimlx.nde.RegularisedSolution`][]; `.ys` has shape `(times, *batch, dim)`.

        **Raises:**

        `ValueError` for a `y0` or `ts` of the wrong shape, save times outside
        `[t0, t1]` or not increasing, or a vector field that does not map `(dim,)`
        to `(dim,)`; NaN/inf in `y0` or `ts` raise too (a `ValueError` for concrete
        arrays, an `equinox.EquinoxRuntimeError` when traced, e.g. under `jit`).
        """
        y0 = self._checked_y0(y0)
        if ts is not None:
            ts = _checked_times(ts, self.t0, self.t1)
        vf = self.vector_field
        _check_vector_field(
            "vector_field",
            lambda t, r: vf(t, r, None),
            jnp.asarray(self.t0, y0.dtype),
            jax.ShapeDtypeStruct((self.dim,), y0.dtype),
            self.dim,
        )
        saveat = dfx.SaveAt(t1=True) if ts is None else dfx.SaveAt(ts=ts)
        return self._solve(
            self._terms(), y0, saveat=saveat, regularisers=regularisers, throw=throw, key=key
        )


class NeuralSDE(_AbstractRegularisedDE):
    r"""A neural SDE $dy = f_θ(t, y)\,dt + \mathrm{diag}(g_θ(y))\,\circ dW$ (diagonal
    noise) solved with an adaptive SDE solver (default SPaRK + PID) on a
    `diffrax.VirtualBrownianTree` with space-time Lévy area.

    As for [`scimlx.nde.NeuralODE`][], the state may carry leading batch axes, which
    share one adaptive step sequence.

    **Arguments:**

    - `drift`: module `f(t, y, args)` on one example `(dim,)`.
    - `diffusion`: module `g(y)` (or `eqx.nn.Linear(dim, dim)`) giving the diagonal.
    - `dim`: state size.
    - `solver`, `stepsize_controller`: diffrax objects (default SPaRK, PID tol 1e-2).
    - `t0`, `t1`, `dt0`, `max_steps`, `brownian_tol`.
    """

    drift: eqx.Module
    diffusion: eqx.Module
    dim: int = eqx.field(static=True)
    solver: dfx.AbstractSolver = eqx.field(static=True)
    stepsize_controller: dfx.AbstractStepSizeController = eqx.field(static=True)
    adjoint: dfx.AbstractAdjoint = eqx.field(static=True)
    t0: float = eqx.field(static=True)
    t1: float = eqx.field(static=True)
    dt0: float | None = eqx.field(static=True)
    max_steps: int = eqx.field(static=True)
    brownian_tol: float = eqx.field(static=True)

    def __init__(
        self,
        drift: eqx.Module,
        diffusion: eqx.Module,
        dim: int,
        *,
        solver: dfx.AbstractSolver = dfx.SPaRK(),
        stepsize_controller: dfx.AbstractStepSizeController | None = None,
        adjoint: dfx.AbstractAdjoint = dfx.RecursiveCheckpointAdjoint(),
        t0: float = 0.0,
        t1: float = 1.0,
        dt0: float | None = 0.05,
        max_steps: int = 4096,
        brownian_tol: float = 1e-3,
    ):
        _check_solve_options(
            dim, t0, t1, dt0, max_steps, stepsize_controller, {"brownian_tol": brownian_tol}
        )
        self.drift = drift
        self.diffusion = diffusion
        self.dim = dim
        self.solver = solver
        self.stepsize_controller = (
            dfx.PIDController(rtol=1e-2, atol=1e-2)
            if stepsize_controller is None
            else stepsize_controller
        )
        self.adjoint = adjoint
        self.t0 = float(t0)
        self.t1 = float(t1)
        self.dt0 = dt0
        self.max_steps = max_steps
        self.brownian_tol = brownian_tol

    def __call__(
        self,
        y0: Float[Array, "*batch dim"],
        *,
        key: PRNGKeyArray,
        regularisers: Sequence[AbstractRegulariser] = (),
        reg_key: PRNGKeyArray | None = None,
        throw: bool = True,
    ) -> RegularisedSolution:
        """Solves one sample path from `y0` (final state only).

        **Arguments:**

        - `y0`: initial state `(*batch, dim)`.
        - `key`: PRNG key of the Brownian path.
        - `regularisers`: see [`scimlx.nde.regularised_diffeqsolve`][].
        - `reg_key`: PRNG key for the regularisers (default: derived from `key`).
        - `throw`: raise on solver failure.

        **Returns:**

        A [`scimlx.nde.RegularisedSolution`][]; `.ys` has shape `(1, *batch, dim)`.
        """
        y0 = self._checked_y0(y0)
        row = jax.ShapeDtypeStruct((self.dim,), y0.dtype)
        t_probe = jnp.asarray(self.t0, y0.dtype)
        drift_fn, diffusion_fn = self.drift, self.diffusion
        _check_vector_field("drift", lambda t, r: drift_fn(t, r, None), t_probe, row, self.dim)
        _check_vector_field("diffusion", lambda t, r: diffusion_fn(r), t_probe, row, self.dim)
        shape = y0.shape
        n = y0.size
        dim = self.dim
        drift, diffusion = self.drift, self.diffusion
        bm_key, rk = jr.split(key)
        if reg_key is None:
            reg_key = rk
        # STEER integrates past t1: the Brownian path must cover the random end time.
        t_end = max([r.max_end_time(self.t1) for r in regularisers] + [self.t1])
        bm = dfx.VirtualBrownianTree(
            self.t0,
            t_end,
            tol=self.brownian_tol,
            shape=jax.ShapeDtypeStruct((n,), y0.dtype),
            key=bm_key,
            levy_area=dfx.SpaceTimeLevyArea,
        )

        def f(t, y, args):
            return _apply_rows(lambda r: drift(t, r, args), y.reshape(shape), dim).ravel()

        def g(t, y, args):
            diag = _apply_rows(lambda r: diffusion(r), y.reshape(shape), dim).ravel()
            return lx.DiagonalLinearOperator(diag)

        terms = dfx.MultiTerm(dfx.ODETerm(f), dfx.ControlTerm(g, bm))
        saveat = dfx.SaveAt(t1=True)
        sol = self._solve(
            terms, y0.ravel(), saveat=saveat, regularisers=regularisers, throw=throw, key=reg_key
        )
        ys = sol.solution.ys.reshape((-1,) + shape)
        return eqx.tree_at(lambda s: s.solution.ys, sol, ys)


def _encoder_node_decoder(
    in_size: int, out_size: int, dim: int, width: int, key: PRNGKeyArray, **node_kwargs
) -> tuple[eqx.nn.Linear, NeuralODE, eqx.nn.Linear]:
    """Linear `in_size -> dim`, a neural ODE with an MLP field of `width`, linear
    `dim -> out_size` (float64), from one key split in three."""
    k1, k2, k3 = jr.split(key, 3)
    encoder = eqx.nn.Linear(in_size, dim, key=k1, dtype=jnp.float64)
    node = NeuralODE(MLPVectorField(dim, width, key=k2), dim, **node_kwargs)
    decoder = eqx.nn.Linear(dim, out_size, key=k3, dtype=jnp.float64)
    return encoder, node, decoder


class NeuralODEClassifier(eqx.Module):
    """Linear encoder -> neural ODE -> linear readout (the ERNODE MNIST architecture).

    **Arguments:**

    - `in_size`, `num_classes`: input features and classes.
    - `dim`, `width`: ODE state size and vector-field width.
    - `key`: PRNG key.
    - `solver`, `stepsize_controller`, `adjoint`, `t1`, `dt0`, `max_steps`: passed to
        [`scimlx.nde.NeuralODE`][].
    """

    encoder: eqx.nn.Linear
    node: NeuralODE
    decoder: eqx.nn.Linear

    def __init__(
        self,
        in_size: int,
        num_classes: int,
        dim: int = 32,
        width: int = 32,
        *,
        key: PRNGKeyArray,
        solver: dfx.AbstractSolver = dfx.Tsit5(),
        stepsize_controller: dfx.AbstractStepSizeController | None = None,
        adjoint: dfx.AbstractAdjoint = dfx.RecursiveCheckpointAdjoint(),
        t1: float = 1.0,
        dt0: float | None = 0.01,
        max_steps: int = 4096,
    ):
        self.encoder, self.node, self.decoder = _encoder_node_decoder(
            in_size,
            num_classes,
            dim,
            width,
            key,
            solver=solver,
            stepsize_controller=stepsize_controller,
            adjoint=adjoint,
            t1=t1,
            dt0=dt0,
            max_steps=max_steps,
        )

    def __call__(
        self,
        x: Float[Array, "*batch features"],
        *,
        regularisers: Sequence[AbstractRegulariser] = (),
        key: PRNGKeyArray | None = None,
    ) -> tuple[Float[Array, "*batch classes"], RegularisedSolution]:
        """Logits for `x` and the regularised solution of the batch solve.

        **Arguments:**

        - `x`: inputs `(*batch, features)`, solved as one state.
        - `regularisers`, `key`: see [`scimlx.nde.regularised_diffeqsolve`][].

        **Returns:**

        `(logits, solution)`.
        """
        z0 = _apply_rows(self.encoder, x, self.encoder.in_features)
        sol = self.node(z0, regularisers=regularisers, key=key)
        z1 = sol.ys[-1]
        return _apply_rows(self.decoder, z1, self.node.dim), sol


class DiagonalLinearDiffusion(eqx.Module):
    """Diffusion `g(y) = W y + b` used as the diagonal of the noise matrix."""

    linear: eqx.nn.Linear

    def __init__(self, dim: int, *, key: PRNGKeyArray, scale: float = 0.1):
        lin = eqx.nn.Linear(dim, dim, key=key, dtype=jnp.float64)
        self.linear = eqx.tree_at(
            lambda m: (m.weight, m.bias), lin, (lin.weight * scale, lin.bias * scale)
        )

    def __call__(self, y: Float[Array, " dim"]) -> Float[Array, " dim"]:
        return self.linear(y)


class NeuralSDEClassifier(eqx.Module):
    """Linear encoder -> neural SDE -> linear readout; prediction averages the logits
    of several sample paths (the ERNSDE MNIST architecture).

    **Arguments:**

    - `in_size`, `num_classes`, `dim`, `width`, `key`.
    - `solver`, `stepsize_controller`, `t1`, `dt0`, `max_steps`: passed to
        [`scimlx.nde.NeuralSDE`][].
    """

    encoder: eqx.nn.Linear
    sde: NeuralSDE
    decoder: eqx.nn.Linear

    def __init__(
        self,
        in_size: int,
        num_classes: int,
        dim: int = 16,
        width: int = 32,
        *,
        key: PRNGKeyArray,
        solver: dfx.AbstractSolver = dfx.SPaRK(),
        stepsize_controller: dfx.AbstractStepSizeController | None = None,
        t1: float = 1.0,
        dt0: float | None = 0.05,
        max_steps: int = 4096,
    ):
        k1, k2, k3, k4 = jr.split(key, 4)
        self.encoder = eqx.nn.Linear(in_size, dim, key=k1, dtype=jnp.float64)
        self.sde = NeuralSDE(
            MLPVectorField(dim, width, key=k2, final_activation=False),
            DiagonalLinearDiffusion(dim, key=k3),
            dim,
            solver=solver,
            stepsize_controller=stepsize_controller,
            t1=t1,
            dt0=dt0,
            max_steps=max_steps,
        )
        self.decoder = eqx.nn.Linear(dim, num_classes, key=k4, dtype=jnp.float64)

    def __call__(
        self,
        x: Float[Array, "*batch features"],
        *,
        key: PRNGKeyArray,
        regularisers: Sequence[AbstractRegulariser] = (),
    ) -> tuple[Float[Array, "*batch classes"], RegularisedSolution]:
        """Logits of one sample path and its regularised solution.

        **Arguments:**

        - `x`: inputs `(*batch, features)`, solved as one state.
        - `key`: PRNG key of the path (and regularisers).
        - `regularisers`: see [`scimlx.nde.regularised_diffeqsolve`][].

        **Returns:**

        `(logits, solution)`; average the logits of several keys for prediction.
        """
        z0 = _apply_rows(self.encoder, x, self.encoder.in_features)
        sol = self.sde(z0, key=key, regularisers=regularisers)
        return _apply_rows(self.decoder, sol.ys[-1], self.sde.dim), sol


class LatentTrajectoryModel(eqx.Module):
    """Latent-trajectory head: `x -> z0 = E x`, `z(ts)` from a neural ODE, outputs
    `D z(ts)` (for sequence/trajectory fitting).

    **Arguments:**

    - `in_size`, `out_size`, `dim`, `width`, `key`; `solver`, `stepsize_controller`,
        `t1`, `dt0` as in [`scimlx.nde.NeuralODE`][].
    """

    encoder: eqx.nn.Linear
    node: NeuralODE
    decoder: eqx.nn.Linear

    def __init__(
        self,
        in_size: int,
        out_size: int,
        dim: int = 16,
        width: int = 32,
        *,
        key: PRNGKeyArray,
        solver: dfx.AbstractSolver = dfx.Tsit5(),
        stepsize_controller: dfx.AbstractStepSizeController | None = None,
        t1: float = 1.0,
        dt0: float | None = 0.01,
    ):
        self.encoder, self.node, self.decoder = _encoder_node_decoder(
            in_size,
            out_size,
            dim,
            width,
            key,
            solver=solver,
            stepsize_controller=stepsize_controller,
            t1=t1,
            dt0=dt0,
        )

    def __call__(
        self,
        x: Float[Array, "*batch features"],
        ts: Float[Array, " times"],
        *,
        regularisers: Sequence[AbstractRegulariser] = (),
        key: PRNGKeyArray | None = None,
    ) -> tuple[Float[Array, "times *batch out"], RegularisedSolution]:
        """Outputs along the latent trajectory at `ts` and the solution.

        **Arguments:**

        - `x`: inputs `(*batch, features)`.
        - `ts`: increasing save times in `[t0, t1]`.
        - `regularisers`, `key`: see [`scimlx.nde.regularised_diffeqsolve`][].

        **Returns:**

        `(outputs, solution)`.
        """
        z0 = _apply_rows(self.encoder, x, self.encoder.in_features)
        sol = self.node(z0, ts=ts, regularisers=regularisers, key=key)
        return _apply_rows(self.decoder, sol.ys, self.node.dim), sol
