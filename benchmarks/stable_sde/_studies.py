"""The studies of the stable SDE benchmark: the main one (every model and rate, and the
PyTorch peer), focused ones (a subset of rates or models), the peer checks alone, the
paper's tuning steps, and results rebuilt from logs or per-data-set files."""

import argparse
import os
import re
import time

import jax
import numpy as np

from scimlx.data import bundled_dataset_dir
from scimlx.sde import paths_from_data

from .. import _harness as H
from ..report import stable_sde as report
from ._peer import peer_checks, peer_summary, torch_run
from ._setup import (
    DATASETS,
    HIDDEN,
    load as load_dataset,
    LR_GRID,
    masked,
    MODELS,
    PAPER,
    protocol,
    QUICK_DATASETS,
    RATES,
    split,
    STABLE,
    TORCH,
)
from ._train import train_run


def run_study(args, port) -> int:
    """The study the command line asks for: train every model (and the peer) per data set,
    seed and missing rate, then tabulate and write the results."""
    quick = args.quick
    names = args.datasets.split(",") if args.datasets else (QUICK_DATASETS if quick else DATASETS)
    seeds = list(range(args.seeds if args.seeds else (1 if quick else 3)))
    if args.seed_list:
        seeds = [int(x) for x in args.seed_list.split(",")]
    epochs = args.epochs if args.epochs else (6 if quick else 100)
    names = [n for n in names if bundled_dataset_dir(n) is not None]
    rates = RATES if args.rates is None else tuple(float(r) for r in args.rates.split(","))
    models = MODELS if args.models is None else {m: MODELS[m] for m in args.models.split(",")}
    if any(r not in RATES for r in rates):
        raise SystemExit(f"--rates must be a subset of {RATES}, got {rates}")
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
        tuned_before = _load_json(args.tuned_from)["summary"]["tuned"]
    if not names:
        print("No bundled data set found: install aeon (`pip install aeon --no-deps`).")
        return 1
    if args.peer_only:
        if port is None:
            return 1
        return peer_report(port, names, quick, args)
    print(
        f"data sets {names}, rates {rates}, models {list(models)}, seeds {seeds}, "
        f"epochs <= {epochs}, hidden {HIDDEN}"
    )
    print(f"machine: {H.machine()}  (loaded shared 2-core box: timings are same-run ratios)")

    tuned = {}  # dataset -> {model: settings} with --tune-lr, --tune or --tuned-from
    acc = {}  # (dataset, model, rate) -> list of accuracies
    step = {}  # (dataset, model) -> list of step seconds
    comp = {}
    t_start = time.perf_counter()
    for name in names:
        # every model shape and tuning setting compiles its own executables: free them per
        # data set (a 5-data-set tuned run otherwise ran out of mappable memory in LLVM)
        jax.clear_caches()
        base = load_dataset(name)
        cfg = protocol(base, epochs, early_stop=not quick)
        settings = {m: {"lr": cfg["lr"]} for m in models}
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
            idx, clean = split(base, seed, args.raw_paths)
            for rate in rates:
                data = masked(clean, seed, rate)
                P = paths_from_data(data)
                for mname, cls in models.items():
                    run_cfg = {**cfg, **settings[mname]}
                    out = train_run(cls, data.channels + 1, data.num_classes, P, idx, run_cfg, seed)
                    acc.setdefault((name, mname, rate), []).append(out["acc"])
                    step.setdefault((name, mname), []).append(out["step_s"])
                    comp.setdefault((name, mname), []).append(out["compile_s"])
                    _print_run(name, seed, rate, mname, out, t_start, out.get("epochs_run"))
                if port is not None and not subset:
                    out = torch_run(port, data, idx, cfg, seed)
                    acc.setdefault((name, TORCH, rate), []).append(out["acc"])
                    step.setdefault((name, TORCH), []).append(out["step_s"])
                    _print_run(name, seed, rate, TORCH, out, t_start)

    if subset:
        return focused_report(names, list(models), rates, acc, seeds, epochs, t_start, args, tuned)
    model_names = list(MODELS) + ([TORCH] if port is not None else [])
    timing = {} if port is None else peer_checks(port, names, quick, args.raw_paths)
    rows = build_rows(names, model_names, acc, step, comp, timing)
    summary = summarise(rows)
    summary.update(peer_summary(timing))
    summary.update({"seeds": seeds, "epochs_max": epochs, "wall_s": time.perf_counter() - t_start})
    summary["raw_paths"] = bool(args.raw_paths)
    summary["step_ms_includes_validation"] = True
    report.print_main(rows, summary)
    H.write_results("stable_sde", "quick" if quick else "full", rows, summary, out=args.out)
    return 0


def _load_json(path: str) -> dict:
    import json

    with open(path) as f:
        return json.load(f)


