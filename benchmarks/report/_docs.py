"""Plots and Markdown snippets of the committed benchmark results, for the docs.

Used by `python -m benchmarks.report --docs`: every figure and table is drawn from the JSON in
`benchmarks/results/`, never typed by hand.
"""

import glob
import json
import os
import re
from collections import defaultdict

from .._harness import RESULTS_DIR
from . import ensemble, linsolve


ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
IMAGES = os.path.join(ROOT, "docs", "images", "bench")
SNIPPETS = os.path.join(ROOT, "docs", "_snippets")

PLOTTED = ["linsolve", "nde_regularisation", "neuralop", "dsf", "ensemble", "stable_sde"]
TABLED = PLOTTED + ["node", "scale", "first_answer"]

# How a results file was produced (by file name), where the plain `python -m benchmarks.<area>`
# does not say it all (options, environment variables, rows merged from other runs).
COMMANDS = {
    "neuralop.json": ("python -m benchmarks.neuralop --size cpu", ""),
    "linsolve.json": (
        "python -m benchmarks.linsolve",
        ", with the learned-solver rows merged in by `python -m benchmarks.linsolve --dcdm only "
        "--dcdm-merge` runs (each listed with its command and date in the file's `provenance`)",
    ),
    "dsf.json": (
        "python -m benchmarks.dsf --lengths-fwd 64,256,1024,4096 --lengths-bwd 64,256,1024",
        ", with the MQAR rows merged in from MQAR-only runs of the same script (`--mqar-results`)",
    ),
    "nde_regularisation.json": (
        "python -m benchmarks.nde_regularisation --tasks b1",
        " (and `b2`, `b3`, `b3loose`: one process per task, merged; see the file's `provenance`)",
    ),
}

# Columns of the rows table, per area (default: every key, in order of appearance).
COLUMNS = {
    "linsolve": [
        "grid", "member", "rhs", "method", "its", "setup_s", "solve_s", "total_s", "compile_s",
        "true_rel_res", "note",
    ],
    "nde_regularisation": [
        "task", "arm", "weight", "seeds", "test_acc", "test_acc_std", "test_mse", "nfe",
        "nfe_ratio", "pred_speedup", "train_ratio",
    ],
    "neuralop": [
        "model", "params", "rel_l2", "rel_h1", "rel_l2_2x", "superres_ratio",
        "rel_l2_2x_direct", "step_ms", "infer_ms_per_sample", "train_s", "speedup", "note",
    ],
    "dsf": [
        "family", "task", "L", "method", "median_ms", "peak_mib", "compile_s", "best", "auto",
        "mixer", "acc_mean", "seeds", "note",
    ],
    "ensemble": [
        "study", "method", "members", "members_per_s", "wall_s", "compile_s", "chunk", "lanes",
        "note",
    ],
    "stable_sde": [
        "dataset", "model", "acc@0%", "acc@30%", "acc@50%", "acc@70%", "step_ms", "compile_s",
        "mean_rank",
    ],
}  # fmt: skip


# A table shown above the folded rows, per area: (rows from the results, columns, title).
DIGESTS = {
    "linsolve": (
        linsolve.family_digest,
        linsolve.DIGEST_COLUMNS,
        "Problem families at rtol 1e-8 (iterations of each solver; our setup + solve over "
        "pyamg RS-PCG's and over PETSc CG + hypre BoomerAMG's, medians of per-round ratios; "
        "our growth per grid doubling; the coarse levels our default chose):",
    ),
}


def load(name: str) -> dict:
    with open(os.path.join(RESULTS_DIR, name)) as f:
        return json.load(f)


def results_files(area: str) -> dict[str, list[str]]:
    """The full-mode files of an area: `main` (`<area>.json`), `machines` (other kinds of
    machine, by their recorded platform) and `studies` (the rest)."""
    out = {"main": [], "machines": [], "studies": []}
    for p in sorted(glob.glob(os.path.join(RESULTS_DIR, f"{area}.*json"))):
        name = os.path.basename(p)
        if ".quick." in name or name.split(".")[0] != area:
            continue
        if name == f"{area}.json":
            out["main"].append(name)
        elif load(name).get("machine", {}).get("platform", "cpu") != "cpu":
            out["machines"].append(name)
        else:
            out["studies"].append(name)
    return out


