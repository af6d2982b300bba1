"""Stable neural SDEs on bundled UEA/UCR sets with 0/30/50/70 % missing values.

Question: under the paper's robustness protocol (train+test merged, stratified 70/15/15,
values dropped per channel), how accurate are scimlx's LSDE / LNSDE / GSDE against the
naive neural SDE, neural CDE and latent neural ODE, how close is scimlx's LNSDE to a
PyTorch (torchsde + torchcde) implementation of the paper's LNSDE on identical splits, masks
and seeds, and how fast is a training step?

Run from the repo root: `python -m benchmarks.stable_sde [--quick] [--seeds N] [--epochs E]`.
Both sides run single-threaded (XLA and torch intra-op threads pinned to 1).
"""

import os


# Pin threads before JAX / torch start (both sides get one intra-op thread).
os.environ.setdefault(
    "XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
)
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("SCIMLX_PROGRESS", "0")

import argparse  # noqa: E402
import copy  # noqa: E402
import functools  # noqa: E402
import json  # noqa: E402
import re  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import equinox as eqx  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import jax.random as jr  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

from benchmarks import _harness as H  # noqa: E402
from scimlx.data import (  # noqa: E402
    bundled_dataset_dir,
    drop_values,
    from_series,
    load_uea_ucr,
    paper_split,
    standardise,
)
from scimlx.sde import (  # noqa: E402
    calibrate_readout,
    classification_loss,
    default_batch_size,
    GridBrownianPath,
    GSDE,
    LatentODE,
    LNSDE,
    LSDE,
    NaiveSDE,
    NeuralCDE,
    paths_from_data,
    reference_optimiser,
)


RATES = (0.0, 0.3, 0.5, 0.7)
LR_GRID = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2)  # the paper searches log-uniform [1e-4, 1e-2]
MODELS = {
    "LSDE": LSDE,
    "LNSDE": LNSDE,
    "GSDE": GSDE,
    "naive SDE": NaiveSDE,
    "neural CDE": NeuralCDE,
    "neural ODE": LatentODE,
}
STABLE = ("LSDE", "LNSDE", "GSDE")
TORCH = "LNSDE (PyTorch ref.)"
HIDDEN = 32
LAYERS = 2
# Per-data-set accuracies of the paper (its appendix) could not be retrieved (methods notes,
# section 2): no paper figure is printed beside ours.
PAPER = {}


# ----------------------------------------------------------------------------- JAX side


@eqx.filter_jit
def _train_step(params, static, opt_state, optimiser, batch, key):
    def loss(p):
        return classification_loss(eqx.combine(p, static), batch, key)

    value, grads = jax.value_and_grad(loss)(params)
    updates, opt_state = optimiser.update(grads, opt_state, params)
    return eqx.apply_updates(params, updates), opt_state, value


@eqx.filter_jit
def _eval_loss_acc(params, static, batch, key):
    model = eqx.combine(params, static)
    keys = jr.split(key, len(batch))
    logits = jax.vmap(lambda p, t, n, k: model.classify(p, t, n, key=k))(
        batch.paths, batch.times, batch.lengths, keys
    )
    loss = jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, batch.labels))
    return loss, jnp.mean(jnp.argmax(logits, 1) == batch.labels)


def _batches(n, bs, epoch, seed):
    """Epoch batches: a seeded permutation; the last batch holds the remainder (the
    reference's `DataLoader(drop_last=False)`; one more compiled shape on the JAX side)."""
    perm = np.random.default_rng([seed, epoch]).permutation(n)
    return [perm[i : i + bs] for i in range(0, n, bs)]


def _stop(epoch, bad, cfg):
    """The reference's early-stopping rule `(e > 20) & (patient > 10)` (0-based epoch `e`,
    `patient` epochs in a row without a lower validation loss); never in quick mode."""
    return epoch > cfg["stop_after"] and bad > cfg["patience"]


@functools.cache
def _optimiser(spe):
    """Adam with L2 weight decay lr/100, the learning rate halved every 10 epochs (the paper's
    StepLR(10, 0.5)). The learning rate lives in the optimiser state (`inject_hyperparams`),
    so runs at different learning rates share one compiled step."""

    def adam_step_lr(lr):
        return reference_optimiser(lr, spe)

    return optax.inject_hyperparams(adam_step_lr)(lr=1e-3)


def _init_optimiser(params, lr, spe):
    optimiser = _optimiser(spe)
    state = optimiser.init(params)
    state.hyperparams["lr"] = jnp.asarray(lr, dtype=state.hyperparams["lr"].dtype)
    return optimiser, state


def train_jax(name, cls, in_ch, n_cls, P, idx, cfg, seed):
    tr, va, te = idx
    key = jr.key(seed)
    model = cls(
        in_ch, cfg.get("hidden", HIDDEN), n_cls, num_layers=cfg.get("layers", LAYERS), key=key
    )
    params, static = eqx.partition(model, eqx.is_inexact_array)
    optimiser, opt_state = _init_optimiser(params, cfg["lr"], cfg["spe"])
    train, val, test = P[tr], P[va], P[te]
    best = (np.inf, params, 0)
    bad = 0
    times = []
    step = 0
    compile_s = None
    for epoch in range(cfg["epochs"]):
        for b in _batches(len(tr), cfg["bs"], epoch, seed):
            t0 = time.perf_counter()
            params, opt_state, value = _train_step(
                params, static, opt_state, optimiser, train[b], jr.fold_in(key, step)
            )
            value = float(value)
            dt = time.perf_counter() - t0
            if compile_s is None:
                compile_s = dt
            else:
                times.append(dt)
            step += 1
            if not np.isfinite(value):
                return {"diverged": True, "acc": np.nan, "step_s": np.nan, "compile_s": compile_s}
        # batch-norm readout: inference statistics from the training set (torch keeps a
        # running average of the training batches' statistics instead)
        params_c = eqx.partition(
            calibrate_readout(eqx.combine(params, static), train, key=jr.key(3 * 10**6 + seed)),
            eqx.is_inexact_array,
        )[0]
        vloss, _ = _eval_loss_acc(params_c, static, val, jr.key(10**6 + seed))
        vloss = float(vloss)
        if vloss < best[0]:
            best, bad = (vloss, params_c, epoch), 0
        else:
            bad += 1
        if _stop(epoch, bad, cfg):
            break
    _, acc = _eval_loss_acc(best[1], static, test, jr.key(2 * 10**6 + seed))
    return {
        "diverged": False,
        "acc": float(acc),
        "step_s": float(np.median(times)) if times else np.nan,
        "compile_s": compile_s,
        "epochs_run": epoch + 1,
        "best_val_loss": best[0],
    }


