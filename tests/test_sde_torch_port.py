"""scimlx's stable SDE classifiers against a PyTorch port of the official model (copied
weights, one fixed Brownian sample): parameter counts, trajectories and logits."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

from scimlx.sde import GridBrownianPath, GSDE, LNSDE, LSDE, make_path, NaiveSDE


torch = pytest.importorskip("torch")
pytest.importorskip("torchsde")
pytest.importorskip("torchcde")
port = pytest.importorskip("benchmarks.stable_sde._torch_port")


def _count(model):
    """Trainable parameters (the batch-norm running statistics are buffers in torch)."""
    head = model.readout
    stats = 0 if head.running_mean is None else head.running_mean.size + head.running_var.size
    return sum(x.size for x in jax.tree.leaves(eqx.filter(model, eqx.is_inexact_array))) - stats


@pytest.mark.parametrize(
    "name, cls", [("LSDE", LSDE), ("LNSDE", LNSDE), ("GSDE", GSDE), ("naive SDE", NaiveSDE)]
)
def test_parameter_counts_match_the_official_model(name, cls):
    # one data channel + time, 32 wide, 6 classes, 2 drift layers: LNSDE has 10,087
    d_in, h, k, layers = 2, 32, 6, 2
    ours = _count(cls(d_in, h, k, num_layers=layers, key=jr.key(0)))
    theirs = port.num_parameters(port.Classifier(d_in, h, k, layers, model=name))
    if name == "LNSDE":
        assert theirs == 10_087
    if name == "naive SDE":  # the reference keeps an unused control embedding Linear(d_in, h)
        assert theirs - ours == d_in * h + h
    else:
        assert ours == theirs


B, L, C, H, K = 3, 9, 2, 6, 3


def _series(seed=0):
    rng = np.random.default_rng(seed)
    ts = np.linspace(0.0, 1.0, L)
    ys = rng.normal(size=(B, L, C))
    ys[rng.random(ys.shape) < 0.3] = np.nan
    ys[:, 0] = rng.normal(size=(B, C))  # observed at t0, so the fill is torchcde's
    return ts, ys


# LSDE and the logistic GSDE drift differ from these only in terms that
# test_sde_models.py checks against the formulas; each solve here costs a compile
MODELS = [
    ("LNSDE", lambda k: LNSDE(C + 1, H, K, num_layers=3, key=k)),
    ("GSDE", lambda k: GSDE(C + 1, H, K, key=k)),
    ("naive SDE", lambda k: NaiveSDE(C + 1, H, K, key=k)),
]


@pytest.mark.parametrize("name, make", MODELS)
def test_copied_weights_give_the_same_trajectories_and_logits(name, make, getkey):
    model = make(getkey())
    # non-trivial batch-norm statistics and affine parameters
    head = model.readout.with_statistics(jr.normal(getkey(), (5, H)))
    head = eqx.tree_at(
        lambda m: (m.bn_scale, m.bn_shift),
        head,
        (1.0 + 0.3 * jr.normal(getkey(), (H,)), 0.2 * jr.normal(getkey(), (H,))),
    )
    model = eqx.tree_at(lambda m: m.readout, model, head)
    ts, ys = _series()
    keys = jr.split(getkey(), B)

    def ours(m):
        paths = jax.vmap(lambda y: make_path(ts, y))(jnp.asarray(ys))
        zs = jax.vmap(lambda p, k: m.solve(p, ts, key=k).value)(paths, keys)
        return zs, jax.vmap(m.readout)(zs[:, -1]), m.readout.batch_call(zs[:, -1])

    zs, logits, train_logits = eqx.filter_jit(ours)(model)
    inc = np.stack(
        [np.asarray(GridBrownianPath(jnp.asarray(ts), (H,), key=k).increments) for k in keys],
        axis=1,
    )  # (L - 1, B, H), the sample scimlx used
    gsde_factor = getattr(model, "drift_factor", "tanh")
    layers = len(_mlp(model).hidden_layers) + 1
    tm = port.Classifier(C + 1, H, K, layers, model=name, gsde_factor=gsde_factor)
    port.copy_weights(tm, model)
    tm.eval()
    times = torch.from_numpy(ts.astype(np.float32))
    coeffs = port.coefficients(ts, ys)
    inc_t = torch.from_numpy(inc.astype(np.float32))
    lengths = torch.full((B,), L, dtype=torch.int64)
    with torch.no_grad():
        z_loop = tm.latent(times, coeffs, increments=inc_t).numpy()
        z_sde = tm.latent(times, coeffs, solver="torchsde", increments=inc_t).numpy()
        l_loop = tm(times, coeffs, lengths, increments=inc_t).numpy()
        l_sde = tm(times, coeffs, lengths, solver="torchsde", increments=inc_t).numpy()
        tm.train()
        tm.fc[3].p = 0.0  # training-mode head without dropout: batch statistics
        l_train = tm(times, coeffs, lengths, increments=inc_t).numpy()
    zs = np.moveaxis(np.asarray(zs), 0, 1)  # (L, B, H)
    scale = np.abs(zs).max()
    # float32 (torch) against float64 (scimlx): agreement to float32 rounding
    np.testing.assert_allclose(z_loop, zs, rtol=0, atol=2e-6 * max(scale, 1.0))
    np.testing.assert_allclose(z_sde, zs, rtol=0, atol=2e-6 * max(scale, 1.0))
    for out, ref in ((l_loop, logits), (l_sde, logits), (l_train, train_logits)):
        ref = np.asarray(ref)
        assert np.max(np.abs(out - ref)) <= 1e-5 * np.max(np.abs(ref))


def _mlp(model):
    return model.drift_net.mlp if hasattr(model, "drift_net") else model.mlp
