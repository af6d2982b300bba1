"""Ensemble benchmark: a Lotka-Volterra parameter sweep and an SDE Monte Carlo.

Question answered: how many members per second does `scimlx.ensemble.run_ensemble` get
through, against a scipy `solve_ivp` loop and a plain `jax.vmap(diffeqsolve)`, how much
memory does it need as the study grows, does cost-aware ordering pay, and what do
auto-sharded `vmap` and `shard_map` cost on 8 (simulated) devices?

    python -m benchmarks.ensemble [--quick]

Rows labelled "extrapolated" time a sample of members and scale to the whole study.
Times are the best of several runs (compile excluded), since the machine may be shared.
On simulated host devices (one CPU shared by 8 "devices") only correctness and overhead
are meaningful; speed-ups from sharding need real devices.
"""

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc

import jax


jax.config.update("jax_enable_x64", True)

import diffrax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import jax.random as jr  # noqa: E402
import numpy as np  # noqa: E402

from scimlx import ensemble  # noqa: E402

from ._harness import optional_import, parse_args, print_table, write_results  # noqa: E402


RTOL, ATOL = 1e-6, 1e-8
T1 = 20.0
Y0 = (10.0, 10.0)
BETA, DELTA = 0.1, 0.075


# ----------------------------------------------------------------------------------------
# Problems
# ----------------------------------------------------------------------------------------


def lv_params(n, seed=0):
    """(alpha, gamma) log-uniform on [0.3, 3]: the cost per member varies about 10x."""
    rng = np.random.default_rng(seed)
    return np.exp(rng.uniform(np.log(0.3), np.log(3.0), (n, 2)))


def _lv_field(t, y, p):
    x, z = y[0], y[1]
    return jnp.stack([p[0] * x - BETA * x * z, DELTA * x * z - p[1] * z])


def lv_solve(p, rtol=RTOL, atol=ATOL, max_steps=16384):
    return diffrax.diffeqsolve(
        diffrax.ODETerm(_lv_field),
        diffrax.Tsit5(),
        0.0,
        T1,
        0.01,
        jnp.asarray(Y0),
        args=p,
        stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol),
        saveat=diffrax.SaveAt(t1=True),
        max_steps=max_steps,
        throw=False,
    )


def lv_member(p):
    return lv_solve(p)


def lv_problem(p):
    return ensemble.DiffEqProblem(
        diffrax.ODETerm(_lv_field), jnp.asarray(Y0), args=p, t0=0.0, t1=T1, dt0=0.01
    )


# The same solve as `lv_member`, described for the lane-refill schedule.
LV_REFILL = ensemble.DiffEqMember(
    lv_problem, diffrax.Tsit5(), diffrax.PIDController(rtol=RTOL, atol=ATOL), max_steps=16384
)


def lv_final(sol):
    return sol.ys[-1]


def lv_pilot(p):
    """A cheap loose-tolerance pilot solve: its step count estimates the member's cost.

    rtol 1e-3 (1000x looser than the study): the step counts correlate at 0.98 with the
    study's. At rtol 1e-2 the pilot goes unstable for some members and runs to max_steps,
    costing more than ordering saves.
    """
    return lv_solve(p, rtol=1e-3, atol=1e-5, max_steps=512).stats["num_steps"]


def lv_user_estimate(ps):
    """A free estimate: the oscillation is faster (more steps) for larger rates."""
    return np.sqrt(ps[:, 0] * ps[:, 1]) + 0.5 * (ps[:, 0] + ps[:, 1])


LV_REDUCERS = {
    "mean": ensemble.Mean(of=lv_final),
    "std": ensemble.Std(of=lv_final),
    "min": ensemble.Min(of=lv_final),
    "max": ensemble.Max(of=lv_final),
    "quantiles": ensemble.Quantiles([0.05, 0.5, 0.95], of=lv_final, range=(0.0, 200.0), bins=4000),
}

# Ornstein-Uhlenbeck dX = theta (mu - X) dt + sigma dW, Euler-Maruyama, 100 steps.
OU_THETA, OU_MU, OU_SIGMA, OU_X0, OU_T1, OU_DT = 1.5, 1.0, 0.4, 0.0, 1.0, 0.01


