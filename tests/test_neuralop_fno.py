"""FNO spectral layer against its analytic action on Fourier modes; losses; training smoke."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from scimlx.neuralop import (
    evaluate,
    FNO,
    MgNO,
    normalised,
    reference_optimiser,
    rel_h1,
    rel_l2,
    SpectralConv2d,
    train_operator,
)


def test_spectral_conv_acts_on_single_modes():
    n, m = 16, 4
    layer = SpectralConv2d(1, 1, (m, m), key=jax.random.key(0))
    i, j = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    f = eqx.filter_jit(layer)
    cases = [((2, 3), 0, (2, 3)), ((-2, 3), 1, (m - 2, 3)), ((1, 0), 0, (1, 0))]
    for (k1, k2), block, idx in cases:
        theta = 2 * np.pi * (k1 * i + k2 * j) / n
        x = jnp.asarray(np.cos(theta))[None]
        w = complex(layer.weight_re[(block, 0, 0) + idx], layer.weight_im[(block, 0, 0) + idx])
        if k2 == 0:
            # on the ky = 0 line rfft2 keeps both +k1 and -k1; both weights act
            w2 = complex(
                layer.weight_re[(1, 0, 0, m - k1, 0)], layer.weight_im[(1, 0, 0, m - k1, 0)]
            )
            expect = 0.5 * (w * np.exp(1j * theta) + w2 * np.exp(-1j * theta)).real
        else:
            expect = (w * np.exp(1j * theta)).real
        np.testing.assert_allclose(f(x)[0], expect, atol=1e-12)
    # a mode above the cut-off is removed
    x = jnp.asarray(np.cos(2 * np.pi * (m + 1) * i / n))[None]
    np.testing.assert_allclose(f(x), 0.0, atol=1e-12)
    with pytest.raises(ValueError, match="too small"):
        layer(jnp.zeros((1, 6, 6)))


def test_losses_against_numpy():
    k1, k2 = jax.random.split(jax.random.key(1))
    p = jax.random.normal(k1, (1, 12, 10))
    t = jax.random.normal(k2, (1, 12, 10))
    pn, tn = np.asarray(p), np.asarray(t)
    np.testing.assert_allclose(rel_l2(p, t), np.linalg.norm(pn - tn) / np.linalg.norm(tn))
    kx = np.fft.fftfreq(12, 1 / 12)[:, None]
    ky = np.fft.fftfreq(10, 1 / 10)[None, :]
    w = np.sqrt(1 + kx**2 + ky**2)
    ref = np.linalg.norm(w * np.fft.fft2(pn - tn)) / np.linalg.norm(w * np.fft.fft2(tn))
    np.testing.assert_allclose(rel_h1(p, t), ref, rtol=1e-12)
    # H1 weights derivatives: a high-frequency error counts more in H1 than in L2
    i = np.arange(12)[:, None] * np.ones((1, 10))
    base = jnp.asarray(np.sin(2 * np.pi * i / 12))[None]
    bump = jnp.asarray(0.1 * np.sin(2 * np.pi * 5 * i / 12))[None]
    assert rel_h1(base + bump, base) > 3.0 * rel_l2(base + bump, base)
    with pytest.raises((ValueError, TypeError)):  # jaxtyping or our own check
        rel_l2(p, t[:, :5])


def _fno_numpy(fno, a):
    """The FNO forward pass written out with NumPy's FFT (float64), from the paper's
    `fourier_2d.py` structure: lift [a, x, y] -> padded Fourier layers -> projection."""
    from scipy.special import erf

    def pw(layer, v):
        y = np.tensordot(np.asarray(layer.weight, np.float64), v, axes=1)
        return y + np.asarray(layer.bias, np.float64)[:, None, None]

    def gelu(v):
        return 0.5 * v * (1.0 + erf(v / np.sqrt(2.0)))

    def spectral(layer, v):
        m1, m2 = layer.modes
        nx, ny = v.shape[1:]
        w = np.asarray(layer.weight_re, np.float64) + 1j * np.asarray(layer.weight_im, np.float64)
        v_ft = np.fft.rfft2(v)
        out = np.zeros((w.shape[2], nx, ny // 2 + 1), complex)
        for o in range(w.shape[2]):
            for i in range(w.shape[1]):
                out[o, :m1, :m2] += v_ft[i, :m1, :m2] * w[0, i, o]
                out[o, nx - m1 :, :m2] += v_ft[i, nx - m1 :, :m2] * w[1, i, o]
        return np.fft.irfft2(out, s=(nx, ny))

    nx, ny = a.shape[1:]
    gx, gy = np.meshgrid(np.linspace(0, 1, nx), np.linspace(0, 1, ny), indexing="ij")
    v = pw(fno.lift, np.concatenate([a, gx[None], gy[None]]))
    px, py = int(np.ceil(fno.padding_fraction * nx)), int(np.ceil(fno.padding_fraction * ny))
    v = np.pad(v, ((0, 0), (0, px), (0, py)))
    for i, (k, w) in enumerate(zip(fno.spectral, fno.local)):
        v = spectral(k, v) + pw(w, v)
        if i < len(fno.spectral) - 1:
            v = gelu(v)
    v = v[:, :nx, :ny]
    return pw(fno.proj2, gelu(pw(fno.proj1, v)))


def test_fno_matches_numpy_reference():
    fno = FNO(2, 3, (3, 4), 6, n_layers=3, projection=8, key=jax.random.key(5))
    a = np.asarray(jax.random.normal(jax.random.key(6), (2, 14, 18)))
    np.testing.assert_allclose(eqx.filter_jit(fno)(jnp.asarray(a)), _fno_numpy(fno, a), atol=1e-10)


def test_fno_shapes_and_parameter_dtype():
    fno = FNO(2, 3, 4, 8, n_layers=2, dtype=jnp.float32, key=jax.random.key(2))
    y = eqx.filter_jit(lambda m, x: jax.vmap(m)(x))(fno, jnp.ones((2, 2, 20, 24)))
    assert y.shape == (2, 3, 20, 24) and y.dtype == jnp.float32
    with pytest.raises(ValueError, match="must have shape"):
        fno(jnp.ones((1, 20, 24)))


def test_training_reduces_error():
    # a tiny operator-learning problem with a known answer: u = smoothed a
    key = jax.random.key(3)
    a = jax.random.normal(key, (24, 1, 8, 8))
    kern = jnp.ones((1, 1, 3, 3)) / 9.0
    u = jax.vmap(lambda x: jax.lax.conv_general_dilated(x[None], kern, (1, 1), "SAME")[0])(a)
    model = normalised(MgNO(1, 1, 4, 1, [(1, 0), (1, 0)], key=jax.random.key(4)), a, u)
    before = evaluate(model, a, u)["rel_l2"]
    out = train_operator(
        model,
        a,
        u,
        optimiser=reference_optimiser(
            40, learning_rate=1e-2, schedule=lambda n, lr: optax.cosine_decay_schedule(lr, n)
        ),
        steps=40,
        key=jax.random.key(5),
        batch_size=8,
        loss=rel_l2,
        progress=False,
    )
    after = evaluate(out.model, a, u)["rel_l2"]
    assert after < 0.5 * before
    assert out.losses[-5:].mean() < out.losses[:5].mean()
