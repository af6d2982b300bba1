"""A user's own DSF structure evaluates itself through `dsf.evaluate` by its methods."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
from jaxtyping import Array, Float

import scimlx.dsf as dsf


class EMA(dsf.AbstractDSF):
    """Exponential moving average per channel: h_i = a h_{i-1} + (1 - a) x_i, y_i = h_i.
    Defines the recurrence and the associative scan (no chunked or matrix mode), and its dense
    form and eigenvalues."""

    a: Float[Array, " d"]
    steps: int = eqx.field(static=True)

    @property
    def length(self):
        return self.steps

    @property
    def in_dim(self):
        return self.a.shape[0]

    @property
    def state_dim(self):
        return self.a.shape[0]

    @property
    def state_shape(self):
        return (self.a.shape[0],)

    def recurrence(self, x, h0, unroll):
        def step(h, x_i):
            h = self.a * h + (1 - self.a) * x_i
            return h, h

        h0 = jnp.zeros_like(self.a) if h0 is None else h0
        h, y = jax.lax.scan(step, h0, x, unroll=unroll)
        return y, h

    def scan(self, x, h0):
        a = jnp.broadcast_to(self.a[None], x.shape)
        b = (1 - self.a)[None] * x
        if h0 is not None:
            b = b.at[0].add(self.a * h0)

        def combine(e1, e2):
            return e1[0] * e2[0], e2[0] * e1[1] + e2[1]

        _, h = jax.lax.associative_scan(combine, (a, b))
        return h, h[-1]

    def materialise(self, length):
        eye = jnp.eye(self.a.shape[0], dtype=self.a.dtype)
        per_step = lambda m: jnp.broadcast_to(m, (length,) + m.shape)  # noqa: E731
        return dsf.DenseDSF(
            lam=per_step(jnp.diag(self.a)),
            B=per_step(jnp.diag(1 - self.a)),
            C=per_step(eye),
            D=per_step(0 * eye),
        )

    def eigenvalues(self):
        return jnp.broadcast_to(self.a, (self.steps, self.a.shape[0]))


def _reference(a, x, h0):
    h, ys = np.asarray(h0), []
    for x_i in np.asarray(x):
        h = a * h + (1 - a) * x_i
        ys.append(h)
    return np.stack(ys), h


def test_user_structure_evaluates_by_its_methods(getkey):
    L, d = 13, 3
    system = EMA(jax.nn.sigmoid(jr.normal(getkey(), (d,), jnp.float64)), L)
    x = jr.normal(getkey(), (L, d), jnp.float64)
    h0 = jr.normal(getkey(), (d,), jnp.float64)
    y_ref, h_ref = _reference(np.asarray(system.a), x, h0)
    for method in (dsf.Recurrence(), dsf.Recurrence(unroll=4), dsf.Scan(), dsf.Auto()):
        y, h = jax.jit(lambda s, x, h0, m=method: dsf.evaluate(s, x, method=m, h0=h0))(
            system, x, h0
        )
        np.testing.assert_allclose(y, y_ref, rtol=1e-12, err_msg=str(method))
        np.testing.assert_allclose(h, h_ref, rtol=1e-12, err_msg=str(method))
    assert system.supported_methods() == ("recurrence", "scan")
    assert dsf.choose_method(system, L, training=True) == dsf.Recurrence()
    # gradients agree between the two modes, also under vmap
    grads = [
        jax.vmap(jax.grad(lambda s, x, m=m: jnp.sum(dsf.evaluate(s, x, method=m)[0] ** 2)),
                 in_axes=(None, 0))(system, jnp.stack([x, 2 * x])).a
        for m in (dsf.Recurrence(), dsf.Scan())
    ]  # fmt: skip
    np.testing.assert_allclose(grads[0], grads[1], rtol=1e-10)


def test_user_structure_refuses_modes_it_does_not_define(getkey):
    system = EMA(jnp.full((2,), 0.5), 5)
    x = jnp.ones((5, 2))
    for method in (dsf.Chunked(), dsf.Matrix()):
        with pytest.raises(ValueError, match=r"`method`.*'recurrence', 'scan'"):
            dsf.evaluate(system, x, method=method)
    with pytest.raises(ValueError, match="`h0` must have shape"):
        dsf.evaluate(system, x, h0=jnp.ones(3))
    with pytest.raises(ValueError, match="phi"):
        dsf.phi(system)


def test_structure_without_recurrence_cannot_be_built():
    class NoRecurrence(dsf.AbstractDSF):
        @property
        def length(self):
            return 1

        @property
        def in_dim(self):
            return 1

        @property
        def state_dim(self):
            return 1

        @property
        def state_shape(self):
            return (1,)

    with pytest.raises(TypeError, match="abstract.*recurrence"):
        NoRecurrence()


class FullyUnrolled(dsf.AbstractEvaluation):
    """A user's evaluation mode: the structure's recurrence with the loop fully unrolled."""

    def evaluate(self, dsf, x, h0):
        return dsf.recurrence(x, h0, x.shape[0])


def test_user_structure_materialises_and_has_eigenvalues(getkey):
    L, d = 9, 3
    system = EMA(jax.nn.sigmoid(jr.normal(getkey(), (d,), jnp.float64)), L)
    x = jr.normal(getkey(), (L, d), jnp.float64)
    h0 = jr.normal(getkey(), (d,), jnp.float64)
    y_ref, h_ref = _reference(np.asarray(system.a), x, h0)
    dense = dsf.materialise(system)
    assert isinstance(dense, dsf.DenseDSF) and dense.lam.shape == (L, d, d)
    for method in (dsf.Recurrence(), dsf.Scan(), dsf.Matrix()):
        y, h = jax.jit(lambda s, x, m=method: dsf.evaluate(s, x, method=m))(dense, x)
        np.testing.assert_allclose(y, _reference(np.asarray(system.a), x, 0 * h0)[0], rtol=1e-12)
    y, h = dsf.evaluate(dense, x, method=dsf.Recurrence(), h0=h0)
    np.testing.assert_allclose(y, y_ref, rtol=1e-12)
    np.testing.assert_allclose(h, h_ref, rtol=1e-12)
    np.testing.assert_allclose(dsf.eigenvalues(system), np.broadcast_to(system.a, (L, d)))
    # the built-in structures without them name the structure
    with pytest.raises(TypeError, match="SoftmaxDSF.*materialise"):
        dsf.materialise(dsf.SoftmaxDSF(jnp.ones((4, 2)), jnp.ones((4, 2)), 1.0, 3))
    with pytest.raises(TypeError, match="DenseDSF.*eigenvalues"):
        dsf.eigenvalues(dense)


def test_user_evaluation_mode_works_on_every_structure(getkey):
    L, d = 11, 3
    ema = EMA(jax.nn.sigmoid(jr.normal(getkey(), (d,), jnp.float64)), L)
    softmax = dsf.SoftmaxDSF(
        jr.normal(getkey(), (L, 2), jnp.float64), jr.normal(getkey(), (L, 2), jnp.float64), 0.5, d
    )
    x = jr.normal(getkey(), (L, d), jnp.float64)
    for system in (ema, dsf.materialise(ema), softmax):
        y, _ = jax.jit(lambda s, x: dsf.evaluate(s, x, method=FullyUnrolled()))(system, x)
        ref, _ = dsf.evaluate(system, x, method=dsf.Recurrence())
        np.testing.assert_allclose(y, ref, rtol=1e-12, err_msg=type(system).__name__)
