"""Run every example in its quick setting and build the documentation's gallery page.

    python examples/gallery.py [--only STEM ...] [--timeout SECONDS]

Each example runs in its own subprocess (`python examples/<stem>.py --quick --out
docs/images/gallery/<stem>.png`, with this checkout first on `PYTHONPATH`), so the figures
show what the current code computes. The command, machine, date and wall time of every run
are recorded in `docs/images/gallery/runs.json`, and `docs/gallery.md` is generated from that
record and the examples' docstrings (`--only` reruns some examples and keeps the record of the
others). A failing example keeps its previous figure and record, and the script exits 1.
"""

import argparse
import ast
import datetime
import json
import os
import platform
import resource
import subprocess
import sys
import time


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMAGES = os.path.join(ROOT, "docs", "images", "gallery")
RECORD = os.path.join(IMAGES, "runs.json")
PAGE = os.path.join(ROOT, "docs", "gallery.md")

# (script stem, section title), in the order of the capability pages.
EXAMPLES = [
    ("nde_regularisation", "Regularised neural ODE: accuracy against solver cost"),
    ("sde_missing_rates", "Stable neural SDEs: accuracy against missing values"),
    ("linsolve_dcdm", "Learned and multigrid solvers: residual histories"),
    ("neuralop_darcy", "Neural operators on Darcy flow: MgNO and FNO"),
    ("dsf_phi", "Sequence layers as dynamical systems: the matrix Phi"),
    ("ensemble_sweep", "Ensemble study: a Lorenz parameter sweep"),
]


# Arguments beyond --quick: the linsolve example also plots the committed GPU-trained network,
# so the figure shows the method as trained in the benchmark, not only a 100-step CPU net.
EXTRA_ARGS = {"linsolve_dcdm": ["--model", "benchmarks/models/dcdm_cnn_2d.eqx"]}


def describe(stem: str) -> str:
    """The first paragraph of the example's docstring, on one line."""
    with open(os.path.join(ROOT, "examples", f"{stem}.py")) as f:
        doc = ast.get_docstring(ast.parse(f.read())) or ""
    return " ".join(doc.split("\n\n")[0].split())


def quick_note(stem: str) -> str:
    """The docstring's paragraph on `--quick`, on one line."""
    with open(os.path.join(ROOT, "examples", f"{stem}.py")) as f:
        doc = ast.get_docstring(ast.parse(f.read())) or ""
    notes = [p for p in doc.split("\n\n") if p.lstrip().startswith("`--quick`")]
    return " ".join(notes[0].split()) if notes else ""


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{cpu}, {os.cpu_count()} cores, CPU only"


def run(stem: str, timeout: float) -> dict | None:
    out = os.path.join(IMAGES, f"{stem}.png")
    tmp = os.path.join(os.path.relpath(IMAGES, ROOT), f".{stem}.new.png")  # cwd is ROOT
    args = ["--quick", *EXTRA_ARGS.get(stem, [])]
    cmd = [sys.executable, os.path.join("examples", f"{stem}.py"), *args, "--out", tmp]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]))
    env.setdefault("SCIMLX_PROGRESS", "0")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    print(f"== {stem}: {' '.join(cmd[1:])}", flush=True)
    try:
        proc = subprocess.run(
            cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        print(f"   timed out after {timeout:.0f} s", flush=True)
        return None
    seconds = time.perf_counter() - start
    cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_seconds = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    tmp = os.path.join(ROOT, tmp)
    if proc.returncode != 0 or not os.path.exists(tmp):
        print(proc.stdout[-3000:], proc.stderr[-3000:], sep="\n")
        print(f"   failed (exit {proc.returncode}) after {seconds:.0f} s", flush=True)
        if os.path.exists(tmp):
            os.remove(tmp)
        return None
    os.replace(tmp, out)
    print(f"   {seconds:.0f} s wall, {cpu_seconds:.0f} s CPU", flush=True)
    return {
        "command": " ".join(["python", f"examples/{stem}.py", *args]),
        "seconds": round(seconds, 1),
        "cpu_seconds": round(cpu_seconds, 1),
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d"),
        "machine": machine(),
        "load_avg_at_start": None if load is None else round(load, 2),
        "output_tail": proc.stdout.strip().splitlines()[-8:],
    }


def page(record: dict) -> str:
    lines = [
        "# Gallery",
        "",
        "Figures drawn by the scripts in `examples/`, each run in its quick setting (shorter",
        "training, smaller grids or fewer members than the default, so every figure is produced",
        "in a few minutes on a CPU). Without `--quick` the scripts run their full setting. The",
        "whole page is regenerated, figures included, by `python examples/gallery.py`.",
        "",
    ]
    for stem, title in EXAMPLES:
        r = record.get(stem)
        if r is None:
            continue
        lines += [
            f"## {title}",
            "",
            describe(stem)
            + (f" Shown in the quick setting: {quick_note(stem)}" if quick_note(stem) else ""),
            "",
            f"![{title}](images/gallery/{stem}.png)",
            "",
            f"`{r['command']}`: {r['cpu_seconds']:.0f} s of CPU time, {r['seconds']:.0f} s of"
            f" wall time on {r['machine']}"
            + (
                f" at load average {r['load_avg_at_start']:.1f}"
                if r.get("load_avg_at_start") is not None
                else ""
            )
            + f"; {r['date']}.",
            "",
        ]
    return "\n".join(lines)


def save(record: dict) -> None:
    for r in record.values():  # paths relative to the checkout, not this machine's
        r["output_tail"] = [ln.replace(ROOT + os.sep, "") for ln in r.get("output_tail", [])]
    with open(RECORD, "w") as f:
        json.dump(record, f, indent=2)
        f.write("\n")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    stems = [s for s, _ in EXAMPLES]
    parser.add_argument("--only", nargs="+", choices=stems, help="run only these examples")
    parser.add_argument("--timeout", type=float, default=900, help="seconds per example")
    parser.add_argument(
        "--page-only", action="store_true", help="regenerate docs/gallery.md from the record"
    )
    args = parser.parse_args(argv)
    os.makedirs(IMAGES, exist_ok=True)
    record = {}
    if os.path.exists(RECORD):
        with open(RECORD) as f:
            record = json.load(f)
    if args.page_only and record:
        save(record)
    failed = []
    for stem in [] if args.page_only else (args.only or stems):
        r = run(stem, args.timeout)
        if r is None:
            failed.append(stem)
            continue
        record[stem] = r
        save(record)
    with open(PAGE, "w") as f:
        f.write(page(record))
    print(f"wrote {PAGE}")
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
