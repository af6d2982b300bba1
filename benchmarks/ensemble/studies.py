"""The rows of the benchmark, one function per study, and the summary of the headline ratios."""

import jax
import jax.random as jr
import numpy as np

from scimlx import ensemble

from .children import run_child
from .measure import compiled_mb, maxrss_mb, rel, time_jitted, time_runner
from .peers import numpy_em_loop, scipy_loop
from .problems import (
    lv_member,
    lv_pilot,
    LV_REDUCERS,
    LV_REFILL,
    lv_solve,
    lv_user_estimate,
    ou_exact,
    ou_path,
    OU_REDUCERS,
    OU_REFILL,
)


def _scipy_row(ps, sample_idx) -> tuple[dict, np.ndarray | None]:
    n, sample = len(ps), len(sample_idx)
    sc = scipy_loop(ps, sample_idx)
    if sc is None:
        return {"study": "LV ODE", "method": "scipy solve_ivp loop", "note": "not installed"}, None
    rate, finals, steps, cpu_s = sc
    row = {
        "study": "LV ODE",
        "method": "scipy solve_ivp RK45 loop",
        "members": n,
        "members_per_s": rate,
        "wall_s": n / rate,
        "mean_steps": steps,
        "members_per_cpu_s": sample / cpu_s,
        "note": f"extrapolated from {sample} uniformly sampled members",
    }
    return row, finals


def _plain_vmap_row(ps, repeats) -> tuple[dict, np.ndarray, np.ndarray]:
    n = len(ps)
    plain = jax.jit(jax.vmap(lambda p: lv_solve(p).ys[-1]))
    steps_all = np.asarray(jax.jit(jax.vmap(lambda p: lv_solve(p).stats["num_steps"]))(ps))
    rss0 = maxrss_mb()
    t = time_jitted(plain, ps, repeats)
    row = {
        "study": "LV ODE",
        "method": "plain jax.vmap(diffeqsolve)",
        "members": n,
        "members_per_s": n / t.wall_s,
        "wall_s": t.wall_s,
        "compile_s": t.compile_s,
        "compiled_mem_mb": compiled_mb(plain, ps),
        "rss_growth_mb": maxrss_mb() - rss0,
        "mean_steps": float(steps_all.mean()),
        "max_steps_member": int(steps_all.max()),
        "members_per_cpu_s": n / t.cpu_s,
    }
    return row, t.result, steps_all


def _runner_row(method, ps, ys, repeats, chunk, fn=lv_member, **kw) -> dict:
    n = len(ps)
    t = time_runner(fn, ps, LV_REDUCERS, repeats, chunk_size=chunk, **kw)
    res = t.result
    try:
        mem = ensemble.chunk_memory(
            fn, ps[: res.chunk_size], reducers=LV_REDUCERS, schedule=res.schedule
        )
    except RuntimeError:  # no memory analysis on this backend
        mem = float("nan")
    row = {
        "study": "LV ODE",
        "method": method,
        "members": n,
        "members_per_s": n / t.wall_s,
        "wall_s": t.wall_s,
        "compile_s": t.compile_s,
        "chunk": res.chunk_size,
        "compiled_mem_mb": mem / 2**20,
        "rel_diff_mean": rel(res.stats["mean"], ys.mean(0)),
        "rel_diff_std": rel(res.stats["std"], ys.std(0)),
        "failed": sum(res.failures.values()),
        "members_per_cpu_s": n / t.cpu_s,
    }
    if isinstance(res.schedule, ensemble.RefillSchedule):
        row["lanes"] = res.schedule.lanes
    return row