def ou_path(key):
    bm = diffrax.UnsafeBrownianPath(shape=(), key=key)
    terms = diffrax.MultiTerm(
        diffrax.ODETerm(lambda t, y, args: OU_THETA * (OU_MU - y)),
        diffrax.ControlTerm(lambda t, y, args: jnp.asarray(OU_SIGMA, y.dtype), bm),
    )
    return diffrax.diffeqsolve(
        terms,
        diffrax.Euler(),
        0.0,
        OU_T1,
        OU_DT,
        jnp.asarray(OU_X0),
        saveat=diffrax.SaveAt(t1=True),
        adjoint=diffrax.DirectAdjoint(),
        max_steps=int(round(OU_T1 / OU_DT)) + 1,
        throw=False,
    )


def ou_problem(key):
    bm = diffrax.UnsafeBrownianPath(shape=(), key=key)
    terms = diffrax.MultiTerm(
        diffrax.ODETerm(lambda t, y, args: OU_THETA * (OU_MU - y)),
        diffrax.ControlTerm(lambda t, y, args: jnp.asarray(OU_SIGMA, y.dtype), bm),
    )
    return ensemble.DiffEqProblem(terms, jnp.asarray(OU_X0), t0=0.0, t1=OU_T1, dt0=OU_DT)


# The same fixed-step path for the lane-refill schedule (every member takes 100 steps, so
# there is no slowest member to wait for: this row measures refill's overhead).
OU_REFILL = ensemble.DiffEqMember(
    ou_problem,
    diffrax.Euler(),
    max_steps=int(round(OU_T1 / OU_DT)) + 1,
    adjoint=diffrax.DirectAdjoint(),
)


def ou_final(sol):
    return sol.ys[-1]


def ou_exact():
    """Mean and variance at t1 of the Euler-Maruyama chain itself (no discretisation bias),
    X_{k+1} = a X_k + theta mu dt + sigma sqrt(dt) Z_k with a = 1 - theta dt."""
    n = int(round(OU_T1 / OU_DT))
    a = 1.0 - OU_THETA * OU_DT
    mean = OU_MU + (OU_X0 - OU_MU) * a**n
    var = OU_SIGMA**2 * OU_DT * (1 - a ** (2 * n)) / (1 - a**2)
    return mean, var


OU_REDUCERS = {"mean": ensemble.Mean(of=ou_final), "var": ensemble.Variance(of=ou_final)}


# ----------------------------------------------------------------------------------------
# Peers
# ----------------------------------------------------------------------------------------


def scipy_loop(ps, idx):
    """`solve_ivp` with RK45 (Dormand-Prince 5(4), the same order class as Tsit5 5(4)) at
    the same rtol/atol, on the members `idx` (a uniform random sample of the study)."""
    scipy_integrate = optional_import("scipy.integrate")
    if scipy_integrate is None:
        return None

    def f(t, y, a, g):
        return [a * y[0] - BETA * y[0] * y[1], DELTA * y[0] * y[1] - g * y[1]]

    dt, dc = float("inf"), float("inf")
    for _ in range(2):  # best of two passes over the sample
        t0, c0 = time.perf_counter(), time.process_time()
        finals, steps = [], []
        for a, g in ps[idx]:
            sol = scipy_integrate.solve_ivp(
                f, (0.0, T1), list(Y0), method="RK45", rtol=RTOL, atol=ATOL, args=(a, g)
            )
            finals.append(sol.y[:, -1])
            steps.append(len(sol.t) - 1)
        dt = min(dt, time.perf_counter() - t0)
        dc = min(dc, time.process_time() - c0)
    _CPU_S["scipy"] = dc
    return len(idx) / dt, np.asarray(finals), float(np.mean(steps))


def numpy_em_loop(sample, seed=0):
    rng = np.random.default_rng(seed)
    n_steps = int(round(OU_T1 / OU_DT))
    t0 = time.perf_counter()
    for _ in range(sample):
        x = OU_X0
        for _ in range(n_steps):
            x = x + OU_THETA * (OU_MU - x) * OU_DT + OU_SIGMA * np.sqrt(OU_DT) * rng.normal()
    return sample / (time.perf_counter() - t0)


