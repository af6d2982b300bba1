"""Smoothed aggregation (`scimlx.linsolve.Aggregation`): levels checked against independent
SciPy assemblies, aggregates that never cross a wall, and mazes solved in a number of
iterations that does not grow with the grid."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spla
from scipy import ndimage

import scimlx.linsolve as ls
from scimlx.linsolve._aggregation import _host_matrix, aggregate


def serpentine(n: int, width: int) -> np.ndarray:
    """A single winding corridor `width` cells wide: walls one cell thick across the grid every
    `width + 1` rows, open at alternate ends; Dirichlet walls reached only at the two ends
    (`True` = solid)."""
    solid = np.zeros((n, n), bool)
    solid[0, :] = solid[-1, :] = True
    solid[:, 0] = solid[:, -1] = True
    for k, r in enumerate(range(width + 1, n - 1, width + 1)):
        solid[r, 1:-1] = True
        gap = slice(n - 1 - width, n - 1) if k % 2 == 0 else slice(1, 1 + width)
        solid[r, gap] = False
    solid[1 : 1 + width, 0] = False  # entrance
    last = np.flatnonzero(~solid[:, 1:-1].all(axis=1))[-1]
    solid[last - width + 1 : last + 1, -1] = False  # exit
    return solid


def _problem(solid, seed=0):
    op = ls.poisson(solid.shape, solid=jnp.asarray(solid))
    b = ls.random_rhs(jnp.asarray(solid), key=jax.random.key(seed))
    return op, b


def _dense_p(transfer, nc):
    eye = jnp.eye(nc, dtype=transfer.prolong_values.dtype)
    return np.asarray(jax.vmap(transfer.prolong)(eye)).reshape(nc, -1).T


def test_sparse_operator_matches_scipy():
    rng = np.random.default_rng(0)
    M = sp.random(40, 40, density=0.1, random_state=1)
    A = (M + M.T + 10 * sp.eye(40)).tocsr()
    op = ls.SparseOperator.from_scipy(A)
    x = rng.standard_normal(40)
    np.testing.assert_allclose(np.asarray(op.mv(jnp.asarray(x))), A @ x, rtol=1e-13)
    np.testing.assert_allclose(np.asarray(op.diagonal_values()), A.diagonal())
    assert abs(ls.to_scipy_sparse(op) - A).max() == 0
    # (the test suite's runtime type checks see the shape first)
    with pytest.raises((ValueError, TypeError), match="points"):
        ls.SparseOperator(op.columns, op.values, op.diagonal, jnp.zeros((3, 1), int))


def test_level_is_galerkin_product_of_smoothed_aggregates():
    """The coarse operator is `P^T A P` with `A` assembled by SciPy; `restrict` is `P^T`;
    each column of `P`'s tentative part (its aggregate) is connected, fluid and inside one
    2x2 block; constants are interpolated exactly away from Dirichlet walls."""
    solid = serpentine(24, 2)
    op, _ = _problem(solid)
    coarse, tr = ls.Aggregation().coarsen(op)
    nc = coarse.grid_shape[0]
    P = _dense_p(tr, nc)
    A = ls.to_scipy_sparse(op).toarray()
    fl = ~solid.ravel()
    A[~fl] = 0.0
    A[:, ~fl] = 0.0
    np.testing.assert_allclose(ls.to_scipy_sparse(coarse).toarray(), P.T @ A @ P, atol=1e-12)
    r = np.random.default_rng(1).standard_normal(solid.size)
    np.testing.assert_allclose(
        np.asarray(tr.restrict(jnp.asarray(r.reshape(solid.shape)))), P.T @ r, atol=1e-12
    )
    assert np.all(P[~fl] == 0)
    # aggregates: each inside one 2x2 block and connected there (4-neighbours)
    labels, _ = aggregate(*_host_matrix(op)[:2], block=2, strength=0.08)
    assert labels.max() + 1 == nc
    cells = np.argwhere(~solid)
    for c in range(nc):
        mine = cells[labels == c]
        assert len({tuple(p) for p in mine // 2}) == 1, "aggregate spans two blocks"
        mask = np.zeros(solid.shape, bool)
        mask[tuple(mine.T)] = True
        assert ndimage.label(mask)[1] == 1, "aggregate not connected"
    # away from the Dirichlet walls (rows of A summing to 0) P 1 = 1
    interior = fl & np.isclose(A.sum(axis=1), 0.0)
    np.testing.assert_allclose((P @ np.ones(nc))[interior], 1.0, atol=1e-12)


def test_aggregates_never_cross_a_wall():
    """A one-cell wall splits the domain in two: the V-cycle of the aggregation hierarchy maps a
    vector on one side to a vector on that side alone (the rediscretised hierarchy, whose
    coarse cells straddle the wall, mixes them)."""
    n = 32
    solid = np.zeros((n, n), bool)
    solid[:, 15] = True
    op, _ = _problem(solid)
    left = np.zeros((n, n))
    left[:, :15] = np.random.default_rng(2).standard_normal((n, 15))
    agg = ls.multigrid(op, coarse=ls.Aggregation())
    out = np.asarray(agg.mv(jnp.asarray(left)))
    # (the coarsest level's dense pseudo-inverse mixes in rounding only)
    assert np.abs(out[:, 16:]).max() <= 1e-12 * np.abs(out[:, :15]).max()
    red = ls.multigrid(op, coarse=ls.Rediscretise())
    assert np.abs(np.asarray(red.mv(jnp.asarray(left)))[:, 16:]).max() > 1e-3


def test_default_hierarchy_solves_mazes_without_growth():
    """The default hierarchy on a serpentine corridor (condition number ~ path length^2):
    aggregation is chosen, PCG reaches 1e-8 in few iterations that hardly grow when the grid
    doubles, and the solution is SciPy's direct one."""
    its = []
    for n in (64, 128):
        solid = serpentine(n, 1)
        assert ls.channel_score(solid) >= 0.3
        op, b = _problem(solid)
        vc = ls.multigrid(op)
        assert isinstance(vc.transfers[0], ls.AggregationTransfer)
        sol = ls.pcg_solve(op, b, preconditioner=vc, rtol=1e-8, max_steps=200)
        its.append(int(sol.stats["num_steps"]))
        A = ls.to_scipy_sparse(op)
        x = spla.spsolve(A.tocsc(), np.asarray(b).ravel())
        err = np.linalg.norm(np.asarray(sol.value).ravel() - x) / np.linalg.norm(x)
        assert err < 1e-5
    assert its[1] <= 20, its
    assert its[1] <= 1.3 * its[0], its
    # the structured hierarchies need far more on the same corridor
    op, b = _problem(serpentine(128, 1))
    vc = ls.multigrid(op, coarse=ls.BlackBox())
    sol = ls.pcg_solve(op, b, preconditioner=vc, rtol=1e-8, max_steps=200, throw=False)
    assert int(sol.stats["num_steps"]) > 3 * its[1]


