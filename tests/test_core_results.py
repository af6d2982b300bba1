import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
import pytest

import scimlx


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
        "negative_curvature",
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
    assert len(codes) == len(scimlx.RESULTS) >= 16
    assert codes[0] == scimlx.RESULTS.successful
    names = [scimlx.RESULTS[c] for c in codes]
    assert "non-positive curvature" in names[-1]
    assert bool(codes[1] == scimlx.RESULTS.max_steps_reached)
