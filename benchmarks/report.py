"""Render the committed benchmark results as Markdown, for docs/benchmarks.md.

    python -m benchmarks.report [AREA ...]

Reads `benchmarks/results/<area>*.json` (full-mode files only, quick ones are skipped) and
prints, for each, the machine, the date and the `summary` as a table, so that figures
quoted in the docs are copied from the files the benchmarks wrote, not typed by hand.
"""

import glob
import json
import os
import sys

from ._harness import _fmt as _fmt_scalar, RESULTS_DIR


def _fmt(v) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, dict):
        return ", ".join(f"{k}: {_fmt(x)}" for k, x in v.items())
    if isinstance(v, list | tuple):
        return ", ".join(_fmt(x) for x in v)
    return _fmt_scalar(v)


def _machine(m: dict) -> str:
    dev = m.get("device", "?")
    if m.get("platform") == "cpu":
        dev = f"{m.get('cpu', 'CPU')}, {m.get('cores', '?')} cores"
    return f"{dev}; jax {m.get('jax', '?')}"


def render(path: str) -> str:
    with open(path) as f:
        d = json.load(f)
    name = os.path.basename(path)
    lines = [
        f"`benchmarks/results/{name}` ({d.get('mode', '?')} mode, {d.get('date', '?')}, "
        f"{_machine(d.get('machine', {}))}):",
        "",
        "| summary key | value |",
        "|---|---|",
    ]
    for k, v in d.get("summary", {}).items():
        lines.append(f"| `{k}` | {_fmt(v)} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    areas = list(argv if argv is not None else sys.argv[1:])
    paths = sorted(glob.glob(os.path.join(RESULTS_DIR, "*.json")))
    paths = [p for p in paths if ".quick." not in p]
    if areas:
        paths = [p for p in paths if os.path.basename(p).split(".")[0] in areas]
    for p in paths:
        print(render(p))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
