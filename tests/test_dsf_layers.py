"""Each layer's native formula (written naively here, in numpy loops) equals its DSF form in every
evaluation mode (Sieber et al. 2024, the DSF)."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

import scimlx.dsf as dsf


L, D_MODEL, N = 21, 4, 3  # L not a multiple of the chunk size: exercises padding
CHUNK = 8


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def softplus(x):
    return np.log1p(np.exp(x))


def elu1(x):
    return np.where(x > 0, x + 1.0, np.exp(x))


def heads(a, H):
    return [a[:, h * (a.shape[1] // H) : (h + 1) * (a.shape[1] // H)] for h in range(H)]


# ----------------------------------------------------------------------------- naive references


def ref_softmax(layer, u):
    H = layer.n_heads
    q, k, v = u @ np.asarray(layer.Wq).T, u @ np.asarray(layer.Wk).T, u @ np.asarray(layer.Wv).T
    outs = []
    for qh, kh, vh in zip(heads(q, H), heads(k, H), heads(v, H)):
        y = np.zeros_like(vh)
        for i in range(len(u)):
            s = np.array([qh[i] @ kh[j] / np.sqrt(qh.shape[1]) for j in range(i + 1)])
            p = np.exp(s - s.max())
            y[i] = (p / p.sum()) @ vh[: i + 1]
        outs.append(y)
    return np.concatenate(outs, 1) @ np.asarray(layer.Wo).T


def ref_linear(layer, u):
    H = layer.n_heads
    q, k, v = u @ np.asarray(layer.Wq).T, u @ np.asarray(layer.Wk).T, u @ np.asarray(layer.Wv).T
    if layer.feature_map == "elu1":
        q, k = elu1(q), elu1(k)
    outs = []
    for qh, kh, vh in zip(heads(q, H), heads(k, H), heads(v, H)):
        y = np.zeros_like(vh)
        for i in range(len(u)):
            w = np.array([qh[i] @ kh[j] for j in range(i + 1)])
            y[i] = w @ vh[: i + 1]
            if layer.normalise:
                y[i] /= w.sum()
        outs.append(y)
    return np.concatenate(outs, 1) @ np.asarray(layer.Wo).T


def ref_normalised(layer, u):
    H = layer.n_heads
    q, k, v = u @ np.asarray(layer.Wq).T, u @ np.asarray(layer.Wk).T, u @ np.asarray(layer.Wv).T
    s = u @ np.asarray(layer.w_eta).T + np.asarray(layer.b_eta)
    eta = {"exp": np.exp, "softplus": softplus, "sigmoid": sigmoid}[layer.norm](s)
    outs = []
    for h, (qh, kh, vh) in enumerate(zip(heads(q, H), heads(k, H), heads(v, H))):
        y = np.zeros_like(vh)
        for i in range(len(u)):
            w = np.array([qh[i] @ kh[j] for j in range(i + 1)])
            y[i] = w @ vh[: i + 1] / eta[i, h]
        outs.append(y)
    return np.concatenate(outs, 1) @ np.asarray(layer.Wo).T


def ref_s4d(layer, u):
    A = -np.exp(np.asarray(layer.A_log))
    dtA = np.exp(np.asarray(layer.log_dt))[:, None] * A
    Bbar = (np.exp(dtA) - 1) / A * np.asarray(layer.B)
    # causal convolution with kernel K_k = sum_s C_s Bbar_s exp(dtA_s)^k (per channel)
    K = np.stack([np.sum(np.asarray(layer.C) * Bbar * np.exp(dtA * kk), 1) for kk in range(len(u))])
    y = np.zeros_like(u)
    for i in range(len(u)):
        for j in range(i + 1):
            y[i] += K[i - j] * u[j]
    return y + np.asarray(layer.D) * u


def _complex_diag_loop(lam, B, C, Dv, u):
    h = np.zeros(lam.shape, complex)
    y = np.zeros_like(u)
    for i in range(len(u)):
        h = lam * h + B @ u[i]
        y[i] = np.real(C @ h) + Dv * u[i]
    return y


def ref_s5(layer, u):
    lam = np.asarray(layer.lam_re) + 1j * np.asarray(layer.lam_im)
    step = np.exp(np.asarray(layer.log_dt))
    lam_bar = np.exp(lam * step)
    B = np.asarray(layer.B_re) + 1j * np.asarray(layer.B_im)
    Bbar = ((lam_bar - 1) / lam)[:, None] * B
    C = np.asarray(layer.C_re) + 1j * np.asarray(layer.C_im)
    return _complex_diag_loop(lam_bar, Bbar, C, np.asarray(layer.D), u)


def ref_lru(layer, u):
    lam = np.exp(-np.exp(np.asarray(layer.nu_log)) + 1j * np.exp(np.asarray(layer.theta_log)))
    B = (np.asarray(layer.B_re) + 1j * np.asarray(layer.B_im)) * np.exp(
        np.asarray(layer.gamma_log)
    )[:, None]
    C = np.asarray(layer.C_re) + 1j * np.asarray(layer.C_im)
    return _complex_diag_loop(lam, B, C, np.asarray(layer.D), u)


def ref_s6(layer, u):
    """mamba's selective_scan_ref semantics: deltaA = exp(delta A), deltaB_u = delta B u."""
    delta = softplus(
        u @ np.asarray(layer.W_dt1).T @ np.asarray(layer.W_dt2).T + np.asarray(layer.b_dt)
    )
    Bm, Cm = u @ np.asarray(layer.W_B).T, u @ np.asarray(layer.W_C).T
    A = -np.exp(np.asarray(layer.A_log))
    h = np.zeros(A.shape)
    y = np.zeros_like(u)
    for i in range(len(u)):
        dA = np.exp(delta[i][:, None] * A)
        if layer.discretisation == "mamba":
            dBu = delta[i][:, None] * Bm[i][None, :] * u[i][:, None]
        else:
            dBu = (dA - 1) / A * Bm[i][None, :] * u[i][:, None]
        h = dA * h + dBu
        y[i] = h @ Cm[i] + np.asarray(layer.D) * u[i]
    return y


