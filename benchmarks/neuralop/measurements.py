"""What the benchmark measures: test errors of the trained models, their train-step and
inference times, and the data generator against scipy; the rows and summary they make."""

import statistics
import time

import equinox as eqx
import jax
import numpy as np
import optax

from scimlx.neuralop import (
    count_params,
    darcy_dataset,
    evaluate,
    FNO,
    MgNO,
    normalised,
    operator_loss,
    reference_optimiser,
    rel_h1,
    train_operator,
)

from .._harness import time_compiled, time_host
from . import peers
from .problems import F32, models, QUARTER


def train_and_evaluate(cfg, data, seeds, rows=None):
    """Train every model of every seed with `train_operator` (the same optimiser budget for
    all) and evaluate it on the test pairs at the training resolution and at twice it.

    **Returns:** `{name: {"params", "runs": [per seed], "infer_s_per_sample"}}`.
    """
    (a_tr, u_tr), (a_te, u_te), (a_te2, u_te2) = data["train"], data["test"], data["test_2x"]
    steps = cfg["epochs"] * cfg["n_train"] // cfg["batch"]
    per = {}
    for seed in seeds:
        for name, model in models(cfg, jax.random.key(seed), rows).items():
            model = normalised(model, a_tr, u_tr)
            t = time.perf_counter()
            out = train_operator(
                model,
                a_tr,
                u_tr,
                optimiser=reference_optimiser(steps, learning_rate=cfg["lr"]),
                steps=steps,
                key=jax.random.key(100 + seed),
                batch_size=cfg["batch"],
                loss=rel_h1,
                progress=True,
            )
            wall = time.perf_counter() - t
            e1 = evaluate(out.model, a_te, u_te)
            e2 = evaluate(out.model, a_te2, u_te2, batch_size=25)
            r = per.setdefault(name, {"params": count_params(model), "runs": []})
            extra = {}
            if name.startswith("MgNO"):
                # the same trained weights, run directly on the finer grid (no transfer levels)
                direct = eqx.tree_at(
                    lambda m: m.model, out.model, out.model.model.with_finer_grids("direct")
                )
                extra["rel_l2_2x_direct"] = evaluate(direct, a_te2, u_te2, batch_size=25)["rel_l2"]
            r["runs"].append(
                {
                    "seed": seed,
                    "train_s": wall,
                    **e1,
                    "rel_l2_2x": e2["rel_l2"],
                    "rel_h1_2x": e2["rel_h1"],
                    **extra,
                }
            )
            if seed == seeds[0]:
                r["infer_s_per_sample"] = infer_time(out.model, a_te[:50])
            print(
                f"  {name} seed {seed}: rel L2 {e1['rel_l2']:.4f} (2x {e2['rel_l2']:.4f}) "
                f"in {wall:.0f} s"
            )
    return per


def step_times(models, a, u, batch, rounds=15):
    """Median train-step time of each model, the models' steps interleaved round by round.

    The step is the gradient of the H1 loss and an Adam update, jitted alone so that it is
    timed without the training loop around it. Interleaving makes the ratios robust to load
    that drifts during the measurement (the 2-core machine is shared).
    """
    loss = operator_loss(rel_h1)
    opt = optax.adam(1e-3)
    a, u = a[:batch], u[:batch]
    runs = {}
    for name, model in models.items():
        params, static = eqx.partition(model, eqx.is_inexact_array)

        def step(params, state, a, u, static=static):
            g = jax.grad(lambda p: loss(eqx.combine(p, static), (a, u), None))(params)
            upd, state = opt.update(g, state, params)
            return optax.apply_updates(params, upd), state

        fn = jax.jit(step)
        args = (params, opt.init(params), a, u)
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        runs[name] = (fn, args, time.perf_counter() - t0, [])
    for _ in range(rounds):
        for fn, args, _, times in runs.values():
            t0 = time.perf_counter()
            jax.block_until_ready(fn(*args))
            times.append(time.perf_counter() - t0)
    return {
        name: {"compile_s": c, "median_s": statistics.median(t)}
        for name, (_, _, c, t) in runs.items()
    }


def fresh_step_times(cfg, data, seed, rows=None, rounds=15):
    """`step_times` of fresh (normalised) models of `seed` at the training size."""
    a_tr, u_tr = data["train"]
    fresh = {
        k: normalised(m, a_tr, u_tr) for k, m in models(cfg, jax.random.key(seed), rows).items()
    }
    return step_times(fresh, a_tr, u_tr, cfg["batch"], rounds=rounds)


def step_64(rounds=15):
    """The issue's full-size step (64 x 64, batch 8, 4 levels), random data, interleaved."""
    k = jax.random.key(7)
    a64 = jax.random.normal(k, (8, 1, 64, 64), F32)
    pair = {
        "MgNO": MgNO(1, 1, 16, 4, [(1, 0)] * 3 + [(2, 0)], dtype=F32, key=k),
        "FNO matched": FNO(1, 1, 6, 16, dtype=F32, key=k),
    }
    t = step_times(pair, a64, 0.5 * a64, 8, rounds)
    t_mg, t_fn = t["MgNO"]["median_s"], t["FNO matched"]["median_s"]
    print(f"64x64, batch 8: MgNO step {1e3 * t_mg:.0f} ms, FNO matched {1e3 * t_fn:.0f} ms")
    return {
        "mgno_step_ms_64_b8": 1e3 * t_mg,
        "fno_matched_step_ms_64_b8": 1e3 * t_fn,
        "mgno_step_time_ratio_vs_fno_64_b8": t_mg / t_fn,
    }


