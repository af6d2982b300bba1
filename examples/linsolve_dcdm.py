"""Train a DCDM network on 2-D obstacle Poisson problems and compare residual histories.

Trains the paper's CNN (and the learned-BPX direction network) on 64^2 training layouts,
then solves an unseen 128^2 layout with CG, multigrid-PCG and DCDM, and plots the relative
residual against the iteration.

    python examples/linsolve_dcdm.py [--quick] [--out examples/linsolve_dcdm.png]
        [--save-model dcdm_cnn_64.eqx] [--model benchmarks/models/dcdm_cnn_2d.eqx]

The few hundred steps this trains on a CPU leave the CNN far from converged; `--model
benchmarks/models/dcdm_cnn_2d.eqx` adds the benchmark's GPU-trained network (the paper's N=128
CNN, trained by a 32^2 -> 64^2 -> 128^2 curriculum) to the plot.

`--quick` trains at 32^2 for 100 steps (from 2 layouts) and tests on an unseen 64^2 layout.
"""

import argparse
import os

import jax
import jax.numpy as jnp
import matplotlib


matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

import scimlx  # noqa: E402
import scimlx.linsolve as ls  # noqa: E402


jax.config.update("jax_enable_x64", True)


def main(train_n=64, test_n=128, steps=400, model=None, out=None, save_model=None, layouts=4):
    shape = (train_n, train_n)
    masks, vecs = [], []
    for s in range(layouts):
        solid = ls.obstacle_scene(shape, seed=s, split="train")
        m = jnp.asarray(~solid).astype(jnp.float64)
        op = ls.poisson(shape, solid=jnp.asarray(solid))
        _, V = ls.ritz_pairs(op, steps=200, key=jax.random.key(s), mask=m)
        masks.append(m)
        vecs.append(V.astype(jnp.float32))
    masks, vecs = jnp.stack(masks), jnp.stack(vecs)

    def make(mask):
        return ls.poisson(shape, solid=mask < 0.5)

    cnn = ls.train_dcdm(
        ls.DCDMNet(2, key=jax.random.key(0)),
        make,
        masks,
        vecs,
        steps=steps,
        optimiser=optax.adam(1e-3),
        key=jax.random.key(1),
    ).model
    bpx = ls.train_dcdm(
        ls.LearnedMGNet(2, key=jax.random.key(2)),
        make,
        masks,
        vecs,
        steps=steps // 2,
        optimiser=optax.adam(1e-3),
        key=jax.random.key(3),
    ).model
    if save_model:
        scimlx.save(save_model, cnn, metadata={"train_grid": train_n, "steps": steps})

    test = (test_n, test_n)
    solid = jnp.asarray(ls.obstacle_scene(test, seed=0, split="test"))
    op = ls.poisson(test, solid=solid)
    b = ls.random_rhs(solid, key=jax.random.key(0))
    mask = (~solid).astype(b.dtype)
    runs = {
        "CG": ls.cd_solve(op, b, k=1, rtol=1e-8, max_steps=3000, throw=False),
        "multigrid-PCG": ls.pcg_solve(
            op, b, preconditioner=ls.multigrid(op), rtol=1e-8, max_steps=100, throw=False
        ),
        "DCDM (CNN, k=2)": ls.dcdm_solve(
            op, b, cnn, mask=mask, rtol=1e-8, max_steps=500, throw=False
        ),
        "learned BPX (k=2)": ls.dcdm_solve(
            op, b, bpx, mask=mask, rtol=1e-8, max_steps=500, throw=False
        ),
    }
    if model is not None:
        runs["DCDM (GPU-trained CNN, k=2)"] = ls.dcdm_solve(
            op, b, scimlx.load(model), mask=mask, rtol=1e-8, max_steps=500, throw=False
        )
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, sol in runs.items():
        h = np.asarray(sol.stats["residual_history"])
        h = h[np.isfinite(h)] / h[0]
        ax.semilogy(h, label=f"{name}: {len(h) - 1} its")
    ax.set_xlabel("iteration")
    ax.set_ylabel("|r| / |b|")
    ax.set_title(f"{test_n}^2 Poisson, unseen obstacles (CPU nets trained at {train_n}^2)")
    ax.legend()
    fig.tight_layout()
    out = out or os.path.join(os.path.dirname(os.path.abspath(__file__)), "linsolve_dcdm.png")
    fig.savefig(out, dpi=120)
    print(f"wrote {out}")
    print({k: int(v.stats["num_steps"]) for k, v in runs.items()})


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="train at 32^2, test at 64^2")
    parser.add_argument("--steps", type=int, default=None, help="CNN training steps (400)")
    parser.add_argument("--model", default=None, help="a saved direction network to add")
    parser.add_argument("--save-model", default=None, help="save the trained CNN here")
    parser.add_argument("--out", default=None, help="where to save the figure")
    args = parser.parse_args()
    size = dict(train_n=32, test_n=64, layouts=2) if args.quick else {}
    steps = args.steps or (100 if args.quick else 400)
    main(steps=steps, model=args.model, out=args.out, save_model=args.save_model, **size)
