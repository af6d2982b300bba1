"""Neural ODEs/SDEs that stay cheap to solve: regularising the adaptive solver's own
heuristics (global error / stiffness, local error) against vanilla, STEER, RNODE and
TayNODE, all through `scimlx.nde`, in one run.

Question answered: how many fewer vector-field evaluations (and how much faster
prediction) does a model trained with a solver-heuristic regulariser need, at what
accuracy and training cost?

    python -m benchmarks.nde_regularisation [--quick] [--seeds N] [--tasks b2,b3]

`--tasks` runs a subset of b1,b2,b3; outside `--quick` the rows of the tasks that were
not run are then kept from the existing results JSON (the file records which tasks were
re-run and when the kept rows were measured).

B1 neural-ODE classifier on scikit-learn's 8x8 digits, B2 neural-SDE classifier on the
same split, B3 the spiral ODE y' = A y^3 (Pal et al. 2021, Fig. 2: 1083.0 +- 57.55 NFE
unregularised vs 676.2 +- 68.20 with error+stiffness regularisation).
"""

import argparse
import json
import os
import resource
import statistics
import time

import jax


jax.config.update("jax_enable_x64", True)

import diffrax as dfx  # noqa: E402
import equinox as eqx  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import jax.random as jr  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

import scimlx.nde as nde  # noqa: E402

from ._harness import parse_args, print_table, time_compiled, write_results  # noqa: E402


TIGHT = 1.4e-8  # the papers' tolerance
LOOSE = 1e-5

PAPER = {
    "b3_nfe_vanilla": "1083.0 +- 57.55 (Pal et al. 2021, Fig. 2, spiral, Tsit5)",
    "b3_nfe_er_sr": "676.2 +- 68.20 (same, error+stiffness regularised)",
}


# ----------------------------------------------------------------------------- data
def digits_split():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    x = x / 16.0
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.2, stratify=y, random_state=0)
    return (jnp.asarray(xtr), jnp.asarray(ytr), jnp.asarray(xte), jnp.asarray(yte))


def spiral_data(n=1000, t1=25.0):
    a = jnp.array([[-0.1, 2.0], [-2.0, -0.1]])
    ts = jnp.linspace(0.0, t1, n)
    sol = dfx.diffeqsolve(
        dfx.ODETerm(lambda t, y, args: (y**3) @ a),
        dfx.Tsit5(),
        0.0,
        t1,
        0.01,
        jnp.array([2.0, 0.0]),
        saveat=dfx.SaveAt(ts=ts),
        stepsize_controller=dfx.PIDController(rtol=1e-10, atol=1e-10),
        max_steps=100000,
    )
    return ts, sol.ys


# ----------------------------------------------------------------------------- arms
def W(x):
    """A regularisation weight as a float64 array: a traced leaf, so every weight of one
    regulariser type shares one compiled training step."""
    return jnp.asarray(x, jnp.float64)


def arms_b1(quick):
    arms = [
        ("vanilla", ()),
        ("global error", (nde.GlobalErrorEstimate(weight=W(0.03)),)),
        ("global error", (nde.GlobalErrorEstimate(weight=W(0.1)),)),
        ("global error", (nde.GlobalErrorEstimate(weight=W(0.3)),)),
        ("global stiffness", (nde.GlobalStiffness(weight=W(0.03)),)),
        (
            "error+stiffness",
            (nde.GlobalErrorEstimate(weight=W(0.1)), nde.GlobalStiffness(weight=W(0.03))),
        ),
        ("local unbiased", (nde.LocalErrorEstimate(weight=W(0.1)),)),
        ("local unbiased", (nde.LocalErrorEstimate(weight=W(0.3)),)),
        ("local biased", (nde.LocalErrorEstimate(weight=W(0.1), sampling="biased"),)),
        (
            "local unbiased initial-dt",
            (nde.LocalErrorEstimate(weight=W(0.3), step_size="initial"),),
        ),
        ("STEER", (nde.RandomEndTime(half_width=0.5),)),
        ("RNODE", (nde.KineticJacobian(weight_kinetic=W(0.01), weight_jacobian=W(0.01)),)),
        ("TayNODE", (nde.TaylorRegulariser(weight=W(1e-3), order=2),)),
    ]
    return arms


