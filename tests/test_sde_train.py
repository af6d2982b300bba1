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
    # per-example readout: the training loss is free of batch-norm/dropout noise, so the
    # "it learns" check below is not flaky (the batch-norm readout is tested separately)
    model = LNSDE(2, 8, 2, readout="mlp", key=getkey())
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


def test_batchnorm_readout_matches_numpy_and_calibration_sets_population_statistics(getkey):
    import jax
    import jax.random as jr

    from scimlx.sde import calibrate_readout, classification_loss, evaluation_loss

    data = synthetic_irregular(12, length=6, channels=1, num_classes=2, missing=0.3, seed=1)
    paths = paths_from_data(data, dtype=jnp.float64)
    model = LNSDE(2, 4, 2, key=getkey())
    head = model.readout
    assert head.kind == "batchnorm"
    zs = np.asarray(jr.normal(getkey(), (7, 4), jnp.float64))
    w1, b1 = np.asarray(head.layers[0].weight), np.asarray(head.layers[0].bias)
    w2, b2 = np.asarray(head.layers[1].weight), np.asarray(head.layers[1].bias)
    h = zs @ w1.T + b1

    def reference(mean, var):  # BatchNorm with unit scale / zero shift, as torch initialises it
        return np.maximum((h - mean) / np.sqrt(var + 1e-5), 0.0) @ w2.T + b2

    # training mode: batch statistics (biased variance), no dropout without a key
    np.testing.assert_allclose(
        np.asarray(head.batch_call(jnp.asarray(zs))), reference(h.mean(0), h.var(0)), rtol=1e-10
    )
    # inference after calibration: stored statistics (unbiased variance), per example
    calibrated = head.with_statistics(jnp.asarray(zs))
    single = np.stack([np.asarray(calibrated(jnp.asarray(z))) for z in zs])
    np.testing.assert_allclose(single, reference(h.mean(0), h.var(0, ddof=1)), rtol=1e-10)
    # dropout in training mode changes the output and keeps it finite
    dropped = np.asarray(head.batch_call(jnp.asarray(zs), key=getkey()))
    assert np.all(np.isfinite(dropped)) and not np.allclose(dropped, reference(h.mean(0), h.var(0)))

    # calibrate_readout: statistics of the final latent states of the data set
    key = getkey()
    cal = calibrate_readout(model, paths, key=key, chunk=5)
    # the final states as calibrate_readout draws them (one key per chunk of 5)
    zs_all = np.concatenate(
        [
            np.asarray(
                jax.vmap(lambda p, t, n, k: model.final_state(p, t, n, key=k))(
                    sub.paths, sub.times, sub.lengths, jr.split(jr.fold_in(key, s), len(sub))
                )
            )
            for s in range(0, len(paths), 5)
            for sub in [paths[np.arange(s, min(s + 5, len(paths)))]]
        ]
    )
    hh = zs_all @ w1.T + b1
    np.testing.assert_allclose(np.asarray(cal.readout.running_mean), hh.mean(0), rtol=1e-10)
    np.testing.assert_allclose(np.asarray(cal.readout.running_var), hh.var(0, ddof=1), rtol=1e-10)
    # training and evaluation losses are finite and differ only through the readout mode
    k = getkey()
    assert np.isfinite(float(classification_loss(cal, paths, k)))
    assert np.isfinite(float(evaluation_loss(cal, paths, k)))

    # train_classifier returns models whose statistics come from the training set
    tr, va = np.arange(8), np.arange(8, 12)
    key = getkey()
    res = train_classifier(
        model, paths[tr], paths[va], key=key, epochs=2, batch_size=4, progress=False
    )
    again = calibrate_readout(res.model, paths[tr], key=jr.fold_in(key, 778))
    np.testing.assert_allclose(
        np.asarray(res.model.readout.running_var), np.asarray(again.readout.running_var)
    )
    assert not np.allclose(np.asarray(res.model.readout.running_var), 1.0)
