"""Foundation benchmark: the tour's neural-ODE problem trained with `scimlx.fit` against a
hand-written optax + diffrax loop (the plain-diffrax way), in the same run.

Question answered: what does scimlx's training loop (progress, checkpoints, exact resume)
cost per step over the minimal jitted loop a diffrax user would write, and do both reach
the same fit?

    python -m benchmarks.node [--quick]
"""

import statistics
import tempfile
import time

import jax


jax.config.update("jax_enable_x64", True)

import diffrax as dfx  # noqa: E402
import equinox as eqx  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import jax.random as jr  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

import scimlx  # noqa: E402
from scimlx.data import damped_oscillator  # noqa: E402

from ._harness import parse_args, print_table, time_compiled, write_results  # noqa: E402


# The problem of the tour's neural-ODE stage (`scimlx tour`): a damped oscillator observed 64
# times on [0, 10], fitted by a linear field plus a small MLP, solved with Tsit5 + PID.
class OscillatorField(eqx.Module):
    """A vector field `f(y) = W y + MLP(y)`: a linear part plus a small neural correction."""

    linear: eqx.nn.Linear
    mlp: eqx.nn.MLP

    def __init__(self, *, width=16, key):
        k1, k2 = jr.split(key)
        self.linear = eqx.nn.Linear(2, 2, use_bias=False, key=k1)
        self.mlp = eqx.nn.MLP(2, 2, width, 2, activation=jnp.tanh, key=k2)

    def __call__(self, t, y, args):
        return self.linear(y) + self.mlp(y)


def solve(field, ts, y0):
    """The neural ODE from `y0`, saved at `ts` (Tsit5, PID at rtol = atol = 1e-6)."""
    return dfx.diffeqsolve(
        dfx.ODETerm(field),
        dfx.Tsit5(),
        t0=ts[0],
        t1=ts[-1],
        dt0=None,
        y0=y0,
        saveat=dfx.SaveAt(ts=ts),
        stepsize_controller=dfx.PIDController(rtol=1e-6, atol=1e-6),
        max_steps=4096,
    )


def _problem(n_times):
    ts = jnp.linspace(0.0, 10.0, n_times)
    data = jnp.asarray(damped_oscillator(np.asarray(ts)))
    return ts, data


def _loss_fn(ts, data, window=8):
    """The tour's first training stage: the mean squared error of short windows that start
    at every observation (a multiple-shooting warm-up), as `loss(model, batch, key)`."""
    starts = jnp.arange(ts.shape[0] - window + 1)
    win_ts = ts[:window]
    win_data = jax.vmap(lambda i: jax.lax.dynamic_slice_in_dim(data, i, window))(starts)

    def window_loss(m, batch, key):
        pred = jax.vmap(lambda y0: solve(m, win_ts, y0).ys)(win_data[:, 0])
        return jnp.mean((pred - win_data) ** 2)

    return window_loss


def run_scimlx(steps, seed, ts, data, tmpdir):
    loss = _loss_fn(ts, data)
    model = OscillatorField(key=jr.key(seed))
    opt = optax.adam(optax.cosine_decay_schedule(5e-2, steps, alpha=0.01))
    out = scimlx.fit(
        loss,
        model,
        opt,
        steps=steps,
        key=jr.key(seed + 1),
        progress=False,
        checkpoint=f"{tmpdir}_node_{seed}.ckpt",
        checkpoint_every=max(steps // 4, 1),
    )
    # `fit` compiles its step on its first call: time the remaining steps, as for the peer
    # whose compile is excluded too; the first step's time is reported apart.
    steady = out.seconds - out.first_step_seconds
    return out.model, out.losses, steady * steps / (steps - 1), out.first_step_seconds


def run_plain(steps, seed, ts, data):
    loss = _loss_fn(ts, data)
    model = OscillatorField(key=jr.key(seed))
    opt = optax.adam(optax.cosine_decay_schedule(5e-2, steps, alpha=0.01))
    params, static = eqx.partition(model, eqx.is_inexact_array)
    opt_state = opt.init(params)

    @eqx.filter_jit
    def step(p, o):
        value, grads = eqx.filter_value_and_grad(
            lambda p_: loss(eqx.combine(p_, static), None, None)
        )(p)
        updates, o = opt.update(grads, o, p)
        return eqx.apply_updates(p, updates), o, value

    t0 = time.perf_counter()
    jax.block_until_ready(step(params, opt_state))  # compile (and one step, discarded)
    first = time.perf_counter() - t0
    losses = []
    t0 = time.perf_counter()
    for _ in range(steps):
        params, opt_state, value = step(params, opt_state)
        losses.append(value)
    losses = np.asarray(jax.block_until_ready(jnp.stack(losses)))
    return eqx.combine(params, static), losses, time.perf_counter() - t0, first


def main(argv=None):
    args = parse_args(__doc__, argv)
    mode = "quick" if args.quick else "full"
    steps = 150 if args.quick else 600
    seeds = args.seeds or (2 if args.quick else 3)
    repeats = 2 if args.quick else 3
    ts, data = _problem(64)
    rows, ratios, fit_gap = [], [], []
    with tempfile.TemporaryDirectory() as tmpdir:
        for seed in range(seeds):
            # Alternate the two loops and keep each one's fastest run, so that load from
            # other processes on the machine hits both alike.
            runs_s, runs_p = [], []
            for rep in range(repeats):
                runs_s.append(run_scimlx(steps, seed, ts, data, f"{tmpdir}/{rep}"))
                runs_p.append(run_plain(steps, seed, ts, data))
            m_s, l_s, t_s, c_s = min(runs_s, key=lambda r: r[2])
            m_p, l_p, t_p, c_p = min(runs_p, key=lambda r: r[2])
            pred = eqx.filter_jit(lambda m: solve(m, ts, data[0]).ys)
            for name, m, losses, t, c in (
                ("scimlx.fit", m_s, l_s, t_s, c_s),
                ("plain optax+diffrax loop", m_p, l_p, t_p, c_p),
            ):
                timing = time_compiled(pred, m, repeats=20)
                ys = timing["output"]
                rel = float(jnp.linalg.norm(ys - data) / jnp.linalg.norm(data))
                rows.append(
                    {
                        "method": name,
                        "seed": seed,
                        "steps": steps,
                        "first_step_s": c,
                        "train_s": t,
                        "ms_per_step": 1e3 * t / steps,
                        "final_loss": float(losses[-1]),
                        "rel_fit_error": rel,
                        "predict_ms": 1e3 * timing["median_s"],
                        "predict_compile_s": timing["compile_s"],
                    }
                )
            ratios.append(t_s / t_p)
            fit_gap.append(abs(float(l_s[-1]) - float(l_p[-1])) / float(l_p[-1]))
    print_table(
        rows,
        [
            "method",
            "seed",
            "steps",
            "first_step_s",
            "train_s",
            "ms_per_step",
            "final_loss",
            "rel_fit_error",
            "predict_ms",
            "predict_compile_s",
        ],
        title=f"neural ODE training loop ({mode}; float64, Tsit5+PID 1e-6, 64 obs., windowed loss)",
    )
    summary = {
        "fit_over_plain_time_ratio": statistics.median(ratios),
        "final_loss_rel_gap": max(fit_gap),
        "seeds": seeds,
        "steps": steps,
        "repeats_min_taken": repeats,
    }
    print("summary:", summary)
    write_results("node", mode, rows, summary, out=args.out)
    return summary


if __name__ == "__main__":
    main()
