"""Rendering of the linsolve benchmark's results: what `python -m benchmarks.linsolve` prints
(the obstacle and family tables, the setup breakdown, the summary keys, the reproducibility
check, the learned solvers' table), and the docs' figure."""

import json
import re
from collections import defaultdict

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


def _grid_cells(grid: str) -> tuple[int, int] | None:
    m = re.fullmatch(r"(\d+)\^(\d)", str(grid))
    return (int(m.group(1)), int(m.group(2))) if m else None


def plot(d: dict, fig) -> None:
    """The docs' figure of a results file: iterations and time against grid size, 2-D and
    3-D, for the main methods (random right-hand sides)."""
    methods = [
        "scipy CG",
        "IC(0)-PCG",
        "pyamg RS-PCG",
        "pyamg SA-PCG",
        "MG-PCG (ours, chebyshev)",
        "learned V-cycle k=2",
        "DCDM k=2",
    ]
    series = defaultdict(list)
    for r in d["rows"]:
        g = _grid_cells(r.get("grid"))
        if g is None or r.get("rhs") != "random" or r.get("method") not in methods:
            continue
        series[(g[1], r["method"])].append((g[0], r.get("its"), r.get("total_s")))
    axes = fig.subplots(2, 2)
    for col, dim in enumerate((2, 3)):
        for row, (idx, label) in enumerate(((1, "iterations to 1e-6"), (2, "setup + solve (s)"))):
            ax = axes[row, col]
            for i, m in enumerate(methods):
                pts = sorted(p for p in series.get((dim, m), []) if p[idx] is not None)
                if pts:
                    ax.loglog(
                        [p[0] for p in pts],
                        [p[idx] for p in pts],
                        "o-",
                        color=f"C{i}",
                        label=m,
                        ms=4,
                    )
            ns = sorted({p[0] for (dd, _), v in series.items() if dd == dim for p in v})
            ax.set_xticks(ns, [f"{n}^{dim}" for n in ns])
            ax.minorticks_off()
            ax.set_ylabel(label)
            if row == 0:
                ax.set_title(f"{dim}-D Poisson with obstacles, random right-hand side", fontsize=9)
            else:
                ax.set_xlabel("grid")
    axes[0, 0].legend(fontsize=7)
    fig.subplots_adjust(hspace=0.3)
    fig.suptitle("Linear solvers: iterations and time (compile time excluded) against grid size")


DIGEST_COLUMNS = [
    "member",
    "grid",
    "ours_its",
    "rs_its",
    "sa_its",
    "hypre_its",
    "ours_over_rs_time",
    "ours_over_hypre_time",
    "f32_cycle_over_hypre_time",
    "ours_growth",
    "ours_hierarchy",
]


def family_digest(d: dict) -> list[dict]:
    """One row per family member and grid: our iterations beside pyamg RS / SA and PETSc +
    hypre's, our time over pyamg RS's and hypre's (medians of per-round ratios; also with our
    hierarchy held in float32, `f32_cycle_over_hypre_time`), our growth per
    doubling and the hierarchy our default chose. Read off the family rows of a results file."""
    by = defaultdict(dict)
    for r in d.get("rows", []):
        if r.get("table") == "families":
            by[(r["member"], r["grid"])][r["method"]] = r
    out = []
    for (member, grid), rs in by.items():
        ours = rs.get("MG-PCG (ours)", {})
        rs_row = rs.get("pyamg RS-PCG", {})
        hy = rs.get("PETSc CG + hypre BoomerAMG", {})
        its = ours.get("its")
        if its is not None and not ours.get("converged", True):
            its = f">{its}"
        out.append(
            {
                "member": member,
                "grid": grid,
                "ours_its": its,
                "rs_its": rs_row.get("its"),
                "sa_its": rs.get("pyamg SA-PCG", {}).get("its"),
                "hypre_its": hy.get("its"),
                "ours_over_rs_time": rs_row.get("ours_over_peer"),
                "ours_over_hypre_time": hy.get("ours_over_peer"),
                "f32_cycle_over_hypre_time": hy.get("alt_over_peer"),
                "ours_growth": ours.get("growth"),
                "ours_hierarchy": ours.get("note"),
            }
        )
    return out