def ref_ssd(layer, u):
    s = u @ np.asarray(layer.W_dt).T
    A = -np.exp(np.asarray(layer.A_log))
    Bm, Cm = u @ np.asarray(layer.W_B).T, u @ np.asarray(layer.W_C).T
    Dv = np.asarray(layer.D)
    d = u.shape[1]
    if layer.per_channel_dt:
        delta = softplus(s + np.asarray(layer.b_dt))  # (L, d): one scalar dt_i + per-channel bias
        a = np.exp(delta * A[0])
    else:
        p = d // layer.n_heads
        dh = softplus(s + np.asarray(layer.b_dt))  # (L, H)
        delta = np.repeat(dh, p, axis=1)
        a = np.exp(delta * np.repeat(A, p)[None, :])
    h = np.zeros((d, Bm.shape[1]))
    y = np.zeros_like(u)
    for i in range(len(u)):
        h = a[i][:, None] * h + (delta[i] * u[i])[:, None] * Bm[i][None, :]
        y[i] = h @ Cm[i] + Dv * u[i]
    return y


def ref_rglru(layer, u):
    H = layer.W_a.shape[0]

    def block(W, b):
        return np.concatenate(
            [x @ np.asarray(W[h]).T for h, x in enumerate(heads(u, H))], 1
        ) + np.asarray(b)

    r = sigmoid(block(layer.W_a, layer.b_a))
    gi = sigmoid(block(layer.W_x, layer.b_x))
    log_a = -layer.c * r * softplus(np.asarray(layer.a_param))
    a = np.exp(log_a)
    h = np.zeros(u.shape[1])
    y = np.zeros_like(u)
    for i in range(len(u)):
        h = a[i] * h + np.sqrt(1 - a[i] ** 2) * (gi[i] * u[i])
        y[i] = h
    return y


