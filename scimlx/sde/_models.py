"""Stable neural SDEs (LSDE, LNSDE, GSDE) and the baselines they are compared with.

Oh, Lim, Kim, "Stable Neural Stochastic Differential Equations in Analyzing Irregular Time
Series Data", ICLR 2024. Each model acts on ONE series (a `ControlPath` and its time grid);
batch with `jax.vmap`.
"""

import abc
from collections.abc import Callable
from typing import Any, Literal

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import lineax as lx
from jaxtyping import Array, ArrayLike, Float, Int, PRNGKeyArray, Real

from .._core._checks import (
    check_controller_tolerances,
    check_int,
    check_positive,
    error_if_nonfinite,
)
from .._core._results import as_result, RESULTS
from .._core._solution import Solution, solution
from ._brownian import GridBrownianPath
from ._path import ControlPath
from ._stepping import ObservationGrid


Readout = Literal["official", "batchnorm", "mlp", "linear"]
READOUTS = ("official", "batchnorm", "mlp", "linear")


def _time_features(t, dtype):
    t = jnp.asarray(t, dtype)
    return jnp.stack([jnp.sin(t), jnp.cos(t)])


def _xavier_linear(in_size, out_size, *, key, bias=0.01):
    """A `Linear` with xavier-uniform weights and a constant bias (the reference code's
    classifier initialisation)."""
    lin = eqx.nn.Linear(in_size, out_size, key=key)
    bound = (6.0 / (in_size + out_size)) ** 0.5
    w = jr.uniform(key, lin.weight.shape, lin.weight.dtype, -bound, bound)
    b = jnp.full(lin.bias.shape, bias, lin.weight.dtype)  # pyright: ignore
    return eqx.tree_at(lambda m: (m.weight, m.bias), lin, (w, b))


class _Head(eqx.Module):
    """Readout of a latent state.

    - `"official"` (default; the reference code's UEA classifier, `torch_ists`
      `NeuralSDE` then `ists_classifier`): `Tanh -> Linear -> ReLU -> Linear` (the latent
      model's output map) followed by the batch-norm head
      `Linear -> BatchNorm -> ReLU -> Dropout(0.1) -> Linear`, whose two `Linear`s start
      from xavier-uniform weights and biases 0.01 as in the reference.
    - `"batchnorm"`: the batch-norm head alone, on the latent state, with equinox's
      default initialisation.
    - `"mlp"`: `Linear -> LayerNorm -> ReLU -> Linear` (per example, no statistics).
    - `"linear"`: one `Linear`.

    A module acts on one example, so the batch-norm statistics are used only by
    `batch_call` (training); `__call__` (inference) normalises with the stored
    `running_mean` / `running_var`, which [`scimlx.sde.calibrate_readout`][] sets from a
    data set (population statistics of the current weights, "precise BN") -- training with
    [`scimlx.sde.train_classifier`][] does this before every validation and at the end.
    """

    pre: tuple[eqx.nn.Linear, eqx.nn.Linear] | None
    layers: tuple
    bn_scale: Float[Array, " hidden"] | None
    bn_shift: Float[Array, " hidden"] | None
    running_mean: Float[Array, " hidden"] | None
    running_var: Float[Array, " hidden"] | None
    kind: str = eqx.field(static=True)
    dropout: float = eqx.field(static=True)

    def __init__(self, hidden: int, out: int, kind: str, *, key, dropout: float = 0.1):
        k1, k2 = jr.split(key)
        self.pre = None
        self.bn_scale = self.bn_shift = self.running_mean = self.running_var = None
        if kind in ("official", "batchnorm"):
            if kind == "official":
                k3, k4 = jr.split(jr.fold_in(key, 1))
                self.pre = (
                    eqx.nn.Linear(hidden, hidden, key=k3),
                    eqx.nn.Linear(hidden, hidden, key=k4),
                )
                self.layers = (
                    _xavier_linear(hidden, hidden, key=k1),
                    _xavier_linear(hidden, out, key=k2),
                )
            else:
                self.layers = (
                    eqx.nn.Linear(hidden, hidden, key=k1),
                    eqx.nn.Linear(hidden, out, key=k2),
                )
            dtype = self.layers[0].weight.dtype
            self.bn_scale = jnp.ones((hidden,), dtype)
            self.bn_shift = jnp.zeros((hidden,), dtype)
            self.running_mean = jnp.zeros((hidden,), dtype)
            self.running_var = jnp.ones((hidden,), dtype)
        elif kind == "mlp":
            self.layers = (
                eqx.nn.Linear(hidden, hidden, key=k1),
                eqx.nn.LayerNorm(hidden),
                eqx.nn.Linear(hidden, out, key=k2),
            )
        elif kind == "linear":
            self.layers = (eqx.nn.Linear(hidden, out, key=k1),)
        else:
            raise ValueError(
                f"`readout` must be one of {', '.join(map(repr, READOUTS))}, got {kind!r}."
            )
        self.kind = kind
        self.dropout = dropout

    @property
    def uses_statistics(self) -> bool:
        """Whether the readout has batch-norm statistics (`"official"`, `"batchnorm"`)."""
        return self.running_mean is not None

    def features(self, z):
        """The output map before the batch-norm head (`"official"`: `Tanh -> Linear ->
        ReLU -> Linear`; the identity otherwise)."""
        if self.pre is None:
            return z
        a, b = self.pre
        return b(jax.nn.relu(a(jnp.tanh(z))))

    def _bn(self, h, mean, var):
        assert self.bn_scale is not None and self.bn_shift is not None
        return (h - mean) * jax.lax.rsqrt(var + 1e-5) * self.bn_scale + self.bn_shift

    def __call__(self, z):
        """Inference on one example (stored statistics, no dropout)."""
        if self.uses_statistics:
            lin1, lin2 = self.layers
            mean = jax.lax.stop_gradient(self.running_mean)
            var = jax.lax.stop_gradient(self.running_var)
            return lin2(jax.nn.relu(self._bn(lin1(self.features(z)), mean, var)))
        if self.kind == "mlp":
            lin1, norm, lin2 = self.layers
            return lin2(jax.nn.relu(norm(lin1(z))))
        return self.layers[0](z)

    def batch_call(self, zs, *, key=None):
        """Training-mode readout of a batch `(B, hidden)`: batch statistics and dropout (when
        `key` is given) for the batch-norm readouts; the per-example readout otherwise."""
        if not self.uses_statistics:
            return jax.vmap(self)(zs)
        lin1, lin2 = self.layers
        h = jax.vmap(lambda z: lin1(self.features(z)))(zs)
        mean, var = jnp.mean(h, 0), jnp.var(h, 0)
        h = jax.nn.relu(jax.vmap(lambda x: self._bn(x, mean, var))(h))
        if key is not None and self.dropout > 0:
            keep = jr.bernoulli(key, 1.0 - self.dropout, h.shape)
            h = jnp.where(keep, h / (1.0 - self.dropout), jnp.zeros_like(h))
        return jax.vmap(lin2)(h)

    def with_statistics(self, zs):
        """The head with `running_mean` / `running_var` set from final states `(N, hidden)`
        (unbiased variance, as torch's running estimate); unchanged for other kinds."""
        if not self.uses_statistics:
            return self
        h = jax.vmap(lambda z: self.layers[0](self.features(z)))(zs)
        ddof = 1 if h.shape[0] > 1 else 0
        mean, var = jnp.mean(h, 0), jnp.var(h, 0, ddof=ddof)
        return eqx.tree_at(lambda m: (m.running_mean, m.running_var), self, (mean, var))


