import jax
import jax.numpy as jnp
import numpy as np
import pytest

import scimlx.linsolve as ls


def _p1d(m, lo, hi):
    """Cell-centred bilinear prolongation (fine 2m x coarse m), assembled by hand."""
    P = np.zeros((2 * m, m))
    for i in range(m):
        P[2 * i, i] += 0.75
        P[2 * i + 1, i] += 0.75
        for f, j, side in ((2 * i, i - 1, lo), (2 * i + 1, i + 1, hi)):
            if 0 <= j < m:
                P[f, j] += 0.25
            elif side == "periodic":
                P[f, j % m] += 0.25
            elif side == "neumann":  # ghost = mirrored value
                P[f, i] += 0.25
            else:  # dirichlet: ghost = -value (u = 0 on the wall)
                P[f, i] -= 0.25
    return P


def _reference_rap(A, solid, boundary):
    """R_eff A P_eff with P_eff = S P M_c (renormalised on fluid), R_eff = P_eff^T / 2^d."""
    shape = solid.shape
    d = len(shape)
    bnd = ls.parse_boundary(boundary, d)
    P = np.ones((1, 1))
    for n, (lo, hi) in zip(shape, bnd):
        P = np.kron(P, _p1d(n // 2, lo, hi))
    cshape = tuple(n // 2 for n in shape)
    csolid = solid.reshape(sum(((m, 2) for m in cshape), ())).all(axis=tuple(range(1, 2 * d, 2)))
    cf = (~csolid).ravel().astype(float)
    fluid = (~solid).ravel()
    full, part = P @ np.ones(P.shape[1]), P @ cf
    S = np.where(fluid, full / np.where(part > 0, part, 1.0), 0.0)
    Peff = S[:, None] * P * cf[None, :]
    Ac = Peff.T @ A @ Peff / 2**d
    Ac[np.ix_(csolid.ravel(), csolid.ravel())] = np.eye(int(csolid.sum()))
    return Ac, Peff


@pytest.mark.parametrize(
    "shape, boundary",
    [
        ((8, 12), ["dirichlet", ("neumann", "dirichlet")]),
        ((12, 8), ["periodic", "dirichlet"]),
        ((8, 4, 6), ["dirichlet", "periodic", ("dirichlet", "neumann")]),
    ],
    ids=["2d-mixed", "2d-periodic", "3d"],
)
def test_galerkin_matches_scipy_rap(shape, boundary):
    rng = np.random.default_rng(0)
    solid = np.zeros(shape, bool)
    solid[(slice(1, 3),) * len(shape)] = True  # a 2x2(x2) block: a solid coarse cell
    solid[tuple(n - 2 for n in shape)] = True  # a single solid cell: coarse cell stays fluid
    coef = jnp.asarray(np.exp(rng.normal(size=shape)))
    op = ls.diffusion(coef, boundary=boundary, solid=jnp.asarray(solid))
    A = ls.to_scipy_sparse(op).toarray()
    ref, Peff = _reference_rap(A, solid, boundary)
    c = ls.galerkin_coarsen(op)
    assert isinstance(c, ls.StencilOperator)
    got = np.asarray(c.as_matrix())
    np.testing.assert_allclose(got, ref, atol=1e-12 * np.abs(ref).max())
    np.testing.assert_allclose(ls.to_scipy_sparse(c).toarray(), ref, atol=1e-12 * np.abs(ref).max())
    np.testing.assert_allclose(np.asarray(c.diagonal_values()).ravel(), np.diag(ref), atol=1e-12)
    # a second level from the stencil operator itself
    if all(n % 4 == 0 for n in shape):
        ref2, _ = _reference_rap(ref, np.asarray(c.solid), boundary)
        c2 = ls.galerkin_coarsen(c)
        np.testing.assert_allclose(
            np.asarray(c2.as_matrix()), ref2, atol=1e-11 * np.abs(ref2).max()
        )


def test_galerkin_vcycle_symmetric_and_mg_pcg_converges():
    shape = (32, 32)
    solid = jnp.asarray(ls.obstacle_scene(shape, seed=5, split="test"))
    op = ls.poisson(shape, solid=solid)
    b = ls.random_rhs(solid, key=jax.random.key(5))
    small = ls.poisson((16, 16), solid=solid[:16, :16] | solid[16:32, 16:32])
    vcs = ls.multigrid(small, coarse=ls.Galerkin(), max_coarse=16)
    M = np.asarray(vcs.as_matrix())
    np.testing.assert_allclose(M, M.T, atol=1e-12)
    assert np.linalg.eigvalsh(M).min() > 0
    vc = ls.multigrid(op, coarse=ls.Galerkin(), max_coarse=16)
    sol = ls.pcg_solve(op, b, preconditioner=vc, rtol=1e-6, max_steps=50)
    res = float(jnp.linalg.norm(b - op.mv(sol.value)) / jnp.linalg.norm(b))
    assert res <= 1.01e-6
    assert int(sol.stats["num_steps"]) <= 10
    with pytest.raises(TypeError, match="coarse"):
        ls.multigrid(op, coarse="galerkin")
