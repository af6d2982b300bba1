"""The tasks: every arm of every seed trained, evaluated on held-out data and its prediction
timed.

B1 neural-ODE classifier on scikit-learn's 8x8 digits, B2 neural-SDE classifier on the same
split, B3 the spiral ODE y' = A y^3 (Pal et al. 2021, Fig. 2: 1083.0 +- 57.55 NFE
unregularised vs 676.2 +- 68.20 with error+stiffness regularisation).
"""

import statistics
import time

import diffrax as dfx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np

import scimlx.nde as nde

from .._harness import print_table, time_compiled
from .arms import arms_b2, arms_b3, weight_label
from .problems import digits_split, spiral_data, SpiralField, TIGHT
from .training import (
    ArmFailed,
    batches,
    ce,
    predict_cls,
    predict_node,
    predict_sde,
    safe,
    train,
)


def interleaved_timing(timers, rows, repeats):
    """Prediction time of every arm of one seed, measured round-robin (each round calls
    every arm's compiled prediction once, `block_until_ready`), median over `repeats`
    rounds: load drift on a shared machine hits all arms alike."""
    times = {i: [] for i, _, _ in timers}
    for _ in range(repeats):
        for i, fn, args in timers:
            t0 = time.perf_counter()
            jax.block_until_ready(fn(*args))
            times[i].append(time.perf_counter() - t0)
    for i, _, _ in timers:
        rows[i]["pred_ms"] = statistics.median(times[i]) * 1e3


def run_arms(label, seeds, arms, fit, quick):
    """For each seed, trains and evaluates every arm with `fit(seed, regs)`, which returns
    `(metrics, train_s, first_s, (predict_fn, args))`; a failing arm gives a `failed`
    row. Prediction time is then measured round-robin over the seed's arms."""
    rows = []
    for seed in seeds:
        timers = []
        for name, regs in arms:
            head = dict(task=label, arm=name, weight=weight_label(regs), seed=seed)
            try:
                metrics, train_s, first_s, (fn, args) = fit(seed, regs)
            except ArmFailed as e:
                print(f"{name} {head['weight']} seed {seed}: FAILED {e}")
                rows.append(dict(head, failed=str(e)))
                continue
            timers.append((len(rows), fn, args))
            rows.append(
                dict(
                    head,
                    **metrics,
                    pred_ms=float("nan"),  # set by interleaved_timing
                    train_s=train_s,
                    compile_s=first_s,
                )
            )
            print_table(rows[-1:], list(rows[-1]), None)
        interleaved_timing(timers, rows, 5 if quick else 20)
    return rows


def _classify(predict, model, args, yte):
    """Compiles and runs `predict(model, *args)` once; accuracy / loss / NFE metrics."""
    logits, sol = safe(time_compiled, predict, model, *args, repeats=1)["output"]
    return dict(
        test_acc=float(jnp.mean(jnp.argmax(logits, -1) == yte)) * 100,
        test_loss=float(ce(logits, yte)),
        nfe=float(jnp.mean(sol.stats["nfe"])),
        rejected=float(jnp.mean(sol.stats["num_rejected_steps"])),
    ), (predict, (model, *args))


def run_b1(seeds, quick, tol, arms, label):
    """B1: a neural-ODE classifier of the digits, Adam 3e-3, batches of 256."""
    xtr, ytr, xte, yte = digits_split()
    steps = 30 if quick else 300

    def fit(seed, regs):
        model = nde.NeuralODEClassifier(
            64,
            10,
            dim=32,
            width=64,
            key=jr.key(seed),
            stepsize_controller=dfx.PIDController(rtol=tol, atol=tol),
            t1=2.0,
            dt0=0.01,
            max_steps=1024,
        )
        model, train_s, first_s = safe(
            train,
            model,
            "cls",
            regs,
            steps,
            ("adam", 3e-3),
            jr.key(1000 + seed),
            batches(xtr, ytr, 256, seed),
        )
        metrics, timer = _classify(predict_cls, model, (xte,), yte)
        return metrics, train_s, first_s, timer

    return run_arms(label, seeds, arms, fit, quick)


def run_b2(seeds, quick, arms=None):
    """B2: a neural-SDE classifier of the digits, Adam 1e-2, batches of 256; predictions
    average the logits of several Brownian paths."""
    xtr, ytr, xte, yte = digits_split()
    steps = 15 if quick else 100
    paths = 3 if quick else 10

    def fit(seed, regs):
        model = nde.NeuralSDEClassifier(
            64,
            10,
            dim=16,
            width=32,
            key=jr.key(seed),
            t1=1.0,
            dt0=0.05,
            stepsize_controller=dfx.PIDController(rtol=2e-3, atol=2e-3),
            max_steps=1024,
        )
        model, train_s, first_s = safe(
            train,
            model,
            "sde",
            regs,
            steps,
            ("adam", 1e-2),
            jr.key(2000 + seed),
            batches(xtr, ytr, 256, seed),
        )
        metrics, timer = _classify(predict_sde, model, (xte, paths), yte)
        return metrics, train_s, first_s, timer

    return run_arms("B2 NSDE digits", seeds, arms_b2(quick) if arms is None else arms, fit, quick)


def run_b3(seeds, quick, tol=TIGHT, arms=None, label="B3 spiral"):
    """B3: the spiral, fitted on windows and predicted over the whole span."""
    ts, ys = spiral_data()
    # torchdiffeq's ode_demo protocol (1000 points on [0, 25], windows of 10 points, 20
    # windows per batch, L1 loss, 2000 iterations), with Adam 1e-2 and cosine decay to
    # 1e-4 instead of RMSprop 1e-3 (which leaves the vanilla fit still improving at 2000).
    batch_time, batch_size = 10, 20
    iters = 40 if quick else 2000
    opt_spec = ("adam_cosine", 1e-2, iters)
    ctrl = dfx.PIDController(rtol=tol, atol=tol)

    def fit(seed, regs):
        field = SpiralField(jr.key(seed))
        short = nde.NeuralODE(
            field,
            2,
            stepsize_controller=ctrl,
            t1=float(ts[batch_time - 1]),
            dt0=0.01,
            max_steps=1024,
        )
        rng = np.random.default_rng(seed)

        def batch_fn(i):
            s = rng.choice(len(ts) - batch_time, size=batch_size, replace=False)
            window = jnp.stack([ys[s + j] for j in range(batch_time)])
            return (ys[s], ts[:batch_time]), window

        steer = any(isinstance(r, nde.RandomEndTime) for r in regs)
        short, train_s, first_s = safe(
            train,
            short,
            "spiral_end" if steer else "spiral",
            regs,
            iters,
            opt_spec,
            jr.key(3000 + seed),
            batch_fn,
        )
        full = nde.NeuralODE(
            short.vector_field,
            2,
            stepsize_controller=ctrl,
            t1=float(ts[-1]),
            dt0=0.01,
            max_steps=16384,
        )
        sol = safe(time_compiled, predict_node, full, ys[0], ts, repeats=1)["output"]
        metrics = dict(
            test_mse=float(jnp.mean((sol.ys - ys) ** 2)),
            nfe=int(sol.stats["nfe"]),
            rejected=int(sol.stats["num_rejected_steps"]),
        )
        return metrics, train_s, first_s, (predict_node, (full, ys[0], ts))

    return run_arms(label, seeds, arms_b3(quick) if arms is None else arms, fit, quick)