class _MLP(eqx.Module):
    """ReLU(x) -> [Linear -> ReLU] * (layers - 1) -> Linear (the reference code's drift body)."""

    hidden_layers: tuple[eqx.nn.Linear, ...]
    out: eqx.nn.Linear

    def __init__(self, width: int, out: int, num_layers: int, *, key):
        keys = jr.split(key, num_layers)
        self.hidden_layers = tuple(
            eqx.nn.Linear(width, width, key=k) for k in keys[: num_layers - 1]
        )
        self.out = eqx.nn.Linear(width, out, key=keys[-1])

    def __call__(self, x):
        x = jax.nn.relu(x)
        for layer in self.hidden_layers:
            x = jax.nn.relu(layer(x))
        return self.out(x)


class _TimeNoise(eqx.Module):
    """s(t) = ReLU(W2 ReLU(W1 [sin t, cos t])), the diffusion network of time alone."""

    l1: eqx.nn.Linear
    l2: eqx.nn.Linear

    def __init__(self, hidden: int, *, key):
        k1, k2 = jr.split(key)
        self.l1 = eqx.nn.Linear(2, hidden, key=k1)
        self.l2 = eqx.nn.Linear(hidden, hidden, key=k2)

    def __call__(self, t, dtype):
        return jax.nn.relu(self.l2(jax.nn.relu(self.l1(_time_features(t, dtype)))))


