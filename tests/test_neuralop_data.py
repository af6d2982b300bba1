"""Darcy data: GRF against its series, solver against scipy's sparse direct solve, cache."""

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from scimlx.neuralop import darcy_cached, darcy_coefficient, darcy_dataset, grf


def _grf_series(xi, n, alpha, tau):
    # naive evaluation of sum_k c_k xi_k phi_k1(x) phi_k2(y) at cell centres, with the
    # orthonormal-DCT normalisation sqrt(2 - delta_k0) per axis and the factor m from GRF.m
    m = xi.shape[0]
    x = (np.arange(n) + 0.5) / n
    k = np.arange(m)
    phi = np.cos(np.pi * np.outer(k, x)) * np.where(k == 0, 1.0, math.sqrt(2.0))[:, None]
    lam = np.pi**2 * (k[:, None] ** 2 + k[None, :] ** 2) + tau**2
    c = tau ** (alpha - 1) * lam ** (-alpha / 2)
    c[0, 0] = 0.0
    return np.einsum("ij,ia,jb->ab", m * c * xi, phi, phi) / m


def test_grf_is_its_cosine_series_at_every_resolution():
    key = jax.random.key(0)
    xi = np.asarray(jax.random.normal(key, (8, 8), jnp.float64))
    for n in (8, 12):
        ours = np.asarray(grf(key, n, alpha=2.0, tau=3.0, n_modes=8))
        np.testing.assert_allclose(ours, _grf_series(xi, n, 2.0, 3.0), atol=1e-12)
    a = darcy_coefficient(grf(jax.random.key(1), 12, n_modes=8))
    assert set(np.unique(np.asarray(a))) == {3.0, 12.0}
    assert 0.1 < float(jnp.mean(a == 12.0)) < 0.9


def _scipy_darcy(a):
    # independent assembly: cell-centred 5-point, arithmetic face averages, u = 0 on the wall
    n = a.shape[0]
    h2 = 1.0 / n**2
    idx = np.arange(n * n).reshape(n, n)
    rows, cols, vals = [], [], []
    diag = np.zeros((n, n))
    for d in (0, 1):
        for i in range(n):
            for j in range(n):
                for s in (-1, 1):
                    ii, jj = (i + s, j) if d == 0 else (i, j + s)
                    if 0 <= ii < n and 0 <= jj < n:
                        t = 0.5 * (a[i, j] + a[ii, jj]) / h2
                        rows.append(idx[i, j])
                        cols.append(idx[ii, jj])
                        vals.append(-t)
                        diag[i, j] += t
                    else:
                        diag[i, j] += 2.0 * a[i, j] / h2
    mat = sp.csr_matrix((vals, (rows, cols)), shape=(n * n, n * n)) + sp.diags(diag.ravel())
    return spla.spsolve(mat.tocsc(), np.ones(n * n)).reshape(n, n)


def test_darcy_solve_matches_scipy_direct():
    # batched with vmap (darcy_dataset vmaps darcy_solve), per-sample results
    data = darcy_dataset(2, 16, seed=5)
    for i in range(2):
        ref = _scipy_darcy(np.asarray(data.a[i, 0]))
        np.testing.assert_allclose(data.u[i, 0], ref, rtol=0, atol=1e-8 * np.abs(ref).max())
    assert 0.005 < float(jnp.max(data.u)) < 0.05  # the FNO data's scale (max u ~ 0.013)


def test_darcy_cache_header_verified(tmp_path):
    path = tmp_path / "darcy.npz"
    d1 = darcy_cached(path, 2, 16, seed=3)
    with np.load(path) as z:
        header = json.loads(str(z["header"]))
    assert header["params"] == {"n_samples": 2, "resolution": 16, "seed": 3}
    d2 = darcy_cached(path, 2, 16, seed=3)  # loaded
    np.testing.assert_array_equal(d1.u, d2.u)
    d3 = darcy_cached(path, 2, 16, seed=4)  # header differs: regenerated and replaced
    assert not np.allclose(d3.a, d1.a)
    with np.load(path) as z:
        assert json.loads(str(z["header"]))["params"]["seed"] == 4
    # A damaged file (random bytes, truncated, or one value altered) is named and regenerated.
    good = path.read_bytes()
    arrays = dict(np.load(path))
    arrays["u"] = arrays["u"] * 2.0
    altered = tmp_path / "altered.npz"
    np.savez(altered, **arrays)
    damaged = {
        "random": np.random.default_rng(0).bytes(len(good)),
        "truncated": good[: len(good) // 2],
        "altered": altered.read_bytes(),
    }
    for name, raw in damaged.items():
        path.write_bytes(raw)
        with pytest.warns(UserWarning, match="darcy.npz is corrupted.*Regenerating"):
            np.testing.assert_array_equal(darcy_cached(path, 2, 16, seed=4).u, d3.u)
        assert path.read_bytes() == good, name
    with pytest.raises(ValueError, match="variant"):
        darcy_dataset(1, 16, seed=0, variant="bumpy")