def _weight(regs):
    if not regs:
        return "-"
    parts = []
    for r in regs:
        if isinstance(r, nde.KineticJacobian):
            parts.append(f"{float(r.weight_kinetic):g}/{float(r.weight_jacobian):g}")
        elif isinstance(r, nde.RandomEndTime):
            parts.append(f"b={r.half_width:g}")
        else:
            parts.append(f"{float(r.weight):g}")
    return "+".join(parts)


# ----------------------------------------------------------------------------- training
# One jitted step per (loss kind, regulariser types, optimiser): filter_jit caches on the
# static arguments (the weights are arrays, see `W`), so seeds and weights after the
# first reuse the compilation.
def _optimiser(spec):
    """`("adam", lr)` or `("adam_cosine", lr, steps)` (cosine decay to lr / 100)."""
    if spec[0] == "adam":
        return optax.adam(spec[1])
    if spec[0] == "adam_cosine":
        return optax.adam(optax.cosine_decay_schedule(spec[1], spec[2], alpha=0.01))
    raise ValueError(spec)


def _loss(kind, model, xb, yb, k, regs):
    if kind == "cls":
        logits, sol = model(xb, regularisers=regs, key=k)
        return _ce(logits, yb) + sol.penalty
    if kind == "sde":
        logits, sol = model(xb, key=k, regularisers=regs)
        return _ce(logits, yb) + sol.penalty
    if kind == "spiral":
        y0, ts = xb
        sol = model(y0, ts=ts, regularisers=regs, key=k)
        return jnp.mean(jnp.abs(sol.ys - yb)) + sol.penalty
    if kind == "spiral_end":  # STEER: the window is solved to its (random) end only
        y0, _ = xb
        sol = model(y0, regularisers=regs, key=k)
        return jnp.mean(jnp.abs(sol.ys[-1] - yb[-1])) + sol.penalty
    raise ValueError(kind)


@eqx.filter_jit
def _step(params, static, opt_state, xb, yb, k, kind, regs, opt_spec):
    opt = _optimiser(opt_spec)
    loss, grads = eqx.filter_value_and_grad(
        lambda p: _loss(kind, eqx.combine(p, static), xb, yb, k, regs)
    )(params)
    updates, opt_state = opt.update(grads, opt_state, params)
    return eqx.apply_updates(params, updates), opt_state, loss


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


class ArmFailed(Exception):
    pass


def _safe(fn, *args, **kwargs):
    """Runs one arm's stage; a solver failure (e.g. max_steps) fails the arm, not the run."""
    try:
        return fn(*args, **kwargs)
    except Exception as e:  # noqa: BLE001
        raise ArmFailed(f"{type(e).__name__}: {str(e).splitlines()[0][:150]}") from e


def train(model, kind, regs, steps, opt_spec, key, batch_fn):
    """Training loop (`opt_spec`: see `_optimiser`); returns the model, the training time
    excluding the first (compiling) step, and that first step's time."""
    params, static = eqx.partition(model, eqx.is_inexact_array)
    opt_state = _optimiser(opt_spec).init(params)
    first = total = 0.0
    for i in range(steps):
        xb, yb = batch_fn(i)
        t0 = time.perf_counter()
        params, opt_state, loss = _step(
            params, static, opt_state, xb, yb, jr.fold_in(key, i), kind, regs, opt_spec
        )
        jax.block_until_ready(loss)
        dt = time.perf_counter() - t0
        if i == 0:
            first = dt
        else:
            total += dt
    return eqx.combine(params, static), total, first