class AbstractLatentModel(eqx.Module):
    """A latent differential equation driven by a controlled path X, with encoder and readout.

    Subclasses define the initial condition `z0 = initial(path, ts)` and the vector fields.
    Shared (concrete, never overridden) methods solve it on a series' time grid and apply the
    readout for classification, interpolation or forecasting.
    """

    hidden: eqx.AbstractVar[int]
    readout: eqx.AbstractVar[_Head]
    is_sde: eqx.AbstractClassVar[bool]

    @abc.abstractmethod
    def initial(self, path: ControlPath, ts: Real[Array, " n"]) -> Float[Array, " hidden"]:
        """The initial latent state z(t_0)."""

    @abc.abstractmethod
    def terms(self, path: ControlPath, brownian) -> diffrax.AbstractTerm:
        """The diffrax terms of the latent equation (drift and, for SDEs, diffusion)."""

    def solve(
        self,
        path: ControlPath,
        ts: Real[ArrayLike, " n"],
        *,
        key: PRNGKeyArray | None = None,
        solver: diffrax.AbstractSolver | None = None,
        stepsize_controller: diffrax.AbstractStepSizeController
        | ObservationGrid = ObservationGrid(),
        adjoint: diffrax.AbstractAdjoint | None = None,
        brownian_tol: float | None = None,
        max_steps: int | None = None,
        throw: bool = True,
    ) -> Solution:
        """Latent states z(t) at every time of `ts`.

        **Arguments:**

        - `path`: the series' controlled path (from [`scimlx.sde.make_path`][]).
        - `ts`: times to save at, strictly increasing, shape `(n,)`; usually the
          observation grid of the series (padded grids included).
        - `key`: PRNG key for the Brownian motion (SDEs only).
        - `solver`: a diffrax solver. Default: `diffrax.Euler()` (Euler-Maruyama for SDEs)
          with a fixed-step controller; with an adaptive one
          (`diffrax.AbstractAdaptiveStepSizeController`, e.g. `diffrax.PIDController`),
          `diffrax.Heun()` for SDEs and `diffrax.Tsit5()` for ODEs/CDEs (CDEs then use
          `dX/dt`). Heun converges to the Stratonovich solution, so the adaptive default
          solves the Stratonovich form of the model's Ito equation (drift less
          `g dg/dz / 2`, diagonal noise): every default approximates the same Ito SDE. A
          `solver` you pass gets the Ito equation as it is (e.g. `diffrax.ItoMilstein()`).
        - `stepsize_controller`: [`scimlx.sde.ObservationGrid`][] (default: one step per
          interval of `ts` by `jax.lax.scan`, the paper's scheme and the fastest) or any
          diffrax controller, solved by `diffrax.diffeqsolve` and saved at `ts`: e.g.
          `diffrax.PIDController(rtol=1e-3, atol=1e-5)` (first step the mean interval of
          `ts`), `diffrax.StepTo(grid)`, `diffrax.ConstantStepSize()` (step the mean
          interval of `ts`).
        - `adjoint`: a diffrax adjoint for `diffrax.diffeqsolve` (default
          `diffrax.RecursiveCheckpointAdjoint()`; on the observation grid, storing every
          step). Not with `ObservationGrid()` (the scan is differentiated directly).
        - `brownian_tol`: tolerance of the `diffrax.VirtualBrownianTree` that drives SDEs
          when the steps are not fixed in advance (default: a thousandth of the span of
          `ts`). With `ObservationGrid` or `diffrax.StepTo`, the Brownian motion is a
          [`scimlx.sde.GridBrownianPath`][] on the steps instead, and `brownian_tol` is
          refused.
        - `max_steps`: step cap of `diffrax.diffeqsolve` (default 4096; on the observation
          grid, `n - 1`). Not with `ObservationGrid()` (the scan takes `n - 1` steps).
        - `throw`: raise when the solve fails (also under `jit`). Under `jax.vmap` pass
          `False` and read `sol.result` per series.

        **Returns:**

        A [`scimlx.Solution`][]: `value` holds the latent states, shape `(n, hidden)`.
        `result` is `successful`, `nonfinite` (the states hold NaN or inf) or, through
        `diffrax.diffeqsolve`, diffrax's failure (e.g. `max_steps_reached`) as a
        [`scimlx.RESULTS`][] item. `stats` holds `num_steps` (solver steps taken),
        `num_accepted_steps` and `num_rejected_steps` (on the observation grid: `n - 1`,
        `n - 1` and 0).
        """
        ts = jnp.asarray(ts)
        if ts.ndim != 1 or ts.shape[0] < 1:
            raise ValueError(f"`ts` must be a non-empty 1-D array of times, got {ts.shape}.")
        _check_solve_arguments(self, path, stepsize_controller, adjoint, brownian_tol, max_steps)
        ts = error_if_nonfinite("ts", ts)
        z0 = self.initial(path, ts)
        ts = ts.astype(z0.dtype)
        n = ts.shape[0]
        if n > 1 and self.is_sde and key is None:
            raise ValueError(f"{type(self).__name__} is an SDE: pass `key=`.")
        if n > 1 and not (
            isinstance(stepsize_controller, ObservationGrid) and stepsize_controller.scan
        ):
            sol = self._diffeqsolve(
                path, ts, z0, key, solver, stepsize_controller, adjoint, brownian_tol, max_steps,
                throw,
            )  # fmt: skip
            stats = {name: sol.stats[name] for name in _STATS}
            return _solution(sol.ys, as_result(sol.result), stats, throw=throw)
        if n == 1:
            zs = z0[None]
        else:
            brownian = self._grid_brownian(ts, key, z0.dtype)
            slv = diffrax.Euler() if solver is None else solver
            zs = _scan_solve(self.terms(path, brownian), slv, ts, z0)
        steps = jnp.asarray(n - 1)
        stats = {"num_steps": steps, "num_accepted_steps": steps, "num_rejected_steps": 0 * steps}
        return _solution(zs, RESULTS.successful, stats, throw=throw)

    def _diffeqsolve(
        self, path, ts, z0, key, solver, controller, adjoint, brownian_tol, max_steps, throw
    ) -> diffrax.Solution:
        """`diffrax.diffeqsolve` of the latent equation, saved at `ts` (see `solve`)."""
        n = ts.shape[0]
        on_grid = isinstance(controller, ObservationGrid)
        controller = diffrax.StepTo(ts=ts) if on_grid else controller
        adaptive = isinstance(controller, diffrax.AbstractAdaptiveStepSizeController)
        step_to = isinstance(controller, diffrax.StepTo)
        if not self.is_sde:
            brownian = None
        elif step_to:
            brownian = self._grid_brownian(jnp.asarray(controller.ts), key, z0.dtype)  # pyright: ignore
        else:
            tol = brownian_tol if brownian_tol is not None else 1e-3 * (ts[-1] - ts[0])
            brownian = diffrax.VirtualBrownianTree(
                ts[0], ts[-1], tol=tol, shape=(self.hidden,), key=key
            )
        terms = self.terms(path, brownian)
        if adaptive and isinstance(terms, diffrax.ControlTerm):
            terms = terms.to_ode()
        if solver is None and adaptive:
            if self.is_sde:
                solver = diffrax.Heun()
                terms = _stratonovich_terms(terms, self.diffusion)
            else:
                solver = diffrax.Tsit5()
        if on_grid:
            saveat = diffrax.SaveAt(t0=True, steps=True)  # the steps are `ts`: no interpolation
            max_steps = n - 1 if max_steps is None else max_steps
            if adjoint is None:
                adjoint = diffrax.RecursiveCheckpointAdjoint(checkpoints=n - 1)
        else:
            saveat = diffrax.SaveAt(ts=ts)
        return diffrax.diffeqsolve(
            terms,
            diffrax.Euler() if solver is None else solver,
            ts[0],
            ts[-1],
            None if step_to else (ts[-1] - ts[0]) / (n - 1),
            z0,
            stepsize_controller=controller,
            saveat=saveat,
            max_steps=4096 if max_steps is None else max_steps,
            adjoint=diffrax.RecursiveCheckpointAdjoint() if adjoint is None else adjoint,
            throw=throw,
        )

    def _grid_brownian(self, grid, key, dtype) -> GridBrownianPath | None:
        """Brownian motion pre-sampled on the step grid (SDEs), `None` otherwise."""
        if not self.is_sde:
            return None
        return GridBrownianPath(grid, (self.hidden,), key=key, dtype=dtype)

    def classify(
        self,
        path: ControlPath,
        ts: Real[ArrayLike, " n"],
        length: Int[ArrayLike, ""] | int | None = None,
        *,
        key: PRNGKeyArray | None = None,
        **solve_options,
    ) -> Float[Array, " out"]:
        """Class logits from the latent state at the series' last valid time `ts[length-1]`
        (inference-mode readout)."""
        return self.readout(self.final_state(path, ts, length, key=key, **solve_options))

    def final_state(
        self,
        path: ControlPath,
        ts: Real[ArrayLike, " n"],
        length: Int[ArrayLike, ""] | int | None = None,
        *,
        key: PRNGKeyArray | None = None,
        **solve_options,
    ) -> Float[Array, " hidden"]:
        """The latent state at the series' last valid time `ts[length-1]` (before the readout)."""
        zs = self.solve(path, ts, key=key, **solve_options).value
        n = zs.shape[0] if length is None else length
        return zs[jnp.asarray(n) - 1]

    def interpolate(
        self,
        path: ControlPath,
        ts: Real[ArrayLike, " n"],
        *,
        key: PRNGKeyArray | None = None,
        **solve_options,
    ) -> Float[Array, "n out"]:
        """Readout at every time of `ts` (interpolation / reconstruction)."""
        zs = self.solve(path, ts, key=key, **solve_options).value
        return jax.vmap(self.readout)(zs)

    def forecast(
        self,
        path: ControlPath,
        ts: Real[ArrayLike, " n"],
        future: Real[ArrayLike, " m"],
        *,
        key: PRNGKeyArray | None = None,
        **solve_options,
    ) -> Float[Array, "m out"]:
        """Readout at `future` times after the observations (the path is held at its last
        value beyond its final observation, so the latent dynamics run on by themselves)."""
        ts = jnp.asarray(ts)
        future = jnp.asarray(future).astype(ts.dtype)
        allts = jnp.concatenate([ts, future])
        zs = self.solve(path, allts, key=key, **solve_options).value
        return jax.vmap(self.readout)(zs[ts.shape[0] :])

    def __call__(
        self,
        path: ControlPath,
        ts: Real[ArrayLike, " n"],
        length: Int[ArrayLike, ""] | int | None = None,
        *,
        key: PRNGKeyArray | None = None,
        **solve_options,
    ) -> Float[Array, " out"]:
        """Same as `classify`."""
        return self.classify(path, ts, length, key=key, **solve_options)


