"""scimlx.fit data-parallel over 8 (simulated) devices and over 2 processes joined by
jax.distributed, against the single-device run.

Each configuration runs in its own Python process, because the device count and the
distributed runtime are fixed when JAX starts.
"""

import json
import sys
import textwrap

import numpy as np
import pytest

from .helpers import free_port, start_script, wait_all


_SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    mode, out, ckpt = sys.argv[1], sys.argv[2], sys.argv[3]
    import jax
    if mode == "host":
        port, pid = sys.argv[4], int(sys.argv[5])
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(
            coordinator_address=f"127.0.0.1:{port}", num_processes=2, process_id=pid
        )
    jax.config.update("jax_enable_x64", True)
    jax.config.update("jax_numpy_dtype_promotion", "strict")
    jax.config.update("jax_numpy_rank_promotion", "raise")
    import equinox as eqx
    import jax.numpy as jnp
    import jax.random as jr
    import numpy as np
    import optax
    from jax.sharding import Mesh
    import scimlx

    rng = np.random.default_rng(0)
    xs = rng.uniform(-1.0, 1.0, (512, 2))
    ys = np.sin(3.0 * xs[:, :1]) * np.cos(2.0 * xs[:, 1:])
    GLOBAL = 64

    def full_batch(step, key):
        idx = np.asarray(jr.choice(key, xs.shape[0], (GLOBAL,), replace=False))
        return xs[idx], ys[idx]

    def local_batch(step, key):
        # Per-host loading: process p of P returns the p-th contiguous block of rows.
        n, p = GLOBAL // jax.process_count(), jax.process_index()
        return jax.tree.map(lambda a: a[p * n : (p + 1) * n], full_batch(step, key))

    def loss(model, batch, key):
        xb, yb = batch
        noise = 1e-4 * jr.normal(key, ())  # the per-step key must match too
        return jnp.mean((jax.vmap(model)(xb) - yb) ** 2) + noise

    mlp = eqx.nn.MLP(2, 1, 32, 2, activation=jnp.tanh, key=jr.key(0))
    opt = optax.adam(1e-2)

    def run(steps, sharding=None, checkpoint=None, batch=full_batch):
        r = scimlx.fit(
            loss, mlp, opt, steps=steps, key=jr.key(1), batch=batch, progress=False,
            sharding=sharding, checkpoint=checkpoint, checkpoint_every=10,
        )
        arrays = jax.tree.leaves(eqx.filter(r.model, eqx.is_array))
        leaves = [np.asarray(x).tolist() for x in arrays]
        return {"losses": r.losses.tolist(), "params": leaves}

    results = {"devices": jax.device_count(), "processes": jax.process_count()}
    if mode == "devices":
        assert jax.device_count() == 8, jax.devices()
        dp = scimlx.DataParallel(Mesh(np.asarray(jax.devices()), ("batch",)), "batch")
        results["one"] = run(50)
        results["eight"] = run(50, dp)
        # the state split over the devices too: same steps, each device a part of the model
        dps = scimlx.DataParallel(Mesh(np.asarray(jax.devices()), ("batch",)), shard_state=True)
        results["eight_sharded_state"] = run(50, dps)
        hidden = dps.place_state(mlp.layers[1].weight)  # (32, 32): 4 rows per device
        results["state_shard_rows"] = [s.data.shape[0] for s in hidden.addressable_shards]
        # 8 devices write the checkpoint, 1 device resumes it; then the reverse.
        run(25, dp, checkpoint=ckpt + ".8")
        results["eight_then_one"] = run(50, None, checkpoint=ckpt + ".8")
        run(25, None, checkpoint=ckpt + ".1")
        results["one_then_eight"] = run(50, dp, checkpoint=ckpt + ".1")
        try:
            scimlx.fit(
                loss, mlp, opt, steps=1, key=jr.key(1), progress=False, sharding=dp,
                batch=lambda s, k: (xs[:60], ys[:60]),
            )
        except ValueError as e:
            results["error"] = str(e)
        # A trainer built on fit forwards `sharding` (refused before anything compiles).
        from scimlx import neuralop
        a = jr.normal(jr.key(3), (24, 1, 8, 8))
        fno = neuralop.FNO(1, 1, 3, 4, n_layers=1, key=jr.key(4))
        try:
            neuralop.train_operator(
                fno, a, jnp.tanh(a), optimiser=opt, steps=1, key=jr.key(5), batch_size=6,
                progress=False, sharding=dp,
            )
        except ValueError as e:
            results["op_error"] = str(e)
    elif mode == "single":
        results["full"] = run(50)
        run(25, None, checkpoint=ckpt)
    else:
        assert jax.process_count() == 2 and jax.device_count() == 4, jax.devices()
        results["resumed"] = run(
            50, scimlx.DataParallel(), checkpoint=ckpt, batch=local_batch
        )
    with open(out, "w") as f:
        json.dump(results, f)
    """
)


def _start(tmp_path, args, devices):
    script = tmp_path / "train.py"
    script.write_text(_SCRIPT)
    return start_script(script, args, devices)


def _wait(procs):
    wait_all(procs, timeout=240)


def _assert_params_close(a, b, rtol=1e-8):
    assert len(a["params"]) == len(b["params"])
    for x, y in zip(a["params"], b["params"]):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=1e-10)


def test_eight_devices_match_one(tmp_path):
    out = tmp_path / "devices.json"
    _wait([_start(tmp_path, ["devices", str(out), str(tmp_path / "c.ckpt")], devices=8)])
    res = json.loads(out.read_text())
    assert res["devices"] == 8
    one, eight = np.asarray(res["one"]["losses"]), np.asarray(res["eight"]["losses"])
    assert one.shape == eight.shape == (50,)
    assert one[-5:].mean() < 0.5 * one[:5].mean()  # it trains
    np.testing.assert_allclose(eight, one, rtol=1e-6, atol=0)
    _assert_params_close(res["eight"], res["one"])
    np.testing.assert_allclose(res["eight_sharded_state"]["losses"], one, rtol=1e-6, atol=0)
    _assert_params_close(res["eight_sharded_state"], res["one"])
    assert res["state_shard_rows"] == [4] * 8
    # A checkpoint moves between layouts: resumed runs reach the uninterrupted parameters
    # and keep the losses of the steps taken before the checkpoint.
    _assert_params_close(res["eight_then_one"], res["one"])
    _assert_params_close(res["one_then_eight"], res["eight"])
    np.testing.assert_allclose(res["eight_then_one"]["losses"], one, rtol=1e-6, atol=0)
    np.testing.assert_allclose(res["one_then_eight"]["losses"], one, rtol=1e-6, atol=0)
    # A batch that does not split over the devices is refused, naming `batch` and 8.
    assert "`batch`" in res["error"] and "60 rows" in res["error"]
    assert "8 devices" in res["error"]
    assert "`batch`" in res["op_error"] and "6 rows" in res["op_error"]


def test_two_processes_resume_one_process_checkpoint(tmp_path):
    ckpt = str(tmp_path / "run.ckpt")
    single = tmp_path / "single.json"
    _wait([_start(tmp_path, ["single", str(single), ckpt], devices=None)])
    port = str(free_port())
    # Two processes of 2 simulated devices each: a mesh of 4 over both.
    _wait(
        [
            _start(tmp_path, ["host", str(tmp_path / f"p{i}.json"), ckpt, port, str(i)], 2)
            for i in range(2)
        ]
    )
    ref = json.loads(single.read_text())
    parts = [json.loads((tmp_path / f"p{i}.json").read_text()) for i in range(2)]
    assert ref["processes"] == 1
    assert all(p["processes"] == 2 and p["devices"] == 4 for p in parts)
    for p in parts:
        np.testing.assert_allclose(p["resumed"]["losses"], ref["full"]["losses"], rtol=1e-6)
        _assert_params_close(p["resumed"], ref["full"])
    # Both processes hold the same replicated model.
    assert parts[0]["resumed"]["params"] == parts[1]["resumed"]["params"]


if sys.platform != "linux":  # pragma: no cover
    pytestmark = pytest.mark.skip("multi-process CPU collectives are tested on Linux")


def test_bad_sharding_arguments():
    import jax
    from jax.sharding import Mesh

    import scimlx

    mesh = Mesh(np.asarray(jax.devices()), ("data",))
    with pytest.raises(ValueError, match="`axis`='batch' is not an axis of `mesh`"):
        scimlx.DataParallel(mesh, "batch")
    # Refused by runtime type checking here, by an explicit check outside the tests.
    with pytest.raises(TypeError, match="mesh"):
        scimlx.DataParallel("data")  # pyright: ignore
    assert scimlx.DataParallel(mesh, "data").n_devices == jax.device_count()
    with pytest.raises(TypeError, match="sharding"):
        scimlx.fit(
            lambda m, b, k: m,
            {},
            None,  # pyright: ignore
            steps=1,
            key=jax.random.key(0),
            sharding=mesh,  # pyright: ignore
        )
