import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax
import pytest

import scimlx

from .helpers import tree_allclose


def _problem(key):
    kx, kw, km = jr.split(key, 3)
    x = jr.normal(kx, (64, 3))
    w_true = jnp.array([1.0, -2.0, 0.5])
    y = x @ w_true + 0.01 * jr.normal(kw, (64,))
    model = eqx.nn.Linear(3, 1, key=km)
    data = (x, y)

    def loss(m, batch, key):
        xb, yb = batch
        noise = 1e-3 * jr.normal(key, ())  # uses the per-step key: resumes must match it
        return jnp.mean((jax.vmap(m)(xb)[:, 0] - yb) ** 2) + noise

    return model, data, loss, w_true


def test_fit_learns_linear_regression(getkey):
    model, data, loss, w_true = _problem(getkey())
    out = scimlx.fit(
        loss,
        model,
        optax.adam(5e-2),
        steps=300,
        key=getkey(),
        batch=scimlx.default_batch(data, 16),
        progress=False,
    )
    assert out.step == 300 and out.losses.shape == (300,)
    assert np.all(np.isfinite(out.losses))
    np.testing.assert_allclose(np.asarray(out.model.weight[0]), np.asarray(w_true), atol=0.05)
    assert out.losses[-20:].mean() < 0.1 * out.losses[:5].mean()


def test_resume_matches_uninterrupted(tmp_path, getkey):
    model, data, loss, _ = _problem(getkey())
    key = getkey()
    batch = scimlx.default_batch(data, 8)
    opt = optax.adam(1e-2)
    full = scimlx.fit(loss, model, opt, steps=40, key=key, batch=batch, progress=False)

    ckpt = tmp_path / "train.ckpt"
    # First run: interrupted after 25 steps (as if killed right after its last checkpoint).
    part = scimlx.fit(
        loss,
        model,
        opt,
        steps=40,
        key=key,
        batch=batch,
        progress=False,
        checkpoint=ckpt,
        checkpoint_every=5,
    )
    assert part.step == 40
    # Rebuild the state a killed run leaves behind: the checkpoint at step 25.
    ckpt.unlink()
    calls = {"n": 0}

    def killing_batch(step, k):
        calls["n"] += 1
        if step == 25:
            raise KeyboardInterrupt  # the "kill"
        return batch(step, k)

    with pytest.raises(KeyboardInterrupt):
        scimlx.fit(
            loss,
            model,
            opt,
            steps=40,
            key=key,
            batch=killing_batch,
            progress=False,
            checkpoint=ckpt,
            checkpoint_every=5,
        )
    assert scimlx.read_header(ckpt)["metadata"]["step"] == 25
    resumed = scimlx.fit(
        loss,
        model,
        opt,
        steps=40,
        key=key,
        batch=batch,
        progress=False,
        checkpoint=ckpt,
        checkpoint_every=5,
    )
    assert resumed.step == 40
    assert tree_allclose(resumed.model, full.model, rtol=0, atol=0)
    np.testing.assert_array_equal(resumed.losses, full.losses)
    assert tree_allclose(resumed.opt_state, full.opt_state, rtol=0, atol=0)


def test_early_stopping_keeps_best(getkey):
    model, data, loss, _ = _problem(getkey())
    values = iter([3.0, 1.0, 2.0, 2.5, 2.6, 0.5])

    def validate(m):
        return next(values)

    out = scimlx.fit(
        loss,
        model,
        optax.sgd(1e-3),
        steps=100,
        key=getkey(),
        progress=False,
        batch=scimlx.default_batch(data, 8),
        validate=validate,
        validate_every=10,
        patience=3,
    )
    assert out.stopped_early
    assert out.step == 50
    assert out.best_validation == 1.0
    assert [s for s, _ in out.validations] == [10, 20, 30, 40, 50]
    assert not tree_allclose(out.model, out.last_model, rtol=0, atol=0)