# ----------------------------------------------------------------------------- PyTorch peer


def _port():
    """The PyTorch port of the official classifier (`benchmarks/_sde_torch_port.py`), or
    `None` where torch, torchsde or torchcde is missing."""
    for name in ("torch", "torchsde", "torchcde"):
        if H.optional_import(name) is None:
            return None
    import torch

    from benchmarks import _sde_torch_port as port

    torch.set_num_threads(1)
    return port


def _torch_inputs(port, data, ids=None):
    import torch

    ids = np.arange(len(data)) if ids is None else np.asarray(ids)
    times = data.times[0].astype(np.float32)
    # padding: the time channel continues; values are NaN and torchcde fills them forward
    coeffs = port.coefficients(times, data.values[ids])
    return (
        torch.from_numpy(times),
        coeffs,
        torch.from_numpy(data.lengths[ids].astype(np.int64)),
        torch.from_numpy(data.labels[ids].astype(np.int64)),
    )


def torch_run(port, data, idx, cfg, seed, solver="loop"):
    """Train the port of the official LNSDE classifier on the same split, mask, batches and
    schedule as `train_jax` (Adam with weight decay lr/100, StepLR(10, 0.5), the reference's
    early-stopping rule, best-validation weights, test accuracy)."""
    import torch

    torch.manual_seed(seed)
    tr, va, te = idx
    times, coeffs, lengths, labels = _torch_inputs(port, data)
    model = port.Classifier(data.channels + 1, HIDDEN, data.num_classes, LAYERS, "LNSDE")
    opt = torch.optim.Adam(model.parameters(), lr=cfg["lr"], weight_decay=cfg["lr"] / 100)
    sched = torch.optim.lr_scheduler.StepLR(opt, 10, 0.5)
    lossf = torch.nn.CrossEntropyLoss()

    def evaluate(ids):
        model.eval()
        with torch.no_grad():
            out = model(times, coeffs[ids], lengths[ids], solver=solver)
            return float(lossf(out, labels[ids])), float(
                (out.argmax(1) == labels[ids]).float().mean()
            )

    best, bad, step_times = (np.inf, None), 0, []
    for epoch in range(cfg["epochs"]):
        model.train()
        for b in _batches(len(tr), cfg["bs"], epoch, seed):
            ids = torch.from_numpy(tr[b])
            t0 = time.perf_counter()
            opt.zero_grad()
            out = model(times, coeffs[ids], lengths[ids], solver=solver)
            loss = lossf(out, labels[ids])
            loss.backward()
            opt.step()
            step_times.append(time.perf_counter() - t0)
        vloss, _ = evaluate(torch.from_numpy(va))
        if vloss < best[0]:
            best, bad = (vloss, copy.deepcopy(model.state_dict())), 0
        else:
            bad += 1
        if _stop(epoch, bad, cfg):
            break
        sched.step()
    model.load_state_dict(best[1])
    _, acc = evaluate(torch.from_numpy(te))
    return {
        "diverged": False,
        "acc": acc,
        "step_s": float(np.median(step_times[1:])) if len(step_times) > 1 else np.nan,
    }


def torch_stepper(port, data, ids, lr, solver):
    """One training step of a fresh port (train mode) on a fixed batch."""
    import torch

    torch.manual_seed(0)
    times, coeffs, lengths, labels = _torch_inputs(port, data, ids)
    model = port.Classifier(data.channels + 1, HIDDEN, data.num_classes, LAYERS, "LNSDE")
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=lr / 100)
    lossf = torch.nn.CrossEntropyLoss()

    def step():
        opt.zero_grad()
        loss = lossf(model(times, coeffs, lengths, solver=solver), labels)
        loss.backward()
        opt.step()
        return float(loss.detach())

    return step


def logits_agreement(port, data, ids, key=0) -> dict:
    """scimlx's LNSDE and the port with copied weights on one fixed Brownian sample (the
    increments scimlx draws), inference mode with calibrated batch-norm statistics: the
    largest logit difference over the largest logit, for the plain loop and torchsde."""
    import torch

    P = paths_from_data(data)[ids]
    model = LNSDE(data.channels + 1, HIDDEN, data.num_classes, num_layers=LAYERS, key=jr.key(key))
    model = calibrate_readout(model, P, key=jr.key(key + 1))
    keys = jr.split(jr.key(key + 2), len(ids))
    logits = np.asarray(
        eqx.filter_jit(
            lambda m: jax.vmap(lambda p, t, n, k: m.classify(p, t, n, key=k))(
                P.paths, P.times, P.lengths, keys
            )
        )(model)
    )
    grid = jnp.asarray(data.times[0])
    inc = np.stack(
        [np.asarray(GridBrownianPath(grid, (HIDDEN,), key=k).increments) for k in keys], axis=1
    )
    tm = port.copy_weights(
        port.Classifier(data.channels + 1, HIDDEN, data.num_classes, LAYERS, "LNSDE"), model
    )
    tm.eval()
    times, coeffs, lengths, _ = _torch_inputs(port, data, ids)
    out = {}
    with torch.no_grad():
        for solver in ("loop", "torchsde"):
            theirs = tm(times, coeffs, lengths, solver=solver, increments=torch.from_numpy(inc))
            diff = np.max(np.abs(theirs.numpy() - logits)) / np.max(np.abs(logits))
            out[solver] = float(diff)
    return out


