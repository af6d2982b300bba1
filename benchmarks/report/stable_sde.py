"""The stable SDE benchmark's tables: what `python -m benchmarks.stable_sde` prints, and the
docs' markdown table (`python -m benchmarks.stable_sde --markdown FILE`)."""

import json

import numpy as np

from .._harness import print_table


RATES = (0.0, 0.3, 0.5, 0.7)


def accuracy_text(mean: float, std: float) -> str:
    """`mean±std` in percent, or `n/a` where no run gave an accuracy."""
    return "n/a" if not np.isfinite(mean) else f"{100 * mean:.1f}±{100 * std:.1f}"


def _print_summary(summary: dict) -> None:
    for k, v in summary.items():
        print(f"{k}: {v}")


def print_main(rows: list[dict], summary: dict) -> None:
    """The main study: accuracy per data set, model and rate, ranks and step times."""
    cols = (
        ["dataset", "model"]
        + [f"acc@{int(r * 100)}%" for r in RATES]
        + ["drop_0_70_pp", "mean_rank", "step_ms", "step_ms_interleaved", "compile_s", "paper"]
    )
    print_table(rows, cols, title="Test accuracy % (mean±std over seeds), paper protocol")
    _print_summary(summary)


def print_focused(rows: list[dict], summary: dict, rates) -> None:
    """A focused study (a subset of rates or models): accuracy per data set, model, rate."""
    cols = ["dataset", "model"] + [f"acc@{int(r * 100)}%" for r in rates]
    print_table(rows, cols, title="Test accuracy % (mean±std over seeds), focused study")
    _print_summary(summary)


def print_peer(rows: list[dict], summary: dict) -> None:
    """The PyTorch peer checks: logits agreement and interleaved step times."""
    print_table(
        rows,
        ["dataset", "batch", "logits_rel_diff_loop", "logits_rel_diff_torchsde"]
        + [f"{k} median_s" for k in ("scimlx", "torch loop", "torchsde")],
        title="PyTorch port of the official LNSDE classifier vs scimlx",
    )
    _print_summary(summary)


def markdown(path: str) -> str:
    """The docs table (accuracy per data set, model and rate; summary) from a results JSON."""
    with open(path) as f:
        payload = json.load(f)
    rows, summ, mach = payload["rows"], payload["summary"], payload["machine"]
    step_label = (
        "step (ms, in-run mean, validation included)"
        if summ.get("step_ms_includes_validation")
        else "step (ms, in-run median)"
    )
    lines = [
        f"Measured {payload['date']} ({payload['mode']} mode), {mach.get('cores')}-core "
        f"{mach.get('cpu')} CPU, jax {mach.get('jax')}, float32, one thread per side, machine "
        f"shared with other jobs; seeds {summ.get('seeds')}, at most {summ.get('epochs_max')} "
        f"epochs; summed process wall time {summ.get('wall_s', 0) / 60:.0f} min.",
        "",
        "Test accuracy % (mean ± std over seeds) at 0 / 30 / 50 / 70 % missing:",
        "",
        "| data set | model | 0 % | 30 % | 50 % | 70 % | drop 0→70 (pp) | mean rank "
        f"| {step_label} |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        step = r["step_ms"]
        lines.append(
            f"| {r['dataset']} | {r['model']} | "
            + " | ".join(r[f"acc@{int(q * 100)}%"] for q in RATES)
            + f" | {r['drop_0_70_pp']:.1f} | {r['mean_rank']:.2f} | {step:.0f} |"
        )

    def pp(k):
        v = summ.get(k)
        return "n/a" if v is None else f"{v:+.1f} pp"

    ok = {True: "met", False: "missed", None: "n/a"}
    lines += [
        "",
        "| summary | value | target |",
        "|---|---|---|",
        f"| data sets | {', '.join(summ['datasets'])} | |",
        f"| best stable class (mean accuracy) | {summ['best_stable_class']} "
        f"({100 * summ['mean_acc_best_stable']:.1f} %) | |",
        f"| LNSDE mean accuracy / PyTorch reference | {100 * summ['mean_acc_lnsde']:.1f} % / "
        + (
            f"{100 * summ['mean_acc_torch_reference']:.1f} %"
            if summ.get("mean_acc_torch_reference") is not None
            else "n/a"
        )
        + " | |",
        f"| mean gap to the reference (reference − LNSDE) | "
        f"{pp('mean_gap_to_torch_reference_pp')} (one seed std: "
        f"{summ.get('torch_reference_seed_std_pp', float('nan')):.1f} pp) | ≤ one seed std: "
        f"{ok[summ.get('target_lnsde_within_one_std')]} |",
        f"| worst data-set gap | {pp('worst_gap_to_torch_reference_pp')} "
        f"({', '.join(f'{k} {v:+.1f}' for k, v in summ.get('gap_per_dataset_pp', {}).items())})"
        f" | ≤ 5 pp: {ok[summ.get('target_no_dataset_5pp_worse')]} |",
        f"| best stable − naive SDE at 50 % | {pp('stable_vs_naive_pp_at_50')} | > 0: "
        f"{ok[summ.get('target_stable_beats_naive_at_50')]} |",
        f"| best stable − neural CDE at 70 % | {pp('stable_vs_ncde_pp_at_70')} | > 0: "
        f"{ok[summ.get('target_stable_beats_ncde_at_70')]} |",
        "| train step, PyTorch / scimlx (geometric mean) | "
        + (
            f"{summ['step_time_ratio_vs_torch']:.1f}x"
            if summ.get("step_time_ratio_vs_torch") is not None
            else "n/a"
        )
        + f" | ≥ 3x: {ok[summ.get('target_3x_faster')]} |",
    ]
    return "\n".join(lines)