@eqx.filter_jit
def _predict_cls(model, x):
    return model(x)


@eqx.filter_jit
def _predict_sde(model, x, paths):
    keys = jr.split(jr.key(7), paths)
    logits, sol = jax.vmap(lambda k: model(x, key=k))(keys)
    return logits.mean(0), sol


@eqx.filter_jit
def _predict_node(node, y0, ts):
    return node(y0, ts=ts)


def _batches(x, y, batch, seed):
    rng = np.random.default_rng(seed)
    n = x.shape[0]

    def fn(i):
        idx = rng.choice(n, size=batch, replace=False)
        return x[idx], y[idx]

    return fn


def _ce(logits, y):
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()


# ----------------------------------------------------------------------------- tasks
def run_arms(label, seeds, arms, fit, quick):
    """For each seed, trains and evaluates every arm with `fit(seed, regs)`, which returns
    `(metrics, train_s, first_s, (predict_fn, args))`; a failing arm gives a `failed`
    row. Prediction time is then measured round-robin over the seed's arms."""
    rows = []
    for seed in seeds:
        timers = []
        for name, regs in arms:
            head = dict(task=label, arm=name, weight=_weight(regs), seed=seed)
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
    logits, sol = _safe(time_compiled, predict, model, *args, repeats=1)["output"]
    return dict(
        test_acc=float(jnp.mean(jnp.argmax(logits, -1) == yte)) * 100,
        test_loss=float(_ce(logits, yte)),
        nfe=float(jnp.mean(sol.stats["nfe"])),
        rejected=float(jnp.mean(sol.stats["num_rejected_steps"])),
    ), (predict, (model, *args))


# ----------------------------------------------------------------------------- B1
def run_b1(seeds, quick, tol, arms, label):
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
        model, train_s, first_s = _safe(
            train,
            model,
            "cls",
            regs,
            steps,
            ("adam", 3e-3),
            jr.key(1000 + seed),
            _batches(xtr, ytr, 256, seed),
        )
        metrics, timer = _classify(_predict_cls, model, (xte,), yte)
        return metrics, train_s, first_s, timer

    return run_arms(label, seeds, arms, fit, quick)


# ----------------------------------------------------------------------------- B2
def arms_b2(quick):
    arms = [
        ("vanilla", ()),
        ("global error", (nde.GlobalErrorEstimate(weight=W(1.0)),)),
        ("global error", (nde.GlobalErrorEstimate(weight=W(10.0)),)),
        ("local unbiased", (nde.LocalErrorEstimate(weight=W(10.0)),)),
        ("local biased", (nde.LocalErrorEstimate(weight=W(10.0), sampling="biased"),)),
        ("STEER", (nde.RandomEndTime(half_width=0.5),)),
    ]
    return arms


def run_b2(seeds, quick):
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
        model, train_s, first_s = _safe(
            train,
            model,
            "sde",
            regs,
            steps,
            ("adam", 1e-2),
            jr.key(2000 + seed),
            _batches(xtr, ytr, 256, seed),
        )
        metrics, timer = _classify(_predict_sde, model, (xte, paths), yte)
        return metrics, train_s, first_s, timer

    return run_arms("B2 NSDE digits", seeds, arms_b2(quick), fit, quick)


# ----------------------------------------------------------------------------- B3
class SpiralField(eqx.Module):
    """torchdiffeq ode_demo's ODEFunc: Linear(2, 50) -> tanh -> Linear(50, 2) on y**3."""

    l1: eqx.nn.Linear
    l2: eqx.nn.Linear

    def __init__(self, key):
        k1, k2 = jr.split(key)
        self.l1 = eqx.nn.Linear(2, 50, key=k1, dtype=jnp.float64)
        self.l2 = eqx.nn.Linear(50, 2, key=k2, dtype=jnp.float64)

    def __call__(self, t, y, args=None):
        return self.l2(jnp.tanh(self.l1(y**3)))


