"""MgNO: parameter counts, linearity, boundary handling, and the classical V-cycle it contains."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from scimlx.linsolve import laplacian_kernel, vcycle_stencil
from scimlx.neuralop import count_params, FNO, MgNO, MgNOVCycle


def _torch_count_vcycle(cu, cf, its, pk):
    # Independent count of the reference's MgConv_DC parameters (bias-free convolutions):
    # 9 cu cf for the initial S, 18 cu cf per further smoothing step, 9 (cu^2 + cf^2) per
    # restriction pair (Pi, R), k^2 cu^2 per transposed convolution.
    steps = sum(p + q for p, q in its) - 1
    return (
        9 * cu * cf
        + 18 * cu * cf * steps
        + 9 * (cu**2 + cf**2) * (len(its) - 1)
        + sum(k * k * cu * cu for k in pk)
    )


def test_reference_parameter_counts():
    its = [(1, 0)] * 5 + [(2, 0)]
    key = jax.random.key(0)
    darcy = eqx.filter_eval_shape(MgNO, 1, 1, 24, 4, its, grid_shape=(256, 256), key=key)
    assert count_params(darcy) == 572_661
    smooth = eqx.filter_eval_shape(MgNO, 1, 1, 24, 5, its, grid_shape=(211, 211), key=key)
    assert count_params(smooth) == 678_093
    # the 211 grid gets the reference's hard-coded prolongation kernels [3, 4, 3, 3, 4]
    assert [p.shape[-1] for p in smooth.vcycles[0].P] == [3, 4, 3, 3, 4]
    # formula cross-check, layer by layer (1x1 skips with bias, bias-free head)
    expected = (
        _torch_count_vcycle(24, 1, its, [4] * 5)
        + 3 * _torch_count_vcycle(24, 24, its, [4] * 5)
        + (24 + 24)
        + 3 * (24 * 24 + 24)
        + 24
    )
    assert expected == 572_661
    # FNO paper Darcy model (complex weights counted as two reals, as `count_params` there)
    assert count_params(eqx.filter_eval_shape(FNO, 1, 1, 12, 32, key=key)) == 2_368_001
    # counting a real model gives the same as counting its shapes
    small = MgNO(1, 1, 4, 2, its[-3:], key=key)
    shapes = eqx.filter_eval_shape(MgNO, 1, 1, 4, 2, its[-3:], key=key)
    assert count_params(small) == count_params(shapes)
    assert count_params(small) == sum(x.size for x in jax.tree_util.tree_leaves(small))


@pytest.mark.parametrize(
    "boundary,residual", [("dirichlet", False), ("neumann", True), ("periodic", True)]
)
def test_vcycle_is_linear(boundary, residual):
    v = MgNOVCycle(2, 3, [(2, 1), (1, 1), (2, 0)], boundary, residual, key=jax.random.key(1))
    k1, k2 = jax.random.split(jax.random.key(2))
    x = jax.random.normal(k1, (2, 16, 16))
    y = jax.random.normal(k2, (2, 16, 16))
    vj = eqx.filter_jit(v)
    lhs = vj(2.0 * x - 3.0 * y)
    rhs = 2.0 * vj(x) - 3.0 * vj(y)
    assert lhs.shape == (3, 16, 16)
    np.testing.assert_allclose(lhs, rhs, rtol=1e-11, atol=1e-11)


@pytest.mark.parametrize("ndim,shape", [(1, (64,)), (2, (32, 16)), (3, (8, 8, 8))])
def test_periodic_shift_equivariance(ndim, shape):
    levels = 4 if ndim < 3 else 3
    m = 2 ** (levels - 1)
    model = MgNO(
        1,
        1,
        3,
        1,
        [(1, 1)] * (levels - 1) + [(2, 0)],
        "periodic",
        ndim=ndim,
        key=jax.random.key(3),
    )
    model = eqx.filter_jit(model)
    x = jax.random.normal(jax.random.key(4), (1,) + shape)
    axes = tuple(range(1, ndim + 1))
    for shifts in [(m,) * ndim, tuple(m * (i + 1) for i in range(ndim))]:
        y1 = model(jnp.roll(x, shifts, axis=axes))
        y2 = jnp.roll(model(x), shifts, axis=axes)
        np.testing.assert_allclose(y1, y2, rtol=0, atol=1e-12)
    # a shift by one is not a symmetry of the stride-2 hierarchy: the test above is not vacuous
    y1 = model(jnp.roll(x, 1, axis=1))
    y2 = jnp.roll(model(x), 1, axis=1)
    assert float(jnp.max(jnp.abs(y1 - y2))) > 1e-6


def _handset_vcycle(levels, boundary, spacing, omega, coarse_sweeps, pad):
    """An MgNO V-cycle whose weights are a classical multigrid cycle (1 channel)."""
    its = [(1, 1)] * (levels - 1) + [(coarse_sweeps, 0)]
    v = MgNOVCycle(
        1,
        1,
        its,
        boundary,
        residual_restriction=True,
        transfer_padding=pad,
        key=jax.random.key(0),
    )
    lap = laplacian_kernel(2, jnp.float64)
    delta = jnp.zeros((1, 1, 3, 3)).at[0, 0, 1, 1].set(1.0)
    fw = jnp.outer(jnp.array([1.0, 2.0, 1.0]), jnp.array([1.0, 2.0, 1.0]))
    A = [lap / (spacing * 2.0**lvl) ** 2 for lvl in range(levels)]
    S = [delta * omega * (spacing * 2.0**lvl) ** 2 / 4.0 for lvl in range(levels)]

    def sm(lvl):
        from scimlx.neuralop import MgNOSmoother

        return MgNOSmoother(A=A[lvl], S=S[lvl])

    v = eqx.tree_at(lambda t: t.init, v, S[0])
    v = eqx.tree_at(
        lambda t: t.pre,
        v,
        tuple(tuple(sm(lvl) for _ in range(len(v.pre[lvl]))) for lvl in range(levels)),
    )
    v = eqx.tree_at(
        lambda t: t.post,
        v,
        tuple(tuple(sm(lvl) for _ in range(len(v.post[lvl]))) for lvl in range(levels)),
    )
    v = eqx.tree_at(lambda t: t.Pi, v, tuple(jnp.zeros((1, 1, 3, 3)) for _ in v.Pi))
    v = eqx.tree_at(lambda t: t.R, v, tuple((fw / 16.0)[None, None] for _ in v.R))
    v = eqx.tree_at(lambda t: t.A_res, v, tuple(A[lvl] for lvl in range(levels - 1)))
    v = eqx.tree_at(lambda t: t.P, v, tuple((fw / 4.0)[None, None] for _ in v.P))
    return v


@pytest.mark.parametrize(
    "boundary,n,pad", [("dirichlet", 31, 0), ("periodic", 32, 1), ("neumann", 33, 1)]
)
def test_handset_vcycle_equals_classical(boundary, n, pad):
    # Jacobi smoothers, 5-point Laplacian A, full-weighting R of the residual, Pi = 0,
    # bilinear prolongation: one MgNO V-cycle is linsolve's classical V-cycle.
    levels, spacing, omega, csw = 4, 1.0 / (n + 1), 0.8, 6
    v = _handset_vcycle(levels, boundary, spacing, omega, csw, pad)
    f = jax.random.normal(jax.random.key(5), (n, n))
    ours = eqx.filter_jit(v)(f[None])[0]
    ref = vcycle_stencil(
        f,
        levels=levels,
        pre=1,
        post=1,
        omega=omega,
        boundary=boundary,
        coarse_sweeps=csw,
        spacing=spacing,
    )
    np.testing.assert_allclose(ours, ref, rtol=1e-12, atol=1e-12 * float(jnp.max(jnp.abs(ref))))


def test_handset_vcycle_solves_poisson_like_scipy():
    # Iterating the hand-set MgNO V-cycle as a multigrid solver converges to scipy's solution.
    n, levels = 31, 4
    h = 1.0 / (n + 1)
    v = eqx.filter_jit(_handset_vcycle(levels, "dirichlet", h, 0.8, 20, 0))
    f = jnp.ones((n, n))
    t = sp.diags([-1.0, 2.0, -1.0], [-1, 0, 1], shape=(n, n)) / h**2
    a = sp.kronsum(t, t).tocsc()
    exact = spla.spsolve(a, np.ones(n * n)).reshape(n, n)
    lap = laplacian_kernel(2, jnp.float64) / h**2
    from scimlx.linsolve import conv

    u = jnp.zeros((1, n, n))
    factors = []
    for _ in range(20):
        r = f[None] - conv(u, lap, boundary="dirichlet")
        u = u + v(r)
        factors.append(float(jnp.linalg.norm(f[None] - conv(u, lap, boundary="dirichlet"))))
    np.testing.assert_allclose(u[0], exact, rtol=1e-8, atol=1e-8 * np.abs(exact).max())
    assert max(b / a for a, b in zip(factors[2:10], factors[3:11])) < 0.5  # multigrid rate


def test_odd_grids_and_errors():
    # 27 -> 14 -> 7: prolongation kernels 3, 4 chosen by the 4 - (n mod 2) rule
    model = MgNO(2, 1, 4, 2, [(1, 0), (1, 0), (2, 0)], grid_shape=(27, 27), key=jax.random.key(6))
    assert [p.shape[-1] for p in model.vcycles[0].P] == [3, 4]
    x = jax.random.normal(jax.random.key(7), (2, 27, 27))
    assert eqx.filter_jit(model)(x).shape == (1, 27, 27)
    even = MgNO(2, 1, 4, 1, [(1, 0), (1, 0), (2, 0)], key=jax.random.key(6))
    with pytest.raises(ValueError, match="grid_shape"):
        even(x)
    with pytest.raises(ValueError, match=r"must have shape \(2,"):
        even(x[:1])
    periodic = MgNO(1, 1, 4, 1, [(1, 0)] * 3, "periodic", key=jax.random.key(6))
    with pytest.raises(ValueError, match="divisible"):
        periodic(jnp.zeros((1, 18, 18)))
    with pytest.raises(ValueError, match="too small"):
        periodic(jnp.zeros((1, 2, 2)))
    with pytest.raises(ValueError, match="boundary"):
        MgNO(1, 1, 4, 1, [(1, 0)], "robin", key=jax.random.key(6))
    with pytest.raises(ValueError, match="iterations"):
        MgNO(1, 1, 4, 1, [(0, 1)], key=jax.random.key(6))


def test_transforms_and_gradient_matches_finite_differences():
    model = MgNO(1, 1, 2, 1, [(1, 1), (2, 0)], "neumann", key=jax.random.key(8))
    xs = jax.random.normal(jax.random.key(9), (3, 1, 8, 8))

    def loss(m):
        return jnp.mean(jax.vmap(m)(xs) ** 2)

    params, static = eqx.partition(model, eqx.is_inexact_array)
    grads = eqx.filter_jit(jax.grad(lambda p: loss(eqx.combine(p, static))))(params)
    direction = jax.tree_util.tree_map(
        lambda g: jax.random.normal(jax.random.key(10), g.shape, g.dtype), grads
    )
    eps = 1e-6
    plus = jax.tree_util.tree_map(lambda p, d: p + eps * d, params, direction)
    minus = jax.tree_util.tree_map(lambda p, d: p - eps * d, params, direction)
    fd = (loss(eqx.combine(plus, static)) - loss(eqx.combine(minus, static))) / (2 * eps)
    an = sum(
        jnp.vdot(g, d)
        for g, d in zip(jax.tree_util.tree_leaves(grads), jax.tree_util.tree_leaves(direction))
    )
    np.testing.assert_allclose(float(an), float(fd), rtol=1e-6)