def machine_text(d: dict) -> str:
    m = d.get("machine", {})
    if m.get("platform") == "cpu":
        cores = m.get("cores", "?")
        if m.get("machine_cores") not in (None, cores):
            cores = f"{cores} of {m['machine_cores']}"
        dev = f"{m.get('cpu', 'CPU')} CPU, {cores} cores"
    else:
        dev = f"{m.get('device', '?')} ({m.get('platform', '?')})"
    text = f"{dev}, JAX {m.get('jax', '?')}"
    load_avg = m.get("load_avg")
    if load_avg:
        text += f", load average {load_avg[0]:.1f} at the end"
    return text


def command_text(area: str, name: str, d: dict) -> str:
    """The command that produced the file, in backticks, and how rows were merged."""
    if d.get("command"):
        return f"`{d['command']}`"
    if name in COMMANDS:
        cmd, note = COMMANDS[name]
        return f"`{cmd}`{note}"
    env = d.get("env") or {}
    prefix = " ".join(f"{k}={v}" for k, v in env.items())
    return f"`{(prefix + ' ' if prefix else '')}python -m benchmarks.{area}`"


# ----------------------------------------------------------------------------- tables


def _cell(v) -> str:
    from . import _fmt

    if v is None:
        return ""
    return _fmt(v).replace("|", "\\|").replace("\n", " ")


def _table(rows: list[dict], columns: list[str], indent: str = "") -> list[str]:
    columns = [c for c in columns if any(r.get(c) is not None for r in rows)]
    lines = [
        indent + "| " + " | ".join(columns) + " |",
        indent + "|" + "---|" * len(columns),
    ]
    for r in rows:
        lines.append(indent + "| " + " | ".join(_cell(r.get(c)) for c in columns) + " |")
    return lines


def main_rows(area: str, d: dict) -> list[dict]:
    rows = d.get("rows", [])
    if area == "nde_regularisation":  # the per-seed rows are summarised by the others
        rows = [r for r in rows if "seeds" in r]
    if area == "neuralop":
        rows = [{k: v for k, v in r.items() if k != "runs"} for r in rows]
    return rows


def snippet(area: str, name: str) -> str:
    d = load(name)
    lines = [
        f"Results file `benchmarks/results/{name}`: {d.get('mode', '?')} mode, "
        f"{d.get('date', '?')}, {machine_text(d)}. Produced by {command_text(area, name, d)}.",
        "",
        "| summary key | value |",
        "|---|---|",
    ]
    for k, v in d.get("summary", {}).items():
        lines.append(f"| `{k}` | {_cell(v)} |")
    if area in DIGESTS:
        digest, columns, title = DIGESTS[area]
        lines += ["", title, ""] + _table(digest(d), columns)
    rows = main_rows(area, d)
    if rows:
        columns = COLUMNS.get(area) or list(dict.fromkeys(k for r in rows for k in r))
        lines += ["", f'??? note "The {len(rows)} rows of {name}"', ""]
        lines += _table(rows, columns, indent="    ")
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- plots


def _footer(fig, name: str, d: dict) -> None:
    fig.text(
        0.005,
        0.005,
        f"benchmarks/results/{name} ({d.get('date', '?')[:10]}; {machine_text(d)})",
        fontsize=7,
        color="0.4",
    )


def _nde_points(d):
    agg, per_seed = {}, defaultdict(list)
    for r in d["rows"]:
        key = (r["task"], r["arm"], str(r["weight"]))
        if "seeds" in r:
            agg[key] = r
        else:
            per_seed[key].append(r)
    for key, rs in per_seed.items():
        if key not in agg:
            mean = {}
            for k in ("test_acc", "test_mse", "nfe"):
                vals = [r[k] for r in rs if r.get(k) is not None]
                mean[k] = sum(vals) / len(vals) if vals else None
            agg[key] = mean
    return agg


def _weight_key(w: str):
    """Order a weight sweep: numbers numerically, compound weights by their parts."""
    parts = re.findall(r"[-+]?\d*\.?\d+(?:e[-+]?\d+)?", str(w))
    return [float(x) for x in parts] or [0.0]


def _plain_log_ticks(ax) -> None:
    from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter

    ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 3.0, 5.0)))
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())


