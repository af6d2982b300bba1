"""Global error-estimate and stiffness regularisers against hand-written references."""

import diffrax as dfx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import scimlx.nde as nde


def _vf(t, y, args):
    return -args * y**3 + jnp.sin(5.0 * t) * y


def _hand_loop(solver, ctrl, t0, t1, dt0, y0, a, *, with_stiffness=False):
    """Drives diffrax's `solver.step` and `controller.adapt_step_size` by hand in Python
    and recomputes EEst (numpy) and Shampine's stiffness estimate on accepted steps."""
    terms = dfx.ODETerm(_vf)
    t, y = t0, y0
    state = solver.init(terms, t0, t0 + dt0, y0, a)
    tnext = t0 + dt0
    _, cstate = ctrl.init(terms, t0, t1, y0, dt0, a, solver.func, 5)
    r_sum, n_acc, n_rej, s_sum, s_max = 0.0, 0, 0, 0.0, 0.0
    tableau = solver.tableau
    step = jax.jit(lambda *z: solver.step(terms, *z, False))
    adapt = jax.jit(lambda *z: ctrl.adapt_step_size(*z))
    while t < t1:
        y1, yerr, dense, new_state, _ = step(t, tnext, y, a, state)
        keep, nt0, nt1, _, cstate, _ = adapt(t, tnext, y, y1, a, yerr, 5, cstate)
        if bool(keep):
            y0n, y1n, en = np.asarray(y), np.asarray(y1), np.asarray(yerr)
            scale = ctrl.atol + np.maximum(np.abs(y0n), np.abs(y1n)) * ctrl.rtol
            eest = np.sqrt(np.mean((en / scale) ** 2))
            dt = float(tnext - t)
            r_sum += eest * dt
            n_acc += 1
            if with_stiffness:
                ks = np.asarray(dense["k"])
                # g7 - g6 = y1 - (y0 + sum_l a_6l k_l)
                g6 = y0n + np.tensordot(np.asarray(tableau.a_lower[4]), ks[:5], axes=1)
                num = np.sqrt(np.mean((ks[6] - ks[5]) ** 2)) / dt
                den = np.sqrt(np.mean((y1n - g6) ** 2))
                lam = num / den
                s_sum += lam / 3.5068469938 * dt
                s_max = max(s_max, lam / 3.5068469938)
            y, state, t = y1, new_state, float(nt0)
        else:
            n_rej += 1
        tnext = float(nt1)
        if tnext > t1 - 1e-12:
            tnext = t1 if bool(keep) else t + 0.5 * (t1 - t)
    return dict(r=r_sum, n_acc=n_acc, n_rej=n_rej, s_sum=s_sum, s_max=s_max)


def test_error_estimate_matches_hand_loop():
    solver = dfx.Tsit5()
    ctrl = dfx.PIDController(rtol=1e-5, atol=1e-5)
    y0 = jnp.array([1.5, -2.0, 0.5])
    a = jnp.asarray(3.0)
    ref = _hand_loop(solver, ctrl, 0.0, 2.0, 0.5, y0, a, with_stiffness=True)
    assert ref["n_rej"] > 0  # the reference exercises rejected steps
    regs = (nde.GlobalErrorEstimate(weight=2.0), nde.GlobalStiffness())
    sol = nde.regularised_diffeqsolve(
        dfx.ODETerm(_vf),
        solver,
        0.0,
        2.0,
        0.5,
        y0,
        a,
        regularisers=regs,
        stepsize_controller=ctrl,
        saveat=dfx.SaveAt(t1=True, controller_state=True),
    )
    assert int(sol.stats["num_accepted_steps"]) == ref["n_acc"]
    assert int(sol.stats["num_rejected_steps"]) == ref["n_rej"]
    np.testing.assert_allclose(sol.components["error"], ref["r"], rtol=1e-10)
    np.testing.assert_allclose(sol.components["stiffness"], ref["s_sum"], rtol=1e-6)
    np.testing.assert_allclose(sol.penalty, 2 * ref["r"] + ref["s_sum"], rtol=1e-6)
    mean = nde.read_error_estimate(sol.solution.controller_state, "mean")
    np.testing.assert_allclose(mean, ref["r"] / ref["n_acc"], rtol=1e-10)


