"""`scimlx tour`: a short end-to-end run of every capability on built-in defaults."""

import importlib
import importlib.util
import time
import traceback
from dataclasses import dataclass


@dataclass(frozen=True)
class Stage:
    name: str
    module: str
    capability: str


# Each capability adds its stage here; a stage module exposes `tour_stage() -> dict` with
# keys "what", "figure" and "ok".
STAGES: tuple[Stage, ...] = (
    Stage("node", "scimlx._core._tour_node", "foundation: neural ODE fit with diffrax"),
    Stage("nde", "scimlx.nde._tour", "neural DEs whose solvers stay cheap (regularization)"),
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


def run_stage(stage: Stage) -> dict:
    """Run one stage; never raises: a failure is reported in the returned row."""
    start = time.perf_counter()
    try:
        module = importlib.import_module(stage.module)
        out = module.tour_stage()
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
    row["seconds"] = f"{time.perf_counter() - start:.1f}"
    return row


def format_table(rows: list[dict], columns: list[str]) -> str:
    """A plain-text table with a header line."""
    widths = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in columns}
    line = "  ".join(c.ljust(widths[c]) for c in columns)
    sep = "  ".join("-" * widths[c] for c in columns)
    body = ["  ".join(str(r.get(c, "")).ljust(widths[c]) for c in columns) for r in rows]
    return "\n".join([line, sep, *body])


def tour(names: list[str] | None = None) -> list[dict]:
    """Run the named stages (all available ones by default) and print a summary table."""
    stages = available_stages()
    if names:
        known = {s.name: s for s in stages}
        unknown = [n for n in names if n not in known]
        if unknown:
            raise ValueError(f"Unknown tour stage(s) {unknown}; available: {sorted(known)}.")
        stages = [known[n] for n in names]
    rows = []
    for i, stage in enumerate(stages):
        print(f"[{i + 1}/{len(stages)}] {stage.name}: {stage.capability}", flush=True)
        rows.append(run_stage(stage))
    print()
    print(format_table(rows, ["stage", "what", "figure", "seconds", "status"]))
    return rows
