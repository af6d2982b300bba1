"""Evaluation modes of the DSF agree with each other, with the dense system and with explicit
products; the paper's identities (normalisation, linear attention vs S6, SSD, LTI convolution,
softmax as an infinite state); gradients and transforms."""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
import scipy.signal

import scimlx.dsf as dsf


def modes(chunk_size=None):
    """Every evaluation mode (`chunk_size` for `Chunked`)."""
    return (dsf.Recurrence(), dsf.Scan(), dsf.Chunked(chunk_size), dsf.Matrix())


@eqx.filter_jit
def _all_modes(system, x, h0):
    return [dsf.evaluate(system, x, method=m, h0=h0) for m in modes(8)]


def _channel(key, L, d, n, dl, nl, dk):
    k = jr.split(key, 6)
    return dsf.ChannelDSF(
        log_lam=-jax.nn.softplus(jr.normal(k[0], (L, dl, nl), jnp.float64)),
        beta=jr.normal(k[1], (L, d), jnp.float64),
        key=jr.normal(k[2], (L, dk, n), jnp.float64),
        query=jr.normal(k[3], (L, dk, n), jnp.float64),
        gamma=jr.normal(k[4], (L, d), jnp.float64),
        D=jr.normal(k[5], (d,), jnp.float64),
    )


