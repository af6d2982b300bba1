"""MgNO on grids finer than its training grid: fixed cell-centred transfer levels."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.ndimage as ndi

from scimlx.neuralop import cell_prolong, cell_restrict, MgNO


def test_cell_transfers_against_scipy_and_linear_functions():
    x = np.random.default_rng(0).normal(size=(2, 5, 6))
    # interior formula and edge / wrap ghosts: scipy's cell-centred (grid_mode) linear zoom
    for boundary, mode in (("neumann", "nearest"), ("periodic", "grid-wrap")):
        ours = np.asarray(cell_prolong(jnp.asarray(x), boundary))
        ref = np.stack([ndi.zoom(c, 2, order=1, grid_mode=True, mode=mode) for c in x])
        np.testing.assert_allclose(ours, ref, rtol=1e-12, atol=1e-12)
    # dirichlet: linear extrapolation, so linear functions of the cell centres are exact,
    # and cell averages of a linear function are its values at the coarse centres
    n = 6
    c = (np.arange(n) + 0.5) / n
    f = (np.arange(2 * n) + 0.5) / (2 * n)
    lin = lambda s, t: 1.0 + 2.0 * s[:, None] - 3.0 * t[None, :]  # noqa: E731
    np.testing.assert_allclose(
        cell_prolong(jnp.asarray(lin(c, c))[None])[0], lin(f, f), rtol=1e-12, atol=1e-12
    )
    np.testing.assert_allclose(
        cell_restrict(jnp.asarray(lin(f, f))[None])[0], lin(c, c), rtol=1e-12, atol=1e-12
    )
    # 1-D and 3-D shapes
    assert cell_prolong(jnp.ones((1, 4))).shape == (1, 8)
    assert cell_restrict(jnp.ones((1, 4, 6, 8))).shape == (1, 2, 3, 4)
    with pytest.raises(ValueError, match="even"):
        cell_restrict(jnp.ones((1, 5, 4)))


def test_mgno_on_finer_grids_uses_the_trained_hierarchy():
    its = [(1, 0), (1, 0), (2, 0)]
    key = jax.random.key(0)
    model = MgNO(1, 1, 4, 2, its, "neumann", grid_shape=(8, 8), key=key)
    direct = MgNO(1, 1, 4, 2, its, "neumann", grid_shape=(8, 8), finer_grids="direct", key=key)
    assert [model.extra_levels(s) for s in [(8, 8), (16, 16), (32, 32), (12, 12), (16, 8)]] == [
        0,
        1,
        2,
        0,
        0,
    ]
    assert direct.extra_levels((16, 16)) == 0
    again = model.with_finer_grids("direct")
    assert again.finer_grids == "direct" and again.vcycles is model.vcycles
    assert again.extra_levels((16, 16)) == 0
    a = np.random.default_rng(1).normal(size=(1, 32, 32))
    # independent reference: numpy block means down to 8 x 8, scipy's linear zoom back up
    coarse = a.reshape(1, 8, 4, 8, 4).mean(axis=(2, 4))
    out8 = np.asarray(eqx.filter_jit(model)(jnp.asarray(coarse)))
    ref = ndi.zoom(
        ndi.zoom(out8[0], 2, order=1, grid_mode=True, mode="nearest"),
        2,
        order=1,
        grid_mode=True,
        mode="nearest",
    )
    np.testing.assert_allclose(
        eqx.filter_jit(model)(jnp.asarray(a))[0], ref, rtol=1e-10, atol=1e-10
    )
    # on the training grid both agree; on a finer grid "direct" runs the stencils there
    np.testing.assert_allclose(direct(jnp.asarray(coarse)), out8, rtol=1e-12, atol=1e-12)
    assert direct(jnp.asarray(a)).shape == (1, 32, 32)
    with pytest.raises(ValueError, match="finer_grids"):
        MgNO(1, 1, 4, 1, its, finer_grids="nearest", key=key)