def lv_rows(ps, *, seed, scipy_sample, repeats, chunk) -> tuple[list[dict], dict]:
    """The Lotka-Volterra sweep: scipy loop, plain vmap, the runner (vmap schedule,
    unordered and ordered; lane refill, default and other lane counts). Returns the rows and
    the ones the summary quotes, by name."""
    n = len(ps)
    sample_idx = np.sort(np.random.default_rng(seed + 1).choice(n, scipy_sample, replace=False))
    scipy_row, scipy_finals = _scipy_row(ps, sample_idx)
    plain_row, ys, steps_all = _plain_vmap_row(ps, repeats)
    if scipy_finals is not None:
        scipy_row["rel_diff_vs_jax"] = rel(ys[sample_idx], scipy_finals)
        scipy_row["jax_mean_steps_same_sample"] = float(steps_all[sample_idx].mean())
    named = {"scipy": scipy_row, "plain": plain_row}
    named["vmap"] = _runner_row("runner, 1 device (vmap schedule)", ps, ys, repeats, chunk)
    named["pilot"] = _runner_row(
        "runner + ordering (pilot solve)", ps, ys, repeats, chunk, order_by=lv_pilot
    )
    named["user"] = _runner_row(
        "runner + ordering (user estimate)", ps, ys, repeats, chunk,
        order_by=lv_user_estimate(ps),
    )  # fmt: skip
    # Lane refill: a DiffEqMember gets RefillSchedule() by default (lanes 1024, chunk 64 x lanes).
    named["refill"] = _runner_row(
        "runner, refill schedule (default)", ps, ys, repeats, chunk, fn=LV_REFILL
    )
    rows = list(named.values())
    for lanes in (128, 256, 512, 2048):
        schedule = ensemble.RefillSchedule(lanes=lanes)
        rows.append(
            _runner_row(
                f"runner, refill, {lanes} lanes",
                ps,
                ys,
                2,
                chunk,
                fn=LV_REFILL,
                schedule=schedule,
            )  # fmt: skip
        )
    return rows, named


def sde_rows(n_paths, *, seed, quick, repeats, chunk) -> list[dict]:
    """The OU Monte Carlo: NumPy loop, plain vmap, the runner (two chunk sizes, refill)."""
    keys = jr.split(jr.key(seed), n_paths)
    em_rate = numpy_em_loop(100 if quick else 500)
    rows = [
        {
            "study": "OU SDE",
            "method": "numpy Euler-Maruyama loop",
            "members": n_paths,
            "members_per_s": em_rate,
            "wall_s": n_paths / em_rate,
            "note": "extrapolated from a sample",
        }
    ]
    plain_sde = jax.jit(jax.vmap(lambda k: ou_path(k).ys[-1]))
    t = time_jitted(plain_sde, keys, repeats)
    m_ex, v_ex = ou_exact()
    se = np.sqrt(v_ex / n_paths)
    rows.append(
        {
            "study": "OU SDE",
            "method": "plain jax.vmap(diffeqsolve)",
            "members": n_paths,
            "members_per_s": n_paths / t.wall_s,
            "wall_s": t.wall_s,
            "compile_s": t.compile_s,
            "compiled_mem_mb": compiled_mb(plain_sde, keys),
            "mean_err_in_se": abs(t.result.mean() - m_ex) / se,
        }
    )
    # Fixed-step members have no slowest-member waste, so large chunks only amortise the
    # per-step cost of the batched loop: a second row with a large chunk.
    for fn, cs, label in (
        (ou_path, chunk, "runner, 1 device"),
        (ou_path, 32768, "runner, 1 device, chunk 32768"),
        (OU_REFILL, chunk, "runner, refill schedule (default)"),
    ):
        t = time_runner(fn, keys, OU_REDUCERS, repeats, chunk_size=cs)
        rows.append(
            {
                "study": "OU SDE",
                "method": label,
                "members": n_paths,
                "members_per_s": n_paths / t.wall_s,
                "wall_s": t.wall_s,
                "compile_s": t.compile_s,
                "chunk": t.result.chunk_size,
                "mean_err_in_se": abs(float(t.result.stats["mean"]) - m_ex) / se,
                "var_rel_err": abs(float(t.result.stats["var"]) - v_ex) / v_ex,
            }
        )
    return rows


_DEVICE_LABELS = (
    ("one_device", "runner, 1 of 8 devices"),
    ("auto_sharded_vmap", "auto-sharded jit(vmap), 8 devices"),
    ("runner_auto", "runner strategy=auto, 8 devices"),
    ("runner_shard_map", "runner shard_map, 8 devices"),
    ("runner_refill", "runner refill in shard_map, 8 devices"),
)