# scalar, per-channel, per-state (S6-like), and per-channel keys (S4D-like block structure)
@pytest.mark.parametrize("dl,nl,dk", [(1, 1, 1), (3, 4, 1), (1, 4, 3)])
def test_channel_modes_equal_dense_and_explicit_phi(dl, nl, dk, getkey):
    L, d, n = 19, 3, 4
    system = _channel(getkey(), L, d, n, dl, nl, dk)
    x = jr.normal(getkey(), (L, d), jnp.float64)
    h0 = jr.normal(getkey(), (d, n), jnp.float64)
    dense = dsf.materialise(system)
    # reference: the dense recurrence h_i = Lambda_i h_{i-1} + B_i x_i written in numpy
    lam, B, C, Dm = (np.asarray(a) for a in (dense.lam, dense.B, dense.C, dense.D))
    h = np.asarray(h0).reshape(-1)
    y_ref = np.zeros((L, d))
    for i in range(L):
        h = lam[i] @ h + B[i] @ np.asarray(x[i])
        y_ref[i] = C[i] @ h + Dm[i] @ np.asarray(x[i])
    for m, (y, H) in zip(modes(8), _all_modes(system, x, h0)):
        np.testing.assert_allclose(np.asarray(y), y_ref, rtol=1e-10, atol=1e-12, err_msg=str(m))
        np.testing.assert_allclose(
            np.asarray(H).reshape(-1), h, rtol=1e-10, atol=1e-12, err_msg=str(m)
        )
    # Phi_ij = C_i Lambda_i ... Lambda_{j+1} B_j (+ D_i on the diagonal), by explicit products
    P = np.asarray(dsf.phi(system))
    for i, j in [(0, 0), (5, 2), (18, 0), (18, 17), (3, 7)]:
        if j > i:
            expected = np.zeros((d, d))
        else:
            T = np.eye(d * n)
            for k in range(j + 1, i + 1):
                T = lam[k] @ T
            expected = C[i] @ T @ B[j] + (Dm[i] if i == j else 0.0)
        np.testing.assert_allclose(P[i, j], np.diag(expected), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(expected - np.diag(np.diag(expected)), 0.0, atol=1e-14)


def test_diagonal_and_dense_modes(getkey):
    L, d, N = 17, 2, 3
    k = jr.split(getkey(), 5)
    system = dsf.DiagonalDSF(
        log_lam=jax.lax.complex(
            -jnp.exp(jr.normal(k[0], (L, N), jnp.float64)), jr.normal(k[1], (L, N), jnp.float64)
        ),
        B=jax.lax.complex(
            jr.normal(k[2], (L, N, d), jnp.float64), jr.normal(k[3], (L, N, d), jnp.float64)
        ),
        C=jr.normal(k[4], (1, d, N), jnp.float64).astype(jnp.complex128),
        D=jnp.ones((d,), jnp.float64),
    )
    x = jr.normal(getkey(), (L, d), jnp.float64)
    h0 = jnp.zeros((N,), jnp.complex128)
    dense = dsf.materialise(system, L)

    @eqx.filter_jit
    def dense_modes(dense, x):
        return [
            dsf.evaluate(dense, x, method=m)[0]
            for m in (dsf.Recurrence(), dsf.Scan(), dsf.Matrix())
        ]

    ref, *others = dense_modes(dense, x)
    for m, (y, _) in zip(modes(8), _all_modes(system, x, h0)):
        np.testing.assert_allclose(
            np.asarray(y), np.asarray(ref), rtol=1e-10, atol=1e-12, err_msg=str(m)
        )
    for y in others:
        np.testing.assert_allclose(np.asarray(y), np.asarray(ref), rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError, match="chunked"):
        dsf.evaluate(dense, x, method=dsf.Chunked())
    P = eqx.filter_jit(dsf.phi)(system)
    np.testing.assert_allclose(
        np.einsum("ijde,je->id", P, x), np.asarray(ref), rtol=1e-10, atol=1e-12
    )


def test_normalisation_in_lambda_equals_in_output(getkey):
    L, n, d = 23, 5, 3
    fq = jnp.exp(jr.normal(getkey(), (L, n), jnp.float64))
    fk = jnp.exp(jr.normal(getkey(), (L, n), jnp.float64))
    x = jr.normal(getkey(), (L, d), jnp.float64)
    a = dsf.normalised_linear_attention_dsf(fq, fk, d, where="state")
    b = dsf.normalised_linear_attention_dsf(fq, fk, d, where="output")
    ev = eqx.filter_jit(lambda s, x: dsf.evaluate(s, x, method=dsf.Recurrence())[0])
    ya, yb = ev(a, x), ev(b, x)
    np.testing.assert_allclose(np.asarray(ya), np.asarray(yb), rtol=1e-11)
    # Lambda_i = eta_{i-1}/eta_i varies in time and is not the identity
    assert float(jnp.max(jnp.abs(a.log_lam[1:]))) > 1e-3


def test_softmax_modes_and_taylor_truncation():
    keys = iter(jr.split(jr.key(0), 3))  # fixed data: the monotonicity check is about this draw
    getkey = lambda: next(keys)  # noqa: E731
    L, m, d = 20, 2, 3
    q = 0.5 * jr.uniform(getkey(), (L, m), jnp.float64, -1.0, 1.0)
    k = 0.5 * jr.uniform(getkey(), (L, m), jnp.float64, -1.0, 1.0)
    x = jr.normal(getkey(), (L, d), jnp.float64)
    s = dsf.SoftmaxDSF(q, k, 1.0 / math.sqrt(m), d)
    assert s.state_dim == math.inf
    S = np.asarray(q) @ np.asarray(k).T / math.sqrt(m)
    ref = np.zeros((L, d))
    for i in range(L):
        p = np.exp(S[i, : i + 1])
        ref[i] = p @ np.asarray(x[: i + 1]) / p.sum()

    @eqx.filter_jit
    def modes(s, x):
        return [
            dsf.evaluate(s, x, method=m)[0]
            for m in (dsf.Recurrence(), dsf.Chunked(chunk_size=6), dsf.Matrix())
        ]

    for y in modes(s, x):
        np.testing.assert_allclose(np.asarray(y), ref, rtol=1e-12)
    with pytest.raises(ValueError, match="infinite"):
        dsf.evaluate(s, x, method=dsf.Scan())
    # truncating the feature map of exp at order p: error falls with p, < 1e-7 at p = 8
    orders = (0, 2, 4, 8)

    @eqx.filter_jit
    def truncated(s, x):
        return [dsf.evaluate(s.truncate(p), x, method=dsf.Recurrence())[0] for p in orders]

    assert all(s.truncate(p).n == sum(m**r for r in range(p + 1)) for p in orders)
    errs = [float(np.max(np.abs(np.asarray(y) - ref))) for y in truncated(s, x)]
    assert all(b < a for a, b in zip(errs, errs[1:])), errs
    assert errs[-1] < 1e-7, errs


def test_linear_attention_equals_s6_under_conditions(getkey):
    """S6 is unnormalised linear attention with identity features, query c_i = W_C u_i, key
    b_i = W_B u_i and value u (d heads of width 1 sharing q and k) when Lambda_i = I (A = 0) and
    Delta_i = 1 (a derivation in the DSF; check the paper's lemma for its exact statement). With
    S6's usual A (per-state decays) or an input-dependent Delta they differ."""
    d, n, L = 4, 3, 16
    s6 = dsf.S6(d, n, key=getkey())
    u = jr.normal(getkey(), (L, d), jnp.float64)
    lin = dsf.LinearAttention(d, 1, n, feature_map="identity", normalise=False, key=getkey())
    lin = eqx.tree_at(
        lambda m: (m.Wq, m.Wk, m.Wv, m.Wo),
        lin,
        (s6.W_C, s6.W_B, jnp.eye(d, dtype=u.dtype), jnp.eye(d, dtype=u.dtype)),
    )
    cond = eqx.tree_at(
        lambda m: (m.W_dt1, m.W_dt2, m.b_dt, m.A_log, m.D),
        s6,
        (
            jnp.zeros_like(s6.W_dt1),
            jnp.zeros_like(s6.W_dt2),
            jnp.full_like(s6.b_dt, math.log(math.e - 1.0)),
            jnp.full_like(s6.A_log, -1e3),
            jnp.zeros_like(s6.D),
        ),
    )
    s6_noD = eqx.tree_at(lambda m: m.D, s6, jnp.zeros_like(s6.D))
    only_delta = eqx.tree_at(lambda m: m.A_log, s6_noD, cond.A_log)

    @eqx.filter_jit
    def run(lin, cond, s6_noD, only_delta, u):
        return (
            lin(u, method=dsf.Recurrence()),
            [cond(u, method=m) for m in modes(8)],
            s6_noD(u, method=dsf.Recurrence()),
            only_delta(u, method=dsf.Recurrence()),
        )

    y_lin, ys, y_s6, y_delta = run(lin, cond, s6_noD, only_delta, u)
    for y in ys:
        np.testing.assert_allclose(np.asarray(y), np.asarray(y_lin), rtol=1e-10, atol=1e-12)
    # break Lambda_i = I (S6's per-state A) or Delta_i = 1: no longer linear attention
    assert float(jnp.max(jnp.abs(y_s6 - y_lin))) > 1e-2
    assert float(jnp.max(jnp.abs(y_delta - y_lin))) > 1e-3


def test_ssd_is_normalised_attention_with_exp_cumsum_normaliser(getkey):
    """Mamba-2 SSD with A = -1: y_i = (1/eta_i) sum_j (c_i . b_j) eta_j Delta_j x_j + D x_i with
    eta_i = exp(sum_{k<=i} Delta_k), i.e. attention with the recurrent normalisation
    Lambda_i = eta_{i-1}/eta_i of the paper's normalised attention."""
    d, n, L = 4, 3, 15
    ssd = dsf.SSD(d, 1, n, key=getkey())
    ssd = eqx.tree_at(
        lambda m: (m.A_log, m.W_dt),
        ssd,
        (jnp.zeros_like(ssd.A_log), 0.5 * jr.normal(getkey(), ssd.W_dt.shape, jnp.float64)),
    )
    u = jr.normal(getkey(), (L, d), jnp.float64)
    delta = np.asarray(eqx.filter_jit(ssd.delta)(u))[0]
    eta = np.exp(np.cumsum(delta))
    c, b = np.asarray(u @ ssd.W_C.T), np.asarray(u @ ssd.W_B.T)
    y = np.zeros((L, d))
    for i in range(L):
        for j in range(i + 1):
            y[i] += (c[i] @ b[j]) * eta[j] * delta[j] * np.asarray(u[j]) / eta[i]
    y += np.asarray(ssd.D) * np.asarray(u)
    run = eqx.filter_jit(lambda ssd, u: [ssd(u, method=m) for m in modes(4)])
    for out in run(ssd, u):
        np.testing.assert_allclose(np.asarray(out), y, rtol=1e-10)


def test_lti_phi_is_toeplitz_convolution(getkey):
    d, n, L = 3, 4, 32
    layer = dsf.S4D(d, n, key=getkey())
    u = jr.normal(getkey(), (L, d), jnp.float64)
    system, x = dsf.to_dsf(layer, u)
    P = np.asarray(eqx.filter_jit(lambda s: dsf.phi(s, length=L))(system))
    np.testing.assert_allclose(P[5:, 2], P[3:-2, 0], rtol=1e-12, atol=1e-15)  # Toeplitz
    kernel = P[:, 0]  # K_k = C Lambda^k B (+ D at k = 0)
    y_fft = np.stack(
        [scipy.signal.fftconvolve(np.asarray(u[:, c]), kernel[:, c])[:L] for c in range(d)], 1
    )
    y = eqx.filter_jit(lambda m, u: m(u, method=dsf.Chunked(chunk_size=8)))(layer, u)
    np.testing.assert_allclose(np.asarray(y), y_fft, rtol=1e-9, atol=1e-12)
    assert system.state_dim == d * n
    assert dsf.RGLRU(d, key=getkey()).system(u)[0].state_dim == d


@pytest.mark.parametrize("name", ["s6", "linear"])
def test_gradients_agree_between_modes_and_finite_differences(name, getkey):
    d, n, L = 4, 3, 13
    layer = dsf.make_mixer(name, d, d_state=n, key=getkey())
    u = jr.normal(getkey(), (L, d), jnp.float64)

    def loss(layer, u, method):
        return jnp.sum(layer(u, method=method) ** 2)

    @eqx.filter_jit
    def grads(layer, u):
        return [eqx.filter_grad(loss)(layer, u, m) for m in (dsf.Recurrence(), dsf.Chunked(4))] + [
            jax.grad(loss, argnums=1)(layer, u, m) for m in modes(4)
        ]

    gs = grads(layer, u)
    gs = [gs[0], gs[1], gs[1], gs[1]] + gs[2:]
    for g in gs[1:4]:
        assert eqx.tree_equal(jax.tree.structure(g), jax.tree.structure(gs[0]))
        for a, b in zip(jax.tree.leaves(g), jax.tree.leaves(gs[0])):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-9, atol=1e-11)
    for g in gs[5:]:
        np.testing.assert_allclose(np.asarray(g), np.asarray(gs[4]), rtol=1e-9, atol=1e-11)
    # directional derivative in u against central finite differences
    v = jr.normal(getkey(), u.shape, jnp.float64)
    eps = 1e-5
    lj = eqx.filter_jit(lambda layer, u: loss(layer, u, dsf.Recurrence()))
    fd = (lj(layer, u + eps * v) - lj(layer, u - eps * v)) / (2 * eps)
    np.testing.assert_allclose(float(jnp.sum(gs[4] * v)), float(fd), rtol=1e-6)


