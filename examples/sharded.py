"""Past one device: a 3-D Poisson problem solved on a grid split over the devices, Darcy data
generated with samples split over them, and MgNO trained data-parallel on it; each beside
the same work on one device.

    python examples/sharded.py [--quick] [--devices 8] [--out PATH]

With one physical device (a CPU), `--devices N` simulates N devices; on a machine with
several GPUs leave it out and the real devices are used. `--quick`: a 32^3 grid, 64 Darcy
pairs at 16^2 and 40 training steps (a 64^3 grid, 256 pairs at 32^2 and 200 steps
otherwise). The figure shows a slice of the solution coloured by the device that holds each
cell, and the training losses on one device and on all of them.
"""

import argparse
import os
import sys


def _simulated_devices(argv) -> None:
    # the device count is fixed when JAX starts: set it before importing JAX
    for i, a in enumerate(argv):
        if a == "--devices" and i + 1 < len(argv):
            flags = os.environ.get("XLA_FLAGS", "")
            os.environ["XLA_FLAGS"] = (
                f"{flags} --xla_force_host_platform_device_count={argv[i + 1]}"
            )


_simulated_devices(sys.argv)

import jax  # noqa: E402


jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import matplotlib  # noqa: E402
import numpy as np  # noqa: E402


matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import scimlx  # noqa: E402
from scimlx import linsolve, neuralop  # noqa: E402


def poisson_3d(n: int, grid: linsolve.GridSharding | None):
    shape = (n, n, n)

    @jax.jit
    def solve(solid, b):
        op = linsolve.poisson(shape, solid=solid)
        prec = linsolve.multigrid(op, sharding=grid)
        return linsolve.pcg_solve(op, b, preconditioner=prec, rtol=1e-8, sharding=grid)

    solid = jnp.asarray(linsolve.obstacle_scene(shape, seed=0, split="test"))
    b = linsolve.random_rhs(solid, key=jax.random.key(0))
    if grid is not None:
        solid, b = grid.place(solid), grid.place(b)
    return solve(solid, b)


def train_mgno(res: int, n_train: int, steps: int, dp: scimlx.DataParallel | None):
    data = neuralop.darcy_dataset(n_train, res, seed=0, batch_size=32, sharding=dp)
    a, u = data.a.astype(jnp.float32), data.u.astype(jnp.float32)
    model = neuralop.MgNO(
        1, 1, 12, 3, [(1, 0), (1, 0), (2, 0)], dtype=jnp.float32, key=jax.random.key(0)
    )
    model = neuralop.normalised(model, a, u)
    out = neuralop.train_operator(
        model,
        a,
        u,
        optimiser=neuralop.reference_optimiser(steps, learning_rate=2e-3),
        steps=steps,
        key=jax.random.key(1),
        batch_size=16,
        loss=neuralop.rel_h1,
        progress=False,
        sharding=dp,
    )
    return out.losses


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--quick", action="store_true", help="32^3 grid, 64 pairs, 40 steps")
    p.add_argument("--devices", type=int, default=None, help="simulated CPU devices")
    p.add_argument(
        "--out",
        default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "sharded.png"),
        help="where to save the figure",
    )
    args = p.parse_args()
    n, res, n_train, steps = (32, 16, 64, 40) if args.quick else (64, 32, 256, 200)
    devices = jax.devices()
    print(f"{len(devices)} devices: {devices[0].platform}")

    mesh = jax.make_mesh((len(devices),), ("x",))
    grid = linsolve.GridSharding(mesh, ("x", None, None))
    one, many = poisson_3d(n, None), poisson_3d(n, grid)
    diff = float(jnp.linalg.norm(many.value - one.value) / jnp.linalg.norm(one.value))
    print(
        f"3-D Poisson {n}^3: MG-PCG {int(one.stats['num_steps'])} its on one device, "
        f"{int(many.stats['num_steps'])} split over {len(devices)}; rel. difference {diff:.1e}"
    )

    dp = scimlx.DataParallel(jax.make_mesh((len(devices),), ("batch",)))
    l1 = train_mgno(res, n_train, steps, None)
    ln = train_mgno(res, n_train, steps, dp)
    rel = float(np.max(np.abs(ln - l1) / np.abs(l1)))
    print(
        f"MgNO on Darcy {res}^2: final loss {l1[-1]:.4f} (one device), {ln[-1]:.4f} "
        f"({len(devices)} devices); largest per-step rel. difference {rel:.1e}"
    )

    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(10, 4))
    x = np.asarray(many.value)[:, :, n // 2]
    owner = np.zeros(x.shape)
    for k, shard in enumerate(many.value.addressable_shards):
        owner[shard.index[:2]] = k
    ax0.imshow(x.T, origin="lower", cmap="viridis")
    ax0.contour(owner.T, levels=np.arange(len(devices)) + 0.5, colors="w", linewidths=0.8)
    ax0.set_title(f"solution, slice z = {n // 2}; white: device blocks")
    ax1.semilogy(l1, label="1 device")
    ax1.semilogy(ln, "--", label=f"{len(devices)} devices")
    ax1.set_xlabel("step")
    ax1.set_ylabel("training loss (rel. H1)")
    ax1.legend()
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
