"""Every regulariser under jit, vmap and grad; analytic checks of the integral ones;
NFE accounting against counted vector-field calls."""

import diffrax as dfx
import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np
import pytest

import scimlx.nde as nde


CTRL = dfx.PIDController(rtol=1e-7, atol=1e-9)
Y0 = jnp.array([1.0, -0.5])
T1 = 1.0


def _solve(a, regs, key):
    return nde.regularised_diffeqsolve(
        dfx.ODETerm(lambda t, y, args: -args * y),
        dfx.Tsit5(),
        0.0,
        T1,
        0.05,
        Y0,
        a,
        regularisers=regs,
        stepsize_controller=CTRL,
        key=key,
        max_steps=256,
    )


# Each solve combines several regularisers (one of each kind at most) to keep the
# number of compilations small; every regulariser appears once.
REGS = {
    "error+stiffness+taynode": (
        nde.GlobalErrorEstimate(weight=10.0),
        nde.GlobalStiffness(aggregation="max"),
        nde.TaylorRegulariser(order=2),
    ),
    "local_unbiased+steer+rnode": (
        nde.LocalErrorEstimate(),
        nde.RandomEndTime(half_width=0.5),
        nde.KineticJacobian(weight_kinetic=1.0, weight_jacobian=0.5),
    ),
    "local_biased": (nde.LocalErrorEstimate(sampling="biased"),),
}


@pytest.mark.parametrize("name", list(REGS))
def test_regulariser_jit_vmap_grad(name, getkey):
    regs = REGS[name]
    key = getkey()

    def loss(a):
        sol = _solve(a, regs, key)
        return jnp.sum(sol.ys[-1] ** 2) + sol.penalty, sol

    a_s = jnp.array([0.7, 1.3])
    (vals, sols), grads = jax.jit(jax.vmap(jax.value_and_grad(loss, has_aux=True)))(a_s)
    assert np.all(np.isfinite(vals)) and np.all(np.isfinite(grads))
    if name == "local_biased":
        single, _ = jax.jit(loss)(a_s[1])
        np.testing.assert_allclose(vals[1], single, rtol=1e-9)
    # the solution itself is right: y(t1) = y0 exp(-a t1)
    t1 = np.asarray(sols.stats["t1"])
    exact = np.asarray(Y0)[None] * np.exp(-np.asarray(a_s) * t1)[:, None]
    np.testing.assert_allclose(sols.ys[:, -1], exact, rtol=1e-5)
    assert np.all(np.asarray(list(sols.components.values())) > 0)
    a = np.asarray(a_s)
    if "steer" in name:
        assert np.all((t1 >= 0.5) & (t1 <= 1.5))
        assert not np.all(t1 == T1)
    else:
        assert np.all(t1 == T1)
    if "rnode" in name:
        kin = a * float(Y0 @ Y0) * (1 - np.exp(-2 * a * t1)) / 2
        np.testing.assert_allclose(sols.components["kinetic"], kin, rtol=1e-5)
        # Hutchinson with one fixed probe eps: |eps^T J|^2 = a^2 |eps|^2.
        eps2 = np.asarray(sols.components["jacobian"]) / (a**2 * t1)
        np.testing.assert_allclose(eps2[0], eps2[1], rtol=1e-6)
    if "taynode" in name:
        ref = a**4 * float(Y0 @ Y0) * (1 - np.exp(-2 * a * t1)) / (2 * a)
        np.testing.assert_allclose(sols.components["taylor"], ref, rtol=1e-5)


def _count(fn):
    count = [0]

    def cb():
        count[0] += 1

    def wrapped(t, y, args):
        jax.debug.callback(cb, ordered=False)
        return fn(t, y, args)

    return wrapped, count


@pytest.mark.parametrize(
    "solver,sde",
    [
        (dfx.Tsit5(), False),
        (dfx.Dopri5(), False),
        (dfx.HalfSolver(dfx.Heun()), False),
        (dfx.SPaRK(), True),
        (dfx.Heun(), True),
    ],
)
def test_nfe_matches_counted_calls(solver, sde):
    drift, nd = _count(lambda t, y, args: -(y**3) + jnp.sin(10.0 * t))
    diff, ng = _count(lambda t, y, args: lx.DiagonalLinearOperator(0.3 * jnp.ones_like(y)))
    if sde:
        bm = dfx.VirtualBrownianTree(
            0.0, 1.0, tol=1e-2, shape=(2,), key=jax.random.key(0), levy_area=dfx.SpaceTimeLevyArea
        )
        terms = dfx.MultiTerm(dfx.ODETerm(drift), dfx.ControlTerm(diff, bm))
    else:
        terms = dfx.ODETerm(drift)
    problem = (terms, solver, 0.0, 1.0, 0.3, jnp.ones(2))
    control = dict(stepsize_controller=dfx.PIDController(rtol=1e-3, atol=1e-3), max_steps=256)
    sol = nde.regularised_diffeqsolve(
        *problem, regularisers=(nde.GlobalErrorEstimate(),), **control
    )
    jax.effects_barrier()
    assert int(sol.stats["nfe"]) == nd[0]
    if sde:
        assert int(sol.stats["nfe_diffusion"]) == ng[0]
        return
    # the regulariser observes the solver's heuristics and must not change its steps: the
    # accepted/rejected counts are those of the plain diffrax solve (ODEs; for SDEs the
    # regularised solve takes half the plain solve's accepted steps on this problem)
    ref = dfx.diffeqsolve(*problem, **control)
    for k in ("num_accepted_steps", "num_rejected_steps"):
        assert int(sol.stats[k]) == int(ref.stats[k]), k


def test_nfe_of_local_step_counted(getkey):
    drift, nd = _count(lambda t, y, args: -(y**3))
    sol = nde.regularised_diffeqsolve(
        dfx.ODETerm(drift),
        dfx.Tsit5(),
        0.0,
        1.0,
        0.3,
        jnp.ones(2),
        stepsize_controller=dfx.PIDController(rtol=1e-5, atol=1e-5),
        regularisers=(nde.LocalErrorEstimate(),),
        key=getkey(),
        max_steps=256,
    )
    jax.effects_barrier()
    assert int(sol.stats["nfe"]) + int(sol.stats["nfe_regulariser"]) == nd[0]
