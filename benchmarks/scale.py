"""Benchmark: past one device. Do sharded solves and sharded training give the single-device
answer, and how does the memory each device holds scale with the device count?

    python -m benchmarks.scale [--quick] [--devices 8]

Runs in one process with `--devices` simulated CPU devices
(`--xla_force_host_platform_device_count`, set before JAX starts), so on this 2-core machine
every "device" shares the same two cores: the times below measure the overhead of the
partitioned program, not a speed-up. Per-device memory is XLA's own account of the compiled
program (`compiled.memory_analysis()`: arguments + outputs + temporaries - aliased, per
device), which is what a real device of each kind would have to hold.

Parts:

- `correctness`: MG-PCG (obstacle Poisson, rediscretised coarse levels, rtol 1e-10)
  single-device against the grid split
  over all devices along its first axis (`scimlx.linsolve.GridSharding`), 2-D and 3-D:
  iterations, the solutions' relative difference, per-device peak over the single-device
  peak. 512^2 and 256^3 in full mode (64^2 and 32x16x16 quick).
- `strong`: one grid (128^3; 128^2 quick) over 1, 2, 4, 8 devices (1 and 8 quick):
  per-device memory and time.
- `weak`: a fixed block of cells per device (32x128x128; 32x128 quick), the grid growing
  with the devices.
- `fit`: `scimlx.fit` data-parallel (`scimlx.DataParallel`) over all devices against one
  device, float64, 50 steps: the largest relative difference of the per-step losses.
"""

import os
import sys


def _devices_from_argv(argv) -> int:
    for i, a in enumerate(argv):
        if a == "--devices" and i + 1 < len(argv):
            return int(argv[i + 1])
        if a.startswith("--devices="):
            return int(a.split("=", 1)[1])
    return 8


if __name__ == "__main__" and "jax" not in sys.modules:
    _flags = os.environ.get("XLA_FLAGS", "")
    os.environ["XLA_FLAGS"] = (
        f"{_flags} --xla_force_host_platform_device_count={_devices_from_argv(sys.argv)}"
    )

import time  # noqa: E402

import jax  # noqa: E402


jax.config.update("jax_enable_x64", True)

import equinox as eqx  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import jax.random as jr  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

import scimlx  # noqa: E402
from scimlx import linsolve  # noqa: E402

from ._harness import parse_args, print_table, write_results  # noqa: E402


def _bytes(compiled) -> int:
    m = compiled.memory_analysis()
    return (
        m.argument_size_in_bytes
        + m.output_size_in_bytes
        + m.temp_size_in_bytes
        - m.alias_size_in_bytes
    )


def _problem(shape):
    solid = jnp.asarray(linsolve.obstacle_scene(shape, seed=0, split="test"))
    return solid, linsolve.random_rhs(solid, key=jr.key(0))


def _solver(shape, sharding):
    def solve(solid, b):
        op = linsolve.poisson(shape, solid=solid)
        # the hierarchy `multigrid` picks for this operator outside `jit` (constant
        # coefficients, power-of-two sides); inside `jit` it cannot see that and would
        # take the black-box coarsening
        prec = linsolve.multigrid(op, coarse=linsolve.Rediscretise(), sharding=sharding)
        sol = linsolve.pcg_solve(op, b, preconditioner=prec, rtol=1e-10, sharding=sharding)
        return sol.value, sol.stats["num_steps"]

    return jax.jit(solve)


def _run(shape, n_devices: int | None):
    """Compile and run MG-PCG on `shape`, on one device (`None`) or split along the first
    axis over the first `n_devices` devices. Returns the row and the solution."""
    solid, b = _problem(shape)
    sharding = None
    if n_devices is not None:
        mesh = jax.sharding.Mesh(np.asarray(jax.devices()[:n_devices]), ("x",))
        sharding = linsolve.GridSharding(mesh, ("x",) + (None,) * (len(shape) - 1))
        solid, b = sharding.place(solid), sharding.place(b)
    t0 = time.perf_counter()
    compiled = _solver(shape, sharding).lower(solid, b).compile()
    compile_s = time.perf_counter() - t0
    x, its = jax.block_until_ready(compiled(solid, b))  # first run
    t0 = time.perf_counter()
    x, its = jax.block_until_ready(compiled(solid, b))
    run_s = time.perf_counter() - t0
    row = {
        "grid": "x".join(map(str, shape)),
        "devices": n_devices or 1,
        "sharded": n_devices is not None,
        "its": int(its),
        "per_device_MiB": _bytes(compiled) / 2**20,
        "compile_s": compile_s,
        "run_s": run_s,
    }
    print(f"  {row}", flush=True)
    return row, x


