import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np
import pytest

import scimlx
import scimlx.linsolve as ls
import scimlx.neuralop as no


def test_extends_diffrax_and_lineax_codes():
    assert scimlx.RESULTS.successful == scimlx.RESULTS.successful
    for name in (
        "successful",
        "max_steps_reached",
        "singular",
        "breakdown",
        "nonfinite",
        "dt_min_reached",
        "invalid_input",
    ):
        assert hasattr(scimlx.RESULTS, name)
    # A diffrax result promotes into ours and compares equal.
    r = scimlx.RESULTS.promote(diffrax.RESULTS.max_steps_reached)
    assert r == scimlx.RESULTS.max_steps_reached
    r = scimlx.RESULTS.promote(lx.RESULTS.breakdown)
    assert r == scimlx.RESULTS.breakdown


def test_error_if_raises_message_under_jit():
    @eqx.filter_jit
    def f(x):
        result = scimlx.RESULTS.where(
            x > 0, scimlx.RESULTS.successful, scimlx.RESULTS.invalid_input
        )
        return result.error_if(x, result != scimlx.RESULTS.successful)

    assert f(jnp.array(1.0)) == 1.0
    with pytest.raises(eqx.EquinoxRuntimeError, match="documented requirements"):
        f(jnp.array(-1.0))


def test_is_successful_under_vmap():
    codes = jax.vmap(
        lambda x: scimlx.RESULTS.where(x > 0, scimlx.RESULTS.successful, scimlx.RESULTS.nonfinite)
    )(jnp.array([1.0, -1.0, 2.0]))
    ok = jax.vmap(scimlx.is_successful)(codes)
    assert ok.tolist() == [True, False, True]


def test_results_of_every_family_compare_and_report_success(getkey):
    from scimlx import nde

    node = nde.NeuralODE(nde.MLPVectorField(2, 4, key=getkey()), 2, max_steps=16)
    diffrax_result = node(jnp.ones(2)).result
    lineax_result = lx.linear_solve(lx.MatrixLinearOperator(jnp.eye(2)), jnp.ones(2)).result
    failed = diffrax.diffeqsolve(
        diffrax.ODETerm(lambda t, y, a: -y), diffrax.Tsit5(), 0.0, 1.0, 0.1, jnp.ones(2),
        max_steps=2, throw=False,
    ).result  # fmt: skip
    for ok in (diffrax_result, lineax_result, scimlx.RESULTS.successful):
        assert bool(scimlx.is_successful(ok))
        assert bool(ok == scimlx.RESULTS.successful)
        assert bool(scimlx.RESULTS.successful == ok)
        assert not bool(ok != scimlx.RESULTS.successful)
        assert not bool(ok == scimlx.RESULTS.breakdown)
    assert not bool(scimlx.is_successful(failed))
    assert bool(failed == scimlx.RESULTS.max_steps_reached)
    assert bool(scimlx.RESULTS.max_steps_reached == failed)
    assert scimlx.as_result(failed) == scimlx.RESULTS.max_steps_reached
    assert scimlx.as_result(lx.RESULTS.breakdown) == scimlx.RESULTS.breakdown
    # Under jit and vmap too.
    codes = jax.vmap(
        lambda x: diffrax.RESULTS.where(
            x > 0, diffrax.RESULTS.successful, diffrax.RESULTS.max_steps_reached
        )
    )(jnp.array([1.0, -1.0]))
    assert jax.jit(lambda c: c == scimlx.RESULTS.max_steps_reached)(codes).tolist() == [
        False,
        True,
    ]
    assert scimlx.is_successful(codes).tolist() == [True, False]
    assert scimlx.is_successful(jnp.array([0, 2])).tolist() == [True, False]
    # Enumerations outside the scimlx family keep equinox's rule.
    with pytest.raises(ValueError, match="same type"):
        _ = diffrax.RESULTS.successful == lx.RESULTS.successful
    with pytest.raises(TypeError, match="`result`"):
        scimlx.as_result(3)


def test_results_can_be_listed():
    codes = list(scimlx.RESULTS)
    assert len(codes) == len(scimlx.RESULTS) == len(diffrax.RESULTS) + 1
    assert codes[0] == scimlx.RESULTS.successful
    names = [scimlx.RESULTS[c] for c in codes]
    assert "documented requirements" in names[-1]
    assert bool(codes[1] == scimlx.RESULTS.max_steps_reached)


def test_breakdown_message_says_what_happened():
    message = scimlx.RESULTS[scimlx.RESULTS.breakdown]
    assert "non-positive curvature" in message
    assert "pcg_solve" in message and "cd_solve" in message
    # lineax's own enumeration keeps its message
    assert "non-positive curvature" not in lx.RESULTS[lx.RESULTS.breakdown]
    assert not hasattr(scimlx.RESULTS, "negative_curvature")