def device_rows(n_dev: int) -> list[dict]:
    """The 8-simulated-device study, run in a child process."""
    study = "LV ODE 8 sim. devices"
    try:
        d = run_child(
            ["--devices-child", str(n_dev)],
            {"XLA_FLAGS": "--xla_force_host_platform_device_count=8", "JAX_PLATFORMS": "cpu"},
        )
    except Exception as e:  # pragma: no cover - reported, not fatal
        return [{"study": study, "method": "failed", "note": str(e)[:200]}]
    return [
        {
            "study": study,
            "method": label,
            "members": n_dev,
            "members_per_s": d[key]["members_per_s"],
            "compile_s": d[key]["compile_s"],
            "rel_diff_mean": d[key].get("rel_diff_mean"),
            "note": "simulated devices: overhead only",
        }
        for key, label in _DEVICE_LABELS
    ]


def memory_rows(sizes) -> tuple[list[dict], list[dict]]:
    """Peak host memory of generator-fed studies of growing size (one child each). Returns
    the rows and the children's reports."""
    rows, reports = [], []
    for m in sizes:
        r = run_child(["--memory-child", str(m), str(16384)])
        reports.append(r)
        rows.append(
            {
                "study": "memory (cheap member)",
                "method": "runner, generator input",
                "members": m,
                "members_per_s": r["members_per_s"],
                "chunk": r["chunk"],
                "maxrss_mb": r["maxrss_mb"],
                "tracemalloc_peak_mb": r["tracemalloc_peak_mb"],
            }
        )
    return rows, reports


def summary(lv: dict, mem_reports: list[dict], sizes) -> dict:
    """The headline ratios, from the named LV rows and the memory reports."""
    scipy_rate = lv["scipy"].get("members_per_s", float("nan"))
    plain_rate = lv["plain"]["members_per_s"]
    rate_unordered = lv["vmap"]["members_per_s"]
    rate_pilot, rate_user = lv["pilot"]["members_per_s"], lv["user"]["members_per_s"]
    rate_ordered = max(rate_pilot, rate_user)
    refill = lv["refill"]
    rate_refill = refill["members_per_s"]
    cpu = {k: r.get("members_per_cpu_s", float("nan")) for k, r in lv.items()}
    return {
        # The headline keys refer to this configuration (unordered, one device):
        "runner_config": (
            "run_ensemble(DiffEqMember(...)) on the LV sweep: RefillSchedule (the default "
            f"for a DiffEqMember), lanes={refill['lanes']}, chunk={refill['chunk']}, "
            "no ordering, 1 device"
        ),
        "members_per_s": rate_refill,
        "speedup_vs_scipy_loop": rate_refill / scipy_rate,
        "speedup_vs_plain_vmap": rate_refill / plain_rate,
        # The same runner with VmapSchedule (any member function; chunk 2048), unordered:
        "members_per_s_vmap_schedule": rate_unordered,
        "speedup_vs_scipy_loop_vmap_schedule": rate_unordered / scipy_rate,
        "speedup_vs_plain_vmap_vmap_schedule": rate_unordered / plain_rate,
        "refill_vs_vmap_schedule": rate_refill / rate_unordered,
        "refill_vs_best_ordered": rate_refill / rate_ordered,
        # The same ratios in process CPU time (less sensitive to other jobs on the machine):
        "speedup_vs_scipy_loop_cpu_time": cpu["refill"] / cpu["scipy"],
        "speedup_vs_plain_vmap_cpu_time": cpu["refill"] / cpu["plain"],
        "refill_vs_vmap_schedule_cpu_time": cpu["refill"] / cpu["vmap"],
        "ordered_user_vs_unordered_cpu_time": cpu["user"] / cpu["vmap"],
        "peak_mem_mb": max(r["maxrss_mb"] for r in mem_reports),
        # Ordering is measured on the vmap schedule:
        "ordered_vs_unordered": rate_ordered / rate_unordered,
        "speedup_vs_scipy_loop_ordered": rate_ordered / scipy_rate,
        "ordered_pilot_vs_unordered": rate_pilot / rate_unordered,
        "ordered_user_vs_unordered": rate_user / rate_unordered,
        "peak_mem_mb_10x_members": mem_reports[-1]["maxrss_mb"] / mem_reports[-2]["maxrss_mb"],
        "largest_study_members": sizes[-1],
    }