def plot_nde_regularisation(d, fig):
    agg = _nde_points(d)
    tasks = [
        ("B1 NODE digits", "test_acc", "test accuracy (%)"),
        ("B2 NSDE digits", "test_acc", "test accuracy (%)"),
        ("B3 spiral", "test_mse", "test MSE"),
    ]
    arms = sorted({k[1] for k in agg}, key=lambda a: (a != "vanilla", a))
    colors = {a: f"C{i % 10}" for i, a in enumerate(arms)}
    axes = fig.subplots(1, 3)
    for ax, (task, metric, label) in zip(axes, tasks):
        for arm in arms:
            pts = []
            for (t, a, w), r in agg.items():
                if t == task and a == arm and r.get(metric) is not None and r.get("nfe"):
                    pts.append((r["nfe"], r[metric], w))
            if not pts:
                continue
            pts.sort(key=lambda p: _weight_key(p[2]))
            ax.plot(
                [p[0] for p in pts],
                [p[1] for p in pts],
                "*" if arm == "vanilla" else "o-",
                ms=11 if arm == "vanilla" else 4,
                color=colors[arm],
                label=arm,
            )
        ax.set_xscale("log")
        _plain_log_ticks(ax)
        if metric == "test_mse":
            ax.set_yscale("log")
        ax.set_xlabel("NFE at prediction")
        ax.set_ylabel(label)
        ax.set_title(task, fontsize=10)
    handles = {}
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(lab, h)
    fig.legend(
        handles.values(),
        handles.keys(),
        loc="lower center",
        ncol=6,
        fontsize=7,
        bbox_to_anchor=(0.5, 0.04),
    )
    fig.suptitle(
        "Solver regularisation: accuracy against prediction cost "
        "(mean of seeds; one point per weight, joined in weight order)"
    )
    fig.subplots_adjust(bottom=0.32, wspace=0.3)


