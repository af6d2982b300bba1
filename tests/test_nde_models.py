"""Neural ODE/SDE models: shapes, batch-as-one-state solves, persistence."""

import diffrax as dfx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

import scimlx
import scimlx.nde as nde


def test_node_classifier_matches_plain_diffrax(getkey, tmp_path):
    ctrl = dfx.PIDController(rtol=1e-6, atol=1e-6)
    model = nde.NeuralODEClassifier(5, 3, dim=4, width=6, key=getkey(), stepsize_controller=ctrl)
    x = jr.normal(getkey(), (7, 5))
    logits, sol = model(x, regularisers=(nde.GlobalErrorEstimate(),))
    assert logits.shape == (7, 3) and sol.components["error"] > 0
    # Reference: the same vector field solved with plain diffrax, batch as one state.
    vf = model.node.vector_field
    z0 = jnp.stack([model.encoder(r) for r in x])
    ref = dfx.diffeqsolve(
        dfx.ODETerm(lambda t, z, args: jax.vmap(lambda r: vf(t, r))(z)),
        dfx.Tsit5(),
        0.0,
        1.0,
        0.01,
        z0,
        stepsize_controller=ctrl,
    )
    np.testing.assert_allclose(sol.ys[-1], ref.ys[-1], rtol=1e-10, atol=1e-12)
    assert int(sol.stats["num_steps"]) == int(ref.stats["num_steps"])
    with pytest.raises(ValueError, match="y0"):
        model.node(jnp.zeros((2, 3)))
    path = tmp_path / "m.eqx"
    scimlx.save(path, model, hyperparameters=dict(in_size=5, num_classes=3, dim=4, width=6))
    loaded = scimlx.load(
        path, lambda **hp: nde.NeuralODEClassifier(**hp, key=jr.key(0), stepsize_controller=ctrl)
    )
    np.testing.assert_allclose(loaded(x)[0], logits, rtol=1e-12)
