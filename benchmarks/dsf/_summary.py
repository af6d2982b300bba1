"""The summary of a run: the headline figures of every section, and the fastest mode per cell
as `AUTO_TABLE` rows."""

import numpy as np

import scimlx.dsf as dsf

from ._mqar import MQAR_MIXERS


def auto_rows(cost: list[dict]) -> list[dict]:
    """One row per timed cell: the mode `Auto` picks, the fastest one and their time ratio."""
    return [
        dict(
            family=r["family"],
            L=r["L"],
            task=r["task"],
            auto=r["auto"],
            best=r["best"],
            auto_over_best=r["auto_over_best"],
        )
        for r in cost
        if "best" in r and r["method"] == r["best"]
    ]


def measured_auto_table(cost: list[dict]) -> dict[str, list]:
    """The fastest mode per (family, training) and length in this run, as `AUTO_TABLE` rows
    `(max_L, mode name)`."""
    table = {}
    for fam in ("scalar", "per_state", "softmax"):
        for task in ("fwd_b1", "fwdbwd_b16"):
            cells = sorted(
                {
                    (r["L"], r["best"])
                    for r in cost
                    if r["family"] == fam and r["task"] == task and "best" in r
                }
            )
            rows = []
            for L, best in cells:
                if rows and rows[-1][1] == best:
                    rows[-1] = (L, best)
                else:
                    rows.append((L, best))
            if rows:  # "inf" (a string) keeps the results file strict JSON
                rows[-1] = ("inf", rows[-1][1])
            table[f"{fam}/{'training' if task == 'fwdbwd_b16' else 'inference'}"] = rows
    return table


def mqar_summary(mq: list[dict]) -> list[dict]:
    """Accuracy over seeds per task and mixer (of the mixers that ran)."""
    out = []
    for task in sorted({r["task"] for r in mq}):
        for m in MQAR_MIXERS:
            vals = [r["acc"] for r in mq if r["mixer"] == m and r["task"] == task]
            if not vals:
                continue
            out.append(
                dict(
                    task=task,
                    mixer=m,
                    acc_mean=float(np.mean(vals)),
                    acc_min=float(np.min(vals)),
                    acc_max=float(np.max(vals)),
                    seeds=len(vals),
                    steps_used=[
                        r["steps_used"] for r in mq if r["mixer"] == m and r["task"] == task
                    ],
                )
            )
    return out


def mqar_accuracies(mq: list[dict]) -> dict[str, float]:
    """Mean accuracy per mixer on the L = 64, 4-pair task."""
    return {
        m: float(np.mean([r["acc"] for r in mq if r["mixer"] == m and r["task"] == "L64_kv4"]))
        for m in MQAR_MIXERS
    }


def summarise(cost, sweep, growth, grad, mq, total_s: float) -> dict:
    """The summary figures (the keys of `summary` in the results JSON)."""

    def cell(fam, L, task, method):
        for r in cost:
            if (r["family"], r["L"], r["task"], r["method"]) == (fam, L, task, method):
                return r.get("min_ms")
        return None

    def ratio(a, b):
        return a / b if (a is not None and b is not None) else None

    def growth_of(fam, method):
        for r in growth:
            if (r["family"], r["method"], r["L"]) == (fam, method, 4096):
                return r["growth_1024_to_4096"]
        return None

    def sweep_default(fam):
        q = dsf.CHUNK_SIZE[fam]
        for r in sweep:
            if r["family"] == fam and r["variant"] == f"chunked_Q{q}":
                return r["rec_over_this"]
        return float("nan")

    def sweep_best(fam):
        return min(
            (r for r in sweep if r["family"] == fam and r["variant"].startswith("chunked")),
            key=lambda r: r["min_ms"],
        )

    accs = mqar_accuracies(mq)
    autos = auto_rows(cost)
    ratios = [r["auto_over_best"] for r in autos if r["auto_over_best"] is not None]
    errs = [r["rel_err_vs_f64"] for r in cost if "rel_err_vs_f64" in r]
    return {
        "max_mode_discrepancy_f32": max(errs, default=None),
        "max_param_grad_rel_err_chunked_f32": max(r["grad_rel_err_chunked"] for r in grad),
        "max_param_grad_rel_err_recurrence_f32": max(r["grad_rel_err_recurrence"] for r in grad),
        "chunk_over_rec_fwdbwd_L1024": ratio(
            cell("scalar", 1024, "fwdbwd_b16", "recurrence"),
            cell("scalar", 1024, "fwdbwd_b16", "chunked"),
        ),
        "chunk_over_rec_fwdbwd_L1024_per_state": ratio(
            cell("per_state", 1024, "fwdbwd_b16", "recurrence"),
            cell("per_state", 1024, "fwdbwd_b16", "chunked"),
        ),
        "chunk_over_rec_fwdbwd_L1024_sweep_default": sweep_default("scalar"),
        "chunk_over_rec_fwdbwd_L1024_per_state_sweep_default": sweep_default("per_state"),
        "chunk_over_rec_fwdbwd_L1024_sweep_best": sweep_best("scalar")["rec_over_this"],
        "scalar_sweep_best_variant": sweep_best("scalar")["variant"],
        "chunk_over_rec_fwdbwd_L1024_per_state_sweep_best": sweep_best("per_state")[
            "rec_over_this"
        ],
        "per_state_sweep_best_variant": sweep_best("per_state")["variant"],
        "auto_over_best_mode": max(ratios) if ratios else None,
        "auto_worst_cell": max(
            (r for r in autos if r["auto_over_best"] is not None),
            key=lambda r: r["auto_over_best"],
            default=None,
        ),
        "quadratic_growth_1024_to_4096": growth_of("softmax", "matrix"),
        "softmax_chunked_growth_1024_to_4096": growth_of("softmax", "chunked"),
        "chunked_growth_1024_to_4096": growth_of("scalar", "chunked"),
        "recurrence_growth_1024_to_4096": growth_of("scalar", "recurrence"),
        "per_state_chunked_growth_1024_to_4096": growth_of("per_state", "chunked"),
        "scalar_matrix_growth_256_to_1024": ratio(
            cell("scalar", 1024, "fwd_b1", "matrix"), cell("scalar", 256, "fwd_b1", "matrix")
        ),
        "mqar_acc_softmax": accs["softmax"],
        "mqar_acc_linear": accs["linear"],
        "mqar_acc_normalised": accs["normalised"],
        "mqar_acc_s6": accs["s6"],
        "mqar_acc_ssd": accs["ssd"],
        "mqar_steps_used": {
            m: [r["steps_used"] for r in mq if r["mixer"] == m] for m in MQAR_MIXERS
        },
        "mqar_seeds": {m: [r["seed"] for r in mq if r["mixer"] == m] for m in MQAR_MIXERS},
        "mqar_acc_per_seed": {m: [r["acc"] for r in mq if r["mixer"] == m] for m in MQAR_MIXERS},
        "total_s": total_s,
    }


def mqar_only_summary(mq: list[dict]) -> dict[str, float]:
    """The summary of an MQAR-only run: mean accuracy per mixer."""
    return {
        f"mqar_acc_{m}": float(np.mean([r["acc"] for r in mq if r["mixer"] == m]))
        for m in {r["mixer"] for r in mq}
    }