def _maxrss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _compiled_mb(fn, *args):
    try:
        c = fn.lower(*args).compile()
        c = getattr(c, "compiled", c)
        m = c.memory_analysis()
        return (m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes) / 2**20
    except Exception:
        return None


_CPU_S: dict = {}  # the last timed call's best process CPU seconds, by label


def time_runner(fn, inputs, reducers, repeats, **kw):
    """First call (compile + run) apart, then the best of `repeats` runs (wall clock; the
    best process CPU time is kept in `_CPU_S["last"]`)."""
    t0 = time.perf_counter()
    res = ensemble.run_ensemble(fn, inputs, reducers=reducers, progress=False, **kw)
    first = time.perf_counter() - t0
    times, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        res = ensemble.run_ensemble(fn, inputs, reducers=reducers, progress=False, **kw)
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    med = float(np.min(times))  # best of `repeats`: robust to other jobs on the machine
    _CPU_S["last"] = float(np.min(cpu))
    return res, med, max(first - med, 0.0)


def _rel(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-300)))


# ----------------------------------------------------------------------------------------
# Child processes: 8 simulated devices; memory flatness.
# ----------------------------------------------------------------------------------------


def devices_child(n):
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    assert jax.device_count() == 8, jax.devices()
    ps = lv_params(n, seed=1)
    out = {"n": n, "devices": jax.device_count()}
    reds = {"mean": LV_REDUCERS["mean"], "std": LV_REDUCERS["std"]}

    one, t_one, c_one = time_runner(lv_member, ps, reds, 1, devices=jax.devices()[:1], chunk_size=n)
    out["one_device"] = {"members_per_s": n / t_one, "compile_s": c_one}

    mesh = Mesh(np.asarray(jax.devices()), ("members",))
    sharded = jax.device_put(ps, NamedSharding(mesh, PartitionSpec("members")))
    plain = jax.jit(jax.vmap(lambda p: lv_solve(p).ys[-1]))
    t0 = time.perf_counter()
    ys = jax.block_until_ready(plain(sharded))
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    ys = jax.block_until_ready(plain(sharded))
    t_auto_vmap = time.perf_counter() - t0
    ys = np.asarray(ys)
    out["auto_sharded_vmap"] = {
        "members_per_s": n / t_auto_vmap,
        "compile_s": max(first - t_auto_vmap, 0.0),
        "rel_diff_mean": _rel(ys.mean(0), one.stats["mean"]),
    }
    for name, strategy in (("runner_shard_map", "shard_map"), ("runner_auto", "auto")):
        r, t, c = time_runner(lv_member, ps, reds, 1, chunk_size=n, strategy=strategy)
        out[name] = {
            "members_per_s": n / t,
            "compile_s": c,
            "rel_diff_mean": _rel(r.stats["mean"], one.stats["mean"]),
            "rel_diff_std": _rel(r.stats["std"], one.stats["std"]),
            "n_devices": r.n_devices,
        }
    r, t, c = time_runner(LV_REFILL, ps, reds, 1, chunk_size=n)
    out["runner_refill"] = {
        "members_per_s": n / t,
        "compile_s": c,
        "rel_diff_mean": _rel(r.stats["mean"], one.stats["mean"]),
        "rel_diff_std": _rel(r.stats["std"], one.stats["std"]),
        "n_devices": r.n_devices,
    }
    print("RESULT " + json.dumps(out), flush=True)


def _cheap_member(p):
    """A fixed-step solve (20 Heun steps): cheap, so the memory test is about the runner."""
    return diffrax.diffeqsolve(
        diffrax.ODETerm(_lv_field),
        diffrax.Heun(),
        0.0,
        2.0,
        0.1,
        jnp.asarray(Y0),
        args=p,
        saveat=diffrax.SaveAt(t1=True),
        max_steps=32,
        throw=False,
    ).ys[-1]