def arms_b3(quick):
    # A finer sweep than B1: on the spiral the heuristic regularisers switch from "no
    # effect" to "collapse to a trivial field" within a factor of ~3 in weight.
    return [
        ("vanilla", ()),
        ("global error", (nde.GlobalErrorEstimate(weight=W(0.01)),)),
        ("global error", (nde.GlobalErrorEstimate(weight=W(0.03)),)),
        ("global error", (nde.GlobalErrorEstimate(weight=W(0.05)),)),
        ("global error", (nde.GlobalErrorEstimate(weight=W(0.1)),)),
        ("global stiffness", (nde.GlobalStiffness(weight=W(0.1)),)),
        ("global stiffness", (nde.GlobalStiffness(weight=W(0.01)),)),
        *(
            (
                "error+stiffness",
                (nde.GlobalErrorEstimate(weight=W(e)), nde.GlobalStiffness(weight=W(k))),
            )
            for e, k in ((0.03, 0.1), (0.01, 0.01), (0.03, 0.01), (0.05, 0.01))
        ),
        ("local unbiased", (nde.LocalErrorEstimate(weight=W(0.03)),)),
        ("local unbiased", (nde.LocalErrorEstimate(weight=W(0.1)),)),
        ("local unbiased", (nde.LocalErrorEstimate(weight=W(0.3)),)),
        ("local biased", (nde.LocalErrorEstimate(weight=W(0.1), sampling="biased"),)),
        ("STEER", (nde.RandomEndTime(half_width=0.1),)),
        ("RNODE", (nde.KineticJacobian(weight_kinetic=W(1e-3), weight_jacobian=W(1e-3)),)),
        ("TayNODE", (nde.TaylorRegulariser(weight=W(1e-4), order=2),)),
    ]


def _spiral_solve(tol, scale=1.0, damping=0.1):
    a = jnp.array([[-damping, 2.0], [-2.0, -damping]])
    sol = dfx.diffeqsolve(
        dfx.ODETerm(lambda t, y, args: scale * (y**3) @ a),
        dfx.Tsit5(),
        0.0,
        25.0,
        0.01,
        jnp.array([2.0, 0.0]),
        saveat=dfx.SaveAt(ts=jnp.linspace(0.0, 25.0, 1000)),
        stepsize_controller=dfx.PIDController(rtol=tol, atol=tol),
        max_steps=100000,
    )
    return sol.ys, int(nde.count_nfe(dfx.Tsit5(), sol.stats["num_steps"])[0])


def spiral_true_nfe(tol):
    """NFE of the data-generating ODE itself over the prediction span, at `tol`: a
    model that reproduces the data closely needs about as many steps."""
    return _spiral_solve(tol)[1]


def spiral_perturbations(tol):
    """NFE and MSE against the data of perturbed true systems (more damping `d`, slower
    field `c`): how much cheaper a nearby spiral is, and how far from the data."""
    ref, _ = _spiral_solve(tol)
    out = []
    for kw in [dict(damping=d) for d in (0.12, 0.15, 0.2, 0.3)] + [
        dict(scale=c) for c in (0.95, 0.9, 0.8, 0.65)
    ]:
        ys, nfe = _spiral_solve(tol, **kw)
        out.append(dict(kw, nfe=nfe, mse=float(jnp.mean((ys - ref) ** 2))))
    return out