def _input_channels(model) -> int | None:
    """The channel count of the control path a model was built for."""
    gru = getattr(model, "gru", None)
    if isinstance(gru, eqx.nn.GRUCell):
        return gru.input_size
    encoder = getattr(model, "encoder", None)
    if isinstance(encoder, eqx.nn.Linear) and isinstance(encoder.in_features, int):
        return encoder.in_features
    return None


def _check_solve_arguments(model, path, controller, adjoint, brownian_tol, max_steps) -> None:
    if not isinstance(controller, (ObservationGrid, diffrax.AbstractStepSizeController)):
        raise TypeError(
            "`stepsize_controller` must be a scimlx.sde.ObservationGrid or a diffrax "
            f"step-size controller, got {type(controller).__name__}."
        )
    check_controller_tolerances(controller)
    scan = isinstance(controller, ObservationGrid) and controller.scan
    for name, value in (("adjoint", adjoint), ("max_steps", max_steps)):
        if scan and value is not None:
            raise ValueError(
                f"`{name}` applies to diffrax solves; the default "
                "`stepsize_controller=ObservationGrid()` steps by `jax.lax.scan` (use "
                "`ObservationGrid(scan=False)` for the same steps through diffrax)."
            )
    if brownian_tol is not None:
        if isinstance(controller, (ObservationGrid, diffrax.StepTo)):
            raise ValueError(
                "`brownian_tol` applies to the virtual Brownian tree of solves whose steps "
                "are not fixed in advance; with ObservationGrid or diffrax.StepTo the "
                "Brownian motion is sampled exactly on the steps."
            )
        check_positive("brownian_tol", brownian_tol)
    if max_steps is not None:
        check_int("max_steps", max_steps, minimum=1)
    want = _input_channels(model)
    channels = getattr(path, "channels", None)
    if want is not None and channels is not None and channels != want:
        raise ValueError(
            f"`path` has {channels} channels but {type(model).__name__} was built for "
            f"`in_channels`={want} (build the path from series with {want} channels, "
            "counting the time and observation-mask channels make_path adds)."
        )


