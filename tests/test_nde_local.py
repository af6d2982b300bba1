"""Local error-estimate regulariser: independent recomputation and adjoint invariance."""

import diffrax as dfx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import scimlx.nde as nde


CTRL = dfx.PIDController(rtol=1e-6, atol=1e-6)


def _vf(t, y, args):
    return -args * y**3 + jnp.sin(3.0 * t)


def _solve(a, reg, adjoint, key):
    return nde.regularised_diffeqsolve(
        dfx.ODETerm(_vf),
        dfx.Tsit5(),
        0.0,
        1.0,
        0.05,
        jnp.array([1.0, -0.5]),
        a,
        regularisers=(reg,),
        stepsize_controller=CTRL,
        adjoint=adjoint,
        key=key,
        max_steps=64,
    )


@pytest.mark.parametrize("sampling,step_size", [("unbiased", "solver"), ("biased", "initial")])
def test_local_same_value_and_gradient_under_backsolve(sampling, step_size, getkey):
    reg = nde.LocalErrorEstimate(weight=1.0, sampling=sampling, step_size=step_size)
    key = getkey()

    def loss(a, adjoint):
        sol = _solve(a, reg, adjoint, key)
        return jnp.sum(sol.ys[-1] ** 2) + 1e3 * sol.penalty

    a = jnp.asarray(2.0)
    v1, g1 = jax.value_and_grad(loss)(a, dfx.RecursiveCheckpointAdjoint())
    v2, g2 = jax.value_and_grad(loss)(a, dfx.BacksolveAdjoint())
    np.testing.assert_allclose(v1, v2, rtol=1e-5)
    np.testing.assert_allclose(g1, g2, rtol=1e-4)
    # and the penalty contributes to the gradient
    g0 = jax.grad(
        lambda a: jnp.sum(_solve(a, reg, dfx.RecursiveCheckpointAdjoint(), key).ys[-1] ** 2)
    )(a)
    assert abs(float(g1 - g0)) > 1e-8


def test_local_unbiased_matches_independent_step(getkey):
    """Recompute EEst*|dt| from y(t_reg) (a separate accurate solve) and one
    hand-driven Tsit5 step, with EEst evaluated in numpy."""
    a = jnp.asarray(2.0)
    sol = _solve(a, nde.LocalErrorEstimate(), dfx.RecursiveCheckpointAdjoint(), getkey())
    t_reg, dt = float(sol.stats["t_reg"]), float(sol.stats["dt_reg"])
    assert 0.0 <= t_reg <= 1.0 and dt > 0
    y_reg = dfx.diffeqsolve(
        dfx.ODETerm(_vf),
        dfx.Tsit5(),
        0.0,
        t_reg,
        0.01,
        jnp.array([1.0, -0.5]),
        a,
        stepsize_controller=dfx.PIDController(rtol=1e-12, atol=1e-12),
    ).ys[-1]
    terms = dfx.ODETerm(_vf)
    state = dfx.Tsit5().init(terms, t_reg, t_reg + dt, y_reg, a)
    y1, err, _, _, _ = dfx.Tsit5().step(terms, t_reg, t_reg + dt, y_reg, a, state, False)
    y0n, y1n, en = map(np.asarray, (y_reg, y1, err))
    scale = 1e-6 + np.maximum(np.abs(y0n), np.abs(y1n)) * 1e-6
    ref = np.sqrt(np.mean((en / scale) ** 2)) * dt
    np.testing.assert_allclose(sol.components["local_error"], ref, rtol=1e-3)
    assert int(sol.stats["nfe_regulariser"]) == 8


def test_biased_reservoir_is_uniform_over_accepted_steps():
    """Sampled step start times over many keys: each accepted step is hit ~1/n."""
    terms = dfx.ODETerm(lambda t, y, args: -y)
    steps = dfx.diffeqsolve(
        terms,
        dfx.Tsit5(),
        0.0,
        1.0,
        0.05,
        jnp.ones(1),
        stepsize_controller=CTRL,
        saveat=dfx.SaveAt(steps=True),
        max_steps=64,
    )
    n = int(steps.stats["num_accepted_steps"])
    starts = np.concatenate([[0.0], np.asarray(steps.ts[: n - 1])])

    @jax.jit
    @jax.vmap
    def sample(key):
        solver = nde.StepSamplerSolver(dfx.Tsit5(), "biased", jnp.asarray(0.0), key)
        sol = dfx.diffeqsolve(
            terms,
            solver,
            0.0,
            1.0,
            0.05,
            jnp.ones(1),
            stepsize_controller=CTRL,
            saveat=dfx.SaveAt(t1=True, solver_state=True),
            max_steps=64,
        )
        return sol.solver_state[2]

    t = np.asarray(sample(jax.random.split(jax.random.key(0), 4000)))
    idx = np.argmin(np.abs(t[:, None] - starts[None, :]), axis=1)
    assert np.allclose(t, starts[idx])
    freq = np.bincount(idx, minlength=n) / len(t)
    assert np.all(np.abs(freq - 1 / n) < 5 * np.sqrt((1 / n) / len(t)))
