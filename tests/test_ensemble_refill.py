"""The lane-refill schedule against a plain Python loop of `diffrax.diffeqsolve` calls."""

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

from scimlx import ensemble

from .test_ensemble_runner import _lv_solve


def _lv_problem(p):
    """Lotka-Volterra with rates p = (alpha, gamma), to t = 5."""

    def f(t, y, args):
        a, g = args[0], args[1]
        return jnp.stack([a * y[0] - 0.4 * y[0] * y[1], -g * y[1] + 0.1 * y[0] * y[1]])

    return ensemble.DiffEqProblem(
        diffrax.ODETerm(f), jnp.array([10.0, 5.0]), args=p, t0=0.0, t1=5.0, dt0=0.05
    )


def _lv_member(max_steps=4096):
    return ensemble.DiffEqMember(
        _lv_problem,
        diffrax.Tsit5(),
        diffrax.PIDController(rtol=1e-6, atol=1e-8),
        max_steps=max_steps,
    )


def _lv_loop(p, max_steps):
    """The reference: `diffeqsolve` written out, not through DiffEqMember."""
    return _lv_solve(p, max_steps=max_steps)


def _params(n, seed=0):
    # Rates spread 10x: step counts differ a lot between members.
    return np.exp(np.random.default_rng(seed).uniform(np.log(0.3), np.log(3.0), (n, 2)))


def _check_against_loop(sol, loop_fn, inputs, n, atol=1e-12, steps=True):
    for i in range(n):
        ref = loop_fn(jax.tree.map(lambda x: x[i], inputs))
        code, ref_code = int(sol.result._value[i]), int(ref.result._value)
        assert code == ref_code, (i, code, ref_code)
        np.testing.assert_allclose(sol.ys[i], ref.ys, rtol=1e-12, atol=atol)
        np.testing.assert_allclose(sol.ts[i], ref.ts, rtol=1e-14, atol=0.0)
        for k in ("num_steps", "num_accepted_steps", "num_rejected_steps") if steps else ():
            assert int(sol.stats[k][i]) == int(ref.stats[k]), (i, k)


@pytest.mark.parametrize("lanes, fraction", [(3, 1 / 16), (4, 0.5), (64, 1 / 16)])
def test_ode_matches_diffeqsolve_loop(lanes, fraction):
    n = 13
    ps = _params(n)
    sol = ensemble.refill_solve(_lv_member(), ps, lanes=lanes, refill_fraction=fraction)
    loop = jax.jit(lambda p: _lv_loop(p, 4096))
    _check_against_loop(sol, loop, ps, n)
    steps = np.asarray(sol.stats["num_steps"])
    assert steps.max() > 2 * steps.min()  # the members really differ in cost
    assert np.all(np.asarray(sol.result._value) == 0)


def test_max_steps_and_nonfinite_reported_per_member():
    n = 9
    ps = _params(n, seed=1)
    ps[2, 0] = np.nan  # a NaN vector field: every step rejected until max_steps
    max_steps = 60  # some members need more, some fewer
    sol = ensemble.refill_solve(_lv_member(max_steps), ps, lanes=2)
    loop = jax.jit(lambda p: _lv_loop(p, max_steps))
    _check_against_loop(sol, loop, ps, n)
    codes = np.asarray(sol.result._value)
    max_code = int(diffrax.RESULTS.max_steps_reached._value)
    assert codes[2] == max_code
    assert 0 < np.sum(codes == max_code) < n and np.sum(codes == 0) > 0


def _sde_problem(member):
    """Geometric Brownian motion dX = mu X dt + 0.3 X dW (Stratonovich), a Brownian tree
    per member's key: solved with adaptive steps."""
    mu, key = member["mu"], member["key"]
    bm = diffrax.VirtualBrownianTree(0.0, 1.0, tol=1e-4, shape=(), key=key)
    terms = diffrax.MultiTerm(
        diffrax.ODETerm(lambda t, y, args: mu * y),
        diffrax.ControlTerm(lambda t, y, args: 0.3 * y, bm),
    )
    return ensemble.DiffEqProblem(terms, jnp.array(1.0), t0=0.0, t1=1.0, dt0=0.05)