def interleaved_step_times(port, data, cfg, rounds=15) -> dict:
    """Step times (s) of scimlx's LNSDE, the port as a plain PyTorch loop and the port
    through torchsde, timed in turns (round-robin) on the same batch, with PyTorch's
    intra-op pool pinned to the single thread XLA uses here."""
    ids = np.arange(cfg["bs"]) % len(data)
    P = paths_from_data(data)
    model = LNSDE(data.channels + 1, HIDDEN, data.num_classes, num_layers=LAYERS, key=jr.key(0))
    params, static = eqx.partition(model, eqx.is_inexact_array)
    optimiser = optax.chain(optax.add_decayed_weights(cfg["lr"] / 100), optax.adam(cfg["lr"]))
    batch = P[ids]
    state = [params, optimiser.init(params), 0]

    def jax_step():
        state[2] += 1
        p, o, v = _train_step(state[0], static, state[1], optimiser, batch, jr.key(state[2]))
        state[0], state[1] = p, o
        return v

    fns = {
        "scimlx": (jax_step, ()),
        "torch loop": (torch_stepper(port, data, ids, cfg["lr"], "loop"), ()),
        "torchsde": (torch_stepper(port, data, ids, cfg["lr"], "torchsde"), ()),
    }
    with H.pinned_threads(1) as threads:
        load_before = H.load_avg()
        res = H.time_interleaved(fns, rounds=rounds, sample_s=0.0)
        load_after = H.load_avg()
    out = {
        k: {f: v[f] for f in ("min_s", "median_s", "max_s", "compile_s")} for k, v in res.items()
    }
    out["peer_threads"] = threads
    out["load_avg"] = [load_before, load_after]
    return out


# ----------------------------------------------------------------------------- driver


