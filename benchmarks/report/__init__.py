"""Render the committed benchmark results as Markdown tables and plots for the docs.

All rendering of results lives in this package: `_docs.py` (docs snippets and plots) and one
module per area for the tables an area prints or writes beyond the shared summary table.

    python -m benchmarks.report [AREA ...]     # print the summaries of every results file
    python -m benchmarks.report --docs         # write the docs' plots and table snippets

Reads `benchmarks/results/<area>*.json` (full-mode files only, quick ones are skipped), so
that figures quoted in the docs are copied from the files the benchmarks wrote, not typed by
hand. The files are named:

- `<area>.json`: the area's main full run on the 2-core CPU (the machine the docs quote);
- `<area>.<machine>.json` (`ensemble.h200.json`, `neuralop.h200.json`): a full run on
  another kind of machine, recognised by its recorded platform not being `cpu`;
- `<area>.<study>.json`: a focused study beside the main run, named for what it is.

With `--docs`, for each area in `PLOTTED` it draws `docs/images/bench/<area>.png` from the
main file (matplotlib, Agg) and writes `docs/_snippets/bench_<area>.md` (machine, date, the
command that produced the file, the summary and the main rows as tables) for those areas and
`node`, to be included in pages with `--8<-- "docs/_snippets/bench_<area>.md"`.
"""

import glob
import json
import os
import sys

from .._harness import _fmt as _fmt_scalar, RESULTS_DIR


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
    args = list(argv if argv is not None else sys.argv[1:])
    if "--docs" in args:
        from . import _docs

        args.remove("--docs")
        return _docs.write_docs(args or None)
    paths = [p for p in glob.glob(os.path.join(RESULTS_DIR, "*.json")) if ".quick." not in p]
    # per area: the main file, then the other machines and studies
    paths.sort(key=lambda p: (os.path.basename(p).split(".")[0], p.count("."), p))
    if args:
        paths = [p for p in paths if os.path.basename(p).split(".")[0] in args]
    for p in paths:
        print(render(p))
    return 0