_STATS = ("num_steps", "num_accepted_steps", "num_rejected_steps")


def _solution(zs, result, stats, *, throw):
    """The solve's `Solution`: a successful solve whose states hold NaN or inf is
    `nonfinite` (as a diverged SDE sample or exploding weights give)."""
    bad = jnp.invert(jnp.all(jnp.isfinite(zs))) & (result == RESULTS.successful)
    result = RESULTS.where(bad, RESULTS.nonfinite, result)
    return solution(zs, result, stats, throw=throw)


def _stratonovich_terms(terms, diffusion):
    """The Stratonovich form of an Ito SDE with diagonal noise `g(t, z)`: the drift less
    `g_i dg_i/dz_i / 2`, so that a Stratonovich solver (Heun, the adaptive default) converges
    to the Ito solution that Euler-Maruyama approximates on the grid."""
    drift, noise = terms.terms
    return diffrax.MultiTerm(diffrax.ODETerm(_StratonovichDrift(drift.vf, diffusion)), noise)


# The vector fields below are Modules, not closures: a fresh `lambda` per call would be a new
# static argument of diffrax's jitted solve, recompiling every eager `model.solve(...)`.


class _StratonovichDrift(eqx.Module):
    drift: Callable
    diffusion: Callable

    def __call__(self, t, z, args):
        g = self.diffusion(t, z)
        dg = jnp.diagonal(jax.jacfwd(lambda y: self.diffusion(t, y))(z))
        return self.drift(t, z, args) - 0.5 * g * dg


class _DiagonalNoise(eqx.Module):
    diffusion: Callable

    def __call__(self, t, z, args):
        return lx.DiagonalLinearOperator(self.diffusion(t, z))


class _PathDrift(eqx.Module):
    """`model.drift(t, z, X(t))`."""

    model: Any
    path: Any

    def __call__(self, t, z, args):
        return self.model.drift(t, z, self.path.evaluate(t))


@eqx.filter_jit
def _scan_solve(terms, solver, ts, z0):
    """`solver` stepped along the grid `ts` by `lax.scan` (jitted: an eager `lax.scan` would
    compile anew on every call)."""
    state = solver.init(terms, ts[0], ts[1], z0, None)

    def step(carry, tt):
        z, st = carry
        z1, _, _, st, _ = solver.step(terms, tt[0], tt[1], z, None, st, False)
        return (z1, st), z1

    _, zs = jax.lax.scan(step, (z0, state), (ts[:-1], ts[1:]))
    return jnp.concatenate([z0[None], zs], axis=0)


def _diag_term(fn, brownian):
    return diffrax.ControlTerm(_DiagonalNoise(fn), brownian)


class _StableDrift(eqx.Module):
    """gamma: X(t) -> A_x X; zeta = Emb([Lin_in(z or [tau(t), z]), A_x X]); tanh(MLP(zeta))."""

    x_embed: eqx.nn.Linear
    lin_in: eqx.nn.Linear
    emb: eqx.nn.Linear
    mlp: _MLP
    use_time: bool = eqx.field(static=True)

    def __init__(self, in_channels, hidden, num_layers, use_time, *, key):
        k1, k2, k3, k4 = jr.split(key, 4)
        self.x_embed = eqx.nn.Linear(in_channels, hidden, key=k1)
        self.lin_in = eqx.nn.Linear(hidden + (2 if use_time else 0), hidden, key=k2)
        self.emb = eqx.nn.Linear(2 * hidden, hidden, key=k3)
        self.mlp = _MLP(hidden, hidden, num_layers, key=k4)
        self.use_time = use_time

    def __call__(self, t, z, x):
        zin = jnp.concatenate([_time_features(t, z.dtype), z]) if self.use_time else z
        zeta = self.emb(jnp.concatenate([self.lin_in(zin), self.x_embed(x)]))
        return self.mlp(zeta)  # pre-activation u; the caller applies the bound


def _check_sizes(in_channels, hidden, out_size, num_layers):
    for name, v in (("in_channels", in_channels), ("hidden", hidden), ("out_size", out_size)):
        if not isinstance(v, int) or v < 1:
            raise ValueError(f"`{name}` must be a positive int, got {v!r}.")
    if not isinstance(num_layers, int) or num_layers < 1:
        raise ValueError(f"`num_layers` must be a positive int, got {num_layers!r}.")


