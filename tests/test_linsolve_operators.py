import itertools

import equinox as eqx
import jax.numpy as jnp
import lineax as lx
import numpy as np
import pytest
import scipy.sparse as sp

import scimlx.linsolve as ls


def _reference_matrix(a, solid, bnd, spacing):
    """Dense matrix assembled cell by cell from the stencil definition."""
    shape = a.shape
    N = a.size
    A = np.zeros((N, N))
    flat = lambda c: np.ravel_multi_index(c, shape)
    for c in itertools.product(*[range(n) for n in shape]):
        i = flat(c)
        if solid[c]:
            A[i, i] = 1.0
            continue
        for d in range(len(shape)):
            h2 = spacing[d] ** 2
            for s, side in ((-1, 0), (1, 1)):
                nb = list(c)
                nb[d] += s
                kind = bnd[d][side]
                if 0 <= nb[d] < shape[d] or kind == "periodic":
                    nb[d] %= shape[d]
                    nb = tuple(nb)
                    if solid[nb]:
                        continue  # Neumann at solid faces
                    t = 2 * a[c] * a[nb] / (a[c] + a[nb])
                    A[i, i] += t / h2
                    A[i, flat(nb)] -= t / h2
                elif kind == "dirichlet":
                    A[i, i] += 2 * a[c] / h2  # ghost value -u_c
    return A


CASES = [
    ((6, 5), "dirichlet"),
    ((6, 5), "periodic"),
    ((6, 5), [("dirichlet", "neumann"), "periodic"]),
    ((4, 3, 5), "dirichlet"),
    ((4, 3, 5), ["neumann", ("neumann", "dirichlet"), "periodic"]),
]


@pytest.mark.parametrize("shape,boundary", CASES)
def test_operator_matches_assembly(shape, boundary, getkey):
    rng = np.random.default_rng(getkey.seed)
    a = rng.uniform(0.5, 2.0, shape)
    solid = rng.uniform(size=shape) < 0.2
    spacing = tuple(rng.uniform(0.5, 1.5, len(shape)))
    op = ls.diffusion(jnp.asarray(a), boundary=boundary, solid=solid, spacing=spacing)
    bnd = ls.parse_boundary(boundary, len(shape))
    ref = _reference_matrix(a, solid, bnd, spacing)
    np.testing.assert_allclose(ref, ref.T, atol=1e-14)
    assert np.linalg.eigvalsh(ref).min() > -1e-10  # PSD
    # matrix-free matvec
    u = rng.standard_normal(shape)
    out = np.asarray(eqx.filter_jit(lambda o, x: o.mv(x))(op, jnp.asarray(u)))
    np.testing.assert_allclose(out.ravel(), ref @ u.ravel(), rtol=1e-12, atol=1e-12)
    # lineax view and scipy conversion
    np.testing.assert_allclose(op.as_matrix(), ref, atol=1e-12)
    np.testing.assert_allclose(ls.to_scipy_sparse(op).toarray(), ref, atol=1e-12)
    np.testing.assert_allclose(np.asarray(lx.diagonal(op)), np.diag(ref), atol=1e-12)
    assert lx.is_symmetric(op) and lx.is_positive_semidefinite(op)


def test_poisson_constant_and_errors():
    op = ls.poisson((5, 4), boundary="dirichlet")
    T = lambda n: sp.diags([-np.ones(n - 1), 2 * np.ones(n), -np.ones(n - 1)], [-1, 0, 1]).tolil()
    T5, T4 = T(5), T(4)
    T5[0, 0] = T5[4, 4] = 3  # cell-centred Dirichlet: ghost -u
    T4[0, 0] = T4[3, 3] = 3
    ref = sp.kron(T5, sp.eye(4)) + sp.kron(sp.eye(5), T4)
    np.testing.assert_allclose(ls.to_scipy_sparse(op).toarray(), ref.toarray())
    with pytest.raises(ValueError, match="positive"):
        ls.diffusion(-jnp.ones((4, 4)))
    with pytest.raises(ValueError, match="boundary"):
        ls.poisson((4, 4), boundary=[("periodic", "dirichlet"), "neumann"])
    with pytest.raises(ValueError, match="solid"):
        ls.poisson((4, 4), solid=np.zeros((3, 4), bool))


def test_scene_generator():
    s1 = ls.obstacle_scene((64, 64), seed=3, split="train")
    s2 = ls.obstacle_scene((64, 64), seed=3, split="train")
    s3 = ls.obstacle_scene((64, 64), seed=3, split="test")
    np.testing.assert_array_equal(s1, s2)
    assert not np.array_equal(s1, s3)
    for s in (s1, s3, ls.obstacle_scene((16, 16, 16), seed=0)):
        frac = s.mean()
        assert 0.15 <= frac <= 0.35, frac
    # no enclosed fluid pocket: the operator is SPD
    s = ls.obstacle_scene((24, 24), seed=1, fraction=0.3)
    A = ls.to_scipy_sparse(ls.poisson((24, 24), solid=s)).toarray()
    assert np.linalg.eigvalsh(A).min() > 1e-8


def test_remove_enclosed():
    solid = np.zeros((7, 7), bool)
    solid[1:6, 1:6] = True
    solid[3, 3] = False  # an enclosed pocket
    out = ls.remove_enclosed(solid, "dirichlet")
    assert out[3, 3] and not out[0, 0]
    # with Neumann everywhere nothing touches a Dirichlet side: all fluid removed
    assert ls.remove_enclosed(solid, ["neumann", ("neumann", "dirichlet")])[0, 0] == False  # noqa: E712
    assert ls.remove_enclosed(solid, "neumann").all()


def test_rhs_generators(getkey):
    solid = jnp.asarray(ls.obstacle_scene((32, 32), seed=0))
    for b in (ls.random_rhs(solid, key=getkey()), ls.divergence_rhs(solid, key=getkey())):
        assert b.shape == solid.shape
        assert jnp.all(jnp.where(solid, b == 0, True))
        assert jnp.linalg.norm(b) > 0
    # the divergence of a field with no wall flux sums to zero over the fluid
    b = ls.divergence_rhs(solid, key=getkey())
    assert abs(float(jnp.sum(b))) < 1e-10 * float(jnp.sum(jnp.abs(b)))
