"""Studies run in child processes: on 8 simulated devices, and for peak host memory."""

import json
import os
import subprocess
import sys
import time
import tracemalloc

import jax
import numpy as np

from scimlx import ensemble

from .measure import maxrss_mb, rel, time_jitted, time_runner
from .problems import cheap_member, lv_member, lv_params, LV_REDUCERS, LV_REFILL, lv_solve


_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _report(out: dict) -> None:
    print("RESULT " + json.dumps(out), flush=True)


def _runner_entry(timed, n, one) -> dict:
    r = timed.result
    return {
        "members_per_s": n / timed.wall_s,
        "compile_s": timed.compile_s,
        "rel_diff_mean": rel(r.stats["mean"], one.stats["mean"]),
        "rel_diff_std": rel(r.stats["std"], one.stats["std"]),
        "n_devices": r.n_devices,
    }


def devices_child(n: int) -> None:
    """One device against 8: auto-sharded `jit(vmap)`, the runner with each strategy, and
    lane refill inside `shard_map`."""
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    assert jax.device_count() == 8, jax.devices()
    ps = lv_params(n, seed=1)
    out = {"n": n, "devices": jax.device_count()}
    reds = {"mean": LV_REDUCERS["mean"], "std": LV_REDUCERS["std"]}

    t = time_runner(lv_member, ps, reds, 1, devices=jax.devices()[:1], chunk_size=n)
    one = t.result
    out["one_device"] = {"members_per_s": n / t.wall_s, "compile_s": t.compile_s}

    mesh = Mesh(np.asarray(jax.devices()), ("members",))
    sharded = jax.device_put(ps, NamedSharding(mesh, PartitionSpec("members")))
    t = time_jitted(jax.jit(jax.vmap(lambda p: lv_solve(p).ys[-1])), sharded, 1)
    out["auto_sharded_vmap"] = {
        "members_per_s": n / t.wall_s,
        "compile_s": t.compile_s,
        "rel_diff_mean": rel(t.result.mean(0), one.stats["mean"]),
    }
    for name, strategy in (
        ("runner_shard_map", ensemble.ShardMap()),
        ("runner_auto", ensemble.AutoSharding()),
    ):
        t = time_runner(lv_member, ps, reds, 1, chunk_size=n, strategy=strategy)
        out[name] = _runner_entry(t, n, one)
    out["runner_refill"] = _runner_entry(time_runner(LV_REFILL, ps, reds, 1, chunk_size=n), n, one)
    _report(out)


def memory_child(n: int, chunk: int) -> None:
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
    ensemble.run_ensemble(cheap_member, chunks(), reducers=reds, progress=False, total=chunk)
    rss_warm = maxrss_mb()
    tracemalloc.start()
    t0 = time.perf_counter()
    res = ensemble.run_ensemble(cheap_member, chunks(), reducers=reds, progress=False, total=n)
    wall = time.perf_counter() - t0
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    _report(
        {
            "n": n,
            "chunk": chunk,
            "members_per_s": n / wall,
            "maxrss_mb": maxrss_mb(),
            "maxrss_after_warmup_mb": rss_warm,
            "tracemalloc_peak_mb": traced_peak / 2**20,
            "n_successful": res.n_successful,
        }
    )


def run_child(args: list[str], env_extra: dict | None = None, timeout: float = 1800) -> dict:
    """`python -m benchmarks.ensemble *args` in a fresh process; its `RESULT` line."""
    env = dict(os.environ)
    env.pop("XLA_FLAGS", None)
    env.update(env_extra or {})
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.ensemble", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=_ROOT,
    )
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
    raise RuntimeError(f"child {args} failed:\n{proc.stderr[-3000:]}")