def test_jit_vmap_and_vmap_of_grad(getkey):
    d, n, L, batch = 4, 3, 12, 3
    layer = dsf.S6(d, n, key=getkey())
    u = jr.normal(getkey(), (batch, L, d), jnp.float64)

    @eqx.filter_jit
    def run(layer, u):
        ys = [jax.vmap(lambda v: layer(v, method=m))(u) for m in modes(4)]
        single = layer(u[0], method=dsf.Recurrence())
        gs = [
            jax.vmap(jax.grad(lambda v: jnp.sum(layer(v, method=m) ** 2)))(u)
            for m in (dsf.Recurrence(), dsf.Chunked(4))
        ]
        return ys, single, gs

    ys, single, gs = run(layer, u)
    np.testing.assert_allclose(np.asarray(ys[1][0]), np.asarray(single), rtol=1e-10)  # scan
    for y in ys:
        np.testing.assert_allclose(np.asarray(y), np.asarray(ys[0]), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(np.asarray(gs[1]), np.asarray(gs[0]), rtol=1e-9)


def test_float32_modes_close_to_float64(getkey):
    L, d, n = 512, 4, 3
    s64 = _channel(getkey(), L, d, n, d, n, 1)
    s64 = eqx.tree_at(lambda s: s.log_lam, s64, 0.05 * s64.log_lam)  # long memory
    x64 = jr.normal(getkey(), (L, d), jnp.float64)
    ref, _ = eqx.filter_jit(lambda s, x: dsf.evaluate(s, x, method=dsf.Recurrence()))(s64, x64)
    s32 = jax.tree.map(lambda a: a.astype(jnp.float32), s64)
    x32 = x64.astype(jnp.float32)
    scale = float(jnp.max(jnp.abs(ref)))
    for m in (dsf.Recurrence(), dsf.Scan(), dsf.Chunked()):
        y, _ = eqx.filter_jit(lambda s, x: dsf.evaluate(s, x, method=m))(s32, x32)
        assert y.dtype == jnp.float32
        assert float(jnp.max(jnp.abs(y.astype(jnp.float64) - ref))) / scale < 1e-5, m


def test_errors_name_the_argument(getkey):
    system = _channel(getkey(), 10, 3, 2, 1, 1, 1)
    x = jnp.zeros((10, 3), jnp.float64)
    with pytest.raises(ValueError, match="`x`"):
        dsf.evaluate(system, jnp.zeros((10, 4), jnp.float64))
    with pytest.raises(TypeError, match="method"):  # a string is not an evaluation mode
        dsf.evaluate(system, x, method="fft")  # pyright: ignore[reportArgumentType]
    with pytest.raises(ValueError, match="MiB"):
        dsf.evaluate(system, x, method=dsf.Matrix(max_bytes=100))
    for bad in (lambda: dsf.Chunked(chunk_size=0), lambda: dsf.Recurrence(unroll=0)):
        with pytest.raises(ValueError, match="must be an integer >= 1"):
            bad()
    with pytest.raises(ValueError, match="MiB"):
        dsf.phi(system, max_bytes=100)
    with pytest.raises(ValueError, match="`key`"):
        dsf.ChannelDSF(
            jnp.zeros((10, 1, 1)), jnp.zeros((10, 3)), jnp.zeros((10, 2, 2)), jnp.zeros((10, 1, 2))
        )
    with pytest.raises(ValueError, match="`mixer`"):
        dsf.make_mixer("gru", 4, key=getkey())
    assert isinstance(dsf.choose_method(system, 10, training=True), dsf.AbstractEvaluation)


@pytest.mark.parametrize("mixer", ["softmax", "ssd"])
def test_sequence_model(mixer, getkey):
    model = dsf.SequenceModel(
        11,
        8,
        2,
        mixer,
        d_state=4,
        max_len=16 if mixer == "softmax" else 0,
        mlp=mixer == "softmax",
        key=getkey(),
    )
    tokens = jr.randint(getkey(), (2, 9), 0, 11)
    t2 = tokens.at[:, 6].set((tokens[:, 6] + 1) % 11)
    logits, logits2 = eqx.filter_jit(lambda m, a, b: (jax.vmap(m)(a), jax.vmap(m)(b)))(
        model, tokens, t2
    )
    assert logits.shape == (2, 9, 11)
    assert bool(jnp.all(jnp.isfinite(logits)))
    # causal: changing a later token does not change earlier outputs
    np.testing.assert_allclose(np.asarray(logits2[:, :6]), np.asarray(logits[:, :6]), rtol=1e-10)


# per-state decays (per channel and state, or shared by channels) with per-channel or shared
# keys: the hand-written adjoint of the per-state chunked kernel against autodiff of the
# recurrence, for every leaf and h0, under vmap with an unbatched system (mixed batched and
# unbatched kernel arguments)
@pytest.mark.parametrize("dl,nl,dk", [(3, 4, 3), (1, 4, 1), (3, 4, 1)])
def test_per_state_chunked_adjoint_matches_autodiff(dl, nl, dk, getkey):
    L, d, n = 11, 3, 4
    system = _channel(getkey(), L, d, n, dl, nl, dk)
    x = jr.normal(getkey(), (3, L, d), jnp.float64)
    h0 = jr.normal(getkey(), (d, n), jnp.float64)

    def loss(system, x, h0, method):
        def one(xi):
            y, H = dsf.evaluate(system, xi, method=method, h0=h0)
            return jnp.sum(jnp.sin(y)) + jnp.sum(H**2)

        return jnp.sum(jax.vmap(one)(x))

    grads = eqx.filter_jit(
        lambda s, x, h0: [
            jax.grad(loss, argnums=(0, 1, 2))(s, x, h0, m)
            for m in (dsf.Recurrence(), dsf.Chunked(4))
        ]
    )
    g_rec, g_chunk = grads(system, x, h0)
    for a, b in zip(jax.tree.leaves(g_chunk), jax.tree.leaves(g_rec), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("chunk_size", [32, 16])  # 128 chunks (decay-matrix path), 256 (scan path)
def test_scalar_chunked_float32_long_sequence(chunk_size, getkey):
    # scalar decay (Mamba-2 / linear attention) at L = 4096 in float32, with a strong decay (the
    # within-chunk cumulative log-decay reaches about -20 at Q = 32) and h0: the chunked form
    # differences cumulative log-decays inside one chunk only, so it stays within 1e-5.
    L, d, n = 4096, 4, 3
    s64 = _channel(getkey(), L, d, n, 1, 1, 1)
    s64 = eqx.tree_at(lambda s: s.log_lam, s64, 0.8 * s64.log_lam)
    x64 = jr.normal(getkey(), (L, d), jnp.float64)
    h0 = jr.normal(getkey(), (d, n), jnp.float64)
    ref, H_ref = eqx.filter_jit(lambda s, x: dsf.evaluate(s, x, method=dsf.Recurrence(), h0=h0))(
        s64, x64
    )
    s32 = jax.tree.map(lambda a: a.astype(jnp.float32), s64)
    y, H = eqx.filter_jit(lambda s, x: dsf.evaluate(s, x, method=dsf.Chunked(chunk_size), h0=h0))(
        s32, x64.astype(jnp.float32)
    )
    assert y.dtype == jnp.float32
    err = float(jnp.max(jnp.abs(y.astype(jnp.float64) - ref))) / float(jnp.max(jnp.abs(ref)))
    assert err < 1e-5
    np.testing.assert_allclose(np.asarray(H, np.float64), np.asarray(H_ref), rtol=1e-4, atol=1e-5)


def _max_rel_err(tree, ref):
    """Largest over leaves of max|a - b| / max|b| (each leaf's error relative to its own size)."""
    errs = [
        float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b))) / np.max(np.abs(b)))
        for a, b in zip(jax.tree.leaves(tree), jax.tree.leaves(ref), strict=True)
    ]
    return max(errs)


