"""The evaluation kernels of the DSF structures: recurrence (`lax.scan`), associative scan,
chunked and matrix forms, one section per structure. The structures' methods
(`scimlx/dsf/_dsf.py`) call these; each kernel takes the structure's arrays and returns
`(y, final_state)`."""

import functools

import jax
import jax.numpy as jnp


# ----------------------------------------------------------------------------- helpers


def _compute_dtype(x):
    # Accumulate low-precision inputs in float32.
    if x.dtype in (jnp.float16, jnp.bfloat16):
        return jnp.float32
    return x.dtype


def _decay_matrix(a):
    """exp(segsum(a)) masked causally: out[i, j] = exp(a[j+1] + ... + a[i]) for i >= j, else 0.

    `a`: `(T, ...)` log-decays. Computed by a masked cumulative sum (as in Mamba-2's
    `ssd_minimal.segsum`), which never subtracts two large cumulative sums, so it stays accurate
    when the total log-decay is large.
    """
    T = a.shape[0]
    idx = jnp.arange(T)
    extra = (1,) * (a.ndim - 1)
    strict = (idx[:, None] > idx[None, :]).reshape((T, T) + extra)  # [k, j]: k > j
    X = jnp.where(
        strict, jnp.broadcast_to(a[:, None], (T, T) + a.shape[1:]), jnp.zeros((), a.dtype)
    )
    S = jnp.cumsum(X, axis=0)  # S[i, j] = sum_{j < k <= i} a[k]
    causal = (idx[:, None] >= idx[None, :]).reshape((T, T) + extra)
    return jnp.where(causal, jnp.exp(S), jnp.zeros((), S.dtype))


def _labels(arr, base: str, d_label: str = "d", n_label: str = "n", squeeze_axes=(-2, -1)):
    """einsum labels for an array whose trailing (d|1, n|1) axes may be size 1 (dropped)."""
    labels = base
    sq = []
    for ax, lab in zip(squeeze_axes, (d_label, n_label)):
        if arr.shape[ax] == 1:
            sq.append(arr.ndim + ax)
        else:
            labels += lab
    return jnp.squeeze(arr, axis=tuple(sq)) if sq else arr, labels


def _combine_diagonal(e1, e2):
    """Associative combine of two diagonal affine maps h -> a h + b (the earlier one first)."""
    a1, b1 = e1
    a2, b2 = e2
    return a1 * a2, a2 * b1 + b2


def _pad_steps(pad, *arrays):
    """The arrays with `pad` steps appended along the sequence axis (axis 0), zero-filled."""
    return tuple(jnp.pad(a, [(0, pad)] + [(0, 0)] * (a.ndim - 1)) for a in arrays)


def _carry_chunk(H, inp):
    """Inter-chunk recurrence step: H_out = decay * H_in + chunk state; emits H_in."""
    dec, st = inp
    return dec * H + st, H


def _channel_step(H, inp):
    """One step of the ChannelDSF recurrence: H_i = Lambda_i H_{i-1} + (beta x)_i k_i^T,
    y_i = H_i q_i."""
    ll_i, bx_i, k_i, q_i = inp
    H = jnp.exp(ll_i) * H + bx_i[:, None] * k_i
    return H, jnp.sum(H * q_i, axis=-1)


# ----------------------------------------------------------------------------- ChannelDSF


def _channel_arrays(dsf, x):
    L, d = x.shape
    cd = _compute_dtype(x)

    def bl(a):
        return jnp.broadcast_to(a.astype(cd), (L,) + a.shape[1:])

    ll, beta, key, query = bl(dsf.log_lam), bl(dsf.beta), bl(dsf.key), bl(dsf.query)
    gamma = None if dsf.gamma is None else bl(dsf.gamma)
    D = None if dsf.D is None else dsf.D.astype(cd)
    return ll, beta, key, query, gamma, D, x.astype(cd)


def _channel_out(y, gamma, D, x):
    if gamma is not None:
        y = gamma * y
    if D is not None:
        y = y + D[None, :] * x
    return y


