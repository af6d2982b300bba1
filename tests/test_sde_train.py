"""Training with scimlx.fit (early stopping, checkpoints) and evaluation with SDE samples."""

import os

import jax.numpy as jnp
import numpy as np

from scimlx.data import paper_split, standardise, synthetic_irregular
from scimlx.sde import (
    default_batch_size,
    evaluate,
    LNSDE,
    paths_from_data,
    predict_proba,
    train_classifier,
)


def test_train_lnsde_learns_checkpoints_and_reports_uncertainty(tmp_path, getkey):
    data = synthetic_irregular(64, length=10, channels=1, num_classes=2, missing=0.3, seed=0)
    tr, va, te = paper_split(data.labels, 0)
    data = standardise(data, data[tr])
    paths = paths_from_data(data, dtype=jnp.float64)
    model = LNSDE(2, 8, 2, key=getkey())
    ckpt = os.path.join(tmp_path, "lnsde.ckpt")
    res = train_classifier(
        model,
        paths[tr],
        paths[va],
        key=getkey(),
        epochs=12,
        batch_size=16,
        lr=1e-2,
        patience=None,
        progress=False,
        checkpoint=ckpt,
    )
    assert os.path.exists(ckpt)
    assert np.all(np.isfinite(res.losses)) and res.step == 12 * (len(tr) // 16)
    k = len(res.losses) // 4
    assert res.losses[-k:].mean() < res.losses[:k].mean()  # it learns
    assert len(res.validations) == 12 and res.best_validation == min(v for _, v in res.validations)
    mean, std = predict_proba(res.model, paths[te], key=getkey(), samples=3)
    np.testing.assert_allclose(mean.sum(1), 1.0, atol=1e-10)
    assert std.shape == mean.shape and float(std.max()) > 0  # SDE samples differ
    metrics = evaluate(res.model, paths[te], key=getkey(), samples=3)
    assert 0.0 <= metrics["accuracy"] <= 1.0 and np.isfinite(metrics["loss"])
    np.testing.assert_allclose(
        metrics["accuracy"], np.mean(mean.argmax(1) == np.asarray(paths[te].labels))
    )


def test_default_batch_size_rule():
    # largest power of two <= n / 2, clipped to [16, 128] (reference protocol)
    assert [default_batch_size(n) for n in (20, 56, 140, 448, 767, 5000)] == [
        16,
        16,
        64,
        128,
        128,
        128,
    ]