def ref_qlstm(layer, u):
    pre = u @ np.asarray(layer.W).T + np.asarray(layer.b)
    f, i_, o, z = np.split(pre, 4, axis=1)
    if layer.reversed_sigmoid:
        fg = sigmoid(-f) ** max(float(layer.alpha), 0.0)
    else:
        fg = sigmoid(f)
    c = np.zeros(u.shape[1])
    y = np.zeros_like(u)
    for t in range(len(u)):
        c = fg[t] * c + sigmoid(i_[t]) * z[t]
        y[t] = sigmoid(o[t]) * c
    return y


# every configuration built here is tested: the test list is the keys of this table
_CASES = {
    "softmax": lambda d, n, key: (dsf.SoftmaxAttention(d, 2, n, key=key), ref_softmax),
    "linear": lambda d, n, key: (dsf.LinearAttention(d, 2, n, key=key), ref_linear),
    "linear_output_norm": lambda d, n, key: (
        dsf.LinearAttention(d, 1, n, where="output", key=key),
        ref_linear,
    ),
    "linear_unnormalised": lambda d, n, key: (
        dsf.LinearAttention(d, 1, n, feature_map="identity", normalise=False, key=key),
        ref_linear,
    ),
    "normalised_exp": lambda d, n, key: (dsf.NormalisedAttention(d, 2, n, key=key), ref_normalised),
    "normalised_sigmoid": lambda d, n, key: (
        dsf.NormalisedAttention(d, 1, n, norm="sigmoid", key=key),
        ref_normalised,
    ),
    "s4d": lambda d, n, key: (dsf.S4D(d, n, key=key), ref_s4d),
    "s5": lambda d, n, key: (dsf.S5(d, n, key=key), ref_s5),
    "lru": lambda d, n, key: (dsf.LRU(d, n, key=key), ref_lru),
    "s6": lambda d, n, key: (dsf.S6(d, n, key=key), ref_s6),
    "s6_zoh": lambda d, n, key: (dsf.S6(d, n, discretisation="zoh", key=key), ref_s6),
    "ssd": lambda d, n, key: (dsf.SSD(d, 2, n, key=key), ref_ssd),
    "ssd_paper": lambda d, n, key: (dsf.SSD(d, 1, n, per_channel_dt=True, key=key), ref_ssd),
    "rglru": lambda d, n, key: (dsf.RGLRU(d, 2, key=key), ref_rglru),
    "qlstm": lambda d, n, key: (dsf.QLSTM(d, key=key), ref_qlstm),
    "qlstm_reversed": lambda d, n, key: (
        dsf.QLSTM(d, reversed_sigmoid=True, key=key),
        ref_qlstm,
    ),
}
LAYERS = list(_CASES)


def _make(name, key):
    return _CASES[name](D_MODEL, N, key)


def _perturb(layer, key):
    """Move every parameter away from its (often symmetric) init so that the test is not trivial."""
    leaves, tree = jax.tree.flatten(eqx.filter(layer, eqx.is_inexact_array))
    keys = jr.split(key, len(leaves))
    leaves = [a + 0.3 * jr.normal(k, a.shape, a.dtype) for a, k in zip(leaves, keys)]
    return eqx.combine(jax.tree.unflatten(tree, leaves), layer)


@pytest.mark.parametrize("name", LAYERS)
def test_layer_native_equals_dsf_all_modes(name, getkey):
    layer, ref = _make(name, getkey())
    layer = _perturb(layer, getkey())
    u = jr.normal(getkey(), (L, D_MODEL), jnp.float64)
    expected = ref(layer, np.asarray(u))
    methods = (dsf.Recurrence(), dsf.Scan(), dsf.Chunked(CHUNK), dsf.Matrix())
    if name == "softmax":  # no associative scan of an infinite state
        methods = tuple(m for m in methods if not isinstance(m, dsf.Scan))

    @eqx.filter_jit
    def all_modes(layer, u):
        return [layer(u, method=m) for m in methods]

    for m, y in zip(methods, all_modes(layer, u)):
        np.testing.assert_allclose(np.asarray(y), expected, rtol=1e-10, atol=1e-11, err_msg=str(m))
    # `auto` picks one of them, and `to_dsf` gives the same system as the layer uses
    system, x = dsf.to_dsf(layer, u)
    assert jax.tree.structure(system) == jax.tree.structure(layer.system(u)[0])