def channel_recurrence(dsf, x, h0, unroll):
    ll, beta, key, query, gamma, D, x = _channel_arrays(dsf, x)
    d, n = dsf.in_dim, dsf.n
    bx = beta * x
    H0 = jnp.zeros((d, n), x.dtype) if h0 is None else h0.astype(x.dtype)
    H, y = jax.lax.scan(_channel_step, H0, (ll, bx, key, query), unroll=unroll)
    return _channel_out(y, gamma, D, x), H


def channel_scan(dsf, x, h0):
    ll, beta, key, query, gamma, D, x = _channel_arrays(dsf, x)
    a = jnp.exp(ll)  # (L, dl, nl)
    b = (beta * x)[:, :, None] * key  # (L, d, n)
    if h0 is not None:
        b = b.at[0].add(a[0] * h0.astype(x.dtype))

    _, H = jax.lax.associative_scan(_combine_diagonal, (a, b))
    y = jnp.sum(H * query, axis=-1)
    return _channel_out(y, gamma, D, x), H[-1]


def _intra(ll_mat, query, key, bx):
    """sum_j [sum_s q_{i s} k_{j s} M_{i j s}] bx_j with size-1 axes handled by einsum labels.

    `ll_mat`: (..., i, j, d|1, n|1) decay matrix; `query`: (..., i, d|1, n); `key`: (..., j, d|1,
    n); `bx`: (..., j, d). Leading batch axes are labelled 'c' (chunks) if present.
    """
    lead = "c" if ll_mat.ndim == 5 else ""
    M, lm = _labels(ll_mat, lead + "ij")
    q, lq = _labels(query, lead + "i", squeeze_axes=(-2,), n_label="")
    k, lk = _labels(key, lead + "j", squeeze_axes=(-2,), n_label="")
    lq += "n"
    lk += "n"
    has_d = any("d" in s for s in (lm, lq, lk))
    out = lead + "ij" + ("d" if has_d else "")
    A = jnp.einsum(f"{lm},{lq},{lk}->{out}", M, q, k)
    if has_d:
        return jnp.einsum(f"{lead}ijd,{lead}jd->{lead}id", A, bx), A
    return jnp.einsum(f"{lead}ij,{lead}jd->{lead}id", A, bx), A


def _is_scalar(ll, key, query):
    return ll.shape[1:] == (1, 1) and key.shape[1] == 1 and query.shape[1] == 1


# Above this many chunks the inter-chunk recurrence is a `lax.scan` over chunks instead of a
# (chunks x chunks) decay-matrix product.
_MAX_CHUNKS_MATRIX = 128


def _segsum_blocks(a):
    """Segment sums of log-decays in blocks: out[c, i, j] = a[c, j+1] + ... + a[c, i] for i > j,
    0 for i <= j. `a`: `(C, Q)`.

    Built as one masked product, S = T diag(a) U with T[i, k] = [k <= i] and U[k, j] = [k > j],
    i.e. each entry sums the per-step log-decays it spans, as Mamba-2's `segsum` does: never as
    a difference of cumulative sums c_i - c_j. The difference form is exact on the diagonal in
    the forward pass, but its gradient with respect to a_k is a sum of terms of order
    exp(c_i - c_i) = 1 that cancel only to rounding, which swamps the true gradient when the
    decays are strong (36 % relative error of Mamba-2's `A_log` gradient in float32 at Q = 32
    and log-decays of -13 to -58 per step). The product runs at the highest precision (no
    reduced-precision matmul on accelerators).
    """
    Q = a.shape[1]
    idx = jnp.arange(Q)
    T = (idx[:, None] >= idx[None, :]).astype(a.dtype)
    U = (idx[:, None] > idx[None, :]).astype(a.dtype)
    return jnp.einsum("ik,ck,kj->cij", T, a, U, precision=jax.lax.Precision.HIGHEST)