# scalar decay (Mamba-2, linear attention) and per-channel decay (RG-LRU, qLSTM, the paper's SSD)
@pytest.mark.parametrize("dl", [1, 3])
def test_chunked_gradients_float32_strong_decays(dl, getkey):
    # log-decays of -13 to -58 per step (strongly gated Mamba-2 heads): the chunked form's
    # gradient with respect to every leaf (log-decays, input and output maps, x, h0) in float32
    # agrees with the float64 recurrence to 1e-5 relative, with the default block length and a
    # block that leaves a partial last chunk. The true gradient of a log-decay a_k is of order
    # exp(a_k); block decays formed as differences of cumulative sums have gradients with O(1)
    # terms that cancel only to rounding, far above it.
    L, d, n = 80, 3, 4
    system = _channel(getkey(), L, d, n, dl, 1, 1)
    ll = jr.uniform(getkey(), (L, dl, 1), jnp.float64, -58.0, -13.0)
    system = eqx.tree_at(lambda s: s.log_lam, system, ll)
    x = jr.normal(getkey(), (L, d), jnp.float64)
    h0 = jr.normal(getkey(), (d, n), jnp.float64)
    w = jr.normal(getkey(), (L, d), jnp.float64)

    def loss(system, x, h0, method):
        y, H = dsf.evaluate(system, x, method=method, h0=h0)
        return jnp.sum(w.astype(y.dtype) * y) + jnp.sum(H)

    grad = eqx.filter_jit(jax.grad(loss, argnums=(0, 1, 2)))
    ref = grad(system, x, h0, dsf.Recurrence())
    f32 = jax.tree.map(lambda a: a.astype(jnp.float32), (system, x, h0))
    for chunk_size in (None, 32, 24):
        g = grad(*f32, dsf.Chunked(chunk_size))
        assert all(a.dtype == jnp.float32 for a in jax.tree.leaves(g))
        err = _max_rel_err(g, ref)
        assert err < 1e-5, (chunk_size, err)


