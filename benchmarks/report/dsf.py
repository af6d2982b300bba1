"""Tables and targets that `python -m benchmarks.dsf` prints."""

from .._harness import print_table


COST_COLUMNS = [
    "family", "L", "task", "method", "median_ms", "min_ms", "compile_s", "peak_mib",
    "rel_err_vs_f64", "best", "auto", "note",
]  # fmt: skip
SWEEP_COLUMNS = [
    "family", "variant", "task", "min_ms", "median_ms", "compile_s", "rec_over_this",
    "flops_over_recurrence",
]  # fmt: skip
GROWTH_COLUMNS = [
    "family", "method", "L", "batch", "min_ms", "median_ms", "ns_per_unit", "unit", "peak_mib",
    "growth_1024_to_4096",
]  # fmt: skip
GRAD_COLUMNS = [
    "family", "decays", "log_decay_min", "log_decay_max", "chunk_size", "grad_rel_err_chunked",
    "worst_leaf_chunked", "grad_rel_err_recurrence",
]  # fmt: skip
MQAR_COLUMNS = [
    "task", "mixer", "seed", "lr", "d_state", "steps_used", "acc", "final_loss", "train_s",
]  # fmt: skip


def print_mqar_only(mq: list[dict], summary: dict):
    """The tables of an MQAR-only run."""
    print_table(mq, MQAR_COLUMNS, title="MQAR (vocab 512, d=64, 2 layers)")
    print_table([summary], list(summary), title="summary (MQAR only)")


def print_report(
    *,
    cost: list[dict],
    auto_rows: list[dict],
    auto_table: dict,
    sweep: list[dict],
    growth: list[dict],
    mq: list[dict],
    mq_summary: list[dict],
    accs: dict[str, float],
    paper_order: str,
    grad: list[dict],
    summary: dict,
):
    """Every table of a run, then the summary and the targets."""
    print_table(cost, COST_COLUMNS, title="DSF evaluation cost")
    print_table(
        auto_rows,
        ["family", "L", "task", "auto", "best", "auto_over_best"],
        title="dsf.Auto (table in scimlx/dsf/_auto.py) against the fastest mode, per cell",
    )
    print("fastest mode per cell in this run, as AUTO_TABLE rows (max_L, mode):")
    for k, v in auto_table.items():
        print(f"  {k}: {auto_table_code(v)}")
    print()
    print_table(
        sweep,
        SWEEP_COLUMNS,
        title="L=1024: chunk lengths vs recurrence (round-robin timing per family)",
    )
    print_table(growth, GROWTH_COLUMNS, title="forward cost growth (vmapped batch)")
    print_table(
        mq,
        MQAR_COLUMNS,
        title="MQAR runs (vocab 512, d=64, 2 layers, 1 head, batch 64, fresh samples per step)",
    )
    print_table(
        mq_summary,
        ["task", "mixer", "acc_mean", "acc_min", "acc_max", "seeds", "steps_used"],
        title="MQAR summary",
    )
    ours = sorted(accs, key=lambda m: -accs[m])
    print("ours (L=64, 4 pairs, vocab 512):", " > ".join(f"{m} {accs[m]:.2f}" for m in ours))
    print(paper_order)
    print_table(
        grad,
        GRAD_COLUMNS,
        title="parameter gradients in float32 (chunked and recurrence) vs the float64 recurrence",
    )
    print_table([summary], list(summary), title="summary")
    print_targets(summary)


def auto_table_code(rows: list) -> str:
    """Rows `(max_L, mode name)` as they are written in `AUTO_TABLE`:
    `((64, Recurrence()), (math.inf, Chunked()))`."""
    items = []
    for max_len, name in rows:
        bound = "math.inf" if max_len == "inf" else str(max_len)
        items.append(f"({bound}, {name.capitalize()}())")
    return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"


def print_targets(summary: dict):
    """The issue's targets, met or missed, from the summary of this run."""
    w = summary["auto_worst_cell"]

    def verdict(ok):
        return "met" if ok else "MISSED"

    def chunk_ratio(key):
        # the cost section's L = 1024 cell, else (quick mode) the sweep's default block length
        if summary[key] is not None:
            return summary[key], ""
        return summary[key + "_sweep_default"], " [sweep, section 1b]"

    scalar, src_s = chunk_ratio("chunk_over_rec_fwdbwd_L1024")
    per_state, src_p = chunk_ratio("chunk_over_rec_fwdbwd_L1024_per_state")
    auto_what = (
        f"auto / fastest mode, worst cell ({w['family']} L={w['L']} {w['task']}: "
        f"auto={w['auto']}, fastest={w['best']})"
        if w
        else "auto / fastest mode"
    )
    auto = summary["auto_over_best_mode"]
    lines = [
        (
            "scalar decay: chunked / recurrence, fwd+bwd L=1024 batch 16" + src_s,
            scalar,
            ">= 5",
            (scalar or 0) >= 5,
            "x",
        ),
        (
            "per-state (S6): chunked / recurrence, fwd+bwd L=1024 batch 16" + src_p,
            per_state,
            ">= 2",
            (per_state or 0) >= 2,
            "x",
        ),
        (auto_what, auto, "<= 1.10", auto is not None and auto <= 1.10, "x"),
        (
            "scalar-decay layers, chunked float32 parameter gradients vs float64 recurrence",
            summary["max_param_grad_rel_err_chunked_f32"],
            "<= 1e-5",
            summary["max_param_grad_rel_err_chunked_f32"] <= 1e-5,
            "",
        ),
    ]
    print("== targets (times: minimum over round-robin rounds) ==")
    for what, val, target, ok, unit in lines:
        if val is None or val != val:  # e.g. --lengths-bwd without 1024
            print(f"  {what}: not measured in this run (target {target})")
            continue
        shown = f"{val:.2f}x" if unit == "x" else f"{val:.1e}"
        print(f"  {what}: {shown} (target {target}): {verdict(ok)}")
    print(
        "  second measurement of the same default chunk length in the sweep (section 1b): "
        f"scalar {summary['chunk_over_rec_fwdbwd_L1024_sweep_default']:.2f}x, per-state "
        f"{summary['chunk_over_rec_fwdbwd_L1024_per_state_sweep_default']:.2f}x"
    )
    print()
