"""Accuracy against missing rate: LSDE, LNSDE, GSDE and a neural CDE on one data set.

Trains each model at 0 % and 50 % of values missing (the paper's protocol: train+test
merged, stratified 70/15/15 split, time points dropped per channel) and plots test accuracy
against the missing rate. Uses BasicMotions when aeon (or sktime) is installed, otherwise a
synthetic irregular set.

    python examples/sde_missing_rates.py [--quick] [--epochs 40] [--out PATH]

`--quick` trains 20 epochs per model instead of 40 (a few steps per epoch on this small data
set, so most of the time goes to compilation in either setting).
"""

import argparse
import os

import jax.random as jr
import matplotlib


matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import scimlx  # noqa: E402
from scimlx import data as sd, sde  # noqa: E402


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="20 epochs per model")
    parser.add_argument("--epochs", type=int, default=None, help="epochs per model (40)")
    parser.add_argument("--rates", type=float, nargs="+", default=[0.0, 0.5])
    parser.add_argument(
        "--out",
        default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "sde_missing_rates.png"),
        help="where to save the figure",
    )
    args = parser.parse_args()
    epochs = args.epochs or (20 if args.quick else 40)

    if sd.bundled_dataset_dir("BasicMotions") is not None:
        series, labels, _ = sd.load_uea_ucr("BasicMotions")
        base, title = sd.from_series(series, labels), "BasicMotions"
    else:
        base = sd.synthetic_irregular(200, length=32, channels=2, num_classes=3, seed=0)
        title = "synthetic irregular series"
    tr, va, te = sd.paper_split(base.labels, seed=0)
    base = sd.standardise(base, base[tr])

    # the paper's protocol: batch size from the whole set's size, learning rate
    # 1e-3 * batch / 16, Adam with L2 lr / 100 and the rate halved every 10 epochs
    batch = sde.default_batch_size(len(tr) + 2 * len(va))
    spe = scimlx.steps_per_epoch(len(tr), batch)
    optimiser = sde.reference_optimiser(1e-3 * batch / 16, spe)

    models = {"LSDE": sde.LSDE, "LNSDE": sde.LNSDE, "GSDE": sde.GSDE, "neural CDE": sde.NeuralCDE}
    acc = {name: [] for name in models}
    for i, rate in enumerate(args.rates):
        paths = sde.paths_from_data(sd.drop_values(base, rate, seed=i))
        for name, cls in models.items():
            model = cls(base.channels + 1, 32, base.num_classes, key=jr.key(0))
            fit = sde.train_classifier(
                model,
                paths[tr],
                paths[va],
                optimiser=optimiser,
                steps=epochs * spe,
                batch_size=batch,
                key=jr.key(1),
                progress=False,
            )
            a = sde.evaluate(fit.model, paths[te], key=jr.key(2))["accuracy"]
            acc[name].append(a)
            print(f"{title}: {name:<10} missing {rate:.0%}: test accuracy {a:.3f}")

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for name, values in acc.items():
        ax.plot([100 * r for r in args.rates], [100 * v for v in values], "o-", label=name)
    ax.set_xlabel("missing values (%)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(args.out, dpi=120)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