def memory_child(n, chunk):
    """Run an `n`-member study from a generator of chunks; report peak host memory."""
    reds = {
        "mean": ensemble.Mean(),
        "std": ensemble.Std(),
        "q": ensemble.Quantiles([0.05, 0.5, 0.95], range=(0.0, 100.0), bins=2000),
    }

    def chunks():
        for s in range(0, n, chunk):
            m = min(chunk, n - s)
            rng = np.random.default_rng(s)
            yield np.exp(rng.uniform(np.log(0.3), np.log(3.0), (m, 2)))

    # Warm up (compile) on one chunk, then measure the whole study.
    ensemble.run_ensemble(_cheap_member, chunks(), reducers=reds, progress=False, total=chunk)
    rss_warm = _maxrss_mb()
    tracemalloc.start()
    t0 = time.perf_counter()
    res = ensemble.run_ensemble(_cheap_member, chunks(), reducers=reds, progress=False, total=n)
    wall = time.perf_counter() - t0
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    out = {
        "n": n,
        "chunk": chunk,
        "members_per_s": n / wall,
        "maxrss_mb": _maxrss_mb(),
        "maxrss_after_warmup_mb": rss_warm,
        "tracemalloc_peak_mb": traced_peak / 2**20,
        "n_successful": res.n_successful,
    }
    print("RESULT " + json.dumps(out), flush=True)


def _child(args, env_extra=None, timeout=1800):
    env = dict(os.environ)
    env.pop("XLA_FLAGS", None)
    env.update(env_extra or {})
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.ensemble", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    )
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
    raise RuntimeError(f"child {args} failed:\n{proc.stderr[-3000:]}")


