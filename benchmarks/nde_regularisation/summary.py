"""Means over seeds, ratios against vanilla, the arm selected per regulariser, and the rows
kept from an earlier results file for the tasks not re-run."""

import json
import os
import statistics


TASK_LABELS = {
    "b1": ("B1 NODE digits", "B1 NODE digits loose"),
    "b2": ("B2 NSDE digits",),
    "b3": ("B3 spiral",),
    "b3loose": ("B3 spiral loose",),
}


def aggregate(rows, metric_keys):
    groups = {}
    for r in rows:
        groups.setdefault((r["task"], r["arm"], r["weight"]), []).append(r)
    out = []
    for (task, arm, weight), rs in groups.items():
        row = dict(
            task=task, arm=arm, weight=weight, seeds=len(rs), failed=sum("failed" in r for r in rs)
        )
        for k in metric_keys:
            vals = [r[k] for r in rs if k in r]
            if vals:
                row[k] = statistics.mean(vals)
                if len(vals) > 1 and k in ("test_acc", "test_mse", "nfe"):
                    row[k + "_std"] = statistics.stdev(vals)
        out.append(row)
    return out


def best_arm(agg, task, arm, acc_drop_max=None, mse_factor=None):
    """Lowest-NFE row of `arm` meeting the accuracy (or fit) constraint against vanilla;
    if none meets it, the row with the best accuracy (flagged)."""
    van = next(r for r in agg if r["task"] == task and r["arm"] == "vanilla")
    cands = [r for r in agg if r["task"] == task and r["arm"] == arm and "nfe" in r]
    if not cands:
        return van, None, False
    if acc_drop_max is not None:
        ok = [r for r in cands if van["test_acc"] - r["test_acc"] <= acc_drop_max]
        fallback = max(cands, key=lambda r: r["test_acc"])
    else:
        ok = [r for r in cands if r["test_mse"] <= van["test_mse"] * mse_factor]
        fallback = min(cands, key=lambda r: r["test_mse"])
    if ok:
        return van, min(ok, key=lambda r: r["nfe"]), True
    return van, fallback, False


def summarise(rows, tasks):
    """The per-arm means (`agg`, with ratios against the task's vanilla), the summary keys
    and the selection flags (which weight each summary figure comes from, and whether it met
    the accuracy or fit constraint)."""
    metrics = ["test_acc", "test_loss", "test_mse", "nfe", "rejected", "pred_ms", "train_s"]
    agg = aggregate(rows, metrics)
    for task in dict.fromkeys(r["task"] for r in agg):
        van = next(r for r in agg if r["task"] == task and r["arm"] == "vanilla")
        for r in agg:
            if r["task"] == task and "nfe" in r:
                r["nfe_ratio"] = r["nfe"] / van["nfe"]
                r["pred_speedup"] = van["pred_ms"] / r["pred_ms"]
                r["train_ratio"] = r["train_s"] / van["train_s"]

    summary = {}
    flags = {}
    for arm, key in (("global error", "global"), ("local unbiased", "local_unbiased")):
        if "b1" not in tasks:
            break
        van, best, ok = best_arm(agg, "B1 NODE digits", arm, acc_drop_max=0.5)
        if best is None:
            continue
        summary[f"b1_nfe_ratio_{key}"] = best["nfe_ratio"]
        summary[f"b1_predict_speedup_{key}"] = best["pred_speedup"]
        summary[f"b1_train_time_ratio_{key}"] = best["train_ratio"]
        summary[f"b1_acc_drop_pp_{key}"] = van["test_acc"] - best["test_acc"]
        flags[f"b1_{key}"] = dict(weight=best["weight"], constraint_met=ok)
    van, best, ok = (
        best_arm(agg, "B2 NSDE digits", "global error", acc_drop_max=1.0)
        if "b2" in tasks
        else (None, None, None)
    )
    if best is not None:
        summary["b2_nfe_ratio_global"] = best["nfe_ratio"]
        flags["b2_global"] = dict(
            weight=best["weight"], constraint_met=ok, acc_drop_pp=van["test_acc"] - best["test_acc"]
        )
    if "b3" not in tasks:
        best3 = []
    else:
        best3 = [
            best_arm(agg, "B3 spiral", a, mse_factor=1.0)
            for a in ("global error", "error+stiffness")
        ]
        best3 = [b for b in best3 if b[1] is not None]  # arms that were run
    met = [b for b in best3 if b[2]]
    # Every spiral arm's best row under the fit constraint (or its best fit, flagged).
    for task, label, prefix in (
        ("b3", "B3 spiral", "b3_"),
        ("b3loose", "B3 spiral loose", "b3_loose_"),
    ):
        if task not in tasks:
            continue
        for arm in dict.fromkeys(r["arm"] for r in agg if r["task"] == label):
            if arm == "vanilla":
                continue
            van, best, ok = best_arm(agg, label, arm, mse_factor=1.0)
            if best is not None:
                flags[prefix + arm] = dict(
                    weight=best["weight"],
                    constraint_met=ok,
                    nfe_ratio=best["nfe_ratio"],
                    mse_ratio=best["test_mse"] / van["test_mse"],
                )
    if best3:
        van, best, ok = min(met or best3, key=lambda b: b[1]["nfe"])
        summary["b3_nfe_ratio_global"] = best["nfe_ratio"]
        flags["b3_global"] = dict(
            arm=best["arm"],
            weight=best["weight"],
            constraint_met=ok,
            mse_ratio=best["test_mse"] / van["test_mse"],
        )
    return agg, summary, flags


def kept_rows(path, tasks, only_arms=None):
    """Per-seed rows of the tasks not re-run (and, with `only_arms`, of the arms not re-run),
    from an existing full-mode results JSON, and when each kept task was measured."""
    if not os.path.exists(path):
        return [], None
    with open(path) as f:
        old = json.load(f)
    if old.get("mode") != "full":
        return [], None
    labels = {lab for t, labs in TASK_LABELS.items() if t not in tasks for lab in labs}
    rows = [
        r
        for r in old["rows"]
        if "seed" in r and (r["task"] in labels or (only_arms and r["arm"] not in only_arms))
    ]
    prov = old.get("provenance", {})
    when = {
        t: prov.get("measured", {}).get(t, old.get("date"))
        for t in TASK_LABELS
        if t not in tasks and any(r["task"] in TASK_LABELS[t] for r in rows)
    }
    return rows, when