def test_error_estimate_gradient_vs_finite_differences():
    """AD through the wrapped controller equals central differences of the
    hand-written loop with the step sequence frozen (diffrax treats dt as constant)."""
    solver = dfx.Tsit5()
    ctrl = dfx.PIDController(rtol=1e-3, atol=1e-3)
    y0 = jnp.array([1.0, 0.5])
    # Record the accepted steps of the solve at a = 2.
    sol = dfx.diffeqsolve(
        dfx.ODETerm(_vf),
        solver,
        0.0,
        1.0,
        0.1,
        y0,
        jnp.asarray(2.0),
        stepsize_controller=ctrl,
        saveat=dfx.SaveAt(steps=True),
        max_steps=64,
    )
    n = int(sol.stats["num_accepted_steps"])
    ts = np.concatenate([[0.0], np.asarray(sol.ts[:n])])

    @jax.jit
    def frozen(a):
        terms = dfx.ODETerm(_vf)
        y, state, r = y0, solver.init(terms, 0.0, ts[1], y0, a), 0.0
        for t_a, t_b in zip(ts[:-1], ts[1:]):
            y1, e, _, state, _ = solver.step(terms, t_a, t_b, y, a, state, False)
            scale = 1e-3 + jnp.maximum(jnp.abs(y), jnp.abs(y1)) * 1e-3
            r = r + jnp.sqrt(jnp.mean((e / scale) ** 2)) * (t_b - t_a)
            y = y1
        return r

    def reg(a):
        return nde.regularised_diffeqsolve(
            dfx.ODETerm(_vf),
            solver,
            0.0,
            1.0,
            0.1,
            y0,
            a,
            regularisers=(nde.GlobalErrorEstimate(),),
            stepsize_controller=ctrl,
            max_steps=16,
        ).penalty

    a = jnp.asarray(2.0)
    h = 1e-5
    fd = (frozen(a + h) - frozen(a - h)) / (2 * h)
    np.testing.assert_allclose(reg(a), frozen(a), rtol=1e-10)
    np.testing.assert_allclose(jax.grad(reg)(a), fd, rtol=1e-5)
    np.testing.assert_allclose(
        jax.grad(
            lambda a: (
                nde.regularised_diffeqsolve(
                    dfx.ODETerm(_vf),
                    solver,
                    0.0,
                    1.0,
                    0.1,
                    y0,
                    a,
                    regularisers=(nde.GlobalErrorEstimate(),),
                    stepsize_controller=ctrl,
                    adjoint=dfx.DirectAdjoint(),
                    max_steps=16,
                ).penalty
            )
        )(a),
        fd,
        rtol=1e-5,
    )


@pytest.mark.parametrize("lam", [2.0, 50.0])
def test_stiffness_recovers_lambda(lam):
    sol = nde.regularised_diffeqsolve(
        dfx.ODETerm(lambda t, y, args: -args * y),
        dfx.Tsit5(),
        0.0,
        1.0,
        0.01,
        jnp.array([1.0, -2.0]),
        jnp.asarray(lam),
        regularisers=(nde.GlobalStiffness(aggregation="max"),),
        stepsize_controller=dfx.PIDController(rtol=1e-6, atol=1e-9),
    )
    r = nde.stability_region_size(dfx.Tsit5())
    np.testing.assert_allclose(sol.components["stiffness"] * r, lam, rtol=1e-6)


def test_stability_sizes_match_reference_values():
    # OrdinaryDiffEq.jl's alg_stability_size: Tsit5 3.5068, DP5 3.3066.
    assert abs(nde.stability_region_size(dfx.Tsit5()) - 3.5068) < 1e-4
    assert abs(nde.stability_region_size(dfx.Dopri5()) - 3.3066) < 1e-4
    with pytest.raises(ValueError, match="last two stages"):
        nde.StiffnessEstimateSolver(dfx.Bosh3())


def test_backsolve_with_global_regulariser_raises():
    with pytest.raises(ValueError, match="discrete adjoint"):
        nde.regularised_diffeqsolve(
            dfx.ODETerm(_vf),
            dfx.Tsit5(),
            0.0,
            1.0,
            0.1,
            jnp.ones(2),
            jnp.asarray(1.0),
            regularisers=(nde.GlobalErrorEstimate(),),
            stepsize_controller=dfx.PIDController(rtol=1e-4, atol=1e-4),
            adjoint=dfx.BacksolveAdjoint(),
        )


def test_rejected_and_nonfinite_steps_do_not_poison_gradients():
    """A rejected step with an infinite/NaN error (as diffrax passes it after a NaN
    stage) adds exactly zero with a finite zero gradient; an accepted one adds EEst*dt."""
    ctrl = nde.ErrorEstimateController(dfx.PIDController(rtol=1e-3, atol=1e-3))
    terms = dfx.ODETerm(lambda t, y, args: -y)
    y0 = jnp.array([1.0, 2.0])
    _, state = ctrl.init(terms, 0.0, 1.0, y0, 0.1, None, dfx.Tsit5().func, 5)

    @jax.jit
    def added(scale, bad):
        y_err = jnp.stack([jnp.asarray(bad), 1e-4 * scale])
        y1 = y0 * scale
        out = ctrl.adapt_step_size(0.0, 0.1, y0, y1, None, y_err, 5, state)
        return out[4][1], out[0]

    for bad in (jnp.inf, jnp.nan, 1e3):
        (val, keep), g = jax.value_and_grad(added, has_aux=True)(jnp.asarray(1.0), bad)
        assert not bool(keep) and val == 0 and g == 0
    (val, keep), g = jax.value_and_grad(added, has_aux=True)(jnp.asarray(1.0), 1e-4)
    assert bool(keep) and val > 0 and np.isfinite(g)


def test_error_estimate_sde():
    solver = dfx.SPaRK()
    bm = dfx.VirtualBrownianTree(
        0.0,
        1.0,
        tol=2e-2,
        shape=(2,),
        key=jax.random.key(0),
        levy_area=dfx.SpaceTimeLevyArea,
    )

    def loss(a):
        import lineax as lx

        terms = dfx.MultiTerm(
            dfx.ODETerm(lambda t, y, args: -args * y),
            dfx.ControlTerm(lambda t, y, args: lx.DiagonalLinearOperator(0.3 * y), bm),
        )
        return nde.regularised_diffeqsolve(
            terms,
            solver,
            0.0,
            1.0,
            0.05,
            jnp.array([1.0, 2.0]),
            a,
            regularisers=(nde.GlobalErrorEstimate(),),
            stepsize_controller=dfx.PIDController(rtol=5e-2, atol=5e-2),
            max_steps=64,
        ).penalty

    val, g = jax.value_and_grad(loss)(jnp.asarray(1.0))
    assert np.isfinite(val) and val > 0 and np.isfinite(g) and g != 0