# ----------------------------------------------------------------------------------------
# Main
# ----------------------------------------------------------------------------------------


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--devices-child":
        return devices_child(int(sys.argv[2]))
    if len(sys.argv) > 1 and sys.argv[1] == "--memory-child":
        return memory_child(int(sys.argv[2]), int(sys.argv[3]))
    args = parse_args(__doc__.splitlines()[0])
    quick = args.quick
    n = 10_000 if quick else 100_000
    n_paths = 10_000 if quick else 100_000
    scipy_sample = 40 if quick else 200
    repeats = 2 if quick else 4
    # 2048 is the measured CPU optimum; accelerators want larger chunks.
    chunk = os.environ.get("SCIMLX_BENCH_CHUNK")
    chunk = None if chunk is None else int(chunk)  # None: the runner's default
    seed = 0
    print(
        f"ensemble benchmark ({'quick' if quick else 'full'}): {n} LV members, {n_paths} SDE "
        f"paths, seed {seed}, jax {jax.__version__}, {os.cpu_count()} cores",
        flush=True,
    )

    ps = lv_params(n, seed)
    rows = []

    # -- scipy loop (sample) -------------------------------------------------------------
    sample_idx = np.sort(np.random.default_rng(seed + 1).choice(n, scipy_sample, replace=False))
    sc = scipy_loop(ps, sample_idx)
    if sc is None:
        rows.append({"study": "LV ODE", "method": "scipy solve_ivp loop", "note": "not installed"})
        scipy_rate, scipy_finals = float("nan"), None
    else:
        scipy_rate, scipy_finals, scipy_steps = sc
        rows.append(
            {
                "study": "LV ODE",
                "method": "scipy solve_ivp RK45 loop",
                "members": n,
                "members_per_s": scipy_rate,
                "wall_s": n / scipy_rate,
                "mean_steps": scipy_steps,
                "members_per_cpu_s": scipy_sample / _CPU_S["scipy"],
                "note": f"extrapolated from {scipy_sample} uniformly sampled members",
            }
        )

    # -- plain vmap over the whole study ---------------------------------------------------
    plain = jax.jit(jax.vmap(lambda p: lv_solve(p).ys[-1]))
    steps_all = np.asarray(jax.jit(jax.vmap(lambda p: lv_solve(p).stats["num_steps"]))(ps))
    rss0 = _maxrss_mb()
    t0 = time.perf_counter()
    ys = jax.block_until_ready(plain(ps))
    first = time.perf_counter() - t0
    times, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        ys = jax.block_until_ready(plain(ps))
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    t_plain = float(np.min(times))
    ys = np.asarray(ys)
    plain_rate = n / t_plain
    plain_row = {
        "study": "LV ODE",
        "method": "plain jax.vmap(diffeqsolve)",
        "members": n,
        "members_per_s": plain_rate,
        "wall_s": t_plain,
        "compile_s": max(first - t_plain, 0),
        "compiled_mem_mb": _compiled_mb(plain, ps),
        "rss_growth_mb": _maxrss_mb() - rss0,
        "mean_steps": float(steps_all.mean()),
        "max_steps_member": int(steps_all.max()),
        "members_per_cpu_s": n / float(np.min(cpu)),
    }
    rows.append(plain_row)
    if scipy_finals is not None:
        rows[0]["rel_diff_vs_jax"] = _rel(ys[sample_idx], scipy_finals)
        rows[0]["jax_mean_steps_same_sample"] = float(steps_all[sample_idx].mean())

    # -- the runner, unordered and ordered -------------------------------------------------
    def runner_row(method, fn=lv_member, reps=repeats, **kw):
        res, t, c = time_runner(fn, ps, LV_REDUCERS, reps, chunk_size=chunk, **kw)
        rate = n / t
        xs = ps[: res.chunk_size]
        try:
            mem = ensemble.chunk_memory(fn, xs, reducers=LV_REDUCERS, schedule=res.schedule)
        except RuntimeError:  # no memory analysis on this backend
            mem = float("nan")
        row = {
            "study": "LV ODE",
            "method": method,
            "members": n,
            "members_per_s": rate,
            "wall_s": t,
            "compile_s": c,
            "chunk": res.chunk_size,
            "compiled_mem_mb": mem / 2**20,
            "rel_diff_mean": _rel(res.stats["mean"], ys.mean(0)),
            "rel_diff_std": _rel(res.stats["std"], ys.std(0)),
            "failed": sum(res.failures.values()),
            "members_per_cpu_s": n / _CPU_S["last"],
        }
        if isinstance(res.schedule, ensemble.RefillSchedule):
            row["lanes"] = res.schedule.lanes
        rows.append(row)
        return rate

    rate_unordered = runner_row("runner, 1 device (vmap schedule)")
    vmap_cfg = rows[-1]
    rate_pilot = runner_row("runner + ordering (pilot solve)", order_by=lv_pilot)
    rate_user = runner_row("runner + ordering (user estimate)", order_by=lv_user_estimate(ps))
    ordered_user_cfg = rows[-1]
    rate_ordered = max(rate_pilot, rate_user)
    # Lane refill: a DiffEqMember gets RefillSchedule() by default (lanes 1024, chunk 64 x lanes).
    rate_refill = runner_row("runner, refill schedule (default)", fn=LV_REFILL)
    refill_cfg = rows[-1]
    for lanes in (128, 256, 512, 2048):
        schedule = ensemble.RefillSchedule(lanes=lanes)
        runner_row(f"runner, refill, {lanes} lanes", fn=LV_REFILL, reps=2, schedule=schedule)

    # -- SDE Monte Carlo --------------------------------------------------------------------
    keys = jr.split(jr.key(seed), n_paths)
    em_rate = numpy_em_loop(100 if quick else 500)
    rows.append(
        {
            "study": "OU SDE",
            "method": "numpy Euler-Maruyama loop",
            "members": n_paths,
            "members_per_s": em_rate,
            "wall_s": n_paths / em_rate,
            "note": "extrapolated from a sample",
        }
    )
    plain_sde = jax.jit(jax.vmap(lambda k: ou_path(k).ys[-1]))
    t0 = time.perf_counter()
    xs = jax.block_until_ready(plain_sde(keys))
    first = time.perf_counter() - t0
    t_plain_sde = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        xs = np.asarray(jax.block_until_ready(plain_sde(keys)))
        t_plain_sde = min(t_plain_sde, time.perf_counter() - t0)
    m_ex, v_ex = ou_exact()
    se = np.sqrt(v_ex / n_paths)
    rows.append(
        {
            "study": "OU SDE",
            "method": "plain jax.vmap(diffeqsolve)",
            "members": n_paths,
            "members_per_s": n_paths / t_plain_sde,
            "wall_s": t_plain_sde,
            "compile_s": max(first - t_plain_sde, 0),
            "compiled_mem_mb": _compiled_mb(plain_sde, keys),
            "mean_err_in_se": abs(xs.mean() - m_ex) / se,
        }
    )
    # Fixed-step members have no slowest-member waste, so large chunks only amortise the
    # per-step cost of the batched loop: a second row with a large chunk.
    for fn, cs, label in (
        (ou_path, chunk, "runner, 1 device"),
        (ou_path, 32768, "runner, 1 device, chunk 32768"),
        (OU_REFILL, chunk, "runner, refill schedule (default)"),
    ):
        res, t, c = time_runner(fn, keys, OU_REDUCERS, repeats, chunk_size=cs)
        rows.append(
            {
                "study": "OU SDE",
                "method": label,
                "members": n_paths,
                "members_per_s": n_paths / t,
                "wall_s": t,
                "compile_s": c,
                "chunk": res.chunk_size,
                "mean_err_in_se": abs(float(res.stats["mean"]) - m_ex) / se,
                "var_rel_err": abs(float(res.stats["var"]) - v_ex) / v_ex,
            }
        )

    # -- 8 simulated devices ---------------------------------------------------------------
    n_dev = 2048 if quick else 8192
    try:
        d = _child(
            ["--devices-child", str(n_dev)],
            {"XLA_FLAGS": "--xla_force_host_platform_device_count=8", "JAX_PLATFORMS": "cpu"},
        )
        for key, label in (
            ("one_device", "runner, 1 of 8 devices"),
            ("auto_sharded_vmap", "auto-sharded jit(vmap), 8 devices"),
            ("runner_auto", "runner strategy=auto, 8 devices"),
            ("runner_shard_map", "runner shard_map, 8 devices"),
            ("runner_refill", "runner refill in shard_map, 8 devices"),
        ):
            r = d[key]
            rows.append(
                {
                    "study": "LV ODE 8 sim. devices",
                    "method": label,
                    "members": n_dev,
                    "members_per_s": r["members_per_s"],
                    "compile_s": r["compile_s"],
                    "rel_diff_mean": r.get("rel_diff_mean"),
                    "note": "simulated devices: overhead only",
                }
            )
    except Exception as e:  # pragma: no cover - reported, not fatal
        rows.append({"study": "LV ODE 8 sim. devices", "method": "failed", "note": str(e)[:200]})

    # -- memory flat in member count ---------------------------------------------------------
    sizes = [10_000, 100_000, 1_000_000] if not quick else [10_000, 100_000, 1_000_000]
    mem_rows = []
    for m in sizes:
        r = _child(["--memory-child", str(m), str(16384)])
        mem_rows.append(r)
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

    columns = [
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
    print_table(rows, columns, title="scimlx.ensemble")
    summary = {
        # The headline keys refer to this configuration (unordered, one device):
        "runner_config": (
            "run_ensemble(DiffEqMember(...)) on the LV sweep: RefillSchedule (the default "
            f"for a DiffEqMember), lanes={refill_cfg['lanes']}, chunk={refill_cfg['chunk']}, "
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
        "speedup_vs_scipy_loop_cpu_time": refill_cfg["members_per_cpu_s"]
        / rows[0].get("members_per_cpu_s", float("nan")),
        "speedup_vs_plain_vmap_cpu_time": refill_cfg["members_per_cpu_s"]
        / plain_row["members_per_cpu_s"],
        "refill_vs_vmap_schedule_cpu_time": refill_cfg["members_per_cpu_s"]
        / vmap_cfg["members_per_cpu_s"],
        "ordered_user_vs_unordered_cpu_time": ordered_user_cfg["members_per_cpu_s"]
        / vmap_cfg["members_per_cpu_s"],
        "peak_mem_mb": max(r["maxrss_mb"] for r in mem_rows),
        # Ordering is measured on the vmap schedule:
        "ordered_vs_unordered": rate_ordered / rate_unordered,
        "speedup_vs_scipy_loop_ordered": rate_ordered / scipy_rate,
        "ordered_pilot_vs_unordered": rate_pilot / rate_unordered,
        "ordered_user_vs_unordered": rate_user / rate_unordered,
        "peak_mem_mb_10x_members": mem_rows[-1]["maxrss_mb"] / mem_rows[-2]["maxrss_mb"],
        "largest_study_members": sizes[-1],
    }
    print(json.dumps(summary, indent=1))
    write_results("ensemble", "quick" if quick else "full", rows, summary, out=args.out)


if __name__ == "__main__":
    with tempfile.TemporaryDirectory():
        main()
