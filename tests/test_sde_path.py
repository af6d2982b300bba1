"""Controlled paths from irregular observations: scipy / analytic references, NaNs, padding."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.interpolate as si

from scimlx.sde import (
    check_observations,
    fill_nans,
    hermite_coefficients,
    make_path,
    natural_cubic_coefficients,
)


def _series(seed, L=12, C=3, irregular=True):
    rng = np.random.default_rng(seed)
    if irregular:
        ts = np.cumsum(rng.uniform(0.1, 1.0, L))
    else:
        ts = np.linspace(0.0, 1.0, L)
    return ts, rng.normal(size=(L, C))


def _eval(path, t):
    return np.asarray(jax.vmap(path.evaluate)(jnp.asarray(t)))


def test_hermite_matches_scipy_backward_differences():
    ts, ys = _series(0)
    path = make_path(ts, ys, interpolation="hermite", time_channel=False)
    slopes = np.diff(ys, axis=0) / np.diff(ts)[:, None]
    # slope at knot i is the backward difference; at knot 0 the forward difference; but within
    # an interval the left slope is used at its start and the secant at its end.
    t_query = np.linspace(ts[0], ts[-1], 97)
    ours = _eval(path, t_query)
    ref = np.empty_like(ours)
    for k, t in enumerate(t_query):
        i = min(max(np.searchsorted(ts, t, side="left") - 1, 0), len(ts) - 2)
        left = slopes[max(i - 1, 0)] if i > 0 else slopes[0]
        spl = si.CubicHermiteSpline(ts[i : i + 2], ys[i : i + 2], np.stack([left, slopes[i]]))
        ref[k] = spl(t)
    np.testing.assert_allclose(ours, ref, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(_eval(path, ts), ys, atol=1e-12)


def test_natural_cubic_matches_scipy():
    ts, ys = _series(1)
    path = make_path(ts, ys, interpolation="natural", time_channel=False)
    t_query = np.linspace(ts[0], ts[-1], 101)
    ref = si.CubicSpline(ts, ys, bc_type="natural")(t_query)
    np.testing.assert_allclose(_eval(path, t_query), ref, rtol=1e-9, atol=1e-9)


def test_natural_cubic_padded_equals_unpadded():
    ts, ys = _series(2, L=9)
    n = 6
    pad_ts = ts.copy()
    pad_ts[n:] = 0.0  # garbage in the padding must not matter
    pad_ys = ys.copy()
    pad_ys[n:] = 123.0
    p_pad = make_path(pad_ts, pad_ys, n, interpolation="natural", time_channel=False)
    t_query = np.linspace(ts[0], ts[n - 1], 50)
    ref = si.CubicSpline(ts[:n], ys[:n], bc_type="natural")(t_query)
    np.testing.assert_allclose(_eval(p_pad, t_query), ref, rtol=1e-9, atol=1e-9)
    # held constant after the end
    np.testing.assert_allclose(_eval(p_pad, np.array([ts[n - 1] + 5.0]))[0], ys[n - 1])


def test_linear_matches_numpy_interp():
    ts, ys = _series(3)
    path = make_path(ts, ys, interpolation="linear", time_channel=True)
    t_query = np.linspace(ts[0], ts[-1], 77)
    out = _eval(path, t_query)
    np.testing.assert_allclose(out[:, 0], t_query, atol=1e-12)
    for c in range(ys.shape[1]):
        np.testing.assert_allclose(out[:, c + 1], np.interp(t_query, ts, ys[:, c]), atol=1e-12)


def test_rectilinear_is_last_observation_carried_forward():
    ts, ys = _series(4)
    path = make_path(ts, ys, interpolation="rectilinear", time_channel=False)
    t_query = np.sort(np.random.default_rng(0).uniform(ts[0], ts[-1], 60))
    idx = np.clip(np.searchsorted(ts, t_query, side="left") - 1, 0, None)
    # strictly inside (t_i, t_{i+1}] the value is y_i
    np.testing.assert_allclose(_eval(path, t_query), ys[idx], atol=1e-12)


def test_fill_nans_matches_torchcde_semantics():
    ts = np.array([0.0, 1.0, 3.0, 4.0, 6.0, 7.0])
    ys = np.array(
        [
            [np.nan, 1.0, np.nan],
            [2.0, np.nan, np.nan],
            [np.nan, np.nan, np.nan],
            [5.0, 3.0, np.nan],
            [np.nan, np.nan, np.nan],
            [np.nan, 4.0, np.nan],
        ]
    )
    out = np.asarray(fill_nans(jnp.asarray(ts), jnp.asarray(ys)))
    # channel 0: leading -> first obs, interior linear in time, trailing -> last obs
    ref0 = np.array([2.0, 2.0, 2.0 + 3.0 * (3.0 - 1.0) / 3.0, 5.0, 5.0, 5.0])
    ref1 = np.interp(ts, ts[[0, 3, 5]], ys[[0, 3, 5], 1])
    np.testing.assert_allclose(out[:, 0], ref0)
    np.testing.assert_allclose(out[:, 1], ref1)
    np.testing.assert_allclose(out[:, 2], 0.0)  # never observed: zeros (documented)


def test_hermite_path_with_nans_equals_path_of_filled_data():
    ts, ys = _series(5)
    rng = np.random.default_rng(5)
    ys[rng.random(ys.shape) < 0.5] = np.nan
    filled = np.asarray(fill_nans(jnp.asarray(ts), jnp.asarray(ys)))
    p1 = make_path(ts, ys, time_channel=False)
    p2 = make_path(ts, filled, time_channel=False)
    t_query = np.linspace(ts[0], ts[-1], 40)
    np.testing.assert_allclose(_eval(p1, t_query), _eval(p2, t_query), atol=1e-12)
    assert np.all(np.isfinite(_eval(p1, t_query)))


def test_mask_channel_counts_observations():
    ts, ys = _series(6, L=8, C=2)
    ys[[1, 2], 0] = np.nan
    ys[5, 1] = np.nan
    path = make_path(ts, ys, mask_channel=True)
    out = _eval(path, ts)
    assert path.channels == 1 + 2 + 2
    np.testing.assert_allclose(out[:, 3], np.cumsum(~np.isnan(ys[:, 0])))
    np.testing.assert_allclose(out[:, 4], np.cumsum(~np.isnan(ys[:, 1])))


@pytest.mark.parametrize("interpolation", ["hermite", "natural"])
def test_batched_different_lengths_vmap_and_jit(interpolation):
    rng = np.random.default_rng(7)
    B, L, C = 3, 10, 2
    ts = np.cumsum(rng.uniform(0.2, 1.0, (B, L)), axis=1)
    ys = rng.normal(size=(B, L, C))
    lengths = np.array([10, 4, 1])
    fn = jax.jit(jax.vmap(lambda t, y, n: make_path(t, y, n, interpolation=interpolation)))
    paths = fn(jnp.asarray(ts), jnp.asarray(ys), jnp.asarray(lengths))
    for b in range(B):
        n = lengths[b]
        single = make_path(ts[b, :n], ys[b, :n], interpolation=interpolation)
        pb = jax.tree.map(lambda x: x[b], paths)
        tq = np.linspace(ts[b, 0], ts[b, n - 1], 23)
        tq = np.concatenate([tq, [ts[b, n - 1] + 3.0]])  # beyond the end: held constant
        ours = _eval(pb, tq)
        np.testing.assert_allclose(ours[:-1], _eval(single, tq[:-1]), atol=1e-10)
        np.testing.assert_allclose(ours[-1], ours[-2], atol=1e-10)


def test_single_observation_gives_constant_path():
    path = make_path(np.array([0.5]), np.array([[2.0, np.nan]]))
    out = _eval(path, np.array([0.0, 0.5, 3.0]))
    np.testing.assert_allclose(out[:, 1:], np.array([[2.0, 0.0]] * 3))
    assert np.all(np.isfinite(out))
    np.testing.assert_allclose(np.asarray(path.derivative(0.5)), 0.0, atol=0.0)


def test_bad_input_errors():
    ts, ys = _series(8, L=5, C=1)
    with pytest.raises(ValueError, match="strictly increasing"):
        make_path(ts[::-1], ys)
    with pytest.raises(ValueError, match="strictly increasing"):
        make_path(np.array([0.0, 1.0, 1.0]), np.zeros((3, 1)))
    with pytest.raises(ValueError, match="length"):
        make_path(ts, ys, 0)
    with pytest.raises((ValueError, TypeError)):  # jaxtyping's TypeCheckError is a TypeError
        make_path(ts, ys[:-1])
    with pytest.raises(ValueError, match="interpolation"):
        make_path(ts, ys, interpolation="quintic")  # pyright: ignore
    with pytest.raises(ValueError, match="inf"):
        check_observations(ts, np.full((5, 1), np.inf))
    # padding may hold anything, including non-increasing times
    bad_pad = ts.copy()
    bad_pad[3:] = -1.0
    make_path(bad_pad, ys, 3)


def test_bad_times_error_under_jit():
    fn = jax.jit(lambda t, y: make_path(t, y).evaluate(0.5))
    with pytest.raises(Exception, match="strictly increasing"):
        jax.block_until_ready(fn(jnp.array([0.0, 1.0, 0.5]), jnp.zeros((3, 1))))


def test_coefficient_functions_are_differentiable():
    ts, ys = _series(9, L=6, C=1)

    def f(y):
        d, c, b, a = natural_cubic_coefficients(jnp.asarray(ts), y)
        d2, c2, b2, a2 = hermite_coefficients(jnp.asarray(ts), y)
        return jnp.sum(d**2 + c + b) + jnp.sum(d2 * c2 + b2)

    f = jax.jit(f)
    g = jax.grad(f)(jnp.asarray(ys))
    eps = 1e-6
    e = np.zeros_like(ys)
    e[2, 0] = eps
    fd = (f(jnp.asarray(ys + e)) - f(jnp.asarray(ys - e))) / (2 * eps)
    np.testing.assert_allclose(float(g[2, 0]), float(fd), rtol=1e-5)