def _scalar_chunked(ll, bx, key, query, h0, Q):
    """Chunked form for a scalar decay shared by all states, with shared key/query: four
    matmul-shaped steps as in Mamba-2's `ssd_minimal`:

    1. intra-chunk: y_i = sum_{j<=i} (q_i . k_j) exp(s_ij) bx_j, with s_ij = a_{j+1} + ... + a_i
       the segment sum of the chunk's log-decays (`_segsum_blocks`, never a difference of
       cumulative sums, so that gradients stay accurate for strong decays);
    2. state produced by each chunk: S_c = sum_j exp(s_Qj) k_j bx_j^T;
    3. state entering each chunk, from the chunk states and the chunk decays, by the stable
       segment-sum decay matrix over chunks (or a scan over chunks when there are many);
    4. y_i += exp(c_i) q_i . H_in, with c_i = a_1 + ... + a_i the chunk's cumulative log-decay.

    `ll`: (L, 1, 1), `bx`: (L, d), `key`, `query`: (L, 1, n), `h0`: (d, n) or None.
    """
    L, d = bx.shape
    n = key.shape[-1]
    pad = (-L) % Q
    a, k, q = ll[:, 0, 0], key[:, 0], query[:, 0]
    if pad:
        a, bx, k, q = _pad_steps(pad, a, bx, k, q)
    C = (L + pad) // Q
    a = a.reshape(C, Q)
    bx, k, q = bx.reshape(C, Q, d), k.reshape(C, Q, n), q.reshape(C, Q, n)
    causal = jnp.tril(jnp.ones((Q, Q), bool))
    decay = jnp.where(causal, jnp.exp(_segsum_blocks(a)), jnp.zeros((), a.dtype))  # (C, Q, Q)
    G = jnp.einsum("cin,cjn->cij", q, k) * decay
    y = jnp.einsum("cij,cjd->cid", G, bx)
    w = decay[:, -1]  # (C, Q): decay from step j to the chunk's end
    states = jnp.einsum("cjn,cjd->cnd", k * w[:, :, None], bx)  # (C, n, d)
    cum = jnp.cumsum(a, axis=1)  # (C, Q)
    tot = cum[:, -1]  # (C,) log-decay of each chunk
    hT = jnp.zeros((n, d), bx.dtype) if h0 is None else h0.astype(bx.dtype).T
    if C <= _MAX_CHUNKS_MATRIX:
        H_out = jnp.einsum("cm,mnd->cnd", _decay_matrix(tot), states)
        if h0 is not None:
            H_out = H_out + jnp.exp(jnp.cumsum(tot))[:, None, None] * hT[None]
        H_in = jnp.concatenate([hT[None], H_out[:-1]], axis=0)
        H_last = H_out[-1]
    else:
        H_last, H_in = jax.lax.scan(_carry_chunk, hT, (jnp.exp(tot), states))
    y = y + jnp.einsum("cin,cnd->cid", q * jnp.exp(cum)[:, :, None], H_in)
    return y.reshape(C * Q, d)[:L], H_last.T


def channel_chunked(dsf, x, h0, chunk_size):
    ll, beta, key, query, gamma, D, x = _channel_arrays(dsf, x)
    L, d = x.shape
    n = dsf.n
    Q = min(chunk_size, L)
    if _is_scalar(ll, key, query):
        y, H = _scalar_chunked(ll, beta * x, key, query, h0, Q)
        return _channel_out(y, gamma, D, x), H
    pad = (-L) % Q
    bx = beta * x
    if pad:
        ll, bx, key, query = _pad_steps(pad, ll, bx, key, query)
    C = (L + pad) // Q
    rs = lambda a: a.reshape((C, Q) + a.shape[1:])  # noqa: E731
    ll, bx, key, query = rs(ll), rs(bx), rs(key), rs(query)
    # 1. intra-chunk (masked, matmul-shaped)
    M = jax.vmap(_decay_matrix)(ll)  # (C, Q, Q, dl, nl)
    y_intra, _ = _intra(M, query, key, bx)
    # 2. state produced by each chunk: sum_j exp(cum_Q - cum_j) (bx_j k_j^T)
    w = M[:, -1]  # (C, Q, dl, nl) = exp(sum_{k>j} ll_k) within the chunk
    wb, lw = _labels(w, "cj")
    kb, lk = _labels(key, "cj", squeeze_axes=(-2,), n_label="")
    lk += "n"
    states = jnp.einsum(f"{lw},{lk},cjd->cdn", wb, kb, bx)
    # 3. inter-chunk recurrence on the (d, n) states
    cum = jnp.cumsum(ll, axis=1)  # (C, Q, dl, nl), within-chunk cumulative log-decay
    chunk_decay = jnp.exp(cum[:, -1])  # (C, dl, nl)
    H0 = jnp.zeros((d, n), x.dtype) if h0 is None else h0.astype(x.dtype)
    H_last, H_in = jax.lax.scan(_carry_chunk, H0, (chunk_decay, states))
    # 4. contribution of the incoming state: q_i . (exp(cum_i) * H_in)
    e, le = _labels(jnp.exp(cum), "ci")
    qb, lq = _labels(query, "ci", squeeze_axes=(-2,), n_label="")
    lq += "n"
    y_inter = jnp.einsum(f"{le},{lq},cdn->cid", e, qb, H_in)
    y = (y_intra + y_inter).reshape(C * Q, d)[:L]
    return _channel_out(y, gamma, D, x), H_last