def correctness(shapes) -> list[dict]:
    n = jax.device_count()
    rows = []
    for shape in shapes:
        one, x1 = _run(shape, None)
        many, xs = _run(shape, n)
        many["solution_rel_diff"] = float(jnp.linalg.norm(xs - x1) / jnp.linalg.norm(x1))
        many["its_equal"] = many["its"] == one["its"]
        many["peak_over_single"] = many["per_device_MiB"] / one["per_device_MiB"]
        rows += [dict(one, part="correctness"), dict(many, part="correctness")]
        del x1, xs
    return rows


def _counts(quick: bool) -> list[int]:
    return [c for c in ((1, 8) if quick else (1, 2, 4, 8, 16)) if c <= jax.device_count()]


def strong(shape, counts) -> list[dict]:
    rows = []
    base = None
    for c in counts:
        row, _ = _run(shape, c)
        base = base or row["per_device_MiB"]
        rows.append(dict(row, part="strong", memory_over_one_device=row["per_device_MiB"] / base))
    return rows


def weak(block, counts) -> list[dict]:
    rows = []
    base = None
    for c in counts:
        shape = (block[0] * c,) + tuple(block[1:])
        row, _ = _run(shape, c)
        base = base or row["per_device_MiB"]
        rows.append(dict(row, part="weak", memory_over_one_device=row["per_device_MiB"] / base))
    return rows


def fit_losses(steps: int = 50) -> dict:
    """Per-step losses of `scimlx.fit` on one device and data-parallel over all devices."""
    rng = np.random.default_rng(0)
    xs = rng.uniform(-1.0, 1.0, (512, 2))
    ys = np.sin(3.0 * xs[:, :1]) * np.cos(2.0 * xs[:, 1:])

    def batch(step, key):
        idx = np.asarray(jr.choice(key, xs.shape[0], (64,), replace=False))
        return xs[idx], ys[idx]

    def loss(model, b, key):
        return jnp.mean((jax.vmap(model)(b[0]) - b[1]) ** 2)

    model = eqx.nn.MLP(2, 1, 32, 2, activation=jnp.tanh, key=jr.key(0))
    common = dict(steps=steps, key=jr.key(1), batch=batch, progress=False)
    one = scimlx.fit(loss, model, optax.adam(1e-2), **common)
    mesh = jax.sharding.Mesh(np.asarray(jax.devices()), ("batch",))
    many = scimlx.fit(loss, model, optax.adam(1e-2), sharding=scimlx.DataParallel(mesh), **common)
    rel = np.abs(many.losses - one.losses) / np.abs(one.losses)
    return {
        "part": "fit",
        "devices": jax.device_count(),
        "steps": steps,
        "loss_first": float(one.losses[0]),
        "loss_last": float(one.losses[-1]),
        "max_loss_rel_diff": float(rel.max()),
    }


def main(argv=None) -> int:
    args = parse_args(
        __doc__,
        argv,
        add=lambda p: p.add_argument(
            "--devices", type=int, default=8, help="simulated CPU devices (default 8)"
        ),
    )
    if jax.device_count() != args.devices:
        print(
            f"JAX sees {jax.device_count()} devices, not --devices={args.devices}: run as "
            "`python -m benchmarks.scale` (the device count is fixed when JAX starts)."
        )
        return 2
    q = args.quick
    rows = correctness([(64, 64), (32, 16, 16)] if q else [(512, 512), (256, 256, 256)])
    rows += strong((128, 128) if q else (128, 128, 128), _counts(q))
    rows += weak((32, 128) if q else (32, 128, 128), _counts(q))
    fit_row = fit_losses()
    rows.append(fit_row)
    cols = ["part", "grid", "devices", "its", "per_device_MiB", "compile_s", "run_s"]
    print_table([r for r in rows if r["part"] == "correctness"], cols + ["solution_rel_diff"])
    print_table(
        [r for r in rows if r["part"] in ("strong", "weak")], cols + ["memory_over_one_device"]
    )
    print_table([fit_row], ["part", "devices", "steps", "max_loss_rel_diff"])
    sharded = [r for r in rows if r["part"] == "correctness" and r["sharded"]]
    cube = [r for r in sharded if r["grid"].count("x") == 2]
    summary = {
        "devices": jax.device_count(),
        "sharded_mg_its_equal": all(r["its_equal"] for r in sharded),
        "sharded_solution_rel_diff": max(r["solution_rel_diff"] for r in sharded),
        "fit_sharded_loss_rel_diff": fit_row["max_loss_rel_diff"],
        "per_device_peak_over_single_256cube": None if q else cube[0]["peak_over_single"],
        "per_device_peak_over_single_3d": cube[0]["peak_over_single"],
        "grid_3d": cube[0]["grid"],
    }
    print(summary)
    write_results("scale", "quick" if q else "full", rows, summary, out=args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
