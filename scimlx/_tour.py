"""`scimlx tour`: a short end-to-end run of every capability on built-in defaults."""

import importlib
import importlib.util
import inspect
import json
import shutil
import textwrap
import time
import traceback
from dataclasses import dataclass


@dataclass(frozen=True)
class Stage:
    name: str
    module: str
    capability: str


# Each capability adds its stage here; a stage module exposes
# `tour_stage(quick: bool = False) -> dict` with keys "what", "figure" and "ok". `quick`
# shrinks the stage to a smoke run (seconds); the default is the tour a user takes.
STAGES: tuple[Stage, ...] = (
    Stage("node", "scimlx.nde._node_tour", "neural ODE fitted with diffrax and scimlx.fit"),
    Stage("nde", "scimlx.nde._tour", "neural DEs whose solvers stay cheap (regularisation)"),
    Stage("sde", "scimlx.sde._tour", "stable neural SDEs on irregular series with missing values"),
    Stage("linsolve", "scimlx.linsolve._tour", "PDE operators and multigrid-preconditioned CG"),
    Stage("dcdm", "scimlx.linsolve._dcdm_tour", "deep conjugate-direction solver"),
    Stage("neuralop", "scimlx.neuralop._tour", "MgNO neural operator on Darcy flow"),
    Stage("dsf", "scimlx.dsf._tour", "sequence models as dynamical systems"),
    Stage("ensemble", "scimlx.ensemble._tour", "ensemble study with vmap in chunks"),
)


def available_stages() -> list[Stage]:
    """The stages whose modules are importable in this installation."""
    out = []
    for stage in STAGES:
        try:
            found = importlib.util.find_spec(stage.module) is not None
        except ModuleNotFoundError:  # its capability's package is not there
            found = False
        if found:
            out.append(stage)
    return out


def run_stage(stage: Stage, *, quick: bool = False) -> dict:
    """Run one stage; never raises: a failure is reported in the returned row."""
    start = time.perf_counter()
    try:
        module = importlib.import_module(stage.module)
        fn = module.tour_stage
        takes_quick = "quick" in inspect.signature(fn).parameters
        out = fn(quick=quick) if takes_quick else fn()
        row = {
            "stage": stage.name,
            "what": out["what"],
            "figure": out["figure"],
            "status": "ok" if out["ok"] else "below target",
        }
    except Exception as e:  # report and go on with the other stages
        traceback.print_exc()
        row = {
            "stage": stage.name,
            "what": stage.capability,
            "figure": f"{type(e).__name__}: {e}",
            "status": "FAILED",
        }
    row["seconds"] = round(time.perf_counter() - start, 1)
    return row


def format_summary(rows: list[dict], width: int | None = None, *, verbose: bool = False) -> str:
    """The tour's summary: one line per stage (stage, status, seconds, figure), the figure
    wrapped to fit `width` columns (default: the terminal's, at most 100). With `verbose`,
    each stage's description follows its figure."""
    if width is None:
        width = min(shutil.get_terminal_size((100, 24)).columns, 100)
    name_w = max(5, *(len(r["stage"]) for r in rows)) if rows else 5
    status_w = max(6, *(len(r["status"]) for r in rows)) if rows else 6
    head = f"{'stage'.ljust(name_w)}  {'status'.ljust(status_w)}  {'time':>6}  "
    indent = " " * len(head)
    text_w = max(width - len(head), 20)
    lines = [head + "result", "-" * min(width, len(head) + text_w)]
    for r in rows:
        first = f"{r['stage'].ljust(name_w)}  {r['status'].ljust(status_w)}  "
        first += f"{float(r['seconds']):5.0f}s  "
        body = textwrap.wrap(str(r["figure"]), text_w) or [""]
        if verbose:
            body += textwrap.wrap(str(r["what"]), text_w)
        lines.append(first + body[0])
        lines.extend(indent + b for b in body[1:])
    return "\n".join(lines)


def tour(
    names: list[str] | None = None,
    *,
    quick: bool = False,
    verbose: bool = False,
    report: str | None = None,
) -> list[dict]:
    """Run the named stages (all available ones by default) and print a summary.

    **Arguments:**

    - `names`: stage names (see `scimlx tour --list`); `None` runs every available stage.
    - `quick`: a smoke run of each stage (smaller problems, fewer steps), for CI and tests.
    - `verbose`: print each stage's description under its figure.
    - `report`: if given, write the rows (stage, status, seconds, figure, description) to
      this JSON file.

    **Returns:** the rows, one dict per stage.
    """
    stages = available_stages()
    if names:
        known = {s.name: s for s in stages}
        unknown = [n for n in names if n not in known]
        if unknown:
            raise ValueError(f"Unknown tour stage(s) {unknown}; available: {sorted(known)}.")
        stages = [known[n] for n in names]
    rows = []
    t0 = time.perf_counter()
    for i, stage in enumerate(stages):
        print(f"[{i + 1}/{len(stages)}] {stage.name}: {stage.capability} ...", flush=True)
        rows.append(run_stage(stage, quick=quick))
        row = rows[-1]
        print(f"      {row['status']} in {row['seconds']:.0f} s: {row['figure']}", flush=True)
    print()
    print(format_summary(rows, verbose=verbose))
    plural = "stage" if len(rows) == 1 else "stages"
    print(f"\n{len(rows)} {plural} in {time.perf_counter() - t0:.0f} s.", flush=True)
    if report:
        with open(report, "w") as f:
            json.dump({"quick": quick, "rows": rows}, f, indent=2)
        print(f"report written to {report}")
    return rows
