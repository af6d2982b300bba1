"""A sharded MG-PCG solve over two processes joined by `jax.distributed` (loopback, 2
simulated CPU devices each, the grid split over all 4) against the single-device solve
that each process also runs."""

import json
import textwrap

from .helpers import free_port, start_script, wait_all


_SCRIPT = textwrap.dedent(
    """
    import json, sys
    out, port, pid = sys.argv[1], sys.argv[2], int(sys.argv[3])
    import jax
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        coordinator_address=f"127.0.0.1:{port}", num_processes=2, process_id=pid
    )
    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    import numpy as np
    from jax.experimental import multihost_utils
    from scimlx import linsolve

    shape = (64, 64)
    solid = np.asarray(linsolve.obstacle_scene(shape, seed=0, split="test"))
    b = np.asarray(linsolve.random_rhs(jnp.asarray(solid), key=jax.random.key(0)))

    def solve(solid, b, gs):
        op = linsolve.poisson(shape, solid=solid)
        prec = linsolve.multigrid(op, sharding=gs)
        sol = linsolve.pcg_solve(op, b, preconditioner=prec, rtol=1e-10, sharding=gs)
        return sol.value, sol.stats["num_steps"]

    local = jax.local_devices()[0]
    x1, k1 = jax.jit(lambda s, b: solve(s, b, None))(
        jax.device_put(solid, local), jax.device_put(b, local)
    )
    mesh = jax.sharding.Mesh(np.asarray(jax.devices()), ("x",))
    gs = linsolve.GridSharding(mesh, ("x", None))
    xs, ks = jax.jit(lambda s, b: solve(s, b, gs))(gs.place(solid), gs.place(b))
    whole = np.asarray(multihost_utils.process_allgather(xs, tiled=True))
    x1 = np.asarray(x1)
    with open(out, "w") as f:
        json.dump({
            "processes": jax.process_count(),
            "devices": jax.device_count(),
            "its": [int(k1), int(ks)],
            "rel_diff": float(np.linalg.norm(whole - x1) / np.linalg.norm(x1)),
            "local_rows": [int(s.data.shape[0]) for s in xs.addressable_shards],
        }, f)
    """
)


def test_two_processes_split_grid_matches_one_device(tmp_path):
    script = tmp_path / "solve.py"
    script.write_text(_SCRIPT)
    port = str(free_port())
    procs = [start_script(script, [tmp_path / f"p{i}.json", port, i], 2) for i in range(2)]
    wait_all(procs, timeout=600)
    for i in range(2):
        r = json.loads((tmp_path / f"p{i}.json").read_text())
        assert r["processes"] == 2 and r["devices"] == 4
        assert r["its"][0] == r["its"][1]
        assert r["rel_diff"] <= 1e-10
        # each process holds two blocks of 16 rows (its two devices), not the whole grid
        assert r["local_rows"] == [16, 16]
        assert r["its"][0] > 0
