"""scimlx.ensemble.run_ensemble against plain Python loops over members."""

import diffrax
import jax
import jax.numpy as jnp
import jax.random as jr
import lineax as lx
import numpy as np
import pytest

import scimlx
from scimlx import ensemble


def _lv_solve(p, *, max_steps=4096):
    """Lotka-Volterra with rates p = (alpha, gamma); the state at t = 5."""
    alpha, gamma = p[0], p[1]

    def f(t, y, args):
        return jnp.stack([alpha * y[0] - 0.4 * y[0] * y[1], -gamma * y[1] + 0.1 * y[0] * y[1]])

    return diffrax.diffeqsolve(
        diffrax.ODETerm(f),
        diffrax.Tsit5(),
        0.0,
        5.0,
        0.05,
        jnp.array([10.0, 5.0]),
        stepsize_controller=diffrax.PIDController(rtol=1e-6, atol=1e-8),
        saveat=diffrax.SaveAt(t1=True),
        max_steps=max_steps,
        throw=False,
    )


def _final(sol):
    return sol.ys[-1]


def _ode_params(n, seed=0):
    return np.random.default_rng(seed).uniform(0.5, 1.5, (n, 2))


_lv_jit = jax.jit(_lv_solve)


def _loop_values(fn, inputs, n):
    """The plain Python loop: one (jitted) call per member."""
    return np.stack([np.asarray(fn(jax.tree.map(lambda x: x[i], inputs))) for i in range(n)])


def _reducers(of):
    return {
        "mean": ensemble.Mean(of=of),
        "var": ensemble.Variance(of=of),
        "std": ensemble.Std(of=of, ddof=1),
        "min": ensemble.Min(of=of),
        "max": ensemble.Max(of=of),
        "q": ensemble.Quantiles([0.0, 0.1, 0.5, 0.9, 1.0], of=of),
    }


def _check_stats(stats, values, rtol=1e-10, atol=1e-12):
    np.testing.assert_allclose(stats["mean"], values.mean(0), rtol=rtol, atol=atol)
    np.testing.assert_allclose(stats["var"], values.var(0), rtol=rtol, atol=atol)
    np.testing.assert_allclose(stats["std"], values.std(0, ddof=1), rtol=rtol, atol=atol)
    np.testing.assert_allclose(stats["min"], values.min(0), rtol=rtol, atol=atol)
    np.testing.assert_allclose(stats["max"], values.max(0), rtol=rtol, atol=atol)
    np.testing.assert_allclose(
        stats["q"], np.quantile(values, [0.0, 0.1, 0.5, 0.9, 1.0], axis=0), rtol=rtol, atol=atol
    )


@pytest.mark.parametrize("chunk_size", [None, 4])
def test_ode_matches_loop(chunk_size):
    n = 11
    ps = _ode_params(n)
    res = ensemble.run_ensemble(
        _lv_solve, ps, reducers=_reducers(_final), chunk_size=chunk_size, progress=False
    )
    values = _loop_values(lambda p: _lv_jit(p).ys[-1], ps, n)
    _check_stats(res.stats, values)
    assert res.n_members == n and res.n_successful == n and res.failures == {}
    assert res.n_chunks == (1 if chunk_size is None else 3)


def _sde_path(member):
    """Geometric Brownian motion dX = mu X dt + sigma X dW, Euler, fixed key per member."""
    mu, key = member["mu"], member["key"]
    sigma = 0.3
    bm = diffrax.UnsafeBrownianPath(shape=(), key=key)
    terms = diffrax.MultiTerm(
        diffrax.ODETerm(lambda t, y, args: mu * y),
        diffrax.ControlTerm(lambda t, y, args: sigma * y, bm),
    )
    return diffrax.diffeqsolve(
        terms,
        diffrax.Euler(),
        0.0,
        1.0,
        0.1,
        jnp.array(1.0),
        saveat=diffrax.SaveAt(ts=jnp.array([0.5, 1.0])),
        adjoint=diffrax.DirectAdjoint(),
        max_steps=16,
        throw=False,
    )