@pytest.mark.parametrize("mixer", ["linear", "ssd"])
def test_to_dsf_heads_axis_stacks_the_blocks_of_one_system(mixer, getkey):
    # the documented convention of `to_dsf` for multi-head layers: leaves stacked over heads,
    # x = (H, L, d/H) the channel slices in head order; the layer's single DSF is the
    # block-diagonal combination, whose recurrence on the whole value stream gives the layer
    L, d, H, n = 9, 4, 2, 3
    layer = dsf.make_mixer(mixer, d, d_state=n, n_heads=H, key=getkey())
    u = jr.normal(getkey(), (L, d), jnp.float64)
    system, x = dsf.to_dsf(layer, u)
    assert x.shape == (H, L, d // H)
    assert all(leaf.shape[0] == H for leaf in jax.tree.leaves(system))
    dense = [dsf.materialise(jax.tree.map(lambda a: a[h], system), L) for h in range(H)]
    bd = jax.vmap(jax.scipy.linalg.block_diag)
    full = dsf.DenseDSF(
        lam=bd(*(m.lam for m in dense)),
        B=bd(*(m.B for m in dense)),
        C=bd(*(m.C for m in dense)),
        D=bd(*(m.D for m in dense)),
    )
    x_full = jnp.concatenate(list(x), axis=1)  # (L, d): head h's channels h d/H ...
    np.testing.assert_allclose(
        np.asarray(x_full), np.asarray(u @ layer.Wv.T if mixer == "linear" else u)
    )
    y, _ = dsf.evaluate(full, x_full, method=dsf.Recurrence())
    y_heads = jnp.stack(jnp.split(y, H, axis=1))
    np.testing.assert_allclose(
        np.asarray(layer.output(y_heads, u)),
        np.asarray(layer(u, method=dsf.Recurrence())),
        rtol=1e-10,
    )


def test_phi_refuses_another_length_for_a_time_varying_system(getkey):
    # a selective (time-varying) system has its own length: another one is refused, not
    # silently ignored; a time-invariant one materialises at any length
    d, L = 3, 16
    u = jr.normal(getkey(), (L, d), jnp.float64)
    system, _ = dsf.to_dsf(dsf.S6(d, 4, key=getkey()), u)
    assert system.length == L
    assert dsf.phi(system).shape[:2] == (L, L)
    with pytest.raises(ValueError, match="`length`=8"):
        dsf.phi(system, length=8)
    lti, _ = dsf.to_dsf(dsf.S4D(d, 4, key=getkey()), u)
    assert dsf.phi(lti, length=8).shape[:2] == (8, 8)
