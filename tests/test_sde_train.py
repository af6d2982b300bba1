"""Training with scimlx.fit (early stopping, checkpoints) and evaluation with SDE samples."""

import os

import jax.numpy as jnp
import numpy as np
import pytest

from scimlx import steps_per_epoch
from scimlx.data import paper_split, standardise, synthetic_irregular
from scimlx.sde import (
    default_batch_size,
    evaluate,
    LNSDE,
    paths_from_data,
    predict_proba,
    reference_optimiser,
    train_classifier,
)


def _train(model, train, val, *, epochs, batch_size, lr=None, **kw):
    """`train_classifier` for whole epochs with the paper's optimiser (learning rate
    `1e-3 * batch_size / 16` unless given)."""
    spe = steps_per_epoch(len(train), batch_size)
    lr = 1e-3 * batch_size / 16 if lr is None else lr
    return train_classifier(
        model,
        train,
        val,
        optimiser=reference_optimiser(lr, spe),
        steps=epochs * spe,
        batch_size=batch_size,
        **kw,
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
    res = _train(
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
    assert np.all(np.isfinite(res.losses)) and res.step == 12 * -(
        -len(tr) // 16
    )  # partial last batches kept
    k = len(res.losses) // 4
    assert res.losses[-k:].mean() < res.losses[:k].mean()  # it learns
    assert len(res.validations) == 12 and res.best_validation == min(v for _, v in res.validations)
    key = getkey()
    mean, std = predict_proba(res.model, paths[te], key=key, samples=3)
    np.testing.assert_allclose(mean.sum(1), 1.0, atol=1e-10)
    assert std.shape == mean.shape and float(std.max()) > 0  # SDE samples differ
    # the same samples (same key): evaluate's accuracy is that of the mean prediction
    metrics = evaluate(res.model, paths[te], key=key, samples=3)
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
    assert head.kind == "official"
    zs = np.asarray(jr.normal(getkey(), (7, 4), jnp.float64))
    w1, b1 = np.asarray(head.layers[0].weight), np.asarray(head.layers[0].bias)
    w2, b2 = np.asarray(head.layers[1].weight), np.asarray(head.layers[1].bias)
    # the reference's head initialisation: xavier-uniform weights, biases 0.01
    np.testing.assert_array_equal(b1, 0.01)
    np.testing.assert_array_equal(b2, 0.01)
    assert np.abs(w1).max() <= np.sqrt(6 / 8) and np.abs(w2).max() <= np.sqrt(6 / 6)
    p1, p2 = head.pre  # the output map Tanh -> Linear -> ReLU -> Linear before the head

    def output_map(z):
        a = np.maximum(np.tanh(z) @ np.asarray(p1.weight).T + np.asarray(p1.bias), 0.0)
        return a @ np.asarray(p2.weight).T + np.asarray(p2.bias)

    h = output_map(zs) @ w1.T + b1

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
    hh = output_map(zs_all) @ w1.T + b1
    np.testing.assert_allclose(np.asarray(cal.readout.running_mean), hh.mean(0), rtol=1e-10)
    np.testing.assert_allclose(np.asarray(cal.readout.running_var), hh.var(0, ddof=1), rtol=1e-7)
    # training and evaluation losses are finite and differ only through the readout mode
    k = getkey()
    assert np.isfinite(float(classification_loss(cal, paths, k)))
    assert np.isfinite(float(evaluation_loss(cal, paths, k)))

    # train_classifier returns models whose statistics come from the training set
    tr, va = np.arange(8), np.arange(8, 12)
    key = getkey()
    res = _train(model, paths[tr], paths[va], key=key, epochs=2, batch_size=4, progress=False)
    again = calibrate_readout(res.model, paths[tr], key=jr.fold_in(key, 778))
    np.testing.assert_allclose(
        np.asarray(res.model.readout.running_var), np.asarray(again.readout.running_var)
    )
    assert not np.allclose(np.asarray(res.model.readout.running_var), 1.0)


def _tiny(n=12, seed=2):
    data = synthetic_irregular(n, length=5, channels=1, num_classes=2, missing=0.2, seed=seed)
    return paths_from_data(data, dtype=jnp.float64)


def test_early_stopping_follows_the_reference_rule(getkey):
    """With a learning rate too small to change a float64 weight, the validation loss never
    improves after the first epoch, so the reference rule `(epoch > 20) & (patient > 10)`
    stops at the end of the 22nd epoch (9 series in batches of 3: 3 steps per epoch)."""
    paths = _tiny()
    tr, va = np.arange(9), np.arange(9, 12)
    model = LNSDE(2, 4, 2, num_layers=1, readout="linear", key=getkey())
    kw = dict(key=getkey(), batch_size=3, lr=1e-30, epochs=40, progress=False)
    res = _train(model, paths[tr], paths[va], **kw)
    assert res.stopped_early and res.step == 22 * 3
    assert len(res.validations) == 22
    res = _train(model, paths[tr], paths[va], patience=3, min_epochs=0, **kw)
    assert res.stopped_early and res.step == 4 * 3  # best at epoch 1, three bad ones


def test_train_and_evaluate_reject_bad_input_with_the_argument_named(getkey):
    import equinox as eqx

    paths = _tiny()
    model = LNSDE(2, 4, 2, readout="linear", key=getkey())
    k = getkey()
    kw = dict(optimiser=reference_optimiser(1e-3, 4), steps=4, batch_size=3, key=k, progress=False)
    bad_labels = eqx.tree_at(lambda b: b.labels, paths, paths.labels.at[3].set(2))
    with pytest.raises(ValueError, match=r"`train.labels` must hold labels in \[0, 2\), got 2"):
        train_classifier(model, bad_labels, **kw)
    with pytest.raises(ValueError, match=r"`val.labels` must hold labels in"):
        train_classifier(model, paths, bad_labels, **kw)
    with pytest.raises(ValueError, match=r"`batch.labels` must hold labels in"):
        evaluate(model, bad_labels, key=k)
    float_labels = eqx.tree_at(lambda b: b.labels, paths, paths.labels.astype(jnp.float64))
    with pytest.raises(TypeError, match="`batch.labels` must hold integer class labels"):
        evaluate(model, float_labels, key=k)
    empty = paths[np.arange(0)]
    with pytest.raises(ValueError, match="`train` must hold at least one of its series"):
        train_classifier(model, empty, **kw)
    with pytest.raises(ValueError, match="`val` must hold at least one of its series"):
        train_classifier(model, paths, empty, **kw)
    for fn in (evaluate, predict_proba):
        with pytest.raises(ValueError, match="`batch` must hold at least one of its series"):
            fn(model, empty, key=k)
    for name, value in (("batch_size", 0), ("steps", 0), ("patience", 0), ("min_epochs", -1)):
        with pytest.raises(ValueError, match=f"`{name}` must be"):
            train_classifier(model, paths, paths, **{**kw, name: value})
    for value in (-1e-3, 0.0, float("nan")):
        with pytest.raises(ValueError, match="`learning_rate` must be"):
            reference_optimiser(value, 4)
    with pytest.raises(ValueError, match="`steps_per_epoch` must be an integer >= 1"):
        reference_optimiser(1e-3, 0)
    with pytest.raises(ValueError, match="`samples` must be a positive int"):
        predict_proba(model, paths, key=k, samples=0)


def test_trained_classifier_beats_chance_on_held_out_series():
    # Two classes told apart by where a bump sits, 30 % of the values missing. An untrained
    # model scores 47-53 % on the 200 held-out series; a trained one must clear chance by
    # 25 points.
    import jax.random as jr

    data = synthetic_irregular(128, length=16, channels=1, num_classes=2, missing=0.3, seed=0)
    held = synthetic_irregular(200, length=16, channels=1, num_classes=2, missing=0.3, seed=7)
    held, data = standardise(held, data), standardise(data, data)
    train = paths_from_data(data, dtype=jnp.float64)
    test = paths_from_data(held, dtype=jnp.float64)
    model = LNSDE(2, 16, 2, readout="mlp", key=jr.key(0))
    res = _train(
        model, train, None, key=jr.key(100), epochs=30, batch_size=32, lr=1e-2, progress=False
    )
    accuracy = evaluate(res.model, test, key=jr.key(1), samples=3)["accuracy"]
    assert accuracy >= 0.75, accuracy