def _fmt(m, s):
    return "n/a" if not np.isfinite(m) else f"{100 * m:.1f}±{100 * s:.1f}"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seeds", type=int, default=None)
    parser.add_argument(
        "--seed-list", default=None, help="comma-separated seeds (instead of range(--seeds))"
    )
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--datasets", default=None, help="comma-separated names")
    parser.add_argument("--no-torch", action="store_true")
    parser.add_argument(
        "--raw-paths",
        action="store_true",
        help="build the control paths from raw values, as the reference code does (default: "
        "values standardised with the training split's mean and std)",
    )
    parser.add_argument(
        "--peer-only",
        action="store_true",
        help="only the PyTorch peer checks per data set (copied-weights logits agreement and "
        "interleaved step times against the port through torchsde and as a plain loop); "
        "writes stable_sde.peer.json",
    )
    parser.add_argument(
        "--rates",
        default=None,
        help="comma-separated missing rates, a subset of 0,0.3,0.5,0.7 (a focused study: "
        "writes a per-cell table, default file stable_sde.subset.json)",
    )
    parser.add_argument(
        "--tune-lr",
        action="store_true",
        help="choose each model's learning rate per data set from a grid, as the paper's "
        "tuning step does (10 epochs, 0 %% missing, seed 0, validation loss)",
    )
    parser.add_argument(
        "--tune",
        action="store_true",
        help="the paper's full tuning step per model and data set: random search of 20 "
        "settings (learning rate log-uniform in [1e-4, 1e-2], width 16/32/64/128, 1-4 layers) "
        "with successive halving at 1 / 4 / 10 epochs (as Ray Tune's ASHA), 0 %% missing, "
        "seed 0, validation loss",
    )
    parser.add_argument(
        "--tuned-from",
        default=None,
        help="reuse the settings that --tune chose, from a results JSON (summary 'tuned')",
    )
    parser.add_argument(
        "--models", default=None, help="comma-separated model names (a focused study, as --rates)"
    )
    parser.add_argument("--out", default=None)
    parser.add_argument(
        "--combine", nargs="+", default=None, help="merge per-data-set JSON results and exit"
    )
    parser.add_argument(
        "--from-logs", nargs="+", default=None, help="rebuild results from run logs and exit"
    )
    parser.add_argument(
        "--markdown", default=None, help="print a results JSON as the docs' markdown table"
    )
    args = parser.parse_args(argv)
    if args.markdown:
        print(markdown(args.markdown))
        return 0
    if args.from_logs:
        return from_logs(
            args.from_logs, "quick" if args.quick else "full", args.epochs or 100, args.out
        )
    if args.combine:
        return combine(args.combine, "quick" if args.quick else "full", args.out)
    quick = args.quick
    if args.datasets:
        names = args.datasets.split(",")
    elif quick:
        names = ["BasicMotions"]
    else:
        names = ["BasicMotions", "JapaneseVowels", "ArrowHead", "GunPoint", "ItalyPowerDemand"]
    seeds = list(range(args.seeds if args.seeds else (1 if quick else 3)))
    if args.seed_list:
        seeds = [int(x) for x in args.seed_list.split(",")]
    epochs = args.epochs if args.epochs else (6 if quick else 100)
    names = [n for n in names if bundled_dataset_dir(n) is not None]
    rates = RATES if args.rates is None else tuple(float(r) for r in args.rates.split(","))
    models = MODELS if args.models is None else {m: MODELS[m] for m in args.models.split(",")}
    if any(r not in RATES for r in rates):
        parser.error(f"--rates must be a subset of {RATES}, got {rates}")
    # a focused study: no PyTorch peer, its own table and file
    subset = (
        rates != RATES
        or list(models) != list(MODELS)
        or args.tune_lr
        or args.tune
        or args.tuned_from
    )
    tuned_before = {}
    if args.tuned_from:
        with open(args.tuned_from) as f:
            tuned_before = json.load(f)["summary"]["tuned"]
    if not names:
        print("No bundled data set found: install aeon (`pip install aeon --no-deps`).")
        return 1
    port = None if args.no_torch else _port()
    if port is None:
        print("PyTorch peer (torch, torchsde, torchcde) not installed: reference rows skipped.")
    if args.peer_only:
        if port is None:
            return 1
        return peer_report(port, names, quick, args)
    print(
        f"data sets {names}, rates {rates}, models {list(models)}, seeds {seeds}, "
        f"epochs <= {epochs}, hidden {HIDDEN}"
    )
    print(f"machine: {H.machine()}  (loaded shared 2-core box: timings are same-run ratios)")

    tuned = {}  # dataset -> {model: learning rate} with --tune-lr
    acc = {}  # (dataset, model, rate) -> list of accuracies
    step = {}  # (dataset, model) -> list of step seconds
    comp = {}
    t_start = time.perf_counter()
    for name in names:
        # every model shape and tuning setting compiles its own executables: free them per
        # data set (a 5-data-set tuned run otherwise ran out of mappable memory in LLVM)
        jax.clear_caches()
        series, labels, _ = load_uea_ucr(name)
        base = from_series(series, labels)
        n_total = len(base)
        bs = default_batch_size(n_total)
        n_train = int(np.floor(0.7 * n_total))
        spe = -(-n_train // bs)
        lr = 1e-3 * bs / 16
        cfg = {
            "bs": bs,
            "spe": spe,
            "lr": lr,
            "epochs": epochs,
            "stop_after": 20 if not quick else epochs,
            "patience": 10,
        }
        settings = {m: {"lr": lr} for m in models}
        if args.tune_lr:
            lrs = tune_lr(name, base, models, cfg)
            tuned[name] = lrs
            settings = {m: {"lr": v} for m, v in lrs.items()}
        if args.tune:
            settings = tune_paper(name, base, models, cfg)
            tuned[name] = settings
        elif args.tuned_from:
            settings = {m: tuned_before[name][m] for m in models}
            tuned[name] = settings
        for seed in seeds:
            idx = paper_split(base.labels, seed)
            clean = base if args.raw_paths else standardise(base, base[idx[0]])
            for r_i, rate in enumerate(RATES):
                if rate not in rates:
                    continue  # the masks keep their seeds (1000 * seed + index in RATES)
                data = drop_values(clean, rate, seed=1000 * seed + r_i)
                P = paths_from_data(data)
                for mname, cls in models.items():
                    out = train_jax(
                        mname,
                        cls,
                        data.channels + 1,
                        data.num_classes,
                        P,
                        idx,
                        {**cfg, **settings[mname]},
                        seed,
                    )
                    acc.setdefault((name, mname, rate), []).append(out["acc"])
                    step.setdefault((name, mname), []).append(out["step_s"])
                    comp.setdefault((name, mname), []).append(out["compile_s"])
                    print(
                        f"  {name} seed {seed} rate {rate:.0%} {mname:<11} acc "
                        f"{out['acc']:.3f} step {1e3 * out['step_s']:.1f} ms "
                        f"[{time.perf_counter() - t_start:.0f}s] epochs {out.get('epochs_run')}",
                        flush=True,
                    )
                if port is not None and not subset:
                    out = torch_run(port, data, idx, cfg, seed)
                    acc.setdefault((name, TORCH, rate), []).append(out["acc"])
                    step.setdefault((name, TORCH), []).append(out["step_s"])
                    print(
                        f"  {name} seed {seed} rate {rate:.0%} {TORCH} acc {out['acc']:.3f} "
                        f"step {1e3 * out['step_s']:.1f} ms "
                        f"[{time.perf_counter() - t_start:.0f}s]",
                        flush=True,
                    )

    if subset:
        return focused_report(names, list(models), rates, acc, seeds, epochs, t_start, args, tuned)
    model_names = list(MODELS) + ([TORCH] if port is not None else [])
    timing = {} if port is None else peer_checks(port, names, quick, args.raw_paths)
    rows = build_rows(names, model_names, acc, step, comp, timing)
    summary = summarise(rows)
    summary.update(peer_summary(timing))
    summary.update({"seeds": seeds, "epochs_max": epochs, "wall_s": time.perf_counter() - t_start})
    summary["raw_paths"] = bool(args.raw_paths)
    report(rows, summary, "quick" if quick else "full", args.out)
    return 0


def peer_checks(port, names, quick, raw_paths=False) -> dict:
    """Per data set (50 % missing, the protocol's batch size): the copied-weights logits
    agreement with the port, and interleaved step times of scimlx, the port as a plain loop
    and the port through torchsde."""
    out = {}
    for name in names:
        series, labels, _ = load_uea_ucr(name)
        base = from_series(series, labels)
        d = drop_values(base if raw_paths else standardise(base), 0.5, seed=0)
        bs = default_batch_size(len(d))
        agree = logits_agreement(port, d, np.arange(min(len(d), 64)))
        t = interleaved_step_times(port, d, {"bs": bs, "lr": 1e-3 * bs / 16}, 5 if quick else 15)
        out[name] = {"batch": bs, "logits_rel_diff": agree, **t}
        ms = {k: 1e3 * t[k]["median_s"] for k in ("scimlx", "torch loop", "torchsde")}
        print(
            f"  {name}: copied-weights logits rel. diff {agree['loop']:.1e} (loop), "
            f"{agree['torchsde']:.1e} (torchsde); interleaved step (median ms, batch {bs}, 50% "
            f"missing): scimlx {ms['scimlx']:.1f}, torch loop {ms['torch loop']:.1f}, "
            f"torchsde {ms['torchsde']:.1f}; load {t['load_avg']}",
            flush=True,
        )
    return out


def _geomean(xs):
    return float(np.exp(np.mean(np.log(xs))))


def peer_summary(peer: dict) -> dict:
    """Summary keys of the peer checks (`{}` without a peer)."""
    if not peer:
        return {}
    names = list(peer)
    ours = {n: peer[n]["scimlx"]["median_s"] for n in names}
    loop = {n: peer[n]["torch loop"]["median_s"] / ours[n] for n in names}
    tsde = {n: peer[n]["torchsde"]["median_s"] / ours[n] for n in names}
    fastest = {n: min(loop[n], tsde[n]) for n in names}
    return {
        "logits_rel_diff_vs_torch_port": max(peer[n]["logits_rel_diff"]["loop"] for n in names),
        "logits_rel_diff_vs_torch_port_torchsde": max(
            peer[n]["logits_rel_diff"]["torchsde"] for n in names
        ),
        "step_speedup_vs_torch_port": _geomean(list(fastest.values())),
        "step_speedup_vs_torch_port_loop": _geomean(list(loop.values())),
        "step_speedup_vs_torchsde": _geomean(list(tsde.values())),
        "step_speedup_per_dataset": {
            n: {"torch loop": loop[n], "torchsde": tsde[n]} for n in names
        },
        "peer_threads": peer[names[0]]["peer_threads"],
        "peer_load_avg": {n: peer[n]["load_avg"] for n in names},
        "target_logits_1e-5": bool(max(peer[n]["logits_rel_diff"]["loop"] for n in names) <= 1e-5),
        "target_5x_faster_than_torch_port": bool(_geomean(list(fastest.values())) >= 5.0),
    }


def peer_report(port, names, quick, args) -> int:
    t_start = time.perf_counter()
    peer = peer_checks(port, names, quick, args.raw_paths)
    rows = []
    for n, v in peer.items():
        row = {"dataset": n, "batch": v["batch"]}
        row["logits_rel_diff_loop"] = v["logits_rel_diff"]["loop"]
        row["logits_rel_diff_torchsde"] = v["logits_rel_diff"]["torchsde"]
        for k in ("scimlx", "torch loop", "torchsde"):
            for f in ("median_s", "min_s", "max_s", "compile_s"):
                row[f"{k} {f}"] = v[k][f]
        row["load_avg"] = v["load_avg"]
        rows.append(row)
    summary = peer_summary(peer)
    summary.update(datasets=names, raw_paths=bool(args.raw_paths))
    summary["wall_s"] = time.perf_counter() - t_start
    H.print_table(
        rows,
        ["dataset", "batch", "logits_rel_diff_loop", "logits_rel_diff_torchsde"]
        + [f"{k} median_s" for k in ("scimlx", "torch loop", "torchsde")],
        title="PyTorch port of the official LNSDE classifier vs scimlx",
    )
    for k, v in summary.items():
        print(f"{k}: {v}")
    mode = "quick" if quick else "full"
    suffix = ".peer.quick.json" if quick else ".peer.json"
    out = args.out or os.path.join("benchmarks", "results", "stable_sde" + suffix)
    H.write_results("stable_sde", mode, rows, summary, out=out)
    return 0


def tune_lr(name, base, models, cfg) -> dict:
    """The paper's tuning step, learning rate only (hidden size and depth stay the recipe's):
    per model, the learning rate of the grid with the lowest validation loss after 10 epochs
    at 0 % missing on seed 0's split."""
    idx = paper_split(base.labels, 0)
    data = drop_values(standardise(base, base[idx[0]]), 0.0, seed=0)
    P = paths_from_data(data)
    out = {}
    for mname, cls in models.items():
        losses = {}
        for lr in LR_GRID:
            run_cfg = {**cfg, "lr": lr, "epochs": 10, "stop_after": 10}
            res = train_jax(mname, cls, data.channels + 1, data.num_classes, P, idx, run_cfg, 0)
            losses[lr] = np.inf if res["diverged"] else res["best_val_loss"]
        out[mname] = min(losses, key=losses.get)
        print(
            f"  {name} {mname}: lr tuned to {out[mname]:.0e} "
            f"(val loss {', '.join(f'{k:.0e}: {v:.3f}' for k, v in losses.items())})",
            flush=True,
        )
    return out


TUNE_SAMPLES = 20
TUNE_RUNGS = (1, 4, 10)  # epochs; the best quarter of each rung goes on to the next


def tune_paper(name, base, models, cfg) -> dict:
    """The paper's tuning step (Ray Tune ASHA, 20 samples, at most 10 epochs, 0 % missing,
    seed 0) as a synchronous successive halving: the same 20 random settings for every model
    (learning rate log-uniform in [1e-4, 1e-2], width in {16, 32, 64, 128}, 1-4 drift
    layers), each trained from scratch to 1 epoch, the best quarter by validation loss to 4,
    the best quarter of those to 10; the setting with the lowest validation loss wins."""
    idx = paper_split(base.labels, 0)
    data = drop_values(standardise(base, base[idx[0]]), 0.0, seed=0)
    P = paths_from_data(data)
    rng = np.random.default_rng(20240214)
    samples = [
        {
            "lr": float(10 ** rng.uniform(-4, -2)),
            "hidden": int(rng.choice([16, 32, 64, 128])),
            "layers": int(rng.integers(1, 5)),
        }
        for _ in range(TUNE_SAMPLES)
    ]
    out = {}
    for mname, cls in models.items():
        alive = list(range(len(samples)))
        losses = {}
        for rung in TUNE_RUNGS:
            for i in alive:
                run_cfg = {**cfg, **samples[i], "epochs": rung, "stop_after": rung}
                res = train_jax(mname, cls, data.channels + 1, data.num_classes, P, idx, run_cfg, 0)
                losses[i] = np.inf if res["diverged"] else res["best_val_loss"]
            alive = sorted(alive, key=losses.get)
            if rung != TUNE_RUNGS[-1]:
                alive = alive[: max(1, len(alive) // 4)]
        out[mname] = samples[alive[0]]
        jax.clear_caches()
        print(
            f"  {name} {mname}: tuned to lr {out[mname]['lr']:.6e}, width "
            f"{out[mname]['hidden']}, {out[mname]['layers']} layers (val loss "
            f"{losses[alive[0]]:.3f})",
            flush=True,
        )
    return out


def _accuracy_cells(acc, name, model, rates) -> dict:
    """A table row's accuracy mean, std and text per rate from per-seed accuracies."""
    row = {"dataset": name, "model": model}
    for rate in rates:
        a = np.asarray(acc[(name, model, rate)])
        row[f"acc_{int(rate * 100)}"] = float(np.nanmean(a))
        row[f"std_{int(rate * 100)}"] = float(np.nanstd(a))
        row[f"acc@{int(rate * 100)}%"] = _fmt(np.nanmean(a), np.nanstd(a))
    return row


def focused_report(names, models, rates, acc, seeds, epochs, t_start, args, tuned) -> int:
    """Table and JSON of a focused study (a subset of rates or models): accuracy per
    (data set, model, rate), and the best stable class's margin over the neural CDE at each
    rate run when both are present."""
    rows = []
    for name in names:
        for m in models:
            row = _accuracy_cells(acc, name, m, rates)
            for rate in rates:
                row[f"per_seed_{int(rate * 100)}"] = [float(x) for x in acc[(name, m, rate)]]
            rows.append(row)
    summary = {"datasets": names, "models": models, "rates": list(rates), "seeds": seeds}
    stable = [m for m in STABLE if m in models]
    for rate in rates:
        key = int(rate * 100)
        means = {m: np.mean([np.nanmean(acc[(n, m, rate)]) for n in names]) for m in models}
        summary[f"mean_acc_{key}"] = {m: float(v) for m, v in means.items()}
        if stable and "neural CDE" in models:
            best = max(stable, key=lambda m: means[m])
            summary[f"best_stable_at_{key}"] = best
            margin = 100 * (means[best] - means["neural CDE"])
            summary[f"stable_vs_ncde_pp_at_{key}"] = float(margin)
    summary["epochs_max"] = epochs
    if t_start is not None:
        summary["wall_s"] = time.perf_counter() - t_start
    if getattr(args, "from_logs", None):
        summary["from_logs"] = [os.path.basename(p) for p in args.from_logs]
    if tuned:
        summary["tuned_lr" if getattr(args, "tune_lr", False) else "tuned"] = tuned
    cols = ["dataset", "model"] + [f"acc@{int(r * 100)}%" for r in rates]
    H.print_table(rows, cols, title="Test accuracy % (mean±std over seeds), focused study")
    for k, v in summary.items():
        print(f"{k}: {v}")
    out = args.out or os.path.join("benchmarks", "results", "stable_sde.subset.json")
    H.write_results("stable_sde", "quick" if args.quick else "full", rows, summary, out=out)
    return 0


def build_rows(names, model_names, acc, step, comp, timing) -> list[dict]:
    """Table rows from per-run accuracies `acc[(dataset, model, rate)]`, step times
    `step[(dataset, model)]` (seconds), compile times and interleaved timings."""
    rows = []
    for name in names:
        for m in model_names:
            row = _accuracy_cells(acc, name, m, RATES)
            row["drop_0_70_pp"] = 100 * (row["acc_0"] - row["acc_70"])
            row["step_ms"] = 1e3 * float(np.nanmedian(step[(name, m)]))
            if name in timing and m in ("LNSDE", TORCH):
                # the ratio uses alternating timings on one batch (same machine load); the
                # PyTorch row is the faster of the port's two solves
                t = timing[name]
                sec = (
                    t["scimlx"]["median_s"]
                    if m == "LNSDE"
                    else min(t["torch loop"]["median_s"], t["torchsde"]["median_s"])
                )
                row["step_ms_interleaved"] = 1e3 * sec
            # the first run of each (data set, model) compiles; later runs reuse it
            row["compile_s"] = float(comp[(name, m)][0]) if comp.get((name, m)) else None
            row["paper"] = PAPER.get((name, m), "not verified")
            rows.append(row)
    return rows


_RUN_LINE = re.compile(
    r"^\s+(\S+) seed (\d+) rate (\d+)% (.+?)\s+acc (\S+) step (\S+) ms \[\d+s\]"
    r"(?: epochs \S+)?$"
)
_TUNED_LINE = re.compile(r"^\s+(\S+) (.+?): tuned to lr (\S+), width (\d+), (\d+) layers")
_TIMING_LINE = re.compile(
    r"^\s+(\S+): copied-weights .*: scimlx (\S+), torch loop (\S+), torchsde (\S+);"
)


def from_logs(paths: list[str], mode: str, epochs: int, out: str | None) -> int:
    """Rebuild the table from the per-run lines of benchmark logs (runs split across
    processes by seed, or a process stopped before its end): every figure is a measured
    per-run accuracy / median step time as printed; compile times are not in the logs."""
    runs, timing, tuned = {}, {}, {}
    for p in paths:
        with open(p) as f:
            for line in f:
                u = _TUNED_LINE.match(line.rstrip("\n"))
                if u:
                    name, model, lr, width, layers = u.groups()
                    tuned.setdefault(name, {})[model] = {
                        "lr": float(lr),
                        "hidden": int(width),
                        "layers": int(layers),
                    }
                m = _RUN_LINE.match(line.rstrip("\\n"))
                if m:
                    name, seed, rate, model, a, st = m.groups()
                    runs[(name, model.strip(), int(rate) / 100, int(seed))] = (
                        float(a),
                        float(st) / 1e3,
                    )
                t = _TIMING_LINE.match(line.rstrip("\\n"))
                if t:
                    timing[t.group(1)] = {
                        k: {"median_s": float(t.group(i)) / 1e3}
                        for i, k in ((2, "scimlx"), (3, "torch loop"), (4, "torchsde"))
                    }
    names = list(dict.fromkeys(k[0] for k in runs))
    model_names = [m for m in list(MODELS) + [TORCH] if any(k[1] == m for k in runs)]
    seeds = sorted({k[3] for k in runs})
    acc, step = {}, {}
    for (name, model, rate, seed), (a, st) in sorted(runs.items()):
        acc.setdefault((name, model, rate), []).append(a)
        step.setdefault((name, model), []).append(st)
    rates = tuple(r for r in RATES if any(k[2] == r for k in runs))
    missing = [
        (n, m, r, sd)
        for n in names
        for m in model_names
        for r in rates
        for sd in seeds
        if (n, m, r, sd) not in runs
    ]
    if missing:
        print(f"incomplete logs: {len(missing)} runs missing, e.g. {missing[:3]}")
        return 1
    if rates != RATES or model_names != list(MODELS) + [TORCH]:
        # a focused study (a subset of rates or models), e.g. a tuned run split in processes
        ns = argparse.Namespace(out=out, quick=mode == "quick", tune_lr=False, from_logs=paths)
        return focused_report(names, model_names, rates, acc, seeds, epochs, None, ns, tuned)
    rows = build_rows(names, model_names, acc, step, {}, timing)
    summary = summarise(rows)
    summary.update(
        {"seeds": seeds, "epochs_max": epochs, "from_logs": [os.path.basename(p) for p in paths]}
    )
    report(rows, summary, mode, out)
    return 0


def summarise(rows: list[dict]) -> dict:
    """The issue's summary keys (and mean ranks, written into `rows`) from the table rows."""
    names = list(dict.fromkeys(r["dataset"] for r in rows))
    model_names = list(dict.fromkeys(r["model"] for r in rows))
    cell = {
        (r["dataset"], r["model"], rate): r[f"acc_{int(rate * 100)}"]
        for r in rows
        for rate in RATES
    }
    std = {
        (r["dataset"], r["model"], rate): r[f"std_{int(rate * 100)}"]
        for r in rows
        for rate in RATES
    }
    step_ms = {(r["dataset"], r["model"]): r["step_ms"] for r in rows}
    # mean rank over (dataset, rate) cells, among all rows' models
    ranks = {m: [] for m in model_names}
    for name in names:
        for rate in RATES:
            vals = np.array([cell[(name, m, rate)] for m in model_names])
            order = (-vals).argsort().argsort() + 1.0
            for m, rk in zip(model_names, order):
                ranks[m].append(rk)
    for row in rows:
        row["mean_rank"] = float(np.mean(ranks[row["model"]]))

    def cell_mean(m, rate=None):
        rs = RATES if rate is None else (rate,)
        return float(np.mean([cell[(n, m, r)] for n in names for r in rs]))

    best_stable = max(STABLE, key=lambda m: cell_mean(m))
    summary = {
        "datasets": names,
        "best_stable_class": best_stable,
        "mean_acc_best_stable": cell_mean(best_stable),
        "mean_acc_lnsde": cell_mean("LNSDE"),
        "stable_vs_naive_pp_at_50": 100
        * (cell_mean(best_stable, 0.5) - cell_mean("naive SDE", 0.5)),
        "stable_vs_ncde_pp_at_70": 100
        * (cell_mean(best_stable, 0.7) - cell_mean("neural CDE", 0.7)),
        "mean_rank": {m: float(np.mean(ranks[m])) for m in model_names},
    }
    if TORCH in model_names:
        gaps = {
            n: 100 * float(np.mean([cell[(n, TORCH, r)] - cell[(n, "LNSDE", r)] for r in RATES]))
            for n in names
        }
        seed_std = float(np.mean([std[(n, TORCH, r)] for n in names for r in RATES]))
        inter = {(r["dataset"], r["model"]): r.get("step_ms_interleaved") for r in rows}
        ratios = [
            (inter[(n, TORCH)] / inter[(n, "LNSDE")])
            if inter.get((n, "LNSDE")) and inter.get((n, TORCH))
            else step_ms[(n, TORCH)] / step_ms[(n, "LNSDE")]
            for n in names
        ]
        summary.update(
            {
                "mean_acc_torch_reference": cell_mean(TORCH),
                "mean_gap_to_torch_reference_pp": float(np.mean(list(gaps.values()))),
                "worst_gap_to_torch_reference_pp": float(max(gaps.values())),
                "gap_per_dataset_pp": gaps,
                "torch_reference_seed_std_pp": 100 * seed_std,
                "step_time_ratio_vs_torch": float(np.exp(np.mean(np.log(ratios)))),
                "step_time_ratio_per_dataset": dict(zip(names, map(float, ratios))),
            }
        )
        summary["target_lnsde_within_one_std"] = bool(
            summary["mean_gap_to_torch_reference_pp"] <= summary["torch_reference_seed_std_pp"]
        )
        summary["target_no_dataset_5pp_worse"] = bool(
            summary["worst_gap_to_torch_reference_pp"] <= 5.0
        )
        summary["target_3x_faster"] = bool(summary["step_time_ratio_vs_torch"] >= 3.0)
    else:
        for k in (
            "mean_acc_torch_reference",
            "mean_gap_to_torch_reference_pp",
            "worst_gap_to_torch_reference_pp",
            "step_time_ratio_vs_torch",
        ):
            summary[k] = None
    summary["target_stable_beats_naive_at_50"] = summary["stable_vs_naive_pp_at_50"] > 0
    summary["target_stable_beats_ncde_at_70"] = summary["stable_vs_ncde_pp_at_70"] > 0
    return summary


def report(rows, summary, mode, out):
    cols = (
        ["dataset", "model"]
        + [f"acc@{int(r * 100)}%" for r in RATES]
        + ["drop_0_70_pp", "mean_rank", "step_ms", "step_ms_interleaved", "compile_s", "paper"]
    )
    H.print_table(rows, cols, title="Test accuracy % (mean±std over seeds), paper protocol")
    for k, v in summary.items():
        print(f"{k}: {v}")
    H.write_results("stable_sde", mode, rows, summary, out=out)


def combine(paths: list[str], mode: str, out: str | None) -> int:
    """Merge per-data-set result files (runs split across processes) into one table."""
    import json

    rows, extra = [], {}
    for p in paths:
        with open(p) as f:
            payload = json.load(f)
        rows += payload["rows"]
        for k in ("seeds", "epochs_max"):
            extra[k] = payload["summary"].get(k)
        extra["wall_s"] = extra.get("wall_s", 0.0) + payload["summary"].get("wall_s", 0.0)
    summary = summarise(rows)
    summary.update(extra)
    report(rows, summary, mode, out)
    return 0


def markdown(path: str) -> str:
    """The docs table (accuracy per data set, model and rate; summary) from a results JSON."""
    import json

    with open(path) as f:
        payload = json.load(f)
    rows, summ, mach = payload["rows"], payload["summary"], payload["machine"]
    lines = [
        f"Measured {payload['date']} ({payload['mode']} mode), {mach.get('cores')}-core "
        f"{mach.get('cpu')} CPU, jax {mach.get('jax')}, float32, one thread per side, machine "
        f"shared with other jobs; seeds {summ.get('seeds')}, at most {summ.get('epochs_max')} "
        f"epochs; summed process wall time {summ.get('wall_s', 0) / 60:.0f} min.",
        "",
        "Test accuracy % (mean ± std over seeds) at 0 / 30 / 50 / 70 % missing:",
        "",
        "| data set | model | 0 % | 30 % | 50 % | 70 % | drop 0→70 (pp) | mean rank "
        "| step (ms, in-run median) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        step = r["step_ms"]
        lines.append(
            f"| {r['dataset']} | {r['model']} | "
            + " | ".join(r[f"acc@{int(q * 100)}%"] for q in RATES)
            + f" | {r['drop_0_70_pp']:.1f} | {r['mean_rank']:.2f} | {step:.0f} |"
        )

    def pp(k):
        v = summ.get(k)
        return "n/a" if v is None else f"{v:+.1f} pp"

    ok = {True: "met", False: "missed", None: "n/a"}
    lines += [
        "",
        "| summary | value | target |",
        "|---|---|---|",
        f"| data sets | {', '.join(summ['datasets'])} | |",
        f"| best stable class (mean accuracy) | {summ['best_stable_class']} "
        f"({100 * summ['mean_acc_best_stable']:.1f} %) | |",
        f"| LNSDE mean accuracy / PyTorch reference | {100 * summ['mean_acc_lnsde']:.1f} % / "
        + (
            f"{100 * summ['mean_acc_torch_reference']:.1f} %"
            if summ.get("mean_acc_torch_reference") is not None
            else "n/a"
        )
        + " | |",
        f"| mean gap to the reference (reference − LNSDE) | "
        f"{pp('mean_gap_to_torch_reference_pp')} (one seed std: "
        f"{summ.get('torch_reference_seed_std_pp', float('nan')):.1f} pp) | ≤ one seed std: "
        f"{ok[summ.get('target_lnsde_within_one_std')]} |",
        f"| worst data-set gap | {pp('worst_gap_to_torch_reference_pp')} "
        f"({', '.join(f'{k} {v:+.1f}' for k, v in summ.get('gap_per_dataset_pp', {}).items())})"
        f" | ≤ 5 pp: {ok[summ.get('target_no_dataset_5pp_worse')]} |",
        f"| best stable − naive SDE at 50 % | {pp('stable_vs_naive_pp_at_50')} | > 0: "
        f"{ok[summ.get('target_stable_beats_naive_at_50')]} |",
        f"| best stable − neural CDE at 70 % | {pp('stable_vs_ncde_pp_at_70')} | > 0: "
        f"{ok[summ.get('target_stable_beats_ncde_at_70')]} |",
        "| train step, PyTorch / scimlx (geometric mean) | "
        + (
            f"{summ['step_time_ratio_vs_torch']:.1f}x"
            if summ.get("step_time_ratio_vs_torch") is not None
            else "n/a"
        )
        + f" | ≥ 3x: {ok[summ.get('target_3x_faster')]} |",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
