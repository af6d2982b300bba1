"""Tour stage: train an LNSDE on synthetic irregular series with 50 % of values missing."""

import time

import jax.random as jr
import numpy as np

from .._core import steps_per_epoch
from ..data import paper_split, standardise, synthetic_irregular
from ._models import LNSDE
from ._train import evaluate, paths_from_data, reference_optimiser, train_classifier


def tour_stage(epochs: int = 60, quick: bool = False) -> dict:
    """Train an LNSDE (about 40 s on 2 cores, compile included) on a 3-class synthetic
    irregular set with 50 % of values missing; report test accuracy and the spread of the
    predicted probabilities over SDE samples. `quick`: 10 epochs; `ok` when the test
    accuracy is above 50 % (chance: 33 %), 40 % when quick."""
    if quick:
        epochs = 10
    t0 = time.perf_counter()
    data = synthetic_irregular(240, length=24, channels=2, num_classes=3, missing=0.5, seed=0)
    tr, va, te = paper_split(data.labels, 0)
    data = standardise(data, data[tr])
    paths = paths_from_data(data)
    model = LNSDE(3, 16, 3, key=jr.key(0))
    # 168 training series: batches of 28 fill every step, so no short last batch of an
    # epoch compiles a second training step
    spe = steps_per_epoch(len(tr), 28)
    res = train_classifier(
        model,
        paths[tr],
        paths[va],
        optimiser=reference_optimiser(5e-3, spe),
        steps=epochs * spe,
        batch_size=28,
        key=jr.key(1),
        patience=None,
        progress=False,
    )
    metrics = evaluate(res.model, paths[te], key=jr.key(3), samples=4)
    acc = metrics["accuracy"]
    return {
        "what": (
            f"LNSDE (hidden 16) trained {res.step} steps on 240 synthetic irregular series, "
            "3 classes, 50% of values missing (Hermite path, Euler on the observation grid)"
        ),
        "figure": (
            f"test accuracy {100 * acc:.1f}% (chance 33%), mean predictive std "
            f"{metrics['predictive_std']:.3f} over 4 SDE samples, "
            f"{time.perf_counter() - t0:.0f} s"
        ),
        "ok": bool(np.isfinite(metrics["loss"]) and acc > (0.4 if quick else 0.5)),
    }