def plot_neuralop(d, fig):
    res = d.get("config", {}).get("res", 1)
    models = [r for r in d["rows"] if r.get("rel_l2") is not None]
    axes = fig.subplots(1, 3)
    ax = axes[0]
    for i, r in enumerate(models):
        ax.plot(
            [res, 2 * res], [r["rel_l2"], r["rel_l2_2x"]], "o-", color=f"C{i}", label=r["model"]
        )
        if r.get("rel_l2_2x_direct") is not None:
            ax.plot([res, 2 * res], [r["rel_l2"], r["rel_l2_2x_direct"]], "x:", color=f"C{i}", ms=6)
    ax.set_yscale("log")
    ax.set_xticks([res, 2 * res], [f"{res}^2 (train)", f"{2 * res}^2 (zero-shot)"])
    ax.set_xlim(0.8 * res, 2.2 * res)
    ax.set_ylabel("test relative L2 error")
    ax.set_title(
        "error against resolution\n(dotted: MgNO run directly on the finer grid)", fontsize=9
    )
    ax.legend(fontsize=7)
    ax = axes[1]
    for i, r in enumerate(models):
        ax.errorbar(r["params"], r["rel_l2"], yerr=r.get("rel_l2_std"), fmt="o", color=f"C{i}")
    ax.set_xscale("log")
    ax.set_xlabel("parameters")
    ax.set_ylabel(f"test relative L2 error at {res}^2")
    ax.set_title("error against size", fontsize=9)
    ax = axes[2]
    names = [r["model"] for r in models]
    ax.barh(
        range(len(models)),
        [r["step_ms"] for r in models],
        color=[f"C{i}" for i in range(len(models))],
    )
    ax.set_yticks(range(len(models)), [n.replace(", ", ",\n") for n in names], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("training step (ms)")
    ax.set_title("training step time", fontsize=9)
    fig.suptitle(f"Darcy flow, {res}^2 training grid: MgNO and FNO")
    fig.subplots_adjust(wspace=0.45, left=0.07, right=0.98, top=0.8, bottom=0.18)


def plot_dsf(d, fig):
    rows = [r for r in d["rows"] if r.get("family") and r.get("task") and r.get("method")]
    families = list(dict.fromkeys(r["family"] for r in rows))
    tasks = list(dict.fromkeys(r["task"] for r in rows))
    methods = list(dict.fromkeys(r["method"] for r in rows))
    axes = fig.subplots(len(tasks), len(families), squeeze=False)
    titles = {"fwd_b1": "forward, batch 1", "fwdbwd_b16": "forward + backward, batch 16"}
    for i, task in enumerate(tasks):
        for j, fam in enumerate(families):
            ax = axes[i, j]
            for k, m in enumerate(methods):
                pts = sorted(
                    (r["L"], r["median_ms"])
                    for r in rows
                    if r["family"] == fam
                    and r["task"] == task
                    and r["method"] == m
                    and r.get("median_ms") is not None
                )
                if pts:
                    ax.loglog(*zip(*pts), "o-", color=f"C{k}", label=m, ms=4)
            ax.set_title(f"{fam.replace('_', '-')} systems, {titles.get(task, task)}", fontsize=9)
            ax.set_xlabel("sequence length L")
            ax.set_ylabel("median time (ms)")
            ax.minorticks_off()
            Ls = sorted({r["L"] for r in rows if r["task"] == task})
            ax.set_xticks(Ls, [str(L) for L in Ls])
    axes[0, 0].legend(fontsize=7)
    fig.suptitle("Dynamical-systems layers: time of each evaluation mode against L")
    fig.subplots_adjust(hspace=0.45, wspace=0.35, left=0.06, right=0.98)


def plot_stable_sde(d, fig):
    rows = d["rows"]
    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    models = list(dict.fromkeys(r["model"] for r in rows))
    rates = [0, 30, 50, 70]
    axes = fig.subplots(2, 3).ravel()
    panels = datasets[:5] + ["mean over data sets"]
    for ax, ds in zip(axes, panels):
        for k, m in enumerate(models):
            if ds == "mean over data sets":
                rs = [r for r in rows if r["model"] == m]
                ys = [100 * sum(r[f"acc_{q}"] for r in rs) / len(rs) for q in rates]
            else:
                r = next((r for r in rows if r["dataset"] == ds and r["model"] == m), None)
                if r is None:
                    continue
                ys = [100 * r[f"acc_{q}"] for q in rates]
            ax.plot(rates, ys, "o-", ms=3, color=f"C{k}", label=m)
        ax.set_title(ds, fontsize=9)
        ax.set_xticks(rates)
        ax.set_xlabel("missing values (%)")
        ax.set_ylabel("test accuracy (%)")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=7, fontsize=7, bbox_to_anchor=(0.5, 0.03))
    fig.suptitle("Neural SDE classifiers: test accuracy against missing rate (mean of seeds)")
    fig.subplots_adjust(bottom=0.18, hspace=0.5, wspace=0.3, left=0.06, right=0.98)


PLOTS = {
    "linsolve": (linsolve.plot, (10, 7)),
    "nde_regularisation": (plot_nde_regularisation, (12, 4.4)),
    "neuralop": (plot_neuralop, (12, 4)),
    "dsf": (plot_dsf, (11, 6.5)),
    "ensemble": (ensemble.plot, (11, 7)),
    "stable_sde": (plot_stable_sde, (11, 6.5)),
}


def plot(area: str, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    name = f"{area}.json"
    d = load(name)
    fn, size = PLOTS[area]
    fig = plt.figure(figsize=size, layout=None)
    fn(d, fig)
    _footer(fig, name, d)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    small_png(path)


def small_png(path: str) -> None:
    """Re-save a figure with a 256-colour palette: a third of the size, same look."""
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    im.save(path, optimize=True)


def write_docs(areas: list[str] | None = None) -> int:
    os.makedirs(IMAGES, exist_ok=True)
    os.makedirs(SNIPPETS, exist_ok=True)
    for area in areas or TABLED:
        files = results_files(area)
        if not files["main"]:
            print(f"{area}: no benchmarks/results/{area}.json, skipped")
            continue
        for name in files["main"] + files["machines"]:
            stem = name[: -len(".json")]
            path = os.path.join(SNIPPETS, f"bench_{stem}.md")
            with open(path, "w") as f:
                f.write(snippet(area, name))
            print(f"wrote {os.path.relpath(path, ROOT)}")
        if area in PLOTS:
            path = os.path.join(IMAGES, f"{area}.png")
            plot(area, path)
            print(f"wrote {os.path.relpath(path, ROOT)} ({os.path.getsize(path) // 1024} KB)")
    return 0
