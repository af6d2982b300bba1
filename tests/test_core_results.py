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