def run_b3(seeds, quick, tol=TIGHT, arms=None, label="B3 spiral"):
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
        short, train_s, first_s = _safe(
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
        sol = _safe(time_compiled, _predict_node, full, ys[0], ts, repeats=1)["output"]
        metrics = dict(
            test_mse=float(jnp.mean((sol.ys - ys) ** 2)),
            nfe=int(sol.stats["nfe"]),
            rejected=int(sol.stats["num_rejected_steps"]),
        )
        return metrics, train_s, first_s, (_predict_node, (full, ys[0], ts))

    return run_arms(label, seeds, arms_b3(quick) if arms is None else arms, fit, quick)


# ----------------------------------------------------------------------------- summary
def aggregate(rows, metric_keys):
    groups = {}
    for r in rows:
        groups.setdefault((r["task"], r["arm"], r["weight"]), []).append(r)
    out = []
    for (task, arm, weight), rs in groups.items():
        row = dict(
            task=task, arm=arm, weight=weight, seeds=len(rs), failed=sum("failed" in r for r in rs)
        )
        for k in metric_keys:
            vals = [r[k] for r in rs if k in r]
            if vals:
                row[k] = statistics.mean(vals)
                if len(vals) > 1 and k in ("test_acc", "test_mse", "nfe"):
                    row[k + "_std"] = statistics.stdev(vals)
        out.append(row)
    return out


def best_arm(agg, task, arm, acc_drop_max=None, mse_factor=None):
    """Lowest-NFE row of `arm` meeting the accuracy (or fit) constraint against vanilla;
    if none meets it, the row with the best accuracy (flagged)."""
    van = next(r for r in agg if r["task"] == task and r["arm"] == "vanilla")
    cands = [r for r in agg if r["task"] == task and r["arm"] == arm and "nfe" in r]
    if not cands:
        return van, None, False
    if acc_drop_max is not None:
        ok = [r for r in cands if van["test_acc"] - r["test_acc"] <= acc_drop_max]
        fallback = max(cands, key=lambda r: r["test_acc"])
    else:
        ok = [r for r in cands if r["test_mse"] <= van["test_mse"] * mse_factor]
        fallback = min(cands, key=lambda r: r["test_mse"])
    if ok:
        return van, min(ok, key=lambda r: r["nfe"]), True
    return van, fallback, False


def summarise(rows, tasks, final=True):
    metrics = ["test_acc", "test_loss", "test_mse", "nfe", "rejected", "pred_ms", "train_s"]
    agg = aggregate(rows, metrics)
    for task in dict.fromkeys(r["task"] for r in agg):
        van = next(r for r in agg if r["task"] == task and r["arm"] == "vanilla")
        for r in agg:
            if r["task"] == task and "nfe" in r:
                r["nfe_ratio"] = r["nfe"] / van["nfe"]
                r["pred_speedup"] = van["pred_ms"] / r["pred_ms"]
                r["train_ratio"] = r["train_s"] / van["train_s"]
    cols = [
        "task",
        "arm",
        "weight",
        "seeds",
        "failed",
        "test_acc",
        "test_mse",
        "nfe",
        "nfe_ratio",
        "rejected",
        "pred_ms",
        "pred_speedup",
        "train_s",
        "train_ratio",
    ]
    if final:
        print_table(agg, cols, "nde_regularisation (means over seeds; ratios vs vanilla)")

    summary = {}
    flags = {}
    for arm, key in (("global error", "global"), ("local unbiased", "local_unbiased")):
        if "b1" not in tasks:
            break
        van, best, ok = best_arm(agg, "B1 NODE digits", arm, acc_drop_max=0.5)
        if best is None:
            continue
        summary[f"b1_nfe_ratio_{key}"] = best["nfe_ratio"]
        summary[f"b1_predict_speedup_{key}"] = best["pred_speedup"]
        summary[f"b1_train_time_ratio_{key}"] = best["train_ratio"]
        summary[f"b1_acc_drop_pp_{key}"] = van["test_acc"] - best["test_acc"]
        flags[f"b1_{key}"] = dict(weight=best["weight"], constraint_met=ok)
    van, best, ok = (
        best_arm(agg, "B2 NSDE digits", "global error", acc_drop_max=1.0)
        if "b2" in tasks
        else (None, None, None)
    )
    if best is not None:
        summary["b2_nfe_ratio_global"] = best["nfe_ratio"]
        flags["b2_global"] = dict(
            weight=best["weight"], constraint_met=ok, acc_drop_pp=van["test_acc"] - best["test_acc"]
        )
    if "b3" not in tasks:
        best3 = []
    else:
        best3 = [
            best_arm(agg, "B3 spiral", a, mse_factor=1.0)
            for a in ("global error", "error+stiffness")
        ]
    met = [b for b in best3 if b[2]]
    # Every spiral arm's best row under the fit constraint (or its best fit, flagged).
    for task, label, prefix in (
        ("b3", "B3 spiral", "b3_"),
        ("b3loose", "B3 spiral loose", "b3_loose_"),
    ):
        if task not in tasks:
            continue
        for arm in dict.fromkeys(r["arm"] for r in agg if r["task"] == label):
            if arm == "vanilla":
                continue
            van, best, ok = best_arm(agg, label, arm, mse_factor=1.0)
            if best is not None:
                flags[prefix + arm] = dict(
                    weight=best["weight"],
                    constraint_met=ok,
                    nfe_ratio=best["nfe_ratio"],
                    mse_ratio=best["test_mse"] / van["test_mse"],
                )
    if best3:
        van, best, ok = min(met or best3, key=lambda b: b[1]["nfe"])
        summary["b3_nfe_ratio_global"] = best["nfe_ratio"]
        flags["b3_global"] = dict(
            arm=best["arm"],
            weight=best["weight"],
            constraint_met=ok,
            mse_ratio=best["test_mse"] / van["test_mse"],
        )
    return agg, summary, flags


TASK_LABELS = {
    "b1": ("B1 NODE digits", "B1 NODE digits loose"),
    "b2": ("B2 NSDE digits",),
    "b3": ("B3 spiral",),
    "b3loose": ("B3 spiral loose",),
}


def _cpu_s():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _kept_rows(path, tasks, only_arms=None):
    """Per-seed rows of the tasks not re-run (and, with `only_arms`, of the arms not re-run),
    from an existing full-mode results JSON."""
    if not os.path.exists(path):
        return [], None
    with open(path) as f:
        old = json.load(f)
    if old.get("mode") != "full":
        return [], None
    labels = {lab for t, labs in TASK_LABELS.items() if t not in tasks for lab in labs}
    rows = [
        r
        for r in old["rows"]
        if "seed" in r and (r["task"] in labels or (only_arms and r["arm"] not in only_arms))
    ]
    prov = old.get("provenance", {})
    when = {
        t: prov.get("measured", {}).get(t, old.get("date"))
        for t in TASK_LABELS
        if t not in tasks and any(r["task"] in TASK_LABELS[t] for r in rows)
    }
    return rows, when


def main(argv=None):
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument(
        "--tasks",
        default="b1,b2,b3,b3loose",
        help="subset of b1,b2,b3,b3loose to run (b3loose: the spiral at rtol=atol=1e-5)",
    )
    pre.add_argument(
        "--only-arms",
        default=None,
        help="B3 only: comma-separated arm names to re-run; the other arms' rows are kept "
        "from the results file",
    )
    known, rest = pre.parse_known_args(argv)
    only_arms = known.only_arms.split(",") if known.only_arms else None
    if only_arms and known.tasks != "b3":
        raise SystemExit("--only-arms needs --tasks b3")
    args = parse_args(__doc__.splitlines()[0], rest)
    tasks = [t for t in known.tasks.split(",") if t]
    if not set(tasks) <= set(TASK_LABELS):
        raise SystemExit(
            f"--tasks: expected a subset of {','.join(TASK_LABELS)}, got {known.tasks!r}"
        )
    quick = args.quick
    mode = "quick" if quick else "full"
    n_seeds = args.seeds or (1 if quick else 3)
    seeds = list(range(n_seeds))
    print(f"seeds {seeds}; tasks {tasks}; float64; Tsit5 + PID rtol=atol={TIGHT} (B1 also {LOOSE})")
    t_start, cpu_start = time.perf_counter(), _cpu_s()
    out = args.out or os.path.join(
        os.path.dirname(os.path.abspath(__file__)),
        "results",
        f"nde_regularisation{'.quick' if quick else ''}.json",
    )
    rows = []
    done = []
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")

    def write(final):
        # Partial results after each task, so a stopped run still leaves its figures.
        kept, when = (
            ([], None)
            if quick or (set(tasks) == set(TASK_LABELS) and not only_arms)
            else _kept_rows(out, tasks, only_arms)
        )
        all_rows = kept + rows
        present = [t for t in TASK_LABELS if any(r["task"] in TASK_LABELS[t] for r in all_rows)]
        agg, summary, flags = summarise(all_rows, present, final=final)
        extra = dict(
            selection=flags,
            paper=PAPER,
            seeds=seeds,
            provenance=dict(
                run_here=list(done),
                measured={**(when or {}), **{t: stamp for t in done}},
                note="rows of tasks not in `run_here` were kept from the results file "
                "(measured at the time in `measured`)",
            ),
            wall_s=time.perf_counter() - t_start,
            cpu_s=_cpu_s() - cpu_start,
        )
        if not quick and os.path.exists(out):
            # deterministic no-training figures of tasks not re-run are carried over
            with open(out) as f:
                previous = json.load(f)
            for key, value in previous.items():
                if "true_system" in key:
                    extra[key] = value
        if "b3" in done:
            extra["b3_true_system_nfe"] = spiral_true_nfe(TIGHT)
            extra["b3_true_system_perturbations"] = spiral_perturbations(TIGHT)
        if "b3loose" in done:
            extra["b3_loose_true_system_nfe"] = spiral_true_nfe(LOOSE)
            extra["b3_loose_true_system_perturbations"] = spiral_perturbations(LOOSE)
        if not final:
            extra["partial"] = True
        write_results("nde_regularisation", mode, all_rows + agg, summary, out=out, extra=extra)
        return summary, flags, extra

    if "b1" in tasks:
        rows += run_b1(seeds, quick, TIGHT, arms_b1(quick), "B1 NODE digits")
        loose_arms = [
            ("vanilla", ()),
            ("global error", (nde.GlobalErrorEstimate(weight=W(0.1)),)),
            ("local unbiased", (nde.LocalErrorEstimate(weight=W(0.1)),)),
        ]
        rows += run_b1(seeds, quick, LOOSE, loose_arms, "B1 NODE digits loose")
        done.append("b1")
        write(final=False)
    if "b2" in tasks:
        rows += run_b2(seeds, quick)
        done.append("b2")
        write(final=False)
    if "b3" in tasks:
        arms = [a for a in arms_b3(quick) if only_arms is None or a[0] in only_arms]
        rows += run_b3(seeds, quick, arms=arms)
        done.append("b3")
    if "b3loose" in tasks:
        loose_b3 = [
            ("vanilla", ()),
            *(
                ("global error", (nde.GlobalErrorEstimate(weight=W(w)),))
                for w in ((0.03,) if quick else (0.01, 0.03, 0.05, 0.1))
            ),
            ("local unbiased", (nde.LocalErrorEstimate(weight=W(0.1)),)),
        ]
        rows += run_b3(seeds, quick, LOOSE, loose_b3, "B3 spiral loose")
        done.append("b3loose")
    summary, flags, extra = write(final=True)
    print("summary:", summary)
    print("selection:", flags)
    print("paper:", PAPER)
    if "b3_true_system_nfe" in extra:
        print("B3 data-generating ODE NFE at the same tolerance:", extra["b3_true_system_nfe"])
    print(f"total wall {extra['wall_s']:.0f} s, process CPU {extra['cpu_s']:.0f} s")


if __name__ == "__main__":
    main()
