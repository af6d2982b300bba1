"""The tour's first stage: fit a small neural ODE to a damped oscillator with plain diffrax
and `scimlx.fit`."""

import time

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax
from jaxtyping import ArrayLike, Float, PRNGKeyArray

from .._core import fit
from .._core._checks import check_ndim, check_shape
from ..data import damped_oscillator


class OscillatorField(eqx.Module):
    """A vector field `f(y) = W y + MLP(y)`: a linear part plus a small neural correction."""

    linear: eqx.nn.Linear
    mlp: eqx.nn.MLP

    def __init__(self, *, width: int = 16, key: PRNGKeyArray):
        k1, k2 = jr.split(key)
        self.linear = eqx.nn.Linear(2, 2, use_bias=False, key=k1)
        self.mlp = eqx.nn.MLP(2, 2, width, 2, activation=jnp.tanh, key=k2)

    def __call__(self, t, y, args):
        return self.linear(y) + self.mlp(y)


def solve(
    field: OscillatorField,
    ts: Float[ArrayLike, " times"],
    y0: Float[ArrayLike, " 2"] | Float[ArrayLike, " _"],
    *,
    rtol: float = 1e-6,
    atol: float = 1e-6,
) -> diffrax.Solution:
    """Solve the neural ODE with Tsit5 and a PID controller, saving at `ts`.

    **Arguments:**

    - `field`: the vector field.
    - `ts`: increasing save times; the solve runs from `ts[0]` to `ts[-1]`.
    - `y0`: the initial state `(x, x')`, shape `(2,)`.
    - `rtol`, `atol`: the PID controller's tolerances.

    **Returns:**

    A `diffrax.Solution` whose `ys` has shape `(len(ts), 2)`.
    """
    check_ndim("ts", ts, 1)
    check_shape("y0", y0, (2,))
    ts = jnp.asarray(ts)
    y0 = jnp.asarray(y0)
    return diffrax.diffeqsolve(
        diffrax.ODETerm(field),
        diffrax.Tsit5(),
        t0=ts[0],
        t1=ts[-1],
        dt0=None,
        y0=y0,
        saveat=diffrax.SaveAt(ts=ts),
        stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol),
        max_steps=4096,
    )


def make_losses(ts, data, window: int = 8):
    """The two training losses of the tour's neural ODE, as `loss(model, batch, key)`.

    Fitting a whole oscillation from a random start tends to stall in a poor local minimum,
    so training first fits short windows that start at every observation (a multiple-
    shooting warm-up, well conditioned: `window_loss`), then the whole trajectory from
    `y0` (`full_loss`).
    """
    starts = jnp.arange(ts.shape[0] - window + 1)
    win_ts = ts[:window]
    win_data = jax.vmap(lambda i: jax.lax.dynamic_slice_in_dim(data, i, window))(starts)

    def window_loss(m, batch, key):
        pred = jax.vmap(lambda y0: solve(m, win_ts, y0).ys)(win_data[:, 0])
        return jnp.mean((pred - win_data) ** 2)

    def full_loss(m, batch, key):
        return jnp.mean((solve(m, ts, data[0]).ys - data) ** 2)

    return window_loss, full_loss


def fit_damped_oscillator(
    *, steps: int = 700, n_times: int = 64, t1: float = 10.0, seed: int = 0, progress=True
):
    """Fit the neural ODE to the analytic damped oscillator; return figures of the fit."""
    ts = jnp.linspace(0.0, t1, n_times)
    data = jnp.asarray(damped_oscillator(np.asarray(ts)))
    model = OscillatorField(key=jr.key(seed))
    t_start = time.perf_counter()
    window_loss, full_loss = make_losses(ts, data)
    stages = (("windows", window_loss, 5e-2), ("trajectory", full_loss, 3e-3))
    for i, (name, loss, lr) in enumerate(stages):
        schedule = optax.cosine_decay_schedule(lr, steps, alpha=0.01)
        result = fit(
            loss,
            model,
            optax.adam(schedule),
            steps=steps,
            key=jr.key(seed + 1 + i),
            progress=progress,
            desc=f"neural ODE ({name})",
        )
        model = result.model
    train_s = time.perf_counter() - t_start
    sol = solve(result.model, ts, data[0])
    rel = float(jnp.linalg.norm(sol.ys - data) / jnp.linalg.norm(data))
    return {
        "model": result.model,
        "rel_error": rel,
        "num_steps": int(sol.stats["num_steps"]),
        "final_loss": float(result.losses[-1]),
        "train_seconds": train_s,
    }


def tour_stage(quick: bool = False) -> dict:
    """Fit the neural ODE to a damped oscillator (`quick`: 150 instead of 700 steps per
    stage; `ok` when the relative fit error is below 1e-2, 1e-1 when quick)."""
    out = fit_damped_oscillator(steps=150 if quick else 700)
    return {
        "what": "neural ODE (Tsit5 + PID, diffrax) fitted to a damped oscillator",
        "figure": f"rel. fit error {out['rel_error']:.1e}, {out['num_steps']} solver steps",
        "ok": out["rel_error"] < (1e-1 if quick else 1e-2),
    }