def test_scattered_obstacles_keep_the_geometric_hierarchy():
    solid = np.asarray(ls.obstacle_scene((128, 128), seed=3, split="test"))
    assert ls.channel_score(solid) < 0.3
    op, _ = _problem(solid)
    assert isinstance(ls.multigrid(op).transfers[0], ls.GeometricTransfer)


def test_aggregation_in_3d_and_odd_sizes():
    solid = np.asarray(ls.obstacle_scene((13, 11, 9), seed=1, split="test"))
    op, b = _problem(solid)
    vc = ls.multigrid(op, coarse=ls.Aggregation())
    sol = ls.pcg_solve(op, b, preconditioner=vc, rtol=1e-8, max_steps=100)
    assert int(sol.stats["num_steps"]) <= 15
    A = ls.to_scipy_sparse(op)
    r = np.asarray(b).ravel() - A @ np.asarray(sol.value).ravel()
    assert np.linalg.norm(r) <= 1e-8 * np.linalg.norm(np.asarray(b))


def test_bad_arguments():
    with pytest.raises(ValueError, match="`block`"):
        ls.Aggregation(block=1)
    with pytest.raises(ValueError, match="`strength`"):
        ls.Aggregation(strength=1.5)
    with pytest.raises(ValueError, match="`omega`"):
        ls.Aggregation(omega=2.0)
    op, _ = _problem(serpentine(32, 1))

    @jax.jit
    def build(op):
        return ls.multigrid(op, coarse=ls.Aggregation())

    with pytest.raises(ValueError, match="concrete operator"):
        build(op)
