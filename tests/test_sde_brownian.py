"""GridBrownianPath against exact moments and diffrax.VirtualBrownianTree; gradients."""

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import lineax as lx
import numpy as np
import pytest

from scimlx.sde import GridBrownianPath


N_STEPS = 8
TS = jnp.linspace(0.0, 1.0, N_STEPS + 1)
DT = 1.0 / N_STEPS
M = 3000  # samples


def _increments(path):
    return jax.vmap(lambda a, b: path.evaluate(a, b))(TS[:-1], TS[1:])


def test_grid_path_exact_on_grid_and_bridge_mean_between():
    path = GridBrownianPath(TS, (3,), key=jr.key(0))
    inc = _increments(path)
    np.testing.assert_allclose(np.asarray(inc), np.asarray(path.increments), atol=1e-14)
    np.testing.assert_allclose(np.asarray(path.evaluate(TS[0])), 0.0)
    mid = 0.5 * (TS[2] + TS[3])
    np.testing.assert_allclose(
        np.asarray(path.evaluate(mid)),
        0.5 * np.asarray(path.evaluate(TS[2]) + path.evaluate(TS[3])),
        atol=1e-14,
    )
    again = GridBrownianPath(TS, increments=path.increments)
    np.testing.assert_allclose(np.asarray(again.ws), np.asarray(path.ws), atol=1e-14)
    with pytest.raises(ValueError, match="increments"):
        GridBrownianPath(TS, increments=path.increments[1:])
    with pytest.raises(ValueError, match="shape"):
        GridBrownianPath(TS)


@jax.jit
def _grid_incs(keys):
    return jax.vmap(lambda k: _increments(GridBrownianPath(TS, (), key=k)))(keys)


@jax.jit
def _tree_incs(keys):
    def one(k):
        bm = diffrax.VirtualBrownianTree(0.0, 1.0, tol=DT / 4, shape=(), key=k)
        return jax.vmap(lambda a, b: bm.evaluate(a, b))(TS[:-1], TS[1:])

    return jax.vmap(one)(keys)


def test_increments_distribution_grid_vs_tree():
    keys = jr.split(jr.key(1), M)
    for incs in (_grid_incs(keys), _tree_incs(keys)):
        incs = np.asarray(incs)
        se_mean = np.sqrt(DT / M)
        assert np.all(np.abs(incs.mean(0)) < 5 * se_mean)
        # variance of a sample variance of N(0, v): 2 v^2 / M
        assert np.all(np.abs(incs.var(0) - DT) < 5 * DT * np.sqrt(2.0 / M))
        # independent increments
        c = np.corrcoef(incs[:, 0], incs[:, 1])[0, 1]
        assert abs(c) < 5 / np.sqrt(M)


def _solve_endpoint(bm, mu, sigma, lam, x0):
    # A 2-D diagonal SDE: GBM (mu, sigma) in the first entry, OU (-lam x, sigma) in the second.
    drift = diffrax.ODETerm(lambda t, x, a: jnp.stack([mu * x[0], -lam * x[1]]))
    diff = diffrax.ControlTerm(
        lambda t, x, a: lx.DiagonalLinearOperator(jnp.stack([sigma * x[0], sigma + 0.0 * x[1]])),
        bm,
    )
    sol = diffrax.diffeqsolve(
        diffrax.MultiTerm(drift, diff),
        diffrax.Euler(),
        0.0,
        1.0,
        None,
        x0,
        stepsize_controller=diffrax.StepTo(ts=TS),
        max_steps=N_STEPS,
    )
    return sol.ys[-1]  # pyright: ignore


@pytest.mark.parametrize("kind", ["grid", "tree"])
def test_solved_gbm_and_ou_endpoints_match_exact_euler_moments(kind):
    mu, sigma, lam = 0.5, 0.4, 1.5
    x0 = jnp.array([1.0, 1.0])

    @jax.jit
    def ends(keys):
        def one(k):
            if kind == "grid":
                bm = GridBrownianPath(TS, (2,), key=k)
            else:
                bm = diffrax.VirtualBrownianTree(0.0, 1.0, tol=DT / 4, shape=(2,), key=k)
            return _solve_endpoint(bm, mu, sigma, lam, x0)

        return jax.vmap(one)(keys)

    x = np.asarray(ends(jr.split(jr.key(2), M)))
    # Euler-Maruyama moments are exact in closed form for these linear SDEs.
    m1 = (1 + mu * DT) ** N_STEPS
    m2 = ((1 + mu * DT) ** 2 + sigma**2 * DT) ** N_STEPS
    var_gbm = m2 - m1**2
    a = 1 - lam * DT
    mean_ou = a**N_STEPS
    var_ou = sigma**2 * DT * sum(a ** (2 * k) for k in range(N_STEPS))
    assert abs(x[:, 0].mean() - m1) < 5 * np.sqrt(var_gbm / M)
    assert abs(x[:, 1].mean() - mean_ou) < 5 * np.sqrt(var_ou / M)
    assert abs(x[:, 1].var() - var_ou) < 5 * var_ou * np.sqrt(2.0 / M)
    assert abs(x[:, 0].var() - var_gbm) < 0.15 * var_gbm  # heavier tails: looser
    # and the continuous-time values are close for this step (sanity of the scale)
    assert abs(m1 - np.exp(mu)) < 0.05


def test_gradients_flow_through_solve_with_grid_path():
    key = jr.key(3)

    @jax.jit
    def loss(params):
        mu, sigma = params
        bm = GridBrownianPath(TS, (2,), key=key)
        x = _solve_endpoint(bm, mu, sigma, 1.0, jnp.array([1.0, 0.5]))
        return jnp.sum(x**2)

    p = jnp.array([0.3, 0.2])
    g = jax.grad(loss)(p)
    eps = 1e-6
    for i in range(2):
        e = jnp.zeros(2).at[i].set(eps)
        fd = (loss(p + e) - loss(p - e)) / (2 * eps)
        np.testing.assert_allclose(float(g[i]), float(fd), rtol=1e-6)

    # the reparameterised increments are differentiable too
    def loss_inc(inc):
        bm = GridBrownianPath(TS, increments=inc)
        return jnp.sum(_solve_endpoint(bm, 0.3, 0.2, 1.0, jnp.array([1.0, 0.5])) ** 2)

    inc = GridBrownianPath(TS, (2,), key=key).increments
    gi = eqx.filter_jit(jax.grad(loss_inc))(inc)
    assert gi.shape == inc.shape and bool(jnp.all(jnp.isfinite(gi)))
    assert float(jnp.max(jnp.abs(gi))) > 0


def test_unsafe_brownian_path_cannot_be_differentiated_ours_can():
    # Documents why GridBrownianPath exists (diffrax 0.7 refuses this).
    def loss(mu, bm):
        return jnp.sum(_solve_endpoint(bm, mu, 0.2, 1.0, jnp.array([1.0, 0.5])))

    unsafe = diffrax.UnsafeBrownianPath(shape=(2,), key=jr.key(0))
    with pytest.raises(Exception, match="UnsafeBrownianPath"):
        jax.grad(loss)(0.3, unsafe)
    assert np.isfinite(float(jax.grad(loss)(0.3, GridBrownianPath(TS, (2,), key=jr.key(0)))))