def _stable_parts(in_channels, hidden, out_size, num_layers, readout, theta, use_time, *, key):
    """Encoder, stable drift network, time-only noise network, `theta` and readout of the
    stable SDEs (LSDE, LNSDE, GSDE), from one key split in four."""
    k1, k2, k3, k4 = jr.split(key, 4)
    encoder = eqx.nn.Linear(in_channels, hidden, key=k1)
    drift_net = _StableDrift(in_channels, hidden, num_layers, use_time, key=k2)
    noise = _TimeNoise(hidden, key=k3)
    theta = jnp.asarray(theta, dtype=encoder.weight.dtype)
    head = _Head(hidden, out_size, readout, key=k4)
    return encoder, drift_net, noise, theta, head


class _AbstractDiagonalSDE(AbstractLatentModel):
    """A latent SDE with diagonal noise, `dz = drift(t, z, X(t)) dt + diag(diffusion(t, z)) dW`,
    started from `z0 = encoder(X(t0))`."""

    encoder: eqx.AbstractVar[eqx.nn.Linear]
    is_sde = True

    @abc.abstractmethod
    def drift(self, t, z, x):
        """The drift at time `t`, state `z` and path value `x = X(t)`."""

    @abc.abstractmethod
    def diffusion(self, t, z):
        """The diagonal of the diffusion at time `t` and state `z`."""

    def initial(self, path, ts):
        return self.encoder(path.evaluate(ts[0]))

    def terms(self, path, brownian):
        drift = diffrax.ODETerm(_PathDrift(self, path))
        return diffrax.MultiTerm(drift, _diag_term(self.diffusion, brownian))


class _AbstractLinearNoiseSDE(_AbstractDiagonalSDE):
    """A stable SDE with linear noise `sigma(t) z` (LNSDE, GSDE)."""

    noise: eqx.AbstractVar[_TimeNoise]
    theta: eqx.AbstractVar[Float[Array, ""]]
    bounded: eqx.AbstractVar[bool]

    def diffusion(self, t, z):
        """sigma(t) * z (diagonal entries)."""
        g = jax.nn.sigmoid(self.theta) * jnp.nan_to_num(self.noise(t, z.dtype) * z)
        return jnp.tanh(g) if self.bounded else g


class LSDE(_AbstractDiagonalSDE):
    """Langevin-type neural SDE: `dz = gamma(z~) dt + sigma(t) dW` (additive noise).

    Drift `gamma = tanh(MLP(Emb([Lin_in(z), A_x X(t)])))` (no explicit time), diffusion
    `sigma(t) = tanh(sigmoid(theta) * ReLU(MLP(sin t, cos t)))` (diagonal), `z0 = Linear(X(t0))`.
    Bounded, Lipschitz drift and bounded time-only diffusion give a unique strong solution.

    **Arguments:**

    - `in_channels`: channels of the control path X (see [`scimlx.sde.make_path`][]).
    - `hidden`: latent size (also the width of every layer).
    - `out_size`: readout size (classes, or output channels).
    - `num_layers`: layers of the drift MLP (>= 1).
    - `readout`: `"official"` (default; the reference code's UEA classifier:
      Tanh-Linear-ReLU-Linear, then Linear-BatchNorm-ReLU-Dropout(0.1)-Linear with
      xavier-uniform weights and biases 0.01, see [`scimlx.sde.calibrate_readout`][]),
      `"batchnorm"` (the batch-norm head alone, default initialisation),
      `"mlp"` (Linear-LayerNorm-ReLU-Linear) or `"linear"`.
    - `theta`: initial value of the learnable diffusion scale `theta`.
    - `key`: PRNG key for the initialisation.
    """

    encoder: eqx.nn.Linear
    drift_net: _StableDrift
    noise: _TimeNoise
    theta: Float[Array, ""]
    readout: _Head
    hidden: int = eqx.field(static=True)

    def __init__(
        self,
        in_channels: int,
        hidden: int,
        out_size: int,
        num_layers: int = 2,
        readout: str = "official",
        theta: float = 1.0,
        *,
        key: PRNGKeyArray,
    ):
        _check_sizes(in_channels, hidden, out_size, num_layers)
        self.encoder, self.drift_net, self.noise, self.theta, self.readout = _stable_parts(
            in_channels, hidden, out_size, num_layers, readout, theta, False, key=key
        )
        self.hidden = hidden

    def drift(self, t, z, x):
        """gamma(z~): bounded by tanh."""
        return jnp.tanh(self.drift_net(t, z, x))

    def diffusion(self, t, z):
        """sigma(t) (diagonal entries); independent of z."""
        s = jnp.nan_to_num(self.noise(t, z.dtype))
        return jnp.tanh(jax.nn.sigmoid(self.theta) * s)


