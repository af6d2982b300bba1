"""Plot the input-output matrix Phi (y = Phi u) of softmax attention, linear attention and S6 on
the same input: the "attention matrix" of every layer in the Dynamical Systems Framework.

    python examples/dsf_phi.py [--quick] [--out examples/dsf_phi.png]

`--quick` uses a shorter sequence (L = 24 instead of 48).
"""

import argparse
import os

import jax.numpy as jnp
import jax.random as jr
import matplotlib


matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import scimlx.dsf as dsf  # noqa: E402


def main(L: int = 48, d: int = 16, n: int = 8, out: str = "dsf_phi.png"):
    key = jr.key(0)
    u = jr.normal(jr.fold_in(key, 0), (L, d), jnp.float32)
    layers = {
        "softmax attention": dsf.SoftmaxAttention(
            d, 1, n, dtype=jnp.float32, key=jr.fold_in(key, 1)
        ),
        "linear attention": dsf.LinearAttention(d, 1, n, dtype=jnp.float32, key=jr.fold_in(key, 2)),
        "S6": dsf.S6(d, n, dtype=jnp.float32, key=jr.fold_in(key, 3)),
    }
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.2))
    for ax, (name, layer) in zip(axes, layers.items()):
        system, _ = dsf.to_dsf(layer, u)
        if name != "S6":  # attention layers return one system per head: take head 0
            system = type(system)(
                **{
                    f: getattr(system, f)[0]
                    if hasattr(getattr(system, f), "ndim")
                    else getattr(system, f)
                    for f in system.__dataclass_fields__
                }
            )
        P = dsf.phi(system, length=L)  # (L, L, d): Phi_ij is diagonal over channels
        img = jnp.abs(P[:, :, 0])
        im = ax.imshow(img, cmap="magma")
        ax.set_title(f"{name}: |Phi_ij| (channel 0)")
        ax.set_xlabel("j (input position)")
        ax.set_ylabel("i (output position)")
        fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    print(f"wrote {out}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a shorter sequence (L = 24)")
    parser.add_argument(
        "--out",
        default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "dsf_phi.png"),
        help="where to save the figure",
    )
    args = parser.parse_args()
    main(L=24 if args.quick else 48, out=args.out)