def _sum_to(x, shape):
    """Sum `x` over the axes where `shape` has size 1 (the transpose of broadcasting)."""
    axes = tuple(i for i, (a, b) in enumerate(zip(x.shape, shape)) if b == 1 and a != 1)
    return jnp.sum(x, axis=axes, keepdims=True) if axes else x


def _sequential_under_vmap(fn):
    """`fn` (array arguments, tuple/array output) that, when vmapped, runs the batch elements one
    after another (`lax.map`) instead of widening every step of its loop: the per-step working
    set of the recurrence then stays (d, n) instead of (batch, d, n), which is about 2x faster
    on CPU for the per-state kernel (measured; see docs/dsf.md)."""
    wrapped = jax.custom_batching.custom_vmap(fn)

    @wrapped.def_vmap
    def _rule(axis_size, in_batched, *args):
        del axis_size
        batched = [a for a, b in zip(args, in_batched) if b]

        def one(bargs):
            it = iter(bargs)
            return wrapped(*[next(it) if b else a for a, b in zip(args, in_batched)])

        out = jax.lax.map(one, batched)
        return out, jax.tree.map(lambda _: True, out)

    return wrapped


@functools.cache
def _checkpoint_kernels(block: int):
    """Forward and adjoint of the per-state recurrence in chunks of `block` steps.

    The forward pass keeps only the state entering each chunk (L / block states of (d, n)),
    not the L per-step states that autodiff through `lax.scan` saves; the adjoint recomputes a
    chunk's states from its entering state (a (block, d, n) working set that stays in cache),
    runs the costate recurrence backwards through the chunk, and forms the chunk's parameter
    gradients as whole-chunk vector operations. Both inner loops are fully unrolled."""

    def chunks(a, C):
        return a.reshape((C, block) + a.shape[1:])

    def forward(ll, bx, key, query, h0):
        L = ll.shape[0]
        C = L // block

        def chunk(H, inp):
            H_out, y = jax.lax.scan(_channel_step, H, inp, unroll=block)
            return H_out, (y, H)

        H, (y, H_in) = jax.lax.scan(
            chunk, h0, (chunks(ll, C), chunks(bx, C), chunks(key, C), chunks(query, C))
        )
        return y.reshape((L,) + y.shape[2:]), H, H_in

    def adjoint(ll, bx, key, query, H_in, gy, gH):
        L = ll.shape[0]
        C = L // block

        def chunk(carry, inp):
            ll_c, bx_c, k_c, q_c, gy_c, H0_c = inp
            a = jnp.exp(ll_c)

            def recompute(H, s):
                a_i, bx_i, k_i = s
                aH = a_i * H
                return aH + bx_i[:, None] * k_i, aH

            _, aH = jax.lax.scan(recompute, H0_c, (a, bx_c, k_c), unroll=block)

            def costate(c, s):
                a_i, gy_i, q_i = s
                lam = c + gy_i[:, None] * q_i
                return a_i * lam, lam

            carry, lam = jax.lax.scan(costate, carry, (a, gy_c, q_c), reverse=True, unroll=block)
            H = aH + bx_c[:, :, None] * k_c
            grads = (
                _sum_to(lam * aH, ll_c.shape),
                jnp.sum(lam * k_c, axis=-1),
                _sum_to(lam * bx_c[:, :, None], k_c.shape),
                _sum_to(gy_c[:, :, None] * H, q_c.shape),
            )
            return carry, grads

        gh0, grads = jax.lax.scan(
            chunk,
            gH,
            tuple(chunks(v, C) for v in (ll, bx, key, query, gy)) + (H_in,),
            reverse=True,
        )
        return tuple(g.reshape((L,) + g.shape[2:]) for g in grads) + (gh0,)

    return _sequential_under_vmap(forward), _sequential_under_vmap(adjoint)