def _print_run(name, seed, rate, model, out, t_start, epochs_run=None) -> None:
    """One run's line (the format `from_logs` reads back)."""
    tail = f" epochs {epochs_run}" if epochs_run is not None else ""
    print(
        f"  {name} seed {seed} rate {rate:.0%} {model:<11} acc {out['acc']:.3f} step "
        f"{1e3 * out['step_s']:.1f} ms [{time.perf_counter() - t_start:.0f}s]{tail}",
        flush=True,
    )


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
    report.print_peer(rows, summary)
    mode = "quick" if quick else "full"
    suffix = ".peer.quick.json" if quick else ".peer.json"
    out = args.out or os.path.join("benchmarks", "results", "stable_sde" + suffix)
    H.write_results("stable_sde", mode, rows, summary, out=out)
    return 0


def tune_lr(name, base, models, cfg) -> dict:
    """The paper's tuning step, learning rate only (hidden size and depth stay the recipe's):
    per model, the learning rate of the grid with the lowest validation loss after 10 epochs
    at 0 % missing on seed 0's split."""
    idx, clean = split(base, 0)
    data = masked(clean, 0, 0.0)
    P = paths_from_data(data)
    out = {}
    for mname, cls in models.items():
        losses = {}
        for lr in LR_GRID:
            run_cfg = {**cfg, "lr": lr, "epochs": 10, "early_stop": False}
            res = train_run(cls, data.channels + 1, data.num_classes, P, idx, run_cfg, 0)
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
    idx, clean = split(base, 0)
    data = masked(clean, 0, 0.0)
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
                run_cfg = {**cfg, **samples[i], "epochs": rung, "early_stop": False}
                res = train_run(cls, data.channels + 1, data.num_classes, P, idx, run_cfg, 0)
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
        row[f"acc@{int(rate * 100)}%"] = report.accuracy_text(np.nanmean(a), np.nanstd(a))
    return row


BASELINES = {"neural CDE": "ncde", "naive SDE": "naive"}


def margins(rows, models, rates) -> dict:
    """Per rate: each model's mean accuracy over the data sets, the best stable class (by that
    mean) and, for each baseline run beside it (neural CDE, naive SDE), its margin in
    percentage points on the mean and per seed (the mean over data sets of that seed's runs),
    and on how many seeds it is ahead. `rows`: a focused study's rows (`per_seed_<rate>`)."""
    out = {}
    stable = [m for m in STABLE if m in models]
    for rate in rates:
        key = int(rate * 100)
        per_seed = {
            m: np.mean([r[f"per_seed_{key}"] for r in rows if r["model"] == m], axis=0)
            for m in models
        }
        means = {m: float(np.mean(v)) for m, v in per_seed.items()}
        out[f"mean_acc_{key}"] = means
        if not stable:
            continue
        best = max(stable, key=lambda m: means[m])
        out[f"best_stable_at_{key}"] = best
        for base, tag in BASELINES.items():
            if base not in models:
                continue
            out[f"stable_vs_{tag}_pp_at_{key}"] = 100 * (means[best] - means[base])
            seed_margins = 100 * (per_seed[best] - per_seed[base])
            out[f"stable_vs_{tag}_pp_per_seed_at_{key}"] = [float(x) for x in seed_margins]
            out[f"seeds_best_stable_beats_{tag}_at_{key}"] = int(np.sum(seed_margins > 0))
    return out


def focused_report(names, models, rates, acc, seeds, epochs, t_start, args, tuned) -> int:
    """Table and JSON of a focused study (a subset of rates or models): accuracy per
    (data set, model, rate), and the best stable class's margins over the baselines run
    beside it (`margins`)."""
    rows = []
    for name in names:
        for m in models:
            row = _accuracy_cells(acc, name, m, rates)
            for rate in rates:
                row[f"per_seed_{int(rate * 100)}"] = [float(x) for x in acc[(name, m, rate)]]
            rows.append(row)
    summary = {"datasets": names, "models": models, "rates": list(rates), "seeds": seeds}
    summary.update(margins(rows, models, rates))
    summary["epochs_max"] = epochs
    if t_start is not None:
        summary["wall_s"] = time.perf_counter() - t_start
    if getattr(args, "from_logs", None):
        summary["from_logs"] = [os.path.basename(p) for p in args.from_logs]
    if tuned:
        summary["tuned_lr" if getattr(args, "tune_lr", False) else "tuned"] = tuned
    report.print_focused(rows, summary, rates)
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
    report.print_main(rows, summary)
    H.write_results("stable_sde", mode, rows, summary, out=out)
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


def combine(paths: list[str], mode: str, out: str | None) -> int:
    """Merge per-data-set result files (runs split across processes) into one table."""
    rows, extra = [], {}
    for p in paths:
        payload = _load_json(p)
        rows += payload["rows"]
        for k in ("seeds", "epochs_max"):
            extra[k] = payload["summary"].get(k)
        extra["wall_s"] = extra.get("wall_s", 0.0) + payload["summary"].get("wall_s", 0.0)
    summary = summarise(rows)
    summary.update(extra)
    report.print_main(rows, summary)
    H.write_results("stable_sde", mode, rows, summary, out=out)
    return 0
