"""What `python -m benchmarks.linsolve` prints: the obstacle and family tables, the setup
breakdown, the summary keys, the reproducibility check, and the learned solvers' table."""

import json

from .._harness import print_table


COLUMNS = [
    "method",
    "grid",
    "rhs",
    "unknowns",
    "its",
    "its_1e-4_r0",
    "setup_s",
    "solve_s",
    "total_s",
    "total_min_s",
    "total_max_s",
    "ours_over_peer",
    "compile_s",
    "true_rel_res",
    "note",
]
FAMILY_COLUMNS = [
    "member",
    "grid",
    "method",
    "its",
    "setup_s",
    "solve_s",
    "total_s",
    "ours_over_peer",
    "ours_over_peer_min",
    "ours_over_peer_max",
    "true_rel_res",
    "note",
]


def print_reproducibility(reproducibility: dict) -> None:
    print("reproducibility:", json.dumps(reproducibility, indent=1))


def print_run(rows, summary, extra, *, mode: str, tol: float, family_tol: float) -> None:
    """The obstacle table, the family table (when the run has one), the setup breakdown, the
    summary and (when checked) the reproducibility of the time ratios."""
    print_table(
        [r for r in rows if r.get("table", "obstacles") == "obstacles"],
        COLUMNS + ["growth"],
        title=f"linsolve ({mode}): obstacle scenes, stop |r|/|b| <= {tol}",
    )
    if any(r.get("table") == "families" for r in rows):
        print_table(
            [r for r in rows if r.get("table") == "families"],
            FAMILY_COLUMNS + ["growth"],
            title=f"linsolve ({mode}): problem families, stop |r|/|b| <= {family_tol}",
        )
    print("setup breakdown:", json.dumps(extra.get("mg_setup_breakdown"))[:2000])
    print("summary:", json.dumps(summary, indent=1))
    if "reproducibility" in extra:
        print_reproducibility(extra["reproducibility"])


def print_learned(rows, summary, *, mode: str) -> None:
    """The learned solvers' rows (with their reference rows) and the DCDM summary keys."""
    print_table(rows, COLUMNS + ["growth"], title=f"DCDM ({mode})")
    print("summary:", summary)
