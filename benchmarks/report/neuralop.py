"""The tables and summary that `python -m benchmarks.neuralop` prints."""

from .._harness import print_table


MODEL_COLUMNS = [
    "model",
    "params",
    "rel_l2",
    "rel_l2_std",
    "rel_h1",
    "rel_l2_2x",
    "rel_h1_2x",
    "superres_ratio",
    "superres_ratio_direct",
    "step_ms",
    "infer_ms_per_sample",
    "train_s",
    "note",
]

DATAGEN_COLUMNS = [
    "model",
    "ours_s_per_sample",
    "scipy_s_per_sample",
    "speedup",
    "max_rel_diff",
    "ours_compile_s",
]


def print_models(rows: list[dict], cfg: dict, steps: int, seeds: list[int]) -> None:
    """The models' table: errors at 1x and 2x, their ratio, step and inference times."""
    res = cfg["res"]
    print_table(
        rows,
        MODEL_COLUMNS,
        title=f"Darcy smooth {res}x{res}: {cfg['n_train']} train / {cfg['n_test']} test, "
        f"{steps} steps (batch {cfg['batch']}), {len(seeds)} seeds",
    )


def print_datagen(dg_rows: list[dict]) -> None:
    """The data generator against scipy (a placeholder row where it was not measured)."""
    print_table(
        dg_rows or [{"model": "data generation: not measured at this size"}],
        DATAGEN_COLUMNS,
        title="Darcy data generation",
    )


def print_summary(summary: dict) -> None:
    """One `key: value` line per summary key."""
    for k, v in summary.items():
        print(f"{k}: {v:.4g}" if isinstance(v, float) else f"{k}: {v}")
