"""The benchmark's problems: systems of each family, batches, the modes by name, layers with
strong decays, and MQAR data."""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np

import scimlx.dsf as dsf


F32 = jnp.float32
D, N, M_SOFTMAX = 64, 16, 16
BUDGET = 2**30  # materialised-matrix budget (bytes), the library default
PEAK_LIMIT = 8 * 2**30  # cells whose compiled executable needs more memory are not run
FAMILIES = ("scalar", "per_state", "softmax")


def mode(name: str, *, chunk_size: int | None = None, max_bytes: int = BUDGET):
    """The evaluation mode by the name the results use (`"recurrence"`, `"scan"`, `"chunked"`,
    `"matrix"`)."""
    return {
        "recurrence": dsf.Recurrence(),
        "scan": dsf.Scan(),
        "chunked": dsf.Chunked(chunk_size),
        "matrix": dsf.Matrix(max_bytes),
    }[name]


def mode_name(method: dsf.AbstractEvaluation) -> str:
    """The name the results use for a mode (`Chunked(...)` -> `"chunked"`)."""
    return type(method).__name__.lower()


def make_system(fam: str, L: int, key, dtype=F32):
    k = jr.split(key, 6)
    if fam == "softmax":
        q = jr.normal(k[0], (L, M_SOFTMAX), dtype) / 2
        kk = jr.normal(k[1], (L, M_SOFTMAX), dtype) / 2
        return dsf.SoftmaxDSF(q, kk, 1.0 / math.sqrt(M_SOFTMAX), D)
    beta = 0.1 * jax.nn.softplus(jr.normal(k[1], (L, D), dtype))  # Delta-like input scale
    b = jr.normal(k[2], (L, 1, N), dtype) / math.sqrt(N)
    c = jr.normal(k[3], (L, 1, N), dtype) / math.sqrt(N)
    if fam == "per_state":  # S6: exp(Delta (x) A), A_{cs} = -(s+1)
        delta = jax.nn.softplus(jr.normal(k[0], (L, D), dtype) - 2.0)
        A = -jnp.arange(1, N + 1, dtype=dtype)
        ll = delta[:, :, None] * A[None, None, :]
        return dsf.ChannelDSF(ll, delta, b, c, D=jnp.ones((D,), dtype))
    # scalar decay (Mamba-2 SSD head / decayed linear attention)
    ll = -jax.nn.softplus(jr.normal(k[0], (L, 1, 1), dtype) - 3.0)
    return dsf.ChannelDSF(ll, beta, b, c, D=jnp.ones((D,), dtype))


def system_and_input(fam: str, L: int, key):
    """A float32 system of the family and its `(L, D)` input, both drawn from `key` and `L`."""
    return make_system(fam, L, jr.fold_in(key, L)), jr.normal(jr.fold_in(key, L + 1), (L, D), F32)


def batch16(sys32, x32):
    sysb = jax.tree.map(lambda a: jnp.broadcast_to(a, (16,) + a.shape), sys32)
    xb = jnp.broadcast_to(x32, (16,) + x32.shape) + jnp.arange(16, dtype=F32)[:, None, None] * 0.01
    return sysb, xb


def fwdbwd(name: str, chunk_size: int | None = None):
    """Jitted gradient of sum y^2 (over a batch) with respect to the system and the input."""
    method = mode(name, chunk_size=chunk_size, max_bytes=BUDGET * 16)

    def loss(s, x):
        y = jax.vmap(lambda a, b: dsf.evaluate(a, b, method=method)[0])(s, x)
        return jnp.sum(y**2)

    return jax.jit(jax.grad(loss, argnums=(0, 1)))


# Scalar-decay families: one decay per step shared by the states of a head (linear and normalised
# attention, Mamba-2 SSD) or of a channel (the paper's SSD, RG-LRU, qLSTM), as `make_mixer` names.
GRAD_FAMILIES = ("linear", "normalised", "ssd", "ssd_paper", "rglru", "qlstm", "qlstm_reversed")


def _softplus_inverse(v):
    return math.log(math.expm1(v))


def strong_decays(name, layer):
    """The layer with parameters set for log-decays of about -10 to -60 per step (decays of
    the gated layers saturating towards 0); attention's normalised decays eta_{i-1}/eta_i get
    the same magnitude of either sign from a wide normaliser."""
    if name in ("ssd", "ssd_paper"):  # A = -12, Delta about 2.5
        return eqx.tree_at(
            lambda m: (m.A_log, m.b_dt),
            layer,
            (
                jnp.full_like(layer.A_log, math.log(12.0)),
                jnp.full_like(layer.b_dt, _softplus_inverse(2.5)),
            ),
        )
    if name == "rglru":  # log a = -8 r softplus(a_param) = -48 r
        return eqx.tree_at(lambda m: m.a_param, layer, jnp.full_like(layer.a_param, 6.0))
    if name in ("qlstm", "qlstm_reversed"):  # forget pre-activation -30 (reversed: +30)
        f = layer.b.shape[0] // 4
        return eqx.tree_at(
            lambda m: m.b, layer, layer.b.at[:f].set(30.0 if name == "qlstm_reversed" else -30.0)
        )
    if name == "linear":  # elu+1 query features spanning e^-30 ... 30
        return eqx.tree_at(lambda m: m.Wq, layer, 30.0 * layer.Wq)
    if name == "normalised":  # log eta = w_eta . u spanning about +-15 (eta^-1 up to ~1e7)
        return eqx.tree_at(lambda m: m.w_eta, layer, 7.0 * layer.w_eta)
    raise ValueError(name)


def mqar_batch(key, batch, L, num_kv, vocab, power_a=0.01):
    """Zoology's multiquery_ar rules: keys in [1, V/2), values in [V/2, V), kv pairs first, each key
    queried once after the context at a power-law gap, non-query slots 0, loss at queries only.

    Returns tokens `(B, L)`, query positions `(B, K)` and target values `(B, K)`."""
    ctx = 2 * num_kv
    space = (L - ctx) // 2
    p = power_a * np.arange(1, space + 1) ** (power_a - 1)
    p = jnp.asarray(p / p.sum())

    def one(k):
        k1, k2, k3 = jr.split(k, 3)
        keys = jr.choice(k1, jnp.arange(1, vocab // 2), (num_kv,), replace=False)
        vals = jr.choice(k2, jnp.arange(vocab // 2, vocab), (num_kv,), replace=False)
        gaps = jr.choice(k3, space, (num_kv,), replace=False, p=p)
        pos = ctx + 2 * gaps
        tok = jnp.zeros((L,), keys.dtype)
        tok = tok.at[jnp.arange(0, ctx, 2)].set(keys).at[jnp.arange(1, ctx, 2)].set(vals)
        tok = tok.at[pos].set(keys)
        return tok, pos, vals

    return jax.vmap(one)(jr.split(key, batch))
