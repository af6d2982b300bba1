import equinox as eqx
import jax.numpy as jnp
import pytest

from scimlx._core import (
    check_floating,
    check_ndim,
    check_positive,
    check_shape,
    error_if_nonfinite,
)
from scimlx.nde._node_tour import OscillatorField, solve


def test_check_shape_names_argument():
    check_shape("y0", jnp.zeros((2, 3)), (2, None))
    with pytest.raises(ValueError, match=r"`y0` must have shape \(2, \*\), got \(3, 3\)"):
        check_shape("y0", jnp.zeros((3, 3)), (2, None))
    with pytest.raises(ValueError, match="`u` must have 2 or 3 dimensions"):
        check_ndim("u", jnp.zeros(4), (2, 3))


def test_check_dtype_and_positive():
    with pytest.raises(TypeError, match="`coef` must be a floating-point"):
        check_floating("coef", jnp.arange(3))
    with pytest.raises(ValueError, match="`rtol` must be non-negative"):
        check_positive("rtol", -1e-3, allow_zero=True)
    with pytest.raises(ValueError, match="`dt` must be positive"):
        check_positive("dt", 0.0)


def test_nonfinite_error_under_jit():
    f = eqx.filter_jit(lambda x: error_if_nonfinite("b", x))
    assert f(jnp.ones(2)).shape == (2,)
    with pytest.raises(eqx.EquinoxRuntimeError, match="`b` contains NaN"):
        f(jnp.array([1.0, jnp.nan]))


def test_wrong_shape_to_public_solve_is_named(getkey):
    field = OscillatorField(key=getkey())
    ts = jnp.linspace(0.0, 1.0, 5)
    with pytest.raises(ValueError, match="`y0`"):
        solve(field, ts, jnp.zeros(3))