@pytest.mark.parametrize("chunk_size", [None, 5])
def test_sde_matches_loop(chunk_size):
    n = 12
    inputs = {"mu": jnp.linspace(0.0, 0.5, n), "key": jr.split(jr.key(3), n)}
    res = ensemble.run_ensemble(
        _sde_path,
        inputs,
        reducers=_reducers(lambda s: s.ys),
        chunk_size=chunk_size,
        progress=False,
    )
    sde_jit = jax.jit(lambda m: _sde_path(m).ys)
    values = _loop_values(sde_jit, inputs, n)
    assert values.shape == (n, 2)
    _check_stats(res.stats, values)


def _linear_member(member):
    """A tridiagonal SPD system per member, solved by lineax CG."""
    a, b = member["a"], member["b"]
    m = b.shape[0]
    matrix = (
        jnp.diag(jnp.full((m,), 2.0 + a))
        - jnp.diag(jnp.ones(m - 1), 1)
        - jnp.diag(jnp.ones(m - 1), -1)
    )
    op = lx.MatrixLinearOperator(matrix, lx.positive_semidefinite_tag)
    return lx.linear_solve(op, b, lx.CG(rtol=1e-12, atol=1e-12), throw=False)


@pytest.mark.parametrize("chunk_size", [None, 3])
def test_linear_solve_matches_loop(chunk_size):
    n, m = 7, 6
    rng = np.random.default_rng(1)
    inputs = {"a": rng.uniform(0.1, 1.0, n), "b": rng.normal(size=(n, m))}
    res = ensemble.run_ensemble(
        _linear_member,
        inputs,
        reducers=_reducers(lambda s: s.value),
        chunk_size=chunk_size,
        progress=False,
    )
    # Independent reference: a dense NumPy solve per member.
    values = []
    for i in range(n):
        mat = np.diag(np.full(m, 2.0 + inputs["a"][i])) - np.eye(m, k=1) - np.eye(m, k=-1)
        values.append(np.linalg.solve(mat, inputs["b"][i]))
    _check_stats(res.stats, np.stack(values), rtol=1e-8, atol=1e-10)
    assert res.failures == {}


def test_failures_are_counted_and_excluded():
    # max_steps=40 is too few for the members with fast rates; one NaN rate too.
    n = 9
    ps = _ode_params(n, seed=2)
    ps[:3] *= 4.0
    ps[4, 0] = np.nan
    fn = jax.jit(lambda p: _lv_solve(p, max_steps=40))
    loop = [fn(p) for p in ps]
    ok = [i for i in range(n) if loop[i].result == diffrax.RESULTS.successful]
    assert 0 < len(ok) < n - 1 and 4 not in ok
    res = ensemble.run_ensemble(
        lambda p: _lv_solve(p, max_steps=40),
        ps,
        reducers=_reducers(_final),
        chunk_size=4,
        progress=False,
    )
    _check_stats(res.stats, np.stack([np.asarray(loop[i].ys[-1]) for i in ok]))
    assert res.n_successful == len(ok)
    assert sum(res.failures.values()) == n - len(ok)
    assert res.failures["max_steps_reached"] >= n - len(ok) - 1


def test_nonfinite_success_is_a_failure():
    x = np.array([1.0, 2.0, -1.0, 4.0])
    res = ensemble.run_ensemble(
        lambda v: jnp.sqrt(v), x, reducers={"mean": ensemble.Mean()}, chunk_size=3, progress=False
    )
    assert res.failures == {"nonfinite": 1}
    np.testing.assert_allclose(res.stats["mean"], np.mean(np.sqrt([1.0, 2.0, 4.0])), rtol=1e-14)


