"""Train MgNO and a parameter-matched FNO on Darcy flow; plot coefficient, truth, predictions
and errors side by side. Each model is also evaluated zero-shot on the same test fields on a
grid twice as fine (MgNO is built with `grid_shape=`, its training grid, so the finer grid runs
through one extra fixed level).

    python examples/neuralop_darcy.py [--quick] [--resolution 32] [--steps 600] [--out PATH]

`--quick`: 16^2 grid, 128 training samples, 150 steps.
"""

import argparse
import os

import jax


jax.config.update("jax_enable_x64", True)  # data in float64 (solver to 1e-10), models float32

import jax.numpy as jnp  # noqa: E402
import matplotlib  # noqa: E402


matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from scimlx.neuralop import (  # noqa: E402
    count_params,
    darcy_dataset,
    evaluate,
    FNO,
    MgNO,
    normalised,
    reference_optimiser,
    rel_h1,
    train_operator,
)


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--quick", action="store_true", help="16^2 grid, 128 samples, 150 steps")
    p.add_argument("--resolution", type=int, default=None, help="training grid (32)")
    p.add_argument("--n-train", type=int, default=None, help="training samples (400)")
    p.add_argument("--steps", type=int, default=None, help="training steps (600)")
    p.add_argument(
        "--out",
        default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "neuralop_darcy.png"),
        help="where to save the figure",
    )
    args = p.parse_args()
    q = args.quick
    n = args.resolution or (16 if q else 32)
    n_train = args.n_train or (128 if q else 400)
    steps = args.steps or (150 if q else 600)
    train = darcy_dataset(n_train, n, seed=0, n_modes=n, progress=True)
    test = darcy_dataset(50, n, seed=1, n_modes=n)
    # the same 50 coefficient fields on a grid twice as fine, for zero-shot evaluation at 2x
    test2 = darcy_dataset(50, 2 * n, seed=1, n_modes=n)
    f32 = jnp.float32
    a, u = train.a.astype(f32), train.u.astype(f32)
    at, ut = test.a.astype(f32), test.u.astype(f32)
    models = {
        # grid_shape: the training grid; a 2x grid is then evaluated through one extra level
        "MgNO": MgNO(
            1,
            1,
            16,
            4,
            [(1, 0), (1, 0), (2, 0)],
            grid_shape=(n, n),
            dtype=f32,
            key=jax.random.key(0),
        ),
        "FNO": FNO(1, 1, 6, 16, dtype=f32, key=jax.random.key(0)),
    }
    preds, errs, errs2 = {}, {}, {}
    for name, m in models.items():
        model = normalised(m, a, u)
        out = train_operator(
            model,
            a,
            u,
            optimiser=reference_optimiser(steps, learning_rate=1e-3),
            steps=steps,
            key=jax.random.key(1),
            batch_size=16,
            loss=rel_h1,
        )
        errs[name] = evaluate(out.model, at, ut)
        errs2[name] = evaluate(out.model, test2.a.astype(f32), test2.u.astype(f32))
        preds[name] = jax.vmap(out.model)(at[:3])
        print(f"{name} ({count_params(m)} params): test {errs[name]}; at {2 * n}^2: {errs2[name]}")

    fig, axes = plt.subplots(3, 6, figsize=(18, 8.5))
    for i in range(3):
        truth = ut[i, 0]
        panels = [("coefficient a", at[i, 0], "viridis"), ("truth u", truth, "magma")]
        for name in models:
            panels.append((f"{name} prediction", preds[name][i, 0], "magma"))
        for name in models:
            panels.append((f"{name} |error|", jnp.abs(preds[name][i, 0] - truth), "Greys"))
        for j, (title, img, cmap) in enumerate(panels):
            ax = axes[i, j]
            im = ax.imshow(img, cmap=cmap, origin="lower")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(title)
            fig.colorbar(im, ax=ax, fraction=0.046)
    fig.suptitle(
        f"Darcy {n}x{n}, test rel. L2: MgNO {errs['MgNO']['rel_l2']:.3f}, "
        f"FNO {errs['FNO']['rel_l2']:.3f}; zero-shot at {2 * n}x{2 * n}: "
        f"MgNO {errs2['MgNO']['rel_l2']:.3f}, FNO {errs2['FNO']['rel_l2']:.3f}"
    )
    fig.tight_layout()
    fig.savefig(args.out, dpi=80)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