class LNSDE(_AbstractLinearNoiseSDE):
    """Linear-noise neural SDE: `dz = gamma(t, z~) dt + sigma(t) z dW`.

    Drift `gamma = tanh(MLP(Emb([Lin_in([sin t, cos t, z]), A_x X(t)])))`, diffusion
    `tanh(sigmoid(theta) * ReLU(MLP(sin t, cos t)) * z)` (diagonal; `bounded=False` drops the
    outer tanh, giving the paper's literal `sigma(t) z`), `z0 = Linear(X(t0))`.

    **Arguments:** as [`scimlx.sde.LSDE`][], plus

    - `bounded`: apply the reference code's outer `tanh` to the diffusion (default `True`).
    """

    encoder: eqx.nn.Linear
    drift_net: _StableDrift
    noise: _TimeNoise
    theta: Float[Array, ""]
    readout: _Head
    hidden: int = eqx.field(static=True)
    bounded: bool = eqx.field(static=True)

    def __init__(
        self,
        in_channels: int,
        hidden: int,
        out_size: int,
        num_layers: int = 2,
        readout: str = "official",
        theta: float = 1.0,
        bounded: bool = True,
        *,
        key: PRNGKeyArray,
    ):
        _check_sizes(in_channels, hidden, out_size, num_layers)
        self.encoder, self.drift_net, self.noise, self.theta, self.readout = _stable_parts(
            in_channels, hidden, out_size, num_layers, readout, theta, True, key=key
        )
        self.hidden = hidden
        self.bounded = bounded

    def drift(self, t, z, x):
        """gamma(t, z~): bounded by tanh."""
        return jnp.tanh(self.drift_net(t, z, x))


class GSDE(_AbstractLinearNoiseSDE):
    """Geometric neural SDE: `dz / z = gamma(t, z~) dt + sigma(t) dW`.

    Solved in the geometric (not log) form `dz = z gamma dt + z sigma dW`, as the reference code
    does. The drift's factor `z` is, by default, the reference code's bounded surrogate since
    November 2024, `tanh(u * tanh(z))` (`drift_factor="tanh"`); `"logistic"` gives the
    ICLR-era code's `tanh(u * (1 - sigmoid(z)))`, and `"z"` the paper's literal
    `z * tanh(u)`. The diffusion is the same as LNSDE's. Solutions stay positive when
    `z0 > 0` only for the literal form.

    **Arguments:** as [`scimlx.sde.LNSDE`][], plus

    - `drift_factor`: `"tanh"` (default), `"logistic"` or `"z"`.
    """

    encoder: eqx.nn.Linear
    drift_net: _StableDrift
    noise: _TimeNoise
    theta: Float[Array, ""]
    readout: _Head
    hidden: int = eqx.field(static=True)
    bounded: bool = eqx.field(static=True)
    drift_factor: str = eqx.field(static=True)

    def __init__(
        self,
        in_channels: int,
        hidden: int,
        out_size: int,
        num_layers: int = 2,
        readout: str = "official",
        theta: float = 1.0,
        bounded: bool = True,
        drift_factor: str = "tanh",
        *,
        key: PRNGKeyArray,
    ):
        _check_sizes(in_channels, hidden, out_size, num_layers)
        if drift_factor not in ("logistic", "tanh", "z"):
            raise ValueError(
                f"`drift_factor` must be 'logistic', 'tanh' or 'z', got {drift_factor!r}."
            )
        self.encoder, self.drift_net, self.noise, self.theta, self.readout = _stable_parts(
            in_channels, hidden, out_size, num_layers, readout, theta, True, key=key
        )
        self.hidden = hidden
        self.bounded = bounded
        self.drift_factor = drift_factor

    def drift(self, t, z, x):
        """z * gamma(t, z~) (or the code's bounded surrogate)."""
        u = self.drift_net(t, z, x)
        if self.drift_factor == "logistic":
            return jnp.tanh(u * (1.0 - jax.nn.sigmoid(jnp.nan_to_num(z))))
        if self.drift_factor == "tanh":
            return jnp.tanh(u * jnp.tanh(z))
        return z * jnp.tanh(u)


class NaiveSDE(_AbstractDiagonalSDE):
    """Naive neural SDE baseline: `dz = f(t, z) dt + g(t, z) dW`.

    As the paper's baseline (reference code option (3, 18)): drift
    `tanh(MLP(Lin_in([sin t, cos t, z])))` without the control path (X enters only through
    `z0 = Linear(X(t0))`), diffusion `tanh(sigmoid(theta) * ReLU(MLP([sin t, cos t, z])))`,
    which is neither bounded in time alone nor linear in z: no stability guarantee.
    `time_features=False` gives the 2024 code's option (1, 18) (drift `tanh(MLP(Lin_in(z)))`);
    `control=True` also feeds `A_x X(t)` to the drift (`Lin_in([sin t, cos t, z, A_x X])`).

    **Arguments:** as [`scimlx.sde.LSDE`][], plus

    - `control`: whether the drift sees X(t) (default `False`, as in the paper).
    - `time_features`: whether the drift sees `[sin t, cos t]` (default `True`, as the
      reference code's option (3, 18)).
    """

    encoder: eqx.nn.Linear
    x_embed: eqx.nn.Linear | None
    lin_in: eqx.nn.Linear
    mlp: _MLP
    noise1: eqx.nn.Linear
    noise2: eqx.nn.Linear
    theta: Float[Array, ""]
    readout: _Head
    hidden: int = eqx.field(static=True)
    time_features: bool = eqx.field(static=True)

    def __init__(
        self,
        in_channels: int,
        hidden: int,
        out_size: int,
        num_layers: int = 2,
        readout: str = "official",
        theta: float = 1.0,
        control: bool = False,
        time_features: bool = True,
        *,
        key: PRNGKeyArray,
    ):
        _check_sizes(in_channels, hidden, out_size, num_layers)
        ks = jr.split(key, 7)
        self.encoder = eqx.nn.Linear(in_channels, hidden, key=ks[0])
        self.x_embed = eqx.nn.Linear(in_channels, hidden, key=ks[1]) if control else None
        width = hidden * (2 if control else 1) + (2 if time_features else 0)
        self.lin_in = eqx.nn.Linear(width, hidden, key=ks[2])
        self.mlp = _MLP(hidden, hidden, num_layers, key=ks[3])
        self.noise1 = eqx.nn.Linear(hidden + 2, hidden, key=ks[4])
        self.noise2 = eqx.nn.Linear(hidden, hidden, key=ks[5])
        self.theta = jnp.asarray(theta, dtype=self.encoder.weight.dtype)
        self.readout = _Head(hidden, out_size, readout, key=ks[6])
        self.hidden = hidden
        self.time_features = time_features

    def drift(self, t, z, x):
        parts = [_time_features(t, z.dtype)] if self.time_features else []
        parts.append(z)
        if self.x_embed is not None:
            parts.append(self.x_embed(x))
        return jnp.tanh(self.mlp(self.lin_in(jnp.concatenate(parts))))

    def diffusion(self, t, z):
        h = jnp.concatenate([_time_features(t, z.dtype), z])
        s = jax.nn.relu(self.noise2(jax.nn.relu(self.noise1(h))))
        return jnp.tanh(jax.nn.sigmoid(self.theta) * jnp.nan_to_num(s))