@functools.partial(jax.custom_vjp, nondiff_argnums=(5,))
def _checkpointed_recurrence(ll, bx, key, query, h0, block):
    # Not differentiated (inference): no chunk-entry states are needed, so this is the plain
    # recurrence, as fast as `Recurrence` (the chunked forward loop measured up to 1.7x
    # slower than it at batch 1).
    del block
    H, y = jax.lax.scan(_channel_step, h0, (ll, bx, key, query))
    return y, H


def _checkpointed_recurrence_fwd(ll, bx, key, query, h0, block):
    y, H, H_in = _checkpoint_kernels(block)[0](ll, bx, key, query, h0)
    return (y, H), (ll, bx, key, query, H_in)


def _checkpointed_recurrence_bwd(block, res, cotangents):
    """The adjoint recurrence, run backwards chunk by chunk: with lam_i = dJ/dH_i,
    lam_i = Lambda_{i+1} lam_{i+1} + gy_i q_i^T, and then per step
    dJ/dlog_lam_i = lam_i * Lambda_i H_{i-1}, dJ/d(beta x)_i = lam_i k_i,
    dJ/dk_i = lam_i^T (beta x)_i, dJ/dq_i = gy_i^T H_i, dJ/dh0 = Lambda_1 lam_1."""
    gy, gH = cotangents
    return _checkpoint_kernels(block)[1](*res, gy, gH)


_checkpointed_recurrence.defvjp(_checkpointed_recurrence_fwd, _checkpointed_recurrence_bwd)


def channel_chunked_per_state(dsf, x, h0, chunk_size):
    """Chunked form for per-state decays: the recurrence in chunks of `chunk_size` steps (each
    chunk one fully unrolled loop body), saving only the state entering each chunk, with a
    hand-written adjoint that recomputes a chunk's states and runs the costate recurrence
    backwards through it (a `jax.custom_vjp`; reverse mode only). Under `vmap` the batch
    elements run one after another, which keeps the working set of a chunk in cache. A
    matmul-shaped intra-chunk form would need a (Q, Q, d, n) decay tensor, i.e. Q/2 times the
    exponentials and multiplies of the recurrence, and loses on CPU (see docs/dsf.md)."""
    ll, beta, key, query, gamma, D, x = _channel_arrays(dsf, x)
    L, d = x.shape
    Q = max(1, min(chunk_size, L))
    bx = beta * x
    pad = (-L) % Q
    if pad:  # identity steps (decay 1, no input) at the end leave the state unchanged
        ll, bx, key, query = _pad_steps(pad, ll, bx, key, query)
    H0 = jnp.zeros((d, dsf.n), x.dtype) if h0 is None else h0.astype(x.dtype)
    y, H = _checkpointed_recurrence(ll, bx, key, query, H0, Q)
    return _channel_out(y[:L], gamma, D, x), H


