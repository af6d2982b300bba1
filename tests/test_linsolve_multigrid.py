import itertools

import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spla

import scimlx
import scimlx.linsolve as ls


# ----------------------------------------------------------------------------------------------
# transfer operators


def _rand(key, shape):
    return jax.random.normal(jax.random.key(key), shape, dtype=jnp.float64)


# odd sizes only where the transfer is defined for them (3-point kernel, Dirichlet)
_ADJOINT_CASES = [
    (boundary, shape, k)
    for boundary in ("dirichlet", "periodic")
    for shape in ((4, 6, 8), (7, 5))
    for k in (3, 4)
    if not ((k != 3 or boundary == "periodic") and any(n % 2 for n in shape))
]


@pytest.mark.parametrize("boundary,shape,k", _ADJOINT_CASES)
def test_restrict_adjoint_of_prolong(boundary, shape, k):
    if k == 3 and boundary == "dirichlet" and len(shape) == 2:
        # the classical Dirichlet alignment (padding 0) is adjoint too
        u = _rand(0, (1,) + shape)
        cs = ls.coarse_shape(shape, 3, 0)
        v = _rand(1, (1,) + cs)
        ru = ls.restrict(u, boundary=boundary, padding=0)
        pv = ls.prolong(v, boundary=boundary, shape=shape, padding=0)
        np.testing.assert_allclose(jnp.vdot(ru, v) * 4, jnp.vdot(u, pv), rtol=1e-12)
    d = len(shape)
    c = 2
    r1 = {2: [0.5, 0.5], 3: [0.25, 0.5, 0.25], 4: [0.125, 0.375, 0.375, 0.125]}[k]
    kern = ls.tensor_kernel(r1, d, c, jnp.float64)
    u = _rand(0, (c,) + shape)
    cshape = ls.coarse_shape(shape, k)
    v = _rand(1, (c,) + cshape)

    @jax.jit
    def pair(u, v):
        ru = ls.restrict(u, kern, boundary=boundary)
        pv = ls.prolong(v, kern, boundary=boundary, shape=shape)
        ru0 = ls.restrict(u, boundary=boundary)
        pv0 = ls.prolong(v, boundary=boundary, shape=shape)
        return ru, jnp.vdot(ru, v), jnp.vdot(u, pv), jnp.vdot(ru0, v), jnp.vdot(u, pv0)

    ru, a, b, a0, b0 = pair(u, v)
    assert ru.shape == (c,) + cshape
    np.testing.assert_allclose(a, b, rtol=1e-12)
    if k == 3:  # default kernels: R = P^T / 2^d
        np.testing.assert_allclose(a0 * 2**d, b0, rtol=1e-12)


def test_restrict_matches_naive_full_weighting():
    u = np.asarray(_rand(3, (1, 9, 7)))
    out = np.asarray(ls.restrict(jnp.asarray(u), boundary="dirichlet"))
    up = np.pad(u[0], 1)
    w = np.array([0.25, 0.5, 0.25])
    ref = np.zeros((5, 4))
    for i in range(5):
        for j in range(4):
            ref[i, j] = sum(
                w[a] * w[b] * up[2 * i + a, 2 * j + b] for a in range(3) for b in range(3)
            )
    np.testing.assert_allclose(out[0], ref, rtol=1e-12)


