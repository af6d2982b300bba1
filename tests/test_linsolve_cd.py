"""Tests of the truncated conjugate-direction solver `scimlx.linsolve.cd_solve`."""

import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np
import pytest
import scipy.sparse.linalg as spla

from scimlx import RESULTS
from scimlx.linsolve import cd_solve, ConjugateDirection


# A small test-local matrix-free cell-centred Poisson operator (5-point, Dirichlet ghost
# cells on the box, Neumann at solid faces, identity rows for solid cells), plus an
# optional positive reaction coefficient c (for gradients w.r.t. operator coefficients).
def _solid(n: int) -> np.ndarray:
    s = np.zeros((n, n), bool)
    s[n // 4 : n // 2, n // 3 : n // 3 + 2] = True
    s[3 * n // 5 : 3 * n // 5 + 2, n // 2 : 3 * n // 4] = True
    return s


def _mv(u, fluid, c):
    uf = jnp.where(fluid, u, 0.0)
    up = jnp.pad(uf, 1)
    fp = jnp.pad(fluid, 1, constant_values=True)
    n0, n1 = u.shape
    out = jnp.zeros_like(u)
    for di, dj in ((0, 1), (2, 1), (1, 0), (1, 2)):
        nb = up[di : di + n0, dj : dj + n1]
        nbf = fp[di : di + n0, dj : dj + n1]
        out = out + jnp.where(nbf, uf - nb, 0.0)
    return jnp.where(fluid, out + c * uf, u)


def poisson(n: int, c=None, solid=None):
    solid = _solid(n) if solid is None else solid
    fluid = jnp.asarray(~solid)
    c = jnp.zeros((n, n)) if c is None else c
    struct = jax.ShapeDtypeStruct((n, n), jnp.float64)
    return lx.FunctionLinearOperator(
        lambda u: _mv(u, fluid, c), struct, tags=(lx.symmetric_tag, lx.positive_semidefinite_tag)
    ), fluid


def dense(op) -> np.ndarray:
    return np.asarray(op.as_matrix())


def rhs(n, fluid, seed=0):
    b = np.random.default_rng(seed).standard_normal((n, n))
    return jnp.where(fluid, jnp.asarray(b), 0.0)  # exact zeros in solid cells


def naive_pcg(A, b, M, steps):
    x = np.zeros_like(b)
    r = b.copy()
    z = M @ r
    p = z.copy()
    rz = r @ z
    for _ in range(steps):
        Ap = A @ p
        a = rz / (p @ Ap)
        x = x + a * p
        r = r - a * Ap
        z = M @ r
        rz_new = r @ z
        p = z + (rz_new / rz) * p
        rz = rz_new
    return x


def test_exact_inverse_one_step():
    n = 12
    op, fluid = poisson(n)
    A = dense(op)
    Ainv = jnp.asarray(np.linalg.inv(A))
    b = rhs(n, fluid)
    sol = cd_solve(op, b, direction=lambda r: (Ainv @ r.reshape(-1)).reshape(r.shape), rtol=1e-10)
    assert sol.result == RESULTS.successful
    assert int(sol.stats["num_steps"]) == 1
    x_ref = np.linalg.solve(A, np.asarray(b).reshape(-1)).reshape(n, n)
    np.testing.assert_allclose(np.asarray(sol.value), x_ref, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("k", [1, 3])
def test_identity_direction_is_cg(k):
    n = 16
    op, fluid = poisson(n)
    A = dense(op)
    b = rhs(n, fluid, seed=1)
    bf = np.asarray(b).reshape(-1)
    # Iterates after m steps equal CG's.
    for m in (3, 10):
        sol = cd_solve(op, b, k=k, rtol=1e-12, max_steps=m, throw=False)
        assert sol.result == RESULTS.max_steps_reached
        x_cg = naive_pcg(A, bf, np.eye(bf.size), m)
        np.testing.assert_allclose(np.asarray(sol.value).reshape(-1), x_cg, rtol=1e-8, atol=1e-10)
    # Iteration count to ||r|| <= 1e-6 ||b|| matches scipy's CG (same stopping rule).
    count = [0]

    def cb(_):
        count[0] += 1

    x_sp, info = spla.cg(A, bf, rtol=1e-6, atol=0.0, callback=cb)
    assert info == 0
    sol = cd_solve(op, b, k=k, rtol=1e-6)
    assert abs(int(sol.stats["num_steps"]) - count[0]) <= 1
    assert float(sol.stats["true_residual_norm"]) <= 1e-6 * np.linalg.norm(bf) * (1 + 1e-6)
    np.testing.assert_allclose(np.asarray(sol.value).reshape(-1), x_sp, rtol=1e-4, atol=1e-6)


def test_symmetric_preconditioner_is_pcg():
    n = 16
    op, fluid = poisson(n)
    A = dense(op)
    b = rhs(n, fluid, seed=2)
    bf = np.asarray(b).reshape(-1)
    # A symmetric positive definite preconditioner: Jacobi plus a smoothing term.
    D = np.diag(1.0 / np.diag(A))
    M = D + 0.1 * D @ (np.diag(np.diag(A)) - A) @ D
    M = 0.5 * (M + M.T)
    assert np.linalg.eigvalsh(M).min() > 0
    Mj = jnp.asarray(M)
    for m in (4, 12):
        sol = cd_solve(
            op,
            b,
            direction=lambda r: (Mj @ r.reshape(-1)).reshape(r.shape),
            k=2,
            rtol=1e-14,
            max_steps=m,
            throw=False,
        )
        x_ref = naive_pcg(A, bf, M, m)
        np.testing.assert_allclose(np.asarray(sol.value).reshape(-1), x_ref, rtol=1e-8, atol=1e-10)


def test_vmap_jit_and_zeros_in_b():
    n = 12
    op, fluid = poisson(n)
    A = dense(op)
    bs = jnp.stack([rhs(n, fluid, seed=s) for s in range(3)] + [jnp.zeros((n, n))])

    @jax.jit
    def solve_many(bs):
        return jax.vmap(lambda b: cd_solve(op, b, rtol=1e-8, atol=1e-12, throw=False))(bs)

    sols = solve_many(bs)
    assert bool(jnp.all(sols.result == RESULTS.successful))
    assert int(sols.stats["num_steps"][3]) == 0  # b = 0 stops at once (atol > 0; 0 <= 0 too)
    for i in range(4):
        bf = np.asarray(bs[i]).reshape(-1)
        r = bf - A @ np.asarray(sols.value[i]).reshape(-1)
        assert np.linalg.norm(r) <= 1e-12 + 1e-8 * np.linalg.norm(bf) * (1 + 1e-6)
        # Exact zeros in b: the solid cells' solution stays zero.
        np.testing.assert_allclose(np.asarray(sols.value[i])[~np.asarray(fluid)], 0.0, atol=1e-12)


def test_atol_only_and_residual_history():
    n = 12
    op, fluid = poisson(n)
    b = rhs(n, fluid, seed=3)
    sol = cd_solve(op, b, rtol=0.0, atol=1e-7 * float(jnp.linalg.norm(b)), recompute_every=3)
    h = np.asarray(sol.stats["residual_history"])
    it = int(sol.stats["num_steps"])
    assert np.isfinite(h[: it + 1]).all() and np.isnan(h[it + 1 :]).all()
    assert h[it] <= 1e-7 * float(jnp.linalg.norm(b))
    np.testing.assert_allclose(h[0], float(jnp.linalg.norm(b)))
    # A-products: one per step, one per recomputation (every 3 steps, and at the step whose
    # recursive residual meets the tolerance, to confirm it), one final true residual.
    assert int(sol.stats["num_mv"]) == it + it // 3 + (1 if it % 3 else 0) + 1
    assert int(sol.stats["num_direction_evals"]) == it


def test_gradients_match_finite_differences():
    n = 8
    solid = _solid(n)
    c0 = jnp.asarray(np.random.default_rng(4).uniform(0.1, 1.0, (n, n)))
    fluid = jnp.asarray(~solid)
    b0 = rhs(n, fluid, seed=5)
    w = jnp.asarray(np.random.default_rng(6).standard_normal((n, n)))

    def f(c, b):
        op, _ = poisson(n, c=c, solid=solid)
        return jnp.sum(w * cd_solve(op, b, rtol=1e-13, atol=1e-14).value)

    f = jax.jit(f)
    gc, gb = jax.jit(jax.grad(f, argnums=(0, 1)))(c0, b0)
    eps = 1e-6
    for idx in [(1, 1), (5, 6), (7, 0)]:
        e = jnp.zeros((n, n)).at[idx].set(eps)
        fd_c = (f(c0 + e, b0) - f(c0 - e, b0)) / (2 * eps)
        fd_b = (f(c0, b0 + e) - f(c0, b0 - e)) / (2 * eps)
        np.testing.assert_allclose(float(gc[idx]), float(fd_c), rtol=1e-5, atol=1e-8)
        np.testing.assert_allclose(float(gb[idx]), float(fd_b), rtol=1e-5, atol=1e-8)


def test_failures_are_reported():
    n = 8
    op, fluid = poisson(n)
    b = rhs(n, fluid, seed=7)
    # Indefinite operator wrongly tagged PSD: non-positive curvature.
    neg = lx.FunctionLinearOperator(
        lambda u: -op.mv(u),
        op.in_structure(),
        tags=(lx.symmetric_tag, lx.positive_semidefinite_tag),
    )
    sol = cd_solve(neg, b, throw=False)
    assert sol.result == RESULTS.breakdown
    with pytest.raises(eqx.EquinoxRuntimeError, match="non-positive curvature"):
        cd_solve(neg, b)
    # NaN in b.
    sol = cd_solve(op, b.at[0, 0].set(jnp.nan), throw=False)
    assert sol.result == RESULTS.nonfinite
    # Too few steps.
    sol = cd_solve(op, b, max_steps=2, throw=False)
    assert sol.result == RESULTS.max_steps_reached
    # Bad arguments named.
    with pytest.raises(ValueError, match="`b`"):
        cd_solve(op, jnp.zeros((n + 1, n)))
    with pytest.raises(ValueError, match="rtol"):
        ConjugateDirection(rtol=-1.0, atol=0.0)
    with pytest.raises(ValueError, match="`k`"):
        cd_solve(op, b, k=-1)


def test_lineax_linear_solve_plugin():
    n = 10
    op, fluid = poisson(n)
    b = rhs(n, fluid, seed=8)
    sol = lx.linear_solve(op, b, ConjugateDirection(rtol=1e-10, atol=0.0, k=2))
    A = dense(op)
    x_ref = np.linalg.solve(A, np.asarray(b).reshape(-1))
    np.testing.assert_allclose(np.asarray(sol.value).reshape(-1), x_ref, rtol=1e-7, atol=1e-9)
    # A network-like nonlinear direction map (flexible CG) still converges.
    mlp = eqx.nn.MLP(n * n, n * n, 32, 1, key=jax.random.key(0), dtype=jnp.float64)

    def direction(r):
        rn = jnp.linalg.norm(r)
        return r + 0.05 * rn * mlp(r.reshape(-1) / rn).reshape(r.shape)

    sol = cd_solve(op, b, direction=direction, k=4, rtol=1e-8, max_steps=500)
    assert sol.result == RESULTS.successful
    # A direction map that stalls (orthogonal to r): the fallback takes r instead.
    stall = lambda r: jnp.zeros_like(r).at[0, 0].set(1.0)  # noqa: E731
    b0 = b.at[0, 0].set(0.0)
    sol = cd_solve(op, b0, direction=stall, k=2, rtol=1e-8, stall_tol=1e-8, throw=False)
    assert sol.result == RESULTS.successful
    assert int(sol.stats["num_fallbacks"]) >= 1


def test_stagnation_reported_not_success():
    # float32 cannot reach rtol 1e-9: the recursive residual falls past the true residual's
    # floor; the solve reports stagnation (with the residual reached), never success
    import scimlx.linsolve as ls

    op = ls.poisson((24, 24), dtype=jnp.float32)
    b = jnp.asarray(np.random.default_rng(0).standard_normal((24, 24)), jnp.float32)
    sol = cd_solve(op, b, rtol=1e-9, max_steps=2000, throw=False)
    assert sol.result == RESULTS.stagnation
    assert int(sol.stats["num_steps"]) < 2000
    true = np.linalg.norm(np.asarray(b - op.mv(sol.value), np.float64))
    assert true > 1e-9 * float(sol.stats["b_norm"])
    np.testing.assert_allclose(float(sol.stats["true_residual_norm"]), true, rtol=1e-2)
    off = cd_solve(op, b, rtol=1e-9, max_steps=300, stagnation_window=0, throw=False)
    assert off.result == RESULTS.max_steps_reached
    with pytest.raises(ValueError, match="`x0`"):
        cd_solve(op, b, x0=jnp.zeros((12, 12), jnp.float32))