def test_solution_holds_value_result_stats_and_checks_result():
    sol = scimlx.Solution(
        value=jnp.ones(3), result=scimlx.RESULTS.successful, stats={"num_steps": jnp.array(4)}
    )
    assert sol.value.tolist() == [1.0, 1.0, 1.0]
    assert bool(scimlx.is_successful(sol.result))
    assert int(sol.stats["num_steps"]) == 4
    # a pytree: through jit and vmap
    batched = jax.vmap(lambda x: scimlx.Solution(x, scimlx.RESULTS.successful, {}))(jnp.ones(2))
    assert isinstance(batched, scimlx.Solution) and batched.value.shape == (2,)
    # (the runtime type checker of the tests, or the check that holds outside them)
    with pytest.raises(TypeError, match="result"):
        scimlx.Solution(jnp.ones(3), lx.RESULTS.successful, {})


def _problem():
    solid = jnp.asarray(ls.obstacle_scene((16, 16), seed=0))
    op = ls.poisson((16, 16), solid=solid)
    return op, ls.random_rhs(solid, key=jax.random.key(0))


def _direction_net():
    return ls.DCDMNet(2, channels=4, pre_pairs=1, mid_pairs=1, post_pairs=1, key=jax.random.key(0))


_SOLVES = {
    "pcg_solve": lambda op, b: ls.pcg_solve(op, b, rtol=1e-8, throw=False),
    "pcg_solve multigrid": lambda op, b: ls.pcg_solve(
        op, b, preconditioner=ls.multigrid(op), rtol=1e-8, throw=False
    ),
    "cd_solve": lambda op, b: ls.cd_solve(op, b, rtol=1e-8, throw=False),
    "dcdm_solve": lambda op, b: ls.dcdm_solve(
        op,
        b,
        _direction_net(),
        mask=(~op.solid).astype(b.dtype),
        rtol=1e-8,
        max_steps=1000,
        throw=False,
    ),
    "multigrid_solve": lambda op, b: ls.multigrid_solve(op, b, rtol=1e-8, throw=False),
    "darcy_solve": lambda op, b: no.darcy_solve(
        jnp.where(op.solid, 3.0, 12.0), rtol=1e-8, throw=False
    ),
}


@pytest.mark.parametrize("name", list(_SOLVES))
def test_every_solve_returns_a_scimlx_solution(name):
    op, b = _problem()
    sol = _SOLVES[name](op, b)
    assert type(sol) is scimlx.Solution
    assert isinstance(sol.result, scimlx.RESULTS)
    assert bool(scimlx.is_successful(sol.result))
    assert bool(sol.result == scimlx.RESULTS.successful)
    assert int(sol.stats["num_steps"]) >= 1
    assert "code" not in sol.stats
    if name != "darcy_solve":
        # checked against a direct solve
        ref = np.linalg.solve(ls.to_scipy_sparse(op).toarray(), np.asarray(b).ravel())
        np.testing.assert_allclose(np.asarray(sol.value).ravel(), ref, atol=1e-6)


@pytest.mark.parametrize("solve", [ls.pcg_solve, ls.cd_solve])
def test_non_positive_curvature_is_breakdown_in_every_conjugate_solve(solve):
    op, b = _problem()
    negated = lx.FunctionLinearOperator(
        lambda u: -op.mv(u), op.in_structure(), tags=lx.positive_semidefinite_tag
    )
    sol = solve(negated, b, throw=False)
    assert sol.result == scimlx.RESULTS.breakdown
    assert int(sol.stats["num_steps"]) == 1
    with pytest.raises(eqx.EquinoxRuntimeError, match="non-positive curvature"):
        solve(negated, b)
    # the same loops as lineax solvers report lineax's `breakdown`
    solver = (
        ls.PCG(rtol=1e-8, atol=0.0)
        if solve is ls.pcg_solve
        else ls.ConjugateDirection(rtol=1e-8, atol=0.0)
    )
    lx_sol = lx.linear_solve(negated, b, solver, throw=False)
    assert lx_sol.result == lx.RESULTS.breakdown
    assert lx_sol.result == scimlx.RESULTS.breakdown


@pytest.mark.parametrize("solve", [ls.pcg_solve, ls.cd_solve])
def test_conjugate_solves_check_their_arguments_alike(solve):
    op, b = _problem()
    with pytest.raises(ValueError, match=r"`b` must have shape \(16, 16\) and dtype float64"):
        solve(op, jnp.zeros((8, 8)))
    with pytest.raises(ValueError, match=r"`x0` must have shape \(16, 16\) and dtype float64"):
        solve(op, b, x0=jnp.zeros((16, 16), jnp.float32))


def test_result_from_codes_maps_solver_codes():
    from scimlx._core import result_from_codes

    names = ("successful", "max_steps_reached", "breakdown")
    result = jax.vmap(lambda c: result_from_codes(c, names))(jnp.array([2, 0, 1]))
    assert isinstance(result, scimlx.RESULTS)
    assert scimlx.is_successful(result).tolist() == [False, True, False]
    assert bool(result_from_codes(jnp.array(2), names) == scimlx.RESULTS.breakdown)
    assert bool(result_from_codes(jnp.array(2), names, lx.RESULTS) == lx.RESULTS.breakdown)