def test_adaptive_sde_matches_loop():
    n = 7
    inputs = {"mu": jnp.linspace(-0.5, 1.0, n), "key": jr.split(jr.key(3), n)}
    member = ensemble.DiffEqMember(
        _sde_problem, diffrax.Heun(), diffrax.PIDController(rtol=1e-3, atol=1e-4), max_steps=512
    )
    sol = ensemble.refill_solve(member, inputs, lanes=3)
    # Against the per-member loop: same codes, values within 1e-4 (the Brownian tree's
    # tolerance). `jax.vmap(diffeqsolve)` itself departs from the loop as much (up to
    # 3e-5 here, with different step counts: batched Brownian-tree evaluations differ in
    # the last bits and the step-size control amplifies that); against it the refill is
    # exact, steps included.
    _check_against_loop(sol, jax.jit(member), inputs, n, atol=1e-4, steps=False)
    by_vmap = jax.vmap(member)(inputs)
    np.testing.assert_allclose(sol.ys, by_vmap.ys, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(sol.stats["num_steps"], by_vmap.stats["num_steps"])
    assert len(set(np.asarray(sol.stats["num_steps"]).tolist())) > 1


def test_runner_refill_matches_vmap_schedule(tmp_path):
    n = 23
    ps = _params(n, seed=2)
    ps[7, 1] = np.nan
    member = _lv_member()
    final = lambda sol: sol.ys[-1]  # noqa: E731
    reducers = {
        "mean": ensemble.Mean(of=final),
        "std": ensemble.Std(of=final),
        "max": ensemble.Max(of=final),
        "q": ensemble.Quantiles([0.1, 0.5, 0.9], of=final),
    }
    kw = dict(reducers=reducers, progress=False, chunk_size=8)
    by_vmap = ensemble.run_ensemble(member, ps, schedule=ensemble.VmapSchedule(), **kw)
    by_refill = ensemble.run_ensemble(
        member,
        ps,
        schedule=ensemble.RefillSchedule(lanes=3),
        store=ensemble.Store(tmp_path / "s", save=lambda s: s.stats["num_steps"]),
        **kw,
    )
    assert by_refill.failures == by_vmap.failures == {"max_steps_reached": 1}
    assert by_refill.n_successful == by_vmap.n_successful == n - 1
    for k in reducers:
        np.testing.assert_allclose(by_refill.stats[k], by_vmap.stats[k], rtol=1e-12, atol=1e-12)
    # Per-member outputs come back in member order, padding excluded.
    (steps,), codes = ensemble.load_outputs(tmp_path / "s")
    loop = jax.jit(lambda p: _lv_loop(p, 4096))
    refs = [loop(p) for p in ps]
    assert steps.tolist() == [int(r.stats["num_steps"]) for r in refs]
    assert codes.tolist() == [int(r.result._value) for r in refs]
    # Resume: the refill study's store gives the same statistics without recomputing.
    again = ensemble.run_ensemble(
        member,
        ps,
        schedule=ensemble.RefillSchedule(lanes=3),
        store=ensemble.Store(tmp_path / "s"),
        **kw,
    )
    assert again.computed_chunks == 0
    for k in reducers:
        np.testing.assert_array_equal(again.stats[k], by_refill.stats[k])


def test_refill_bad_arguments():
    with pytest.raises(TypeError, match="DiffEqMember"):
        ensemble.run_ensemble(
            lambda p: p,
            np.ones((4, 2)),
            reducers={"m": ensemble.Mean()},
            schedule=ensemble.RefillSchedule(),
        )
    with pytest.raises(TypeError, match="schedule"):
        ensemble.run_ensemble(
            _lv_member(), _params(4), reducers={"m": ensemble.Mean()}, schedule="fast"
        )
    with pytest.raises(ValueError, match="AutoSharding"):
        ensemble.run_ensemble(
            _lv_member(), _params(4), reducers={}, strategy=ensemble.AutoSharding()
        )
    with pytest.raises(ValueError, match="lanes"):
        ensemble.refill_solve(_lv_member(), _params(4), lanes=0)
    with pytest.raises(ValueError, match="max_steps"):
        ensemble.DiffEqMember(_lv_problem, diffrax.Tsit5(), max_steps=0)


def _lv_t1_problem(m):
    """Lotka-Volterra with a per-member end time (one member has t1 == t0)."""
    return ensemble.DiffEqProblem(
        _lv_problem(m["p"]).terms, jnp.array([10.0, 5.0]), args=m["p"], t0=0.0, t1=m["t1"], dt0=0.05
    )


def test_per_member_t1_and_jumps_match_loop():
    # ClipStepSizeController with jump_ts makes `made_jump` a traced value (the FSAL
    # re-evaluation path); per-member t1 includes t1 == t0 (no step at all).
    n = 6
    inputs = {"p": _params(n, seed=4), "t1": np.linspace(0.0, 4.0, n)}
    controller = diffrax.ClipStepSizeController(
        diffrax.PIDController(rtol=1e-6, atol=1e-8), jump_ts=jnp.array([1.5, 2.5])
    )
    member = ensemble.DiffEqMember(_lv_t1_problem, diffrax.Tsit5(), controller, max_steps=4096)
    sol = ensemble.refill_solve(member, inputs, lanes=2)
    _check_against_loop(sol, eqx.filter_jit(member), inputs, n)
    assert int(sol.stats["num_steps"][0]) == 0


def test_implicit_solver_matches_loop():
    # Stiff relaxation y' = -k (y - cos t), k up to 1e3: Kvaerno3, whose root finder takes
    # the controller's tolerances (as in diffeqsolve).
    def problem(k):
        field = lambda t, y, args: -args * (y - jnp.cos(t))  # noqa: E731
        return ensemble.DiffEqProblem(diffrax.ODETerm(field), jnp.array([0.0]), k, 0.0, 2.0, 0.01)

    member = ensemble.DiffEqMember(
        problem, diffrax.Kvaerno3(), diffrax.PIDController(rtol=1e-5, atol=1e-7), max_steps=2048
    )
    ks = jnp.array([1.0, 30.0, 1000.0])
    sol = ensemble.refill_solve(member, ks, lanes=2)
    # Newton iterations converge to the last bits differently when batched: 1e-10.
    loop = jax.jit(member)
    for i in range(3):
        ref = loop(ks[i])
        np.testing.assert_allclose(sol.ys[i], ref.ys, rtol=1e-10, atol=1e-12)
        assert int(sol.stats["num_steps"][i]) == int(ref.stats["num_steps"])
        assert int(sol.result._value[i]) == int(ref.result._value) == 0


def test_backward_time_is_refused():
    inputs = {"p": _params(2), "t1": np.array([1.0, -1.0])}
    member = ensemble.DiffEqMember(_lv_t1_problem, diffrax.Tsit5(), diffrax.ConstantStepSize())
    with pytest.raises(Exception, match="t1 >= t0"):
        ensemble.refill_solve(member, inputs, lanes=2)


def test_runner_fixed_step_sde_member_matches_loop():
    # An UnsafeBrownianPath needs a non-checkpointing adjoint for the diffeqsolve call
    # the runner probes (and `schedule="vmap"` runs): DiffEqMember.adjoint.
    def problem(m):
        bm = diffrax.UnsafeBrownianPath(shape=(), key=m["key"])
        terms = diffrax.MultiTerm(
            diffrax.ODETerm(lambda t, y, args: args * y),
            diffrax.ControlTerm(lambda t, y, args: 0.3 * y, bm),
        )
        return ensemble.DiffEqProblem(terms, jnp.array(1.0), m["mu"], 0.0, 1.0, 0.1)

    member = ensemble.DiffEqMember(
        problem, diffrax.Euler(), max_steps=16, adjoint=diffrax.DirectAdjoint()
    )
    n = 10
    inputs = {"mu": jnp.linspace(0.0, 0.5, n), "key": jr.split(jr.key(5), n)}
    final = lambda sol: sol.ys[-1]  # noqa: E731
    reducers = {"mean": ensemble.Mean(of=final), "var": ensemble.Variance(of=final)}
    res = ensemble.run_ensemble(
        member, inputs, reducers=reducers, chunk_size=4, schedule=ensemble.RefillSchedule(lanes=3)
    )
    loop = eqx.filter_jit(lambda m: member(m).ys[-1])
    values = np.stack([np.asarray(loop(jax.tree.map(lambda x: x[i], inputs))) for i in range(n)])
    np.testing.assert_allclose(res.stats["mean"], values.mean(0), rtol=1e-12)
    np.testing.assert_allclose(res.stats["var"], values.var(0), rtol=1e-10)
    assert res.n_successful == n