@pytest.mark.parametrize("d", [1, 3])
def test_prolong_linear_exact_interior(d):
    # vertex-centred: coarse node i at fine 2i; cell-centred: coarse cell i at fine 2i + 1/2.
    nf = 9
    xs = np.arange(nf, dtype=np.float64)
    coeffs = np.array([1.0, -2.0, 0.5])[:d]
    fine = sum(c * np.meshgrid(*([xs] * d), indexing="ij")[a] for a, c in enumerate(coeffs)) + 1.0
    xc = xs[::2]
    coarse = sum(
        c * 2 * np.meshgrid(*([xc / 2] * d), indexing="ij")[a] for a, c in enumerate(coeffs)
    )
    coarse = coarse + 1.0
    out = np.asarray(ls.prolong(jnp.asarray(coarse)[None], boundary="dirichlet", shape=(nf,) * d))
    inner = (slice(1, -1),) * d
    np.testing.assert_allclose(out[0][inner], fine[inner], rtol=1e-12)
    # cell-centred bilinear (k = 4)
    nf = 8
    xf = np.arange(nf) + 0.5
    xcc = 2 * np.arange(nf // 2) + 1.0
    gf = np.meshgrid(*([xf] * d), indexing="ij")
    gc = np.meshgrid(*([xcc] * d), indexing="ij")
    fine = sum(c * gf[a] for a, c in enumerate(coeffs)) + 1.0
    coarse = sum(c * gc[a] for a, c in enumerate(coeffs)) + 1.0
    kern = ls.tensor_kernel([0.25, 0.75, 0.75, 0.25], d, 1, jnp.float64)
    out = np.asarray(
        ls.prolong(jnp.asarray(coarse)[None], kern, boundary="neumann", shape=(nf,) * d)
    )
    np.testing.assert_allclose(out[0][inner], fine[inner], rtol=1e-12)


@pytest.mark.parametrize("d", [2])
def test_periodic_transfer_commutes_with_shift(d):
    shape = (8,) * d
    axes = tuple(range(1, d + 1))
    u = _rand(4, (3,) + shape)
    kern = _rand(5, (2, 3) + (3,) * d)
    v = _rand(6, (3,) + (4,) * d)
    k4 = _rand(7, (2, 3) + (4,) * d)

    @jax.jit
    def check(u, v):
        errs = []
        ru = ls.restrict(u, kern, boundary="periodic")
        ru_s = ls.restrict(jnp.roll(u, 2, axis=axes), kern, boundary="periodic")
        errs.append(jnp.max(jnp.abs(ru_s - jnp.roll(ru, 1, axis=axes))))
        for kk in (kern, k4):
            pv = ls.prolong(v, kk, boundary="periodic", shape=shape)
            pv_s = ls.prolong(jnp.roll(v, 1, axis=axes), kk, boundary="periodic", shape=shape)
            errs.append(jnp.max(jnp.abs(pv_s - jnp.roll(pv, 2, axis=axes))))
        c = ls.conv(u, kern, boundary="periodic")
        c_s = ls.conv(jnp.roll(u, 1, axis=axes), kern, boundary="periodic")
        errs.append(jnp.max(jnp.abs(c_s - jnp.roll(c, 1, axis=axes))))
        return jnp.stack(errs)

    assert np.max(np.asarray(check(u, v))) < 1e-12


def _naive_prolong(u, w, boundary, shape, p):
    # the definition: fine[2 i + j - p] += w[j] coarse[i], over the coarse cells and one ghost
    # cell per side (zeros / mirror / wrap), cropped to `shape`
    u, w = np.asarray(u), np.asarray(w)
    d, k = u.ndim - 1, w.shape[-1]
    mode = {"dirichlet": "constant", "periodic": "wrap"}.get(
        boundary, "reflect" if k % 2 else "edge"
    )
    up = np.pad(u, [(0, 0)] + [(1, 1)] * d, mode=mode)
    depthwise = w.shape[1] == 1 and u.shape[0] > 1
    out = np.zeros((w.shape[0],) + tuple(shape))
    for i in itertools.product(*[range(m) for m in up.shape[1:]]):
        for j in itertools.product(range(k), repeat=d):
            f = tuple(2 * (a - 1) + b - p for a, b in zip(i, j))
            if all(0 <= x < n for x, n in zip(f, shape)):
                if depthwise:
                    out[(slice(None),) + f] += w[(slice(None), 0) + j] * up[(slice(None),) + i]
                else:
                    out[(slice(None),) + f] += (
                        w[(slice(None), slice(None)) + j] @ up[(slice(None),) + i]
                    )
    return out


@pytest.mark.parametrize(
    "d,k,p,n,boundaries",
    [
        (1, 4, 1, 8, ("periodic", "neumann")),
        (2, 4, 1, 8, ("dirichlet", "neumann", "periodic")),
        (2, 3, 1, 7, ("dirichlet", "neumann")),
        (2, 3, 0, 7, ("dirichlet",)),
        (2, 2, 0, 6, ("dirichlet", "periodic")),
        (3, 4, 1, 6, ("dirichlet",)),
    ],
)
def test_prolong_matches_naive_definition(d, k, p, n, boundaries):
    # full and depthwise kernels; the zero-padded (Dirichlet) path pads inside the convolution
    shape = (n,) * d
    coarse = tuple((m + 2 * p - k) // 2 + 1 for m in shape)
    u = _rand(1, (3,) + coarse)
    for w in (_rand(2, (2, 3) + (k,) * d), _rand(3, (3, 1) + (k,) * d)):
        for b in boundaries:
            ours = ls.prolong(u, w, boundary=b, shape=shape, padding=p)
            ref = _naive_prolong(u, w, b, shape, p)
            np.testing.assert_allclose(np.asarray(ours), ref, rtol=1e-12, atol=1e-12)


def test_conv_matches_laplacian_matrix():
    n = 6
    u = _rand(8, (1, n, n))
    k = ls.laplacian_kernel(2)
    T = sp.diags([-np.ones(n - 1), 2 * np.ones(n), -np.ones(n - 1)], [-1, 0, 1])
    A = sp.kron(T, sp.eye(n)) + sp.kron(sp.eye(n), T)
    out = ls.conv(u, k, boundary="dirichlet")
    np.testing.assert_allclose(np.asarray(out).ravel(), A @ np.asarray(u).ravel(), rtol=1e-12)


def test_transfer_bad_input():
    with pytest.raises(ValueError, match="boundary"):
        ls.restrict(jnp.zeros((1, 4, 4)), boundary="robin")
    with pytest.raises(ValueError, match="shape"):
        ls.prolong(jnp.zeros((1, 3, 3)), boundary="dirichlet", shape=(8, 8))


@pytest.mark.parametrize("boundary", ["dirichlet", "periodic"])
def test_vcycle_stencil_converges(boundary):
    n = 32 if boundary == "periodic" else 31
    T = sp.diags([-np.ones(n - 1), 2 * np.ones(n), -np.ones(n - 1)], [-1, 0, 1]).tolil()
    if boundary == "periodic":
        T[0, n - 1] = -1
        T[n - 1, 0] = -1
    A = (sp.kron(T, sp.eye(n)) + sp.kron(sp.eye(n), T)).tocsr()
    f = np.asarray(_rand(9, (n, n)))
    if boundary == "periodic":
        f = f - f.mean()
    u = jnp.zeros((n, n))
    r0 = np.linalg.norm(f)
    norms = []
    for _ in range(8):
        u = ls.vcycle_stencil(jnp.asarray(f), u, levels=4, boundary=boundary)
        un = np.asarray(u).ravel()
        if boundary == "periodic":
            u = u - jnp.mean(u)
            un = un - un.mean()
        norms.append(np.linalg.norm(f.ravel() - A @ un))
    rates = np.array(norms[1:]) / np.array(norms[:-1])
    assert norms[-1] < 1e-3 * r0
    assert np.max(rates[2:]) < 0.4
    if boundary == "dirichlet":
        ref = spla.spsolve(A, f.ravel())
        for _ in range(10):
            u = ls.vcycle_stencil(jnp.asarray(f), u, levels=4, boundary=boundary)
        np.testing.assert_allclose(np.asarray(u).ravel(), ref, rtol=1e-6, atol=1e-6)


# ----------------------------------------------------------------------------------------------
# cell-centred multigrid, PCG


def _problem(shape, seed, kind="random", coefficient=False):
    solid = jnp.asarray(ls.obstacle_scene(shape, seed=seed, split="test"))
    if coefficient:
        a = jnp.exp(0.5 * jax.random.normal(jax.random.key(seed + 7), shape))
        op = ls.diffusion(a, solid=solid)
    else:
        op = ls.poisson(shape, solid=solid)
    key = jax.random.key(seed)
    b = ls.random_rhs(solid, key=key) if kind == "random" else ls.divergence_rhs(solid, key=key)
    return op, b


@pytest.mark.parametrize(
    "smoother",
    [
        ls.Jacobi(),
        ls.Jacobi(omega=0.6),
        ls.Chebyshev(),
        ls.Chebyshev(degree=3),
        ls.RedBlackGaussSeidel(),
    ],
)
def test_vcycle_symmetric_positive_definite(smoother):
    op, _ = _problem((16, 16), 0)
    vc = ls.multigrid(op, smoother=smoother, max_coarse=16)
    assert len(vc.operators) == 3
    M = np.asarray(vc.as_matrix())
    np.testing.assert_allclose(M, M.T, atol=1e-12)
    assert np.linalg.eigvalsh(M).min() > 0
    # the V-cycle is a good approximate inverse: spectrum of M A close to 1
    A = ls.to_scipy_sparse(op).toarray()
    ev = np.linalg.eigvals(M @ A).real
    assert ev.min() > 0.2 and ev.max() < 1.5


def test_coarsen_matches_rediscretisation():
    # constant coefficient, no solids: coarsening equals the operator built on the coarse grid
    op = ls.poisson((8, 12), boundary=["dirichlet", ("neumann", "dirichlet")], spacing=0.5)
    coarse = ls.coarsen(op)
    ref = ls.poisson((4, 6), boundary=["dirichlet", ("neumann", "dirichlet")], spacing=1.0)
    np.testing.assert_allclose(
        ls.to_scipy_sparse(coarse).toarray(), ls.to_scipy_sparse(ref).toarray(), atol=1e-12
    )
    # a coarse cell is solid only if all its children are
    solid = np.zeros((8, 8), bool)
    solid[0:2, 0:2] = True
    solid[4, 4] = True
    c = ls.coarsen(ls.poisson((8, 8), solid=solid))
    assert bool(c.solid[0, 0]) and not bool(c.solid[2, 2])


@pytest.mark.parametrize("shapes", [((32, 32), (64, 64)), ((16, 16, 16),)], ids=["2d", "3d"])
def test_mg_pcg_held_out_scenes(shapes):
    its = []
    for shape, kind in zip(shapes, ("random", "divergence")):
        op, b = _problem(shape, 11, kind)
        vc = ls.multigrid(op)
        sol = ls.pcg_solve(op, b, preconditioner=vc, rtol=1e-6, max_steps=50)
        res = float(jnp.linalg.norm(b - op.mv(sol.value)) / jnp.linalg.norm(b))
        assert res <= 1.01e-6
        assert sol.result == scimlx.RESULTS.successful
        its.append(int(sol.stats["num_steps"]))
        if int(np.prod(shape)) <= 32**2:
            ref = spla.spsolve(ls.to_scipy_sparse(op).tocsc(), np.asarray(b).ravel())
            np.testing.assert_allclose(
                np.asarray(sol.value).ravel(), ref, rtol=0, atol=1e-5 * np.abs(ref).max()
            )
    assert max(its) <= 12, its
    if len(its) == 2:
        assert its[1] <= 1.5 * its[0] + 1, its


def test_pcg_zero_entries_and_max_steps():
    # the lineax element-wise pitfall: b with exact zeros where r is exactly zero
    n = 50
    solid = np.zeros((n + 5,), bool)
    solid[n:] = True
    op = ls.poisson((n + 5,), solid=solid)
    b = jnp.where(jnp.asarray(solid), 0.0, 1.0)
    sol = ls.pcg_solve(op, b, rtol=1e-8, max_steps=200)
    ref = spla.spsolve(ls.to_scipy_sparse(op).tocsc(), np.asarray(b))
    np.testing.assert_allclose(np.asarray(sol.value), ref, rtol=1e-6)
    assert int(sol.stats["num_steps"]) <= n
    short = ls.pcg_solve(op, b, rtol=1e-8, max_steps=3, throw=False)
    assert short.result == scimlx.RESULTS.max_steps_reached
    assert int(short.stats["num_steps"]) == 3
    hist = np.asarray(short.stats["residual_history"])
    assert np.all(np.isfinite(hist))
    with pytest.raises(Exception):
        ls.pcg_solve(op, b, rtol=1e-8, max_steps=3)


def test_lineax_cg_accepts_vcycle_and_multigrid_solve():
    op, b = _problem((16, 16), 3, coefficient=True)
    vc = ls.multigrid(op, max_coarse=16)
    bn = float(jnp.linalg.norm(b))
    solver = lx.CG(rtol=0.0, atol=1e-8 * bn, norm=lx.internal.two_norm, max_steps=100)
    sol = lx.linear_solve(op, b, solver, options={"preconditioner": vc})
    assert float(jnp.linalg.norm(b - op.mv(sol.value))) <= 1e-8 * bn
    assert int(sol.stats["num_steps"]) <= 12
    mg = ls.multigrid_solve(op, b, vcycle=vc, rtol=1e-8, max_steps=60)
    assert float(jnp.linalg.norm(b - op.mv(mg.value))) <= 1e-8 * bn


@pytest.mark.parametrize("coarse", [ls.BlackBox(), ls.Aggregation()], ids=["blackbox", "agg"])
def test_mixed_precision_hierarchy(coarse):
    # a float32 hierarchy for a float64 operator: the cycle is the float64 cycle up to float32
    # rounding, it keeps the operator's vector dtype (so lineax's CG accepts it), and PCG
    # around it still reaches a float64 tolerance (checked against scipy's direct solve)
    op, b = _problem((32, 32), 5, coefficient=True)
    vc64 = ls.multigrid(op, coarse=coarse)
    vc32 = ls.multigrid(op, coarse=coarse, dtype=jnp.float32)
    assert vc32.in_structure() == op.in_structure() == vc64.in_structure()
    floats = [x for x in jax.tree.leaves(vc32) if eqx.is_array(x) and x.dtype.kind == "f"]
    assert floats and all(x.dtype == jnp.float32 for x in floats)
    y64, y32 = vc64.mv(b), vc32.mv(b)
    assert y32.dtype == jnp.float64
    rel = float(jnp.linalg.norm(y32 - y64) / jnp.linalg.norm(y64))
    assert 1e-10 < rel < 1e-5, rel  # computed in float32, so not the float64 cycle's bits
    its = {}
    ref = spla.spsolve(ls.to_scipy_sparse(op).tocsc(), np.asarray(b).ravel())
    for name, vc in (("f64", vc64), ("f32", vc32)):
        sol = ls.pcg_solve(op, b, preconditioner=vc, rtol=1e-11, max_steps=60)
        assert sol.value.dtype == jnp.float64
        np.testing.assert_allclose(
            np.asarray(sol.value).ravel(), ref, rtol=0, atol=1e-9 * np.abs(ref).max()
        )
        its[name] = int(sol.stats["num_steps"])
    assert its["f32"] <= its["f64"] + 2, its
    bn = float(jnp.linalg.norm(b))
    solver = lx.CG(rtol=0.0, atol=1e-10 * bn, norm=lx.internal.two_norm, max_steps=100)
    sol = lx.linear_solve(op, b, solver, options={"preconditioner": vc32})
    assert float(jnp.linalg.norm(b - op.mv(sol.value))) <= 1e-10 * bn
    with pytest.raises(TypeError, match="`dtype`"):
        ls.multigrid(op, dtype=jnp.int32)
    with pytest.raises(TypeError, match="`dtype`"):
        ls.multigrid(op, dtype="fast")


def test_pcg_gradients_match_finite_differences():
    shape = (8, 8)
    solid = jnp.asarray(ls.obstacle_scene(shape, seed=4))
    a0 = jnp.exp(0.3 * jax.random.normal(jax.random.key(2), shape))
    b0 = ls.random_rhs(solid, key=jax.random.key(0))
    w = jax.random.normal(jax.random.key(9), shape)
    vc = ls.multigrid(ls.diffusion(a0, solid=solid), max_coarse=16)

    @jax.jit
    def f(a, b):
        op = ls.diffusion(a, solid=solid)
        sol = ls.pcg_solve(op, b, preconditioner=vc, rtol=1e-13, atol=1e-30, max_steps=100)
        return jnp.sum(w * sol.value)

    ga, gb = jax.grad(f, argnums=(0, 1))(a0, b0)
    eps = 1e-5
    da = jax.random.normal(jax.random.key(5), shape)
    db = jnp.where(solid, 0.0, jax.random.normal(jax.random.key(6), shape))
    fd_a = (f(a0 + eps * da, b0) - f(a0 - eps * da, b0)) / (2 * eps)
    fd_b = (f(a0, b0 + eps * db) - f(a0, b0 - eps * db)) / (2 * eps)
    np.testing.assert_allclose(jnp.vdot(ga, da), fd_a, rtol=1e-6)
    np.testing.assert_allclose(jnp.vdot(gb, db), fd_b, rtol=1e-6)


def test_pcg_vmap_over_rhs():
    op, _ = _problem((16, 16), 5)
    vc = ls.multigrid(op, max_coarse=16)
    keys = jax.random.split(jax.random.key(1), 3)
    bs = jax.vmap(lambda k: ls.random_rhs(op.solid, key=k))(keys)
    sols = jax.vmap(lambda b: ls.pcg_solve(op, b, preconditioner=vc, rtol=1e-8, throw=False))(bs)
    A = ls.to_scipy_sparse(op).tocsc()
    assert bool(jnp.all(sols.result == scimlx.RESULTS.successful))
    for i in range(3):
        ref = spla.spsolve(A, np.asarray(bs[i]).ravel())
        np.testing.assert_allclose(np.asarray(sols.value[i]).ravel(), ref, atol=1e-6)


def test_pcg_stagnation_and_true_residual():
    # float32 cannot reach rtol 1e-9: the recursive residual keeps falling past the true one's
    # floor; the solve must neither report success nor run silently to max_steps
    op = ls.poisson((32, 32), dtype=jnp.float32)
    b = ls.random_rhs(op.solid, key=jax.random.key(0)).astype(jnp.float32)
    vc = ls.multigrid(op)
    sol = ls.pcg_solve(op, b, preconditioner=vc, rtol=1e-9, max_steps=1000, throw=False)
    assert sol.result == scimlx.RESULTS.stagnation
    steps = int(sol.stats["num_steps"])
    assert 100 <= steps < 1000
    bn = float(sol.stats["b_norm"])
    true = np.linalg.norm(np.asarray(b - op.mv(sol.value), np.float64))
    np.testing.assert_allclose(float(sol.stats["true_residual_norm"]), true, rtol=1e-2)
    assert true > 1e-9 * bn
    with pytest.raises(Exception, match="stagnat"):
        ls.pcg_solve(op, b, preconditioner=vc, rtol=1e-9, max_steps=1000)
    # detection off: the same solve runs to max_steps and says so
    off = ls.pcg_solve(op, b, rtol=1e-9, max_steps=150, stagnation_window=0, throw=False)
    assert off.result == scimlx.RESULTS.max_steps_reached
    assert int(off.stats["num_steps"]) == 150


def test_pcg_bad_inputs_name_argument_and_shapes():
    op = ls.poisson((32, 32))
    b = ls.random_rhs(op.solid, key=jax.random.key(0))
    with pytest.raises(ValueError, match=r"`x0`.*\(32, 32\).*\(16, 16\)"):
        ls.pcg_solve(op, b, x0=jnp.zeros((16, 16)))
    other = ls.multigrid(ls.poisson((16, 16)))
    with pytest.raises(ValueError, match=r"`preconditioner`.*\(16, 16\).*\(32, 32\)"):
        ls.pcg_solve(op, b, preconditioner=other)
    with pytest.raises(ValueError, match=r"`vcycle`.*\(16, 16\).*\(32, 32\)"):
        ls.multigrid_solve(op, b, vcycle=other)


class _MyDampedJacobi(ls.AbstractSmoother):
    # damped Jacobi written from its definition, u <- u + w (f - A u) / diag(A) on fluid cells,
    # with the diagonal probed from the operator (not the one the V-cycle passes)
    weight: float = eqx.field(static=True)

    def init(self, operator, diagonal):
        shape = operator.grid_shape
        n = int(np.prod(shape))
        columns = jax.vmap(operator.mv)(jnp.eye(n).reshape((n,) + shape)).reshape(n, n)
        return jnp.diagonal(columns).reshape(shape)

    def step(self, operator, diagonal, data, f, u, *, post):
        fluid = ~operator.solid
        return u + jnp.where(fluid, self.weight * (f - operator.mv(u)) / data, 0.0)


class _FullCoarsening(ls.AbstractCoarsening):
    # black-box levels that coarsen every axis that can be halved (no semi-coarsening)
    eager = True

    def coarsen(self, operator):
        axes = tuple(n >= 2 for n in operator.grid_shape)
        return ls.blackbox_coarsen(operator, axes) if any(axes) else None


def test_user_smoother_and_coarsening_subclasses():
    op, b = _problem((32, 32), 1)
    # a user's smoother converges and matches the built-in one (same sweep, same cycle)
    mine = ls.multigrid(op, smoother=_MyDampedJacobi(0.7), max_coarse=16)
    ours = ls.multigrid(op, smoother=ls.Jacobi(omega=0.7), max_coarse=16)
    np.testing.assert_allclose(mine.mv(b), ours.mv(b), rtol=1e-12, atol=1e-12)
    sol = ls.pcg_solve(op, b, preconditioner=mine, rtol=1e-8, max_steps=60)
    ref = ls.pcg_solve(op, b, preconditioner=ours, rtol=1e-8, max_steps=60)
    assert int(sol.stats["num_steps"]) == int(ref.stats["num_steps"]) <= 20
    A = ls.to_scipy_sparse(op).tocsc()
    np.testing.assert_allclose(
        np.asarray(sol.value).ravel(), spla.spsolve(A, np.asarray(b).ravel()), rtol=1e-6, atol=1e-8
    )
    # a user's coarsening builds the levels: equal to black-box without semi-coarsening
    mine = ls.multigrid(op, coarse=_FullCoarsening(), max_coarse=16)
    ours = ls.multigrid(op, coarse=ls.BlackBox(semicoarsen=0.0), max_coarse=16)
    assert [o.grid_shape for o in mine.operators] == [o.grid_shape for o in ours.operators]
    np.testing.assert_allclose(mine.mv(b), ours.mv(b), rtol=1e-12, atol=1e-12)
    # strategies are Modules: a string names the argument
    with pytest.raises(TypeError, match="smoother"):
        ls.multigrid(op, smoother="jacobi")
    with pytest.raises(ValueError, match="`omega`"):
        ls.Jacobi(omega=2.5)
    with pytest.raises(ValueError, match="`degree`"):
        ls.Chebyshev(degree=0)
