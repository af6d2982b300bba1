"""Rendering of the ensemble benchmark's results: the table and summary it prints, and the
docs' figure."""

import json

from .._harness import print_table


COLUMNS = [
    "study",
    "method",
    "members",
    "members_per_s",
    "wall_s",
    "compile_s",
    "chunk",
    "compiled_mem_mb",
    "maxrss_mb",
    "tracemalloc_peak_mb",
    "rel_diff_mean",
    "mean_err_in_se",
    "mean_steps",
    "members_per_cpu_s",
    "note",
]


def print_results(rows: list[dict], summary: dict) -> None:
    """What `python -m benchmarks.ensemble` prints: every row, then the summary."""
    print_table(rows, COLUMNS, title="scimlx.ensemble")
    print(json.dumps(summary, indent=1))


def plot(d: dict, fig) -> None:
    """The docs' figure of a results file: throughput by method, lanes, study size."""
    rows = d["rows"]
    axes = fig.subplots(2, 2)
    for ax, study in zip(axes[0], ("LV ODE", "OU SDE")):
        rs = [r for r in rows if r["study"] == study and r.get("members_per_s")]
        ax.barh(range(len(rs)), [r["members_per_s"] for r in rs], color="C0")
        ax.set_yticks(range(len(rs)), [r["method"] for r in rs], fontsize=7)
        ax.invert_yaxis()
        ax.set_xscale("log")
        ax.set_xlabel("members per second")
        members = rs[0]["members"] if rs else "?"
        ax.set_title(f"{study}, {members:,} members", fontsize=9)
    ax = axes[1, 0]
    lanes = []
    for r in rows:
        if r["study"] == "LV ODE" and r.get("lanes") and "refill" in r["method"]:
            lanes.append((r["lanes"], r["members_per_s"]))
    if lanes:
        ax.semilogx(*zip(*sorted(lanes)), "o-", base=2)
        ax.set_xticks([p[0] for p in lanes], [str(p[0]) for p in lanes])
        ax.minorticks_off()
    ax.set_xlabel("lanes (members in flight)")
    ax.set_ylabel("members per second")
    ax.set_title("LV ODE, refill schedule: lanes", fontsize=9)
    ax = axes[1, 1]
    pts = sorted(
        (r["members"], r["members_per_s"]) for r in rows if r["study"].startswith("memory")
    )
    if pts:
        ax.loglog(*zip(*pts), "o-")
    ax.set_xlabel("members")
    ax.set_ylabel("members per second")
    ax.set_title("throughput against study size (cheap member, generator input)", fontsize=9)
    fig.suptitle("Ensemble runner throughput")
    fig.subplots_adjust(left=0.2, wspace=0.6, hspace=0.45)