def test_result_codes_from_user_function():
    x = np.arange(10.0)

    def fn(v):
        return {
            "v": v,
            "r": scimlx.RESULTS.where(v > 6.5, scimlx.RESULTS.singular, scimlx.RESULTS.successful),
        }

    res = ensemble.run_ensemble(
        fn,
        x,
        reducers={"max": ensemble.Max(of=lambda o: o["v"])},
        result=lambda o: o["r"],
        chunk_size=4,
        progress=False,
    )
    assert res.failures == {"singular": 3}
    assert float(res.stats["max"]) == 6.0


def test_histogram_quantiles_error_bound():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(3001, 2))
    qs = [0.01, 0.25, 0.5, 0.75, 0.99]
    bins = 400
    res = ensemble.run_ensemble(
        lambda v: v,
        x,
        reducers={"q": ensemble.Quantiles(qs, range=(-2.0, 2.0), bins=bins)},
        chunk_size=500,
        progress=False,
    )
    ref = np.quantile(x, qs, axis=0, method="inverted_cdf")
    inside = (ref > -2.0) & (ref < 2.0)
    err = np.abs(res.stats["q"] - ref)
    assert np.all(err[inside] <= 4.0 / bins + 1e-12)
    # Outside the range (the 1% tails here): within the observed min/max.
    assert np.all(res.stats["q"] >= x.min(0)) and np.all(res.stats["q"] <= x.max(0))


def test_generator_inputs_match_array_inputs():
    x = np.random.default_rng(0).normal(size=(23, 3))

    def gen():
        for s in range(0, 23, 8):
            yield x[s : s + 8]

    reds = {"mean": ensemble.Mean(), "var": ensemble.Variance(), "max": ensemble.Max()}
    a = ensemble.run_ensemble(lambda v: jnp.sin(v), gen(), reducers=reds, progress=False, total=23)
    b = ensemble.run_ensemble(lambda v: jnp.sin(v), x, reducers=reds, chunk_size=8, progress=False)
    assert a.n_members == 23 and a.n_chunks == 3
    for k in reds:
        np.testing.assert_array_equal(a.stats[k], b.stats[k])


@pytest.mark.parametrize("estimate", ["array", "pilot"])
def test_ordering_matches_and_outputs_keep_member_order(tmp_path, estimate):
    x = np.random.default_rng(4).normal(size=(19, 3))

    def fn(v):
        return jnp.cos(v) * v[0]

    if estimate == "array":
        order_by = np.abs(x).sum(1)  # a user estimate of each member's cost
    else:
        order_by = lambda v: jnp.abs(v[1])  # noqa: E731  a cheap pilot function
    reds = {"mean": ensemble.Mean(), "var": ensemble.Variance(), "q": ensemble.Quantiles([0.3])}
    res = ensemble.run_ensemble(
        fn,
        x,
        reducers=reds,
        chunk_size=4,
        order_by=order_by,
        store=ensemble.Store(tmp_path / "s", save=True),
        progress=False,
    )
    values = np.asarray(jax.vmap(fn)(x))
    np.testing.assert_allclose(res.stats["mean"], values.mean(0), rtol=1e-12)
    np.testing.assert_allclose(res.stats["var"], values.var(0), rtol=1e-12)
    np.testing.assert_allclose(res.stats["q"], np.quantile(values, [0.3], axis=0), rtol=1e-12)
    leaves, codes = ensemble.load_outputs(tmp_path / "s")
    np.testing.assert_allclose(leaves[0], values, rtol=1e-14)
    assert np.all(codes == 0)