def channel_phi(dsf, L):
    """The diagonals `(L, L, d)` of the blocks Phi_ij of a ChannelDSF."""
    cd = dsf.beta.dtype
    ll, beta, key, query, gamma, D, _ = _channel_arrays(dsf, jnp.zeros((L, dsf.in_dim), cd))
    M = _decay_matrix(ll)  # (L, L, dl, nl)
    _, A = _intra(M, query, key, jnp.zeros((L, dsf.in_dim), cd))
    if A.ndim == 2:
        A = A[:, :, None]
    P = A * beta[None, :, :]
    if gamma is not None:
        P = gamma[:, None, :] * P
    if D is not None:
        P = P + jnp.eye(L, dtype=cd)[:, :, None] * D[None, None, :]
    return P


def channel_matrix(dsf, x, h0):
    """y = Phi x with the (L, L) kernel of Phi applied as a matmul (Phi itself is not stored)."""
    ll, beta, key, query, gamma, D, x = _channel_arrays(dsf, x)
    M = _decay_matrix(ll)  # (L, L, dl, nl)
    bx = beta * x
    y, _ = _intra(M, query, key, bx)
    wb, lw = _labels(M[-1], "j")
    kb, lk = _labels(key, "j", squeeze_axes=(-2,), n_label="")
    H = jnp.einsum(f"{lw},{lk}n,jd->dn", wb, kb, bx)
    if h0 is not None:
        E = jnp.exp(jnp.cumsum(ll, axis=0))  # (L, dl, nl)
        h0 = h0.astype(x.dtype)
        y = y + jnp.sum(E * h0[None] * query, axis=-1)
        H = H + E[-1] * h0
    return _channel_out(y, gamma, D, x), H


# ----------------------------------------------------------------------------- DiagonalDSF


def _diag_arrays(dsf, x):
    L = x.shape[0]
    cd = jnp.result_type(dsf.B.dtype, dsf.log_lam.dtype, dsf.C.dtype)

    def bl(a):
        return jnp.broadcast_to(a.astype(cd), (L,) + a.shape[1:])

    ll, B, C = bl(dsf.log_lam), bl(dsf.B), bl(dsf.C)
    b = jnp.einsum("lnd,ld->ln", B, x.astype(cd))
    return ll, b, C


def _diag_out(dsf, y, x):
    if dsf.real_output:
        y = jnp.real(y)
    if dsf.D is not None:
        y = y + (dsf.D[None, :] * x).astype(y.dtype)
    return y


def diag_recurrence(dsf, x, h0, unroll):
    ll, b, C = _diag_arrays(dsf, x)

    def step(h, inp):
        ll_i, b_i, C_i = inp
        h = jnp.exp(ll_i) * h + b_i
        return h, C_i @ h

    h0 = jnp.zeros(b.shape[1:], b.dtype) if h0 is None else h0.astype(b.dtype)
    h, y = jax.lax.scan(step, h0, (ll, b, C), unroll=unroll)
    return _diag_out(dsf, y, x), h


def diag_scan(dsf, x, h0):
    ll, b, C = _diag_arrays(dsf, x)
    a = jnp.exp(ll)
    if h0 is not None:
        b = b.at[0].add(a[0] * h0.astype(b.dtype))

    _, h = jax.lax.associative_scan(_combine_diagonal, (a, b))
    return _diag_out(dsf, jnp.einsum("ldn,ln->ld", C, h), x), h[-1]


def diag_chunked(dsf, x, h0, chunk_size):
    ll, b, C = _diag_arrays(dsf, x)
    L, N = b.shape
    Q = min(chunk_size, L)
    pad = (-L) % Q
    if pad:
        ll, b = _pad_steps(pad, ll, b)
    Cn = (L + pad) // Q
    ll = ll.reshape(Cn, Q, N)
    b = b.reshape(Cn, Q, N)
    M = jax.vmap(_decay_matrix)(ll)  # (Cn, Q, Q, N)
    h_intra = jnp.einsum("cijn,cjn->cin", M, b)
    states = h_intra[:, -1]
    cum = jnp.cumsum(ll, axis=1)
    h0 = jnp.zeros((N,), b.dtype) if h0 is None else h0.astype(b.dtype)
    h_last, h_in = jax.lax.scan(_carry_chunk, h0, (jnp.exp(cum[:, -1]), states))
    h = (h_intra + jnp.exp(cum) * h_in[:, None, :]).reshape(Cn * Q, N)[:L]
    return _diag_out(dsf, jnp.einsum("ldn,ln->ld", C, h), x), h_last


