import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spla

import scimlx
import scimlx.linsolve as ls


def _naive_prolongation(A, shape, solid, coarsened, periodic):
    """Dendy / de Zeeuw interpolation assembled cell by cell from the dense matrix `A`; a fluid
    cell left without weights is injected from its first solid coarse corner."""
    d = len(shape)
    idx = np.arange(int(np.prod(shape))).reshape(shape)
    cshape = tuple(n // 2 if c else n for n, c in zip(shape, coarsened))
    cidx = np.arange(int(np.prod(cshape))).reshape(cshape)
    P = np.zeros((A.shape[0], cidx.size))

    def even_axes(p):
        return tuple(a for a in range(d) if coarsened[a] and p[a] % 2 == 0)

    def neighbour(p, o):
        q = []
        for a in range(d):
            x = p[a] + o[a]
            if periodic[a]:
                x %= shape[a]
            elif not 0 <= x < shape[a]:
                return None
            q.append(x)
        return tuple(q)

    cells = sorted(np.ndindex(*shape), key=lambda p: len(even_axes(p)))
    for p in cells:
        if solid[p]:
            continue
        E = even_axes(p)
        if not E:
            ci = tuple((x - 1) // 2 if c else x for x, c in zip(p, coarsened))
            P[idx[p], cidx[ci]] = 1.0
            continue
        ac = {}
        for o in itertools.product((-1, 0, 1), repeat=d):
            nb = neighbour(p, o)
            if nb is None:
                continue
            key = tuple(o[a] if a in E else 0 for a in range(d))
            ac[key] = ac.get(key, 0.0) + A[idx[p], idx[nb]]
        row = np.zeros(cidx.size)
        for key, v in ac.items():
            if any(key):
                nb = neighbour(p, key)
                row -= v * P[idx[nb]]
        den = ac[(0,) * d]
        # no equation to interpolate with (e.g. every coupling is to a solid): no weight
        P[idx[p]] = row / den if abs(den) > 1e-12 * abs(A[idx[p], idx[p]]) else 0.0
        if not P[idx[p]].any():  # interpolated from nothing: inject from a solid corner
            for signs in itertools.product((-1, 1), repeat=len(E)):
                o = [0] * d
                for a, sg in zip(E, signs):
                    o[a] = sg
                nb = neighbour(p, o)
                if nb is not None and solid[nb]:
                    ci = tuple((x - 1) // 2 if c else x for x, c in zip(nb, coarsened))
                    P[idx[p], cidx[ci]] = 1.0
                    break
    return P, cshape


@pytest.mark.parametrize(
    "shape, boundary, coarsened",
    [
        ((9, 10), ["dirichlet", ("neumann", "dirichlet")], (True, True)),
        ((8, 7), ["periodic", "dirichlet"], (True, True)),
        ((11, 6), "dirichlet", (True, False)),
        ((5, 6, 7), ["dirichlet", "periodic", ("dirichlet", "neumann")], (True, True, True)),
        ((12, 10), "periodic", (True, True)),
        ((6, 7, 9), ["periodic", "dirichlet", "dirichlet"], (True, False, True)),
    ],
    ids=["2d-odd-mixed", "2d-periodic", "2d-semi", "3d", "2d-periodic-both", "3d-semi"],
)
def test_blackbox_matches_scipy_ptap(shape, boundary, coarsened):
    rng = np.random.default_rng(1)
    solid = np.zeros(shape, bool)
    solid[(slice(1, 3),) * len(shape)] = True
    solid[tuple(n - 2 for n in shape)] = True
    coef = jnp.asarray(np.exp(2.0 * rng.normal(size=shape)))
    op = ls.diffusion(coef, boundary=boundary, solid=jnp.asarray(solid))
    A = ls.to_scipy_sparse(op)
    Pref, cshape = _naive_prolongation(A.toarray(), shape, solid, coarsened, op.periodic)
    coarse, tr = ls.blackbox_coarsen(op, coarsened)
    assert coarse.grid_shape == cshape and coarse.width == 3
    nc = int(np.prod(cshape))
    P = np.asarray(jax.vmap(tr.prolong)(jnp.eye(nc).reshape((nc,) + cshape))).reshape(nc, -1).T
    nf = P.shape[0]
    R = np.asarray(jax.vmap(tr.restrict)(jnp.eye(nf).reshape((nf,) + shape))).reshape(nf, nc).T
    np.testing.assert_allclose(P, Pref, atol=1e-12)
    np.testing.assert_allclose(R, P.T, atol=1e-14)
    Ps = sp.csr_matrix(Pref)
    ref = (Ps.T @ A @ Ps).toarray()
    empty = ~np.asarray(Ps.getnnz(axis=0) > 0)
    np.testing.assert_array_equal(np.asarray(coarse.solid).ravel(), empty)
    ref[np.ix_(empty, empty)] = np.eye(int(empty.sum()))
    scale = np.abs(ref).max()
    np.testing.assert_allclose(np.asarray(coarse.as_matrix()), ref, atol=1e-12 * scale)
    np.testing.assert_allclose(ls.to_scipy_sparse(coarse).toarray(), ref, atol=1e-12 * scale)
    # a second level, from the 9/27-point Galerkin stencil itself
    if all(n >= 2 for n in cshape):
        c_axes = tuple(
            c and (n >= 4 and n % 2 == 0 if per else n >= 2)
            for c, n, per in zip(coarsened, cshape, op.periodic)
        )
        P2, _ = _naive_prolongation(ref, cshape, np.asarray(coarse.solid), c_axes, op.periodic)
        c2, _ = ls.blackbox_coarsen(coarse, c_axes)
        ref2 = P2.T @ ref @ P2
        empty2 = ~np.any(P2 != 0, axis=0)
        ref2[np.ix_(empty2, empty2)] = np.eye(int(empty2.sum()))
        np.testing.assert_allclose(
            np.asarray(c2.as_matrix()), ref2, atol=1e-12 * np.abs(ref2).max()
        )


@pytest.mark.parametrize(
    "shape, boundary",
    [
        ((7, 9), ["dirichlet", ("neumann", "dirichlet")]),
        ((3, 8), "periodic"),
        ((5, 4, 6), ["periodic", ("dirichlet", "neumann"), "dirichlet"]),
    ],
    ids=["2d-mixed", "2d-periodic-3", "3d"],
)
def test_fine_stencil_matches_scipy_assembly(shape, boundary):
    """The fine 3^d-point stencil black-box coarsening starts from, read off a diffusion
    operator's face coefficients, against the operator's independent NumPy assembly."""
    from scimlx.linsolve._blackbox import _stencil3

    rng = np.random.default_rng(3)
    coef = jnp.asarray(np.exp(rng.normal(size=shape)))
    solid = jnp.asarray(rng.random(shape) < 0.2)
    spacing = tuple(0.5 + 0.25 * i for i in range(len(shape)))
    op = ls.diffusion(coef, boundary=boundary, solid=solid, spacing=spacing)
    st = ls.StencilOperator(_stencil3(op), op.solid, op.boundary)
    ref = ls.to_scipy_sparse(op).toarray()
    np.testing.assert_allclose(np.asarray(st.as_matrix()), ref, atol=1e-13 * np.abs(ref).max())


def _solve(op, b, **kw):
    vc = ls.multigrid(op, **kw)
    sol = ls.pcg_solve(op, b, preconditioner=vc, rtol=1e-8, max_steps=100, throw=False)
    assert sol.result == scimlx.RESULTS.successful
    A = ls.to_scipy_sparse(op)
    res = np.linalg.norm(np.asarray(b).ravel() - A @ np.asarray(sol.value).ravel())
    assert res <= 1.01e-8 * float(jnp.linalg.norm(b))
    return vc, int(sol.stats["num_steps"])


def test_any_grid_size_coarsens():
    # odd sides on both sides of a power of two, and one (99 = 2 * 49 + 1) whose halvings
    # stay odd: the coarsest grid stays small, no dense whole-grid fallback
    sides = (31, 33, 99)
    its = {}
    for n in (32,) + sides:
        shape = (n, n)
        solid = jnp.asarray(ls.obstacle_scene(shape, seed=3, split="test"))
        op = ls.poisson(shape, solid=solid)
        b = ls.random_rhs(solid, key=jax.random.key(n))
        vc, its[n] = _solve(op, b)
        assert int(np.prod(vc.operators[-1].grid_shape)) <= 256
        # odd sides: black-box levels by default
        assert isinstance(vc.transfers[0], ls.BoxTransfer) == (n % 2 == 1)
    for n in sides:
        assert its[n] <= its[32] + 3, its


def test_odd_3d_grid_and_bad_periodic_grid():
    shape = (11, 9, 13)
    solid = jnp.asarray(ls.obstacle_scene(shape, seed=2, split="test"))
    op = ls.poisson(shape, solid=solid)
    b = ls.random_rhs(solid, key=jax.random.key(0))
    vc, its = _solve(op, b)
    assert int(np.prod(vc.operators[-1].grid_shape)) <= 256
    assert its <= 12
    # odd periodic sides cannot be halved: the error names the grid
    with pytest.raises(ValueError, match=r"\(33, 33\)"):
        ls.multigrid(ls.poisson((33, 33), boundary="periodic"))
    with pytest.raises(ValueError, match=r"Rediscretise\(\).*\(63, 63\).*BlackBox\(\)"):
        ls.multigrid(ls.poisson((63, 63)), coarse=ls.Rediscretise())


def _maze(n, width, seed):
    rng = np.random.default_rng(seed)
    cell = width + 1
    m = n // cell
    solid = np.ones((n, n), bool)
    seen = np.zeros((m, m), bool)
    stack = [(0, 0)]
    seen[0, 0] = True
    solid[:width, :width] = False
    while stack:
        i, j = stack[-1]
        nb = [
            (i + a, j + b)
            for a, b in ((1, 0), (-1, 0), (0, 1), (0, -1))
            if 0 <= i + a < m and 0 <= j + b < m and not seen[i + a, j + b]
        ]
        if not nb:
            stack.pop()
            continue
        a, b = nb[rng.integers(len(nb))]
        seen[a, b] = True
        i0, j0 = min(i, a), min(j, b)
        solid[i0 * cell : max(i, a) * cell + width, j0 * cell : max(j, b) * cell + width] = False
        stack.append((a, b))
    return ls.remove_enclosed(solid)


def test_blackbox_hard_geometries():
    n = 64
    # a maze of 3-cell corridors (bilinear Galerkin coarse grids need about 4x more here)
    solid = jnp.asarray(_maze(n, 3, 0))
    op = ls.poisson((n, n), solid=solid)
    b = ls.random_rhs(solid, key=jax.random.key(1))
    _, its_bb = _solve(op, b, coarse=ls.BlackBox())
    assert its_bb <= 20, its_bb
    # high-contrast inclusions (k = 1e3 in k = 1)
    rng = np.random.default_rng(0)
    X, Y = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    inc = np.zeros((n, n), bool)
    for _ in range(12):
        cx, cy, r = rng.uniform(0, n), rng.uniform(0, n), rng.uniform(2, 6)
        inc |= (X - cx) ** 2 + (Y - cy) ** 2 <= r * r
    op = ls.diffusion(jnp.asarray(np.where(inc, 1e3, 1.0)))
    b = ls.random_rhs(op.solid, key=jax.random.key(2))
    _, its_bb = _solve(op, b)
    assert its_bb <= 12, its_bb
    ref = spla.spsolve(ls.to_scipy_sparse(op).tocsc(), np.asarray(b).ravel())
    assert np.isfinite(ref).all()


def test_semicoarsening_for_anisotropy():
    n = 32
    base = ls.poisson((n, n))
    op = ls.DiffusionOperator(
        (100.0 * base.faces[0], base.faces[1]), base.solid, base.boundary, base.spacing
    )
    b = ls.random_rhs(op.solid, key=jax.random.key(3))
    vc, its = _solve(op, b)
    # the first levels halve the strongly coupled axis only
    assert vc.operators[1].grid_shape == (n // 2, n)
    assert its <= 10, its
    _, its_full = _solve(op, b, coarse=ls.BlackBox(semicoarsen=0.0))
    assert its < its_full