def infer_time(model, a):
    """Seconds per sample of the jitted, vmapped model on the batch `a`."""
    f = eqx.filter_jit(lambda m, x: jax.vmap(m)(x))
    t = time_compiled(f, model, a, repeats=3)
    return t["median_s"] / a.shape[0]


def datagen(cfg):
    """`darcy_dataset`'s seconds per sample (one batch of `datagen_n` samples at
    `datagen_res`^2) against scipy's direct solve of the same coefficients, and the largest
    relative difference of the solutions."""
    n, m = cfg["datagen_res"], cfg["datagen_n"]
    t = time_compiled(darcy_dataset, m, n, seed=123, batch_size=m, repeats=3)
    a, u = t["output"].a[:, 0], t["output"].u[:, 0]
    ours = t["median_s"] / m
    k = min(m, 8)
    ts = time_host(lambda: [peers.scipy_solve(np.asarray(a[i])) for i in range(k)], repeats=2)
    ref = ts["output"]
    err = max(
        float(np.abs(np.asarray(u[i]) - ref[i]).max() / np.abs(ref[i]).max()) for i in range(k)
    )
    return {
        "resolution": n,
        "ours_s_per_sample": ours,
        "ours_compile_s": t["compile_s"],
        "scipy_s_per_sample": ts["median_s"] / k,
        "max_rel_diff": err,
    }


def model_rows(per):
    """One row per model: means (and the rel. L2's std) over the seeds, and the seeds' runs."""
    rows = []
    for name, r in per.items():
        runs = r["runs"]

        def stat(k, runs=runs):
            v = [x[k] for x in runs]
            return statistics.mean(v), (statistics.stdev(v) if len(v) > 1 else 0.0)

        l2, l2s = stat("rel_l2")
        h1, _ = stat("rel_h1")
        l22, _ = stat("rel_l2_2x")
        h12, _ = stat("rel_h1_2x")
        direct = {}
        if "rel_l2_2x_direct" in runs[0]:
            d2, _ = stat("rel_l2_2x_direct")
            direct = {"rel_l2_2x_direct": d2, "superres_ratio_direct": d2 / l2}
        rows.append(
            {
                "model": name,
                "params": r["params"],
                "rel_l2": l2,
                "rel_l2_std": l2s,
                "rel_h1": h1,
                "rel_l2_2x": l22,
                "rel_h1_2x": h12,
                "superres_ratio": l22 / l2,
                **direct,
                "step_ms": 1e3 * r["step_s"],
                "infer_ms_per_sample": 1e3 * r["infer_s_per_sample"],
                "train_s": statistics.mean(x["train_s"] for x in runs),
                "runs": runs,
            }
        )
    return rows


def datagen_rows(dg):
    """The data-generation row (none when `dg` is `None`: not measured at this size)."""
    if dg is None:
        return []
    return [
        {
            "model": f"data generation {dg['resolution']}^2",
            **dg,
            "speedup": dg["scipy_s_per_sample"] / dg["ours_s_per_sample"],
        }
    ]


def summarise(rows, dg_rows, truth_gap, step64):
    """The summary keys: error, step-time and super-resolution ratios of the model pairs
    that were run, the test truths' cross-resolution gap and the data generator's speed-up."""
    by = {r["model"]: r for r in rows if "rel_l2" in r}
    mg, fm = by.get("MgNO"), by.get("FNO matched")
    fb, mq = by.get("FNO 12 modes, width 32"), by.get(QUARTER)
    summary = {}
    if mg and fm:
        summary.update(
            mgno_rel_l2=mg["rel_l2"],
            fno_matched_rel_l2=fm["rel_l2"],
            mgno_vs_fno_matched_error_ratio=mg["rel_l2"] / fm["rel_l2"],
            mgno_params=mg["params"],
            fno_matched_params=fm["params"],
            mgno_step_time_ratio_vs_fno=mg["step_ms"] / fm["step_ms"],
            mgno_superres_error_ratio=mg["superres_ratio"],
            mgno_superres_error_ratio_direct=mg["superres_ratio_direct"],
            fno_matched_superres_error_ratio=fm["superres_ratio"],
        )
    if fb:
        summary.update(
            fno_12_32_rel_l2=fb["rel_l2"], fno_12_32_superres_error_ratio=fb["superres_ratio"]
        )
    if mg and fb:
        summary.update(
            mgno_vs_fno_12_32_error_ratio=mg["rel_l2"] / fb["rel_l2"],
            mgno_step_time_ratio_vs_fno_12_32=mg["step_ms"] / fb["step_ms"],
        )
    if mq and fb:
        summary.update(
            mgno_quarter_rel_l2=mq["rel_l2"],
            mgno_quarter_vs_fno_12_32_error_ratio=mq["rel_l2"] / fb["rel_l2"],
            mgno_quarter_params=mq["params"],
            mgno_quarter_params_fraction_of_fno_12_32=mq["params"] / fb["params"],
            mgno_quarter_superres_error_ratio=mq["superres_ratio"],
            mgno_quarter_step_time_ratio_vs_fno_12_32=mq["step_ms"] / fb["step_ms"],
        )
    summary["test_truth_cross_resolution_rel_l2"] = truth_gap
    summary.update(step64)
    if dg_rows:
        summary.update(
            datagen_speedup_vs_scipy=dg_rows[0]["speedup"],
            datagen_max_rel_diff_vs_scipy=dg_rows[0]["max_rel_diff"],
        )
    return summary
