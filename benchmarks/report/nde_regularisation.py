"""The table and lines that `python -m benchmarks.nde_regularisation` prints at the end."""

from .._harness import print_table


COLUMNS = [
    "task",
    "arm",
    "weight",
    "seeds",
    "failed",
    "test_acc",
    "test_mse",
    "nfe",
    "nfe_ratio",
    "rejected",
    "pred_ms",
    "pred_speedup",
    "train_s",
    "train_ratio",
]


def print_means(agg: list[dict]) -> None:
    """The per-arm means over seeds, with their ratios against the task's vanilla."""
    print_table(agg, COLUMNS, "nde_regularisation (means over seeds; ratios vs vanilla)")


def print_summary(summary: dict, flags: dict, paper: dict, extra: dict) -> None:
    """The summary keys, the selected arms, the paper's figures, the spiral's own NFE and
    the run's wall and CPU time."""
    print("summary:", summary)
    print("selection:", flags)
    print("paper:", paper)
    if "b3_true_system_nfe" in extra:
        print("B3 data-generating ODE NFE at the same tolerance:", extra["b3_true_system_nfe"])
    print(f"total wall {extra['wall_s']:.0f} s, process CPU {extra['cpu_s']:.0f} s")