def diag_phi(dsf, L):
    cd = jnp.result_type(dsf.B.dtype, dsf.log_lam.dtype, dsf.C.dtype)
    ll = jnp.broadcast_to(dsf.log_lam.astype(cd), (L, dsf.log_lam.shape[1]))
    B = jnp.broadcast_to(dsf.B.astype(cd), (L,) + dsf.B.shape[1:])
    C = jnp.broadcast_to(dsf.C.astype(cd), (L,) + dsf.C.shape[1:])
    M = _decay_matrix(ll)  # (L, L, N)
    P = jnp.einsum("idn,ijn,jne->ijde", C, M, B)
    if dsf.real_output:
        P = jnp.real(P)
    if dsf.D is not None:
        P = P + (
            jnp.eye(L, dtype=P.dtype)[:, :, None, None]
            * jnp.diag(dsf.D).astype(P.dtype)[None, None]
        )
    return P, M, ll, B


def diag_matrix(dsf, x, h0):
    L = x.shape[0]
    P, M, ll, B = diag_phi(dsf, L)
    y = jnp.einsum("ijde,je->id", P, x.astype(P.dtype))
    b = jnp.einsum("lnd,ld->ln", B, x.astype(B.dtype))
    h = jnp.einsum("jn,jn->n", M[-1], b)
    if h0 is not None:
        E = jnp.exp(jnp.cumsum(ll, axis=0))
        C = jnp.broadcast_to(dsf.C.astype(B.dtype), (L,) + dsf.C.shape[1:])
        contrib = jnp.einsum("ldn,ln->ld", C, E * h0.astype(B.dtype)[None])
        y = y + (jnp.real(contrib) if dsf.real_output else contrib)
        h = h + E[-1] * h0.astype(B.dtype)
    return y, h


# ----------------------------------------------------------------------------- DenseDSF


def _dense_out(dsf, y, x):
    y = y + jnp.einsum("lde,le->ld", dsf.D, x.astype(dsf.D.dtype))
    return jnp.real(y) if dsf.real_output else y


def dense_recurrence(dsf, x, h0, unroll):
    cd = dsf.B.dtype

    def step(h, inp):
        A, B, C, x_i = inp
        h = A @ h + B @ x_i
        return h, C @ h

    h0 = jnp.zeros(dsf.lam.shape[1], cd) if h0 is None else h0.astype(cd)
    h, y = jax.lax.scan(step, h0, (dsf.lam, dsf.B, dsf.C, x.astype(cd)), unroll=unroll)
    return _dense_out(dsf, y, x), h


def dense_scan(dsf, x, h0):
    cd = dsf.B.dtype
    b = jnp.einsum("lnd,ld->ln", dsf.B, x.astype(cd))
    A = dsf.lam
    if h0 is not None:
        b = b.at[0].add(A[0] @ h0.astype(cd))

    def combine(e1, e2):
        A1, b1 = e1
        A2, b2 = e2
        return A2 @ A1, jnp.einsum("...nm,...m->...n", A2, b1) + b2

    _, h = jax.lax.associative_scan(combine, (A, b))
    return _dense_out(dsf, jnp.einsum("ldn,ln->ld", dsf.C, h), x), h[-1]


def dense_phi(dsf):
    L = dsf.length

    def step(Mprev, inp):
        i, A, B = inp
        M = jnp.einsum("nm,jmd->jnd", A, Mprev)
        M = M.at[i].set(B)
        return M, M

    M0 = jnp.zeros((L,) + dsf.B.shape[1:], dsf.B.dtype)
    _, Ms = jax.lax.scan(step, M0, (jnp.arange(L), dsf.lam, dsf.B))  # Ms[i, j] = prod A B_j
    causal = (jnp.arange(L)[:, None] >= jnp.arange(L)[None, :])[:, :, None, None]
    P = jnp.where(causal, jnp.einsum("idn,ijne->ijde", dsf.C, Ms), jnp.zeros((), Ms.dtype))
    P = P + jnp.eye(L, dtype=P.dtype)[:, :, None, None] * dsf.D[:, None, :, :]
    return jnp.real(P) if dsf.real_output else P