@pytest.mark.parametrize("min_steps", [0, 30, 70, 100, 1000])
def test_min_steps_delays_early_stopping(getkey, min_steps):
    model, data, loss, _ = _problem(getkey())
    values = [3.0, 1.0, 2.0, 2.5, 2.6, 2.7, 2.8, 0.5, 2.9, 3.0, 3.1]

    # the rule evaluated naively: after each round, stop if `patience` rounds in a row did
    # not improve on the best and the round's step is at least `min_steps`
    best, bad, expected = np.inf, 0, 100
    for i, v in enumerate(values[:10]):
        best, bad = (v, 0) if v < best else (best, bad + 1)
        if bad >= 3 and 10 * (i + 1) >= min_steps:
            expected = 10 * (i + 1)
            break

    it = iter(values)
    out = scimlx.fit(
        loss,
        model,
        optax.sgd(1e-3),
        steps=100,
        key=getkey(),
        progress=False,
        batch=scimlx.default_batch(data, 8),
        validate=lambda m: next(it),
        validate_every=10,
        patience=3,
        min_steps=min_steps,
    )
    assert out.step == expected and out.stopped_early == (expected < 100)
    assert [s for s, _ in out.validations] == list(range(10, expected + 1, 10))
    assert out.best_validation == min(values[: expected // 10])


def test_steps_per_epoch_is_the_number_of_batches_with_a_partial_last_one():
    for n in (1, 7, 8, 9, 64, 65):
        for bs in (1, 3, 8, 64, 100):
            assert scimlx.steps_per_epoch(n, bs) == len(range(0, n, bs)) == -(-n // bs)
    with pytest.raises(ValueError, match="`batch_size` must be an integer >= 1"):
        scimlx.steps_per_epoch(10, 0)
    with pytest.raises(ValueError, match="`n` must be an integer >= 1"):
        scimlx.steps_per_epoch(0, 4)


def test_nonfinite_loss_is_reported(getkey):
    model = eqx.nn.Linear(2, 1, key=getkey())

    def loss(m, batch, key):
        return jnp.sum(m.weight) * jnp.nan

    with pytest.raises(FloatingPointError, match="non-finite"):
        scimlx.fit(loss, model, optax.sgd(0.1), steps=3, key=getkey(), progress=False)


def test_nonfinite_loss_names_its_step_and_is_not_checkpointed(tmp_path, getkey):
    model = eqx.nn.Linear(2, 1, key=getkey())

    def loss(m, batch, key):
        return jnp.sum(m.weight**2) * batch

    def batch(step, key):
        return jnp.asarray(jnp.nan if step == 20 else 1.0)

    ckpt = tmp_path / "run.ckpt"
    key = getkey()
    with pytest.raises(FloatingPointError, match="at step 20"):
        scimlx.fit(
            loss,
            model,
            optax.sgd(0.01),
            steps=40,
            key=key,
            batch=batch,
            progress=False,
            checkpoint=ckpt,
            checkpoint_every=10,
        )
    # The last checkpoint is the one before the failure: resuming it is clean.
    resumed = scimlx.fit(
        loss,
        model,
        optax.sgd(0.01),
        steps=20,
        key=key,
        batch=batch,
        progress=False,
        checkpoint=ckpt,
    )
    assert resumed.step == 20
    assert np.all(np.isfinite(np.asarray(resumed.model.weight)))
    assert np.all(np.isfinite(resumed.losses))


def test_resume_with_more_steps_continues_training(tmp_path, getkey):
    model, data, loss, _ = _problem(getkey())
    key = getkey()
    batch = scimlx.default_batch(data, 8)
    opt = optax.adam(1e-2)
    full = scimlx.fit(loss, model, opt, steps=30, key=key, batch=batch, progress=False)
    ckpt = tmp_path / "train.ckpt"
    kwargs = dict(key=key, batch=batch, progress=False, checkpoint=ckpt)
    scimlx.fit(loss, model, opt, steps=12, validate=lambda m: 0.0, validate_every=5, **kwargs)
    more = scimlx.fit(loss, model, opt, steps=30, **kwargs)
    assert more.step == 30
    np.testing.assert_array_equal(more.losses, full.losses)
    assert tree_allclose(more.last_model, full.last_model, rtol=0, atol=0)
    with pytest.raises(ValueError, match="already taken 30 steps"):
        scimlx.fit(loss, model, opt, steps=10, **kwargs)


def test_time_budget_stops_resumably(tmp_path, getkey):
    # A zero budget ends the run after its first step, checkpointed; the same call again
    # trains on from there, and the two calls together equal one uninterrupted run.
    model, data, loss, _ = _problem(getkey())
    key, batch, opt = getkey(), scimlx.default_batch(data, 8), optax.adam(1e-2)
    full = scimlx.fit(loss, model, opt, steps=12, key=key, batch=batch, progress=False)
    kwargs = dict(key=key, batch=batch, progress=False, checkpoint=tmp_path / "t.ckpt")
    part = scimlx.fit(loss, model, opt, steps=12, max_seconds=0.0, **kwargs)
    assert part.step == 1 and part.losses.shape == (1,) and not part.stopped_early
    rest = scimlx.fit(loss, model, opt, steps=12, **kwargs)
    assert rest.step == 12
    np.testing.assert_allclose(rest.losses, full.losses, rtol=1e-12)
    assert tree_allclose(rest.model, full.model)


def test_fit_argument_errors(getkey):
    model = eqx.nn.Linear(2, 1, key=getkey())
    with pytest.raises(ValueError, match="`steps`"):
        scimlx.fit(lambda m, b, k: 0.0, model, optax.sgd(0.1), steps=-1, key=getkey())
    with pytest.raises(ValueError, match="`patience` needs `validate`"):
        scimlx.fit(lambda m, b, k: 0.0, model, optax.sgd(0.1), steps=1, key=getkey(), patience=2)
    with pytest.raises(ValueError, match="`min_steps` needs `patience`"):
        scimlx.fit(lambda m, b, k: 0.0, model, optax.sgd(0.1), steps=1, key=getkey(), min_steps=2)
    with pytest.raises(ValueError, match="`min_steps` must be an integer >= 0"):
        scimlx.fit(lambda m, b, k: 0.0, model, optax.sgd(0.1), steps=1, key=getkey(), min_steps=-1)
    with pytest.raises(ValueError, match="`max_seconds`"):
        scimlx.fit(
            lambda m, b, k: 0.0, model, optax.sgd(0.1), steps=1, key=getkey(), max_seconds=-1.0
        )
    with pytest.raises(ValueError, match="leading axis"):
        scimlx.default_batch((jnp.zeros((3, 2)), jnp.zeros((4,))), 2)
    with pytest.raises(ValueError, match="`batch_size`"):
        scimlx.default_batch(jnp.zeros((3, 2)), 5)


def test_second_fit_call_reuses_the_compiled_step(getkey):
    model, data, loss, _ = _problem(getkey())
    traces = []

    def counting_loss(m, batch, key):
        traces.append(1)  # runs only when the step is traced
        return loss(m, batch, key)

    opt = optax.sgd(1e-2)
    batch = scimlx.default_batch(data, 8)
    first = scimlx.fit(
        counting_loss, model, opt, steps=3, key=getkey(), batch=batch, progress=False
    )
    n_first = len(traces)
    assert n_first >= 1
    second = scimlx.fit(
        counting_loss, first.model, opt, steps=3, key=getkey(), batch=batch, progress=False
    )
    assert len(traces) == n_first
    assert second.step == 3 and np.all(np.isfinite(second.losses))


def test_unwritable_checkpoint_is_refused_before_training(tmp_path, getkey):
    model, data, loss, _ = _problem(getkey())
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    calls = []

    def batch(step, key):
        calls.append(step)
        return scimlx.default_batch(data, 8)(step, key)

    for bad in (blocker / "run.ckpt", tmp_path):
        with pytest.raises(ValueError, match="`checkpoint`"):
            scimlx.fit(
                loss, model, optax.sgd(0.1), steps=5, key=getkey(), batch=batch,
                progress=False, checkpoint=bad,
            )  # fmt: skip
    assert calls == []  # no step was taken


def test_resume_refuses_another_run(tmp_path, getkey):
    model, data, loss, _ = _problem(getkey())
    key, batch, ckpt = getkey(), scimlx.default_batch(data, 8), tmp_path / "r.ckpt"
    kw = dict(batch=batch, progress=False, checkpoint=ckpt)
    scimlx.fit(loss, model, optax.adam(1e-2), steps=4, key=key, **kw)
    with pytest.raises(ValueError, match="optimiser state's structure differs"):
        scimlx.fit(loss, model, optax.sgd(1e-2), steps=8, key=key, **kw)
    with pytest.raises(ValueError, match="optimiser differs"):
        scimlx.fit(loss, model, optax.adam(3e-2), steps=8, key=key, **kw)
    with pytest.raises(ValueError, match="`key` differs"):
        scimlx.fit(loss, model, optax.adam(1e-2), steps=8, key=getkey(), **kw)
    other = eqx.nn.Linear(3, 2, key=getkey())

    def loss2(m, b, k):
        return jnp.mean(jax.vmap(m)(b[0]) ** 2)

    with pytest.raises(ValueError, match="model's structure"):
        scimlx.fit(loss2, other, optax.adam(1e-2), steps=8, key=key, **kw)
    # The same run resumes.
    out = scimlx.fit(loss, model, optax.adam(1e-2), steps=8, key=key, **kw)
    assert out.step == 8


def test_nonfinite_validation_is_an_error(tmp_path, getkey):
    model, data, loss, _ = _problem(getkey())
    values = iter([1.0, float("nan")])
    with pytest.raises(
        FloatingPointError, match=r"`validate` returned a non-finite value \(nan\) at step 4"
    ):
        scimlx.fit(
            loss, model, optax.adam(1e-2), steps=6, key=getkey(),
            batch=scimlx.default_batch(data, 8), progress=False,
            validate=lambda m: next(values), validate_every=2,
        )  # fmt: skip