def test_kill_and_resume_gives_identical_statistics(tmp_path):
    x = np.random.default_rng(7).normal(size=(50, 2))
    reds = {
        "mean": ensemble.Mean(),
        "var": ensemble.Variance(),
        "q": ensemble.Quantiles([0.2, 0.8]),
        "h": ensemble.Quantiles([0.5], range=(-3.0, 3.0), bins=64),
    }

    def fn(v):
        return jnp.tanh(v) * v[::-1]

    full = ensemble.run_ensemble(fn, x, reducers=reds, chunk_size=7, progress=False)

    class Killed(Exception):
        pass

    def kill_after_three(i):
        if i == 2:
            raise Killed

    store = tmp_path / "study"
    with pytest.raises(Killed):
        ensemble.run_ensemble(
            fn,
            x,
            reducers=reds,
            chunk_size=7,
            store=ensemble.Store(store, save=True),
            on_chunk=kill_after_three,
            progress=False,
        )
    assert len(list((store / "chunks").glob("stats_*.npz"))) == 3
    seen = []
    resumed = ensemble.run_ensemble(
        fn,
        x,
        reducers=reds,
        chunk_size=7,
        store=ensemble.Store(store, save=True),
        on_chunk=seen.append,
        progress=False,
    )
    assert seen == [3, 4, 5, 6, 7]
    assert resumed.computed_chunks == 5 and resumed.n_chunks == 8
    for k in reds:
        np.testing.assert_array_equal(resumed.stats[k], full.stats[k])
    # A third run recomputes nothing and still agrees; outputs hold every member.
    again = ensemble.run_ensemble(
        fn, x, reducers=reds, chunk_size=7, store=ensemble.Store(store, save=True), progress=False
    )
    assert again.computed_chunks == 0
    for k in reds:
        np.testing.assert_array_equal(again.stats[k], full.stats[k])
    leaves, _ = ensemble.load_outputs(store)
    np.testing.assert_allclose(leaves[0], np.asarray(jax.vmap(fn)(x)), rtol=1e-14)
    # A store of another study is refused.
    with pytest.raises(ValueError, match="different study"):
        ensemble.run_ensemble(
            fn, x, reducers=reds, chunk_size=5, store=ensemble.Store(store), progress=False
        )


def test_memory_budget_picks_chunk_size():
    x = np.zeros((5000, 64))

    def fn(v):
        return jnp.outer(v, v).sum(0)

    small = ensemble.chunk_size_for_budget(fn, x, 2**20)
    large = ensemble.chunk_size_for_budget(fn, x, 2**24)
    assert 1 <= small < large
    res = ensemble.run_ensemble(
        fn, x[:300], reducers={"m": ensemble.Mean()}, memory_budget=2**18, progress=False
    )
    assert res.chunk_size < 300 and res.n_chunks == -(-300 // res.chunk_size)
    np.testing.assert_array_equal(res.stats["m"], np.zeros(64))


def test_bad_arguments():
    x = np.zeros((4, 2))
    with pytest.raises(ValueError, match="chunk_size"):
        ensemble.run_ensemble(lambda v: v, x, reducers={}, chunk_size=0)
    # (A TypeError from the runtime shape check where jaxtyping is on, as in this suite.)
    with pytest.raises((ValueError, TypeError)):
        ensemble.run_ensemble(lambda v: v, {"a": x, "b": np.zeros(3)}, reducers={})
    with pytest.raises(ValueError, match="range"):
        ensemble.run_ensemble(
            lambda v: v, x, reducers={"q": ensemble.Quantiles([0.5], max_exact=3)}
        )
    with pytest.raises(ValueError, match="qs"):
        ensemble.Quantiles([1.5])
    with pytest.raises(ValueError, match="total"):
        ensemble.run_ensemble(lambda v: v, x, reducers={}, total=4)
    with pytest.raises(ValueError, match="memory_budget"):
        ensemble.run_ensemble(lambda v: v, x, reducers={}, chunk_size=2, memory_budget=2**20)
    with pytest.raises(TypeError, match="store"):
        ensemble.run_ensemble(lambda v: v, x, reducers={}, store="folder")  # pyright: ignore
    with pytest.raises(TypeError, match="strategy"):
        ensemble.run_ensemble(lambda v: v, x, reducers={}, strategy="auto")  # pyright: ignore


def test_progress_bar_reports_members(capsys, monkeypatch):
    monkeypatch.setenv("SCIMLX_PROGRESS", "1")
    x = np.arange(12.0)
    ensemble.run_ensemble(lambda v: v * 2.0, x, reducers={"m": ensemble.Mean()}, chunk_size=5)
    err = capsys.readouterr().err
    assert "12/12" in err and "members/s" in err