def dense_matrix(dsf, x, h0):
    if h0 is not None:
        raise ValueError("`h0` is not supported by `Matrix` for DenseDSF.")
    P = dense_phi(dsf)
    y = jnp.einsum("ijde,je->id", P, x.astype(P.dtype))
    _, h = dense_recurrence(dsf, x, None, 1)
    return y, h


# ----------------------------------------------------------------------------- softmax


def softmax_scores(dsf, cd):
    L = dsf.length
    S = (dsf.q.astype(cd) @ dsf.k.astype(cd).T) * dsf.scale
    causal = jnp.arange(L)[:, None] >= jnp.arange(L)[None, :]
    return jnp.where(causal, S, jnp.finfo(cd).min)


def softmax_matrix(dsf, x):
    cd = _compute_dtype(x)
    P = jax.nn.softmax(softmax_scores(dsf, cd), axis=-1)
    return P @ x.astype(cd), (dsf.k.astype(cd), x.astype(cd))


def softmax_recurrence(dsf, x, unroll):
    """Growing KV state: step i appends (k_i, x_i) and reads it out with a max-shifted softmax."""
    cd = _compute_dtype(x)
    L, m = dsf.q.shape
    q, k, v = dsf.q.astype(cd), dsf.k.astype(cd), x.astype(cd)
    idx = jnp.arange(L)

    def step(carry, inp):
        K, V = carry
        i, q_i, k_i, v_i = inp
        K = K.at[i].set(k_i)
        V = V.at[i].set(v_i)
        s = jnp.where(idx <= i, (K @ q_i) * dsf.scale, -jnp.inf)
        mx = jnp.max(s)
        p = jnp.exp(s - mx)
        return (K, V), (p @ V) / jnp.sum(p)

    K0 = jnp.zeros((L, m), cd)
    V0 = jnp.zeros_like(v)
    (K, V), y = jax.lax.scan(step, (K0, V0), (idx, q, k, v), unroll=unroll)
    return y, (K, V)


def softmax_chunked(dsf, x, chunk_size):
    """Flash-style causal attention: online softmax (running max and sum) over key blocks."""
    cd = _compute_dtype(x)
    L, m = dsf.q.shape
    d = x.shape[1]
    Q = min(chunk_size, L)
    pad = (-L) % Q
    q, k, v = dsf.q.astype(cd), dsf.k.astype(cd), x.astype(cd)
    if pad:
        q = jnp.pad(q, [(0, pad), (0, 0)])
        k = jnp.pad(k, [(0, pad), (0, 0)])
        v = jnp.pad(v, [(0, pad), (0, 0)])
    C = (L + pad) // Q
    qc, kc, vc = q.reshape(C, Q, m), k.reshape(C, Q, m), v.reshape(C, Q, d)
    pos = jnp.arange(C * Q).reshape(C, Q)
    neg = jnp.finfo(cd).min

    def one_query_chunk(qi, pi):
        def step(carry, inp):
            mx, denom, acc = carry
            kj, vj, pj = inp
            s = (qi @ kj.T) * dsf.scale
            s = jnp.where(pi[:, None] >= pj[None, :], s, neg)
            mnew = jnp.maximum(mx, jnp.max(s, axis=1))
            corr = jnp.exp(mx - mnew)
            p = jnp.exp(s - mnew[:, None])
            return (mnew, corr * denom + jnp.sum(p, axis=1), corr[:, None] * acc + p @ vj), None

        init = (jnp.full((Q,), neg, cd), jnp.zeros((Q,), cd), jnp.zeros((Q, d), cd))
        (_, denom, acc), _ = jax.lax.scan(step, init, (kc, vc, pos))
        return acc / denom[:, None]

    y = jax.vmap(one_query_chunk)(qc, pos).reshape(C * Q, d)[:L]
    return y, (dsf.k.astype(cd), x.astype(cd))
