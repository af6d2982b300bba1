"""`scimlx.nde.NeuralSDEClassifier` and `LatentTrajectoryModel` against plain diffrax solves
of the same fields, one example at a time."""

import diffrax as dfx
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np

import scimlx.nde as nde


def _ode(vf, z0, ts):
    """A tight Tsit5 solve of `dz/dt = vf(t, z)` for one example, saved at `ts`."""
    sol = dfx.diffeqsolve(
        dfx.ODETerm(lambda t, z, args: vf(t, z)),
        dfx.Tsit5(),
        ts[0],
        ts[-1],
        0.01,
        z0,
        saveat=dfx.SaveAt(ts=ts),
        stepsize_controller=dfx.PIDController(rtol=1e-10, atol=1e-12),
    )
    return sol.ys


def test_sde_classifier_without_noise_is_the_ode_classifier():
    """With the diffusion zeroed, the SDE classifier's logits are those of encoder -> ODE
    solve of its drift -> decoder; with noise, different Brownian paths give different
    logits and the same path the same."""
    mkey = jr.key(0)  # fixed keys: the tolerances below were checked for these
    model = nde.NeuralSDEClassifier(5, 3, dim=4, width=6, key=mkey)
    x = jr.normal(jr.key(1), (7, 5))
    k = jr.key(2)
    noisy, _ = eqx.filter_jit(lambda m: m(x, key=k))(model)
    again, _ = eqx.filter_jit(lambda m: m(x, key=k))(model)
    other, _ = eqx.filter_jit(lambda m: m(x, key=jr.key(3)))(model)
    np.testing.assert_array_equal(np.asarray(noisy), np.asarray(again))
    assert float(jnp.max(jnp.abs(noisy - other))) > 1e-4
    # the same weights, solved tightly (an SDE this tight would take too many steps)
    ctrl = dfx.PIDController(rtol=1e-8, atol=1e-10)
    tight = nde.NeuralSDEClassifier(5, 3, dim=4, width=6, key=mkey, stepsize_controller=ctrl)
    lin = tight.sde.diffusion.linear
    silent = eqx.tree_at(
        lambda m: (m.sde.diffusion.linear.weight, m.sde.diffusion.linear.bias),
        tight,
        (jnp.zeros_like(lin.weight), jnp.zeros_like(lin.bias)),
    )
    logits, sol = eqx.filter_jit(lambda m: m(x, key=k))(silent)
    assert logits.shape == (7, 3)
    ts = jnp.array([0.0, model.sde.t1])
    drift = model.sde.drift
    z1 = jax.vmap(lambda r: _ode(lambda t, z: drift(t, z, None), model.encoder(r), ts)[-1])(x)
    ref = jax.vmap(model.decoder)(z1)
    np.testing.assert_allclose(np.asarray(logits), np.asarray(ref), rtol=1e-5, atol=1e-6)
    assert float(jnp.max(jnp.abs(z1 - jax.vmap(model.encoder)(x)))) > 1e-2  # it moved


def test_latent_trajectory_matches_per_example_ode_solves(getkey):
    ctrl = dfx.PIDController(rtol=1e-9, atol=1e-11)
    model = nde.LatentTrajectoryModel(5, 2, dim=4, width=6, key=getkey(), stepsize_controller=ctrl)
    x = jr.normal(getkey(), (3, 5))
    ts = jnp.linspace(0.0, 1.0, 4)
    out, _ = eqx.filter_jit(lambda m: m(x, ts))(model)
    assert out.shape == (4, 3, 2)
    vf = model.node.vector_field
    zs = jax.vmap(lambda r: _ode(vf, model.encoder(r), ts))(x)  # (3, 4, dim)
    ref = jnp.moveaxis(jax.vmap(jax.vmap(model.decoder))(zs), 0, 1)
    np.testing.assert_allclose(np.asarray(out), np.asarray(ref), rtol=1e-7, atol=1e-9)
    assert float(jnp.max(jnp.abs(out[-1] - out[0]))) > 1e-2  # the trajectory moves