class NeuralCDE(AbstractLatentModel):
    """Neural CDE baseline (Kidger et al. 2020): `dz = f(z) dX(t)`, `f = tanh(MLP(z))` reshaped
    to `(hidden, in_channels)`, `z0 = Linear(X(t0))`. On the grid, Euler uses the exact
    increments of X; with an adaptive step-size controller, `dX/dt` (Tsit5).

    **Arguments:** as [`scimlx.sde.LSDE`][] (no `theta`).
    """

    encoder: eqx.nn.Linear
    lin_in: eqx.nn.Linear
    mlp: _MLP
    readout: _Head
    hidden: int = eqx.field(static=True)
    in_channels: int = eqx.field(static=True)
    is_sde = False

    def __init__(
        self,
        in_channels: int,
        hidden: int,
        out_size: int,
        num_layers: int = 2,
        readout: str = "official",
        *,
        key: PRNGKeyArray,
    ):
        _check_sizes(in_channels, hidden, out_size, num_layers)
        k1, k2, k3, k4 = jr.split(key, 4)
        self.encoder = eqx.nn.Linear(in_channels, hidden, key=k1)
        self.lin_in = eqx.nn.Linear(hidden, hidden, key=k2)
        self.mlp = _MLP(hidden, hidden * in_channels, num_layers, key=k3)
        self.readout = _Head(hidden, out_size, readout, key=k4)
        self.hidden = hidden
        self.in_channels = in_channels

    def initial(self, path, ts):
        return self.encoder(path.evaluate(ts[0]))

    def vector_field(self, t, z, args):
        """f(z), shape `(hidden, in_channels)`."""
        return jnp.tanh(self.mlp(self.lin_in(z))).reshape(self.hidden, self.in_channels)

    def terms(self, path, brownian):
        return diffrax.ControlTerm(self.vector_field, path)


class LatentODE(AbstractLatentModel):
    """Latent neural ODE baseline with an observation encoder.

    `z0` comes from a GRU run backwards in time over the path's values at the grid times
    (the latent-ODE recipe, Rubanova et al. 2019, with a GRU in place of the ODE-RNN), then
    `dz = tanh(MLP(z)) dt` runs without further input. Equivalent to the reference code's
    `staticsde` (no noise, drift without X) but with all observations in `z0`.

    **Arguments:** as [`scimlx.sde.LSDE`][] (no `theta`).
    """

    gru: eqx.nn.GRUCell
    encoder: eqx.nn.Linear
    lin_in: eqx.nn.Linear
    mlp: _MLP
    readout: _Head
    hidden: int = eqx.field(static=True)
    is_sde = False

    def __init__(
        self,
        in_channels: int,
        hidden: int,
        out_size: int,
        num_layers: int = 2,
        readout: str = "official",
        *,
        key: PRNGKeyArray,
    ):
        _check_sizes(in_channels, hidden, out_size, num_layers)
        ks = jr.split(key, 5)
        self.gru = eqx.nn.GRUCell(in_channels, hidden, key=ks[0])
        self.encoder = eqx.nn.Linear(hidden, hidden, key=ks[1])
        self.lin_in = eqx.nn.Linear(hidden, hidden, key=ks[2])
        self.mlp = _MLP(hidden, hidden, num_layers, key=ks[3])
        self.readout = _Head(hidden, out_size, readout, key=ks[4])
        self.hidden = hidden

    def initial(self, path, ts):
        xs = jax.vmap(path.evaluate)(ts)
        h0 = jnp.zeros((self.hidden,), xs.dtype)

        def step(h, tx):
            t, x = tx
            return jnp.where(t <= path.t_end, self.gru(x, h), h), None

        h, _ = jax.lax.scan(step, h0, (ts, xs), reverse=True)
        return self.encoder(h)

    def vector_field(self, t, z, args):
        """tanh(MLP(Lin_in(z)))."""
        return jnp.tanh(self.mlp(self.lin_in(z)))

    def terms(self, path, brownian):
        return diffrax.ODETerm(self.vector_field)
