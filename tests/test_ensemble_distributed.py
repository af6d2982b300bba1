"""scimlx.ensemble across 8 (simulated) devices and across 2 processes joined by jax.distributed.

Each configuration runs in its own Python process, because the device count and the
distributed runtime are fixed when JAX starts.
"""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from .helpers import free_port, start_script, subprocess_env, wait_all


_SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    mode, out = sys.argv[1], sys.argv[2]
    import jax
    if mode == "host":
        port, pid = sys.argv[3], int(sys.argv[4])
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(
            coordinator_address=f"127.0.0.1:{port}", num_processes=2, process_id=pid
        )
    jax.config.update("jax_enable_x64", True)
    jax.config.update("jax_numpy_dtype_promotion", "strict")
    jax.config.update("jax_numpy_rank_promotion", "raise")
    import diffrax
    import jax.numpy as jnp
    import numpy as np
    from scimlx import ensemble

    def member(p):
        def f(t, y, args):
            return jnp.stack([p[0] * y[0] - 0.4 * y[0] * y[1], -p[1] * y[1] + 0.1 * y[0] * y[1]])
        return diffrax.diffeqsolve(
            diffrax.ODETerm(f), diffrax.Tsit5(), 0.0, 3.0, 0.05, jnp.array([10.0, 5.0]),
            stepsize_controller=diffrax.PIDController(rtol=1e-6, atol=1e-8),
            saveat=diffrax.SaveAt(t1=True), max_steps=4096, throw=False,
        )

    def problem(p):
        def f(t, y, args):
            a, g = args[0], args[1]
            return jnp.stack([a * y[0] - 0.4 * y[0] * y[1], -g * y[1] + 0.1 * y[0] * y[1]])
        return ensemble.DiffEqProblem(
            diffrax.ODETerm(f), jnp.array([10.0, 5.0]), args=p, t0=0.0, t1=3.0, dt0=0.05
        )

    refill_member = ensemble.DiffEqMember(
        problem, diffrax.Tsit5(), diffrax.PIDController(rtol=1e-6, atol=1e-8), max_steps=4096
    )

    def final(sol):
        return sol.ys[-1]

    ps = np.random.default_rng(0).uniform(0.5, 1.5, (37, 2))
    ps[5, 0] = np.nan  # one failing member, counted on whichever device/process has it
    reducers = {
        "mean": ensemble.Mean(of=final),
        "var": ensemble.Variance(of=final),
        "min": ensemble.Min(of=final),
        "q": ensemble.Quantiles([0.1, 0.5, 0.9], of=final),
        "h": ensemble.Quantiles([0.5], of=final, range=(0.0, 40.0), bins=200),
    }
    results = {
        "devices": jax.device_count(),
        "local_devices": jax.local_device_count(),
        "processes": jax.process_count(),
    }

    def record(name, r):
        results[name] = {
            "stats": {k: np.asarray(v).tolist() for k, v in r.stats.items()},
            "failures": r.failures, "n_successful": r.n_successful, "n_chunks": r.n_chunks,
            "n_devices": r.n_devices, "n_processes": r.n_processes,
            "computed_chunks": r.computed_chunks,
        }

    kw = dict(reducers=reducers, progress=False)
    if mode == "devices":
        assert jax.device_count() == 8, jax.devices()
        one = ensemble.run_ensemble(member, ps, devices=jax.devices()[:1], chunk_size=16, **kw)
        record("one", one)
        record("shard_map", ensemble.run_ensemble(member, ps, chunk_size=16, **kw))
        record("auto", ensemble.run_ensemble(
            member, ps, chunk_size=16, strategy=ensemble.AutoSharding(), **kw
        ))
        # Lane refill inside shard_map: each device refills its own lanes.
        record("refill", ensemble.run_ensemble(
            refill_member, ps, chunk_size=32, schedule=ensemble.RefillSchedule(lanes=2), **kw
        ))
    elif mode == "host":
        assert jax.process_count() == 2
        record("study", ensemble.run_ensemble(member, ps, chunk_size=8, **kw))
    else:
        record("study", ensemble.run_ensemble(member, ps, chunk_size=8, **kw))
    with open(out, "w") as f:
        json.dump(results, f)
    """
)


def _run(tmp_path, name, args, devices):
    script = tmp_path / "study.py"
    script.write_text(_SCRIPT)
    out = tmp_path / f"{name}.json"
    proc = subprocess.run(
        [sys.executable, str(script), *args[:1], str(out), *args[1:]],
        env=subprocess_env(devices),
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(out.read_text())


def _assert_same(a, b, rtol=1e-12):
    assert a["failures"] == b["failures"]
    assert a["n_successful"] == b["n_successful"]
    for k in a["stats"]:
        np.testing.assert_allclose(
            np.asarray(a["stats"][k]), np.asarray(b["stats"][k]), rtol=rtol, atol=1e-12
        )


def test_eight_devices_match_one(tmp_path):
    res = _run(tmp_path, "devices", ["devices"], devices=8)
    assert res["devices"] == 8
    assert res["shard_map"]["n_devices"] == 8 and res["one"]["n_devices"] == 1
    assert res["one"]["n_successful"] == 36
    _assert_same(res["shard_map"], res["one"])
    _assert_same(res["auto"], res["one"])
    assert res["refill"]["n_devices"] == 8
    _assert_same(res["refill"], res["one"])
    # The histogram sketch merges integer counts: equal, not just close.
    assert res["shard_map"]["stats"]["h"] == res["one"]["stats"]["h"]


def test_two_processes_match_one(tmp_path):
    port = str(free_port())
    script = tmp_path / "study.py"
    script.write_text(_SCRIPT)
    commands = [["host", str(tmp_path / f"p{i}.json"), port, str(i)] for i in range(2)] + [
        ["single", str(tmp_path / "single.json")]
    ]
    # The single-process reference runs at the same time as the two joined processes.
    procs = [start_script(script, args, None) for args in commands]
    wait_all(procs, timeout=240)
    parts = [json.loads((tmp_path / f"p{i}.json").read_text()) for i in range(2)]
    single = json.loads((tmp_path / "single.json").read_text())
    assert all(p["processes"] == 2 for p in parts) and single["processes"] == 1
    assert parts[0]["study"]["n_processes"] == 2
    # Process p computed chunks p, p + 2, ...: 37 members in chunks of 8 is 5 chunks.
    assert [p["study"]["computed_chunks"] for p in parts] == [3, 2]
    for p in parts:
        _assert_same(p["study"], single["study"], rtol=0.0)
    assert parts[0]["study"]["stats"] == parts[1]["study"]["stats"] == single["study"]["stats"]


if sys.platform != "linux":  # pragma: no cover
    pytestmark = pytest.mark.skip("multi-process CPU collectives are tested on Linux")
