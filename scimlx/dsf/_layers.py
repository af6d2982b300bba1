"""Layers as DSFs: each holds its usual parameters and builds its system from the input.

`layer(u) == layer.output(evaluate(*layer.system(u))[0], u)` for every layer (with a vmap over
heads where the layer has several). `to_dsf(layer, u)` returns `(dsf, x)`: the system and the input
stream that drives it.
"""

import abc
import functools
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array, Float, PRNGKeyArray

from .._core._checks import check_sizes
from ._auto import Auto
from ._dsf import AbstractDSF, ChannelDSF, DiagonalDSF, normalised_linear_attention_dsf, SoftmaxDSF
from ._evaluate import evaluate
from ._evaluation import AbstractEvaluation
from ._validate import check_dt_range, check_layer_input, check_radius_range


def _dtype(dtype):
    return jnp.zeros(()).dtype if dtype is None else jnp.dtype(dtype)


def _linear(key, out_dim, in_dim, dtype):
    return jr.normal(key, (out_dim, in_dim), dtype) / math.sqrt(in_dim)


def _heads(a, H):
    """(L, H*p) -> (H, L, p)."""
    L = a.shape[0]
    return a.reshape(L, H, -1).transpose(1, 0, 2)


def _unheads(a):
    """(H, L, p) -> (L, H*p)."""
    H, L, p = a.shape
    return a.transpose(1, 0, 2).reshape(L, H * p)


def _softplus_inverse(x):
    return x + jnp.log(-jnp.expm1(-x))


class AbstractDSFLayer(eqx.Module):
    """A sequence mixer whose action is a DSF: `y = output(evaluate(system(u)), u)`.

    Subclasses implement `system(u) -> (dsf, x)` (leaves with a leading head axis for multi-head
    layers, in which case `x` is `(H, L, p)`, p = d / H; see [`scimlx.dsf.to_dsf`][]) and
    `output(y, u)`.
    """

    method: eqx.AbstractVar[AbstractEvaluation]

    @abc.abstractmethod
    def system(self, u: Float[Array, "L d"]) -> tuple[AbstractDSF, Float[Array, "..."]]:
        """The DSF of this layer on input `u`, and the stream x that drives it."""

    @abc.abstractmethod
    def output(self, y: Float[Array, "..."], u: Float[Array, "L d"]) -> Float[Array, "L d"]:
        """Map the DSF output (per head) back to the model width."""

    def __call__(
        self, u: Float[Array, "L d"], *, method: AbstractEvaluation | None = None
    ) -> Float[Array, "L d"]:
        """Apply the layer to one sequence `u` (`(L, d_model)`).

        **Arguments:** `u`; `method`: an evaluation mode that overrides `self.method` (see
        [`scimlx.dsf.evaluate`][]), e.g. `Auto(training=True)` when gradients are taken, or
        `Chunked(chunk_size=16)`.

        **Returns:** `(L, d_model)`.
        """
        check_layer_input(self, u)
        dsf, x = self.system(u)
        m = self.method if method is None else method

        def ev(s, xx):
            return evaluate(s, xx, method=m)[0]

        y = jax.vmap(ev)(dsf, x) if x.ndim == 3 else ev(dsf, x)
        return self.output(y, u)


@functools.singledispatch
def to_dsf(layer, u: Float[Array, "L d"]) -> tuple[AbstractDSF, Float[Array, "..."]]:
    """The DSF form of `layer` on input `u`: returns `(dsf, x)` with y = output(evaluate(dsf, x)).

    **Heads axis.** For the multi-head layers (`SoftmaxAttention`, `LinearAttention`,
    `NormalisedAttention`, `SSD`) `dsf` is a *stack* of one system per head: every leaf has a
    leading axis of size H (also for H = 1, and for `SSD(per_channel_dt=True)`, whose one
    "head" holds every channel), and `x` is `(H, L, d / H)`, head h driving its system with
    channels h d/H ... (h+1) d/H - 1 of the value stream. Evaluate it with `jax.vmap` over that
    axis (as `layer(u)` does). The paper writes one DSF per layer; that system is the
    block-diagonal combination of the per-head systems (states and channels of the heads
    concatenated in head order), which is not formed here. The other layers (S4D, S5, LRU, S6,
    RG-LRU, qLSTM) return one unstacked system with `x` of shape `(L, d)`; RG-LRU's
    `num_heads` only makes its gate weights block-diagonal.

    A `functools.singledispatch` function: register other layer types with `to_dsf.register`.
    """
    raise TypeError(f"No DSF form registered for {type(layer).__name__}.")


@to_dsf.register
def _(layer: AbstractDSFLayer, u):
    return layer.system(u)


# ----------------------------------------------------------------------------- attention


def _check_heads(d_model, n_heads):
    if d_model % n_heads:
        raise ValueError(f"`d_model`={d_model} must be divisible by `n_heads`={n_heads}.")


def _projections(keys, d_model, qk_size, dtype):
    """`(W_q, W_k, W_v, W_o)`: query and key maps `(qk_size, d_model)`, value and output maps
    `(d_model, d_model)`, from the first four of `keys`."""
    return (
        _linear(keys[0], qk_size, d_model, dtype),
        _linear(keys[1], qk_size, d_model, dtype),
        _linear(keys[2], d_model, d_model, dtype),
        _linear(keys[3], d_model, d_model, dtype),
    )


class _AbstractAttention(AbstractDSFLayer):
    """Multi-head attention: per-head query, key and value maps and an output map `W_o` that
    mixes the concatenated heads."""

    Wq: eqx.AbstractVar[Float[Array, "hm d"]]
    Wk: eqx.AbstractVar[Float[Array, "hm d"]]
    Wv: eqx.AbstractVar[Float[Array, "d d"]]
    Wo: eqx.AbstractVar[Float[Array, "d d"]]
    n_heads: eqx.AbstractVar[int]

    def output(self, y, u):
        return _unheads(y) @ self.Wo.T


class SoftmaxAttention(_AbstractAttention):
    """Causal multi-head softmax attention (paper eq. (2)); its DSF has an infinite state.

    y = W_o concat_h softmax(scale q_h k_h^T + causal mask) v_h, scale = 1/sqrt(d_qk).
    """

    Wq: Float[Array, "hm d"]
    Wk: Float[Array, "hm d"]
    Wv: Float[Array, "d d"]
    Wo: Float[Array, "d d"]
    n_heads: int = eqx.field(static=True)
    method: AbstractEvaluation

    def __init__(
        self,
        d_model: int,
        n_heads: int = 1,
        d_qk: int | None = None,
        *,
        method: AbstractEvaluation = Auto(),
        dtype=None,
        key: PRNGKeyArray,
    ):
        _check_heads(d_model, n_heads)
        m = d_qk or d_model // n_heads
        dt = _dtype(dtype)
        k = jr.split(key, 4)
        self.Wq, self.Wk, self.Wv, self.Wo = _projections(k, d_model, n_heads * m, dt)
        self.n_heads = n_heads
        self.method = method

    def system(self, u):
        H = self.n_heads
        q, k, v = _heads(u @ self.Wq.T, H), _heads(u @ self.Wk.T, H), _heads(u @ self.Wv.T, H)
        scale = 1.0 / math.sqrt(q.shape[-1])
        dsf = jax.vmap(lambda a, b: SoftmaxDSF(a, b, scale, v.shape[-1]))(q, k)
        return dsf, v


def _elu1(x):
    return jax.nn.elu(x) + 1.0


class LinearAttention(_AbstractAttention):
    """Causal multi-head linear attention (Katharopoulos et al.; paper eq. (16)).

    Normalised: y_i = sum_{j<=i} phi(q_i).phi(k_j) v_j / (phi(q_i) . sum_{j<=i} phi(k_j)), with
    phi = elu + 1; the normaliser goes into Lambda_i (`where="state"`, the paper's recurrent
    normalisation) or into C_i (`where="output"`). Unnormalised (`normalise=False`): Lambda_i = I.
    """

    Wq: Float[Array, "hm d"]
    Wk: Float[Array, "hm d"]
    Wv: Float[Array, "d d"]
    Wo: Float[Array, "d d"]
    n_heads: int = eqx.field(static=True)
    feature_map: str = eqx.field(static=True)
    normalise: bool = eqx.field(static=True)
    where: str = eqx.field(static=True)
    method: AbstractEvaluation

    def __init__(
        self,
        d_model: int,
        n_heads: int = 1,
        d_state: int | None = None,
        *,
        feature_map: str = "elu1",
        normalise: bool = True,
        where: str = "state",
        method: AbstractEvaluation = Auto(),
        dtype=None,
        key: PRNGKeyArray,
    ):
        _check_heads(d_model, n_heads)
        if feature_map not in ("elu1", "identity"):
            raise ValueError(f"`feature_map` must be 'elu1' or 'identity', got {feature_map!r}.")
        if normalise and feature_map == "identity":
            raise ValueError("`normalise=True` needs a positive feature map ('elu1').")
        m = d_state or d_model // n_heads
        dt = _dtype(dtype)
        k = jr.split(key, 4)
        self.Wq, self.Wk, self.Wv, self.Wo = _projections(k, d_model, n_heads * m, dt)
        self.n_heads, self.feature_map, self.normalise = n_heads, feature_map, normalise
        self.where, self.method = where, method

    def features(self, u):
        """(phi(q), phi(k)) per head, each `(H, L, m)`."""
        H = self.n_heads
        q, k = _heads(u @ self.Wq.T, H), _heads(u @ self.Wk.T, H)
        if self.feature_map == "elu1":
            q, k = _elu1(q), _elu1(k)
        return q, k

    def system(self, u):
        fq, fk = self.features(u)
        v = _heads(u @ self.Wv.T, self.n_heads)
        p = v.shape[-1]
        if self.normalise:
            dsf = jax.vmap(lambda a, b: normalised_linear_attention_dsf(a, b, p, where=self.where))(
                fq, fk
            )
        else:
            one = jnp.ones((1, 1, 1), u.dtype)

            def mk(a, b):
                return ChannelDSF(
                    one * 0.0, jnp.ones((1, p), u.dtype), b[:, None, :], a[:, None, :]
                )

            dsf = jax.vmap(mk)(fq, fk)
        return dsf, v


class NormalisedAttention(_AbstractAttention):
    """The paper's normalised attention (eq. (21) in the code's numbering; one eta per head).

    y_i = (1/eta_i) sum_{j<=i} (q_i . k_j) v_j with eta_i = f(w_eta . u_i + b_eta), f in {exp,
    softplus, sigmoid}; as a DSF Lambda_i = (eta_{i-1}/eta_i) I, beta_i = 1/eta_i, B = k_i,
    C = q_i.
    """

    Wq: Float[Array, "hm d"]
    Wk: Float[Array, "hm d"]
    Wv: Float[Array, "d d"]
    Wo: Float[Array, "d d"]
    w_eta: Float[Array, "h d"]
    b_eta: Float[Array, " h"]
    n_heads: int = eqx.field(static=True)
    norm: str = eqx.field(static=True)
    method: AbstractEvaluation

    def __init__(
        self,
        d_model: int,
        n_heads: int = 1,
        d_state: int | None = None,
        *,
        norm: str = "exp",
        method: AbstractEvaluation = Auto(),
        dtype=None,
        key: PRNGKeyArray,
    ):
        if norm not in ("exp", "softplus", "sigmoid"):
            raise ValueError(f"`norm` must be 'exp', 'softplus' or 'sigmoid', got {norm!r}.")
        _check_heads(d_model, n_heads)
        m = d_state or d_model // n_heads
        dt = _dtype(dtype)
        k = jr.split(key, 5)
        self.Wq, self.Wk, self.Wv, self.Wo = _projections(k, d_model, n_heads * m, dt)
        self.w_eta = _linear(k[4], n_heads, d_model, dt)
        self.b_eta = jnp.zeros((n_heads,), dt)
        self.n_heads, self.norm, self.method = n_heads, norm, method

    def log_eta(self, u):
        """log eta_i per head, `(H, L)`."""
        s = (u @ self.w_eta.T + self.b_eta[None, :]).T
        if self.norm == "exp":
            return s
        if self.norm == "softplus":
            return jnp.log(jax.nn.softplus(s))
        return jax.nn.log_sigmoid(s)

    def system(self, u):
        H = self.n_heads
        q, k, v = _heads(u @ self.Wq.T, H), _heads(u @ self.Wk.T, H), _heads(u @ self.Wv.T, H)
        p = v.shape[-1]
        le = self.log_eta(u)

        def mk(q, k, le):
            ll = jnp.concatenate([jnp.zeros((1,), le.dtype), le[:-1] - le[1:]])
            beta = jnp.broadcast_to(jnp.exp(-le)[:, None], (le.shape[0], p))
            return ChannelDSF(ll[:, None, None], beta, k[:, None, :], q[:, None, :])

        return jax.vmap(mk)(q, k, le), v


# ----------------------------------------------------------------------------- LTI SSMs


class S4D(AbstractDSFLayer):
    """S4D (real diagonal, time-invariant, ZOH): per channel c, h = e^{dt A} h + (e^{dt A}-1)/A B u.

    y_c = C_c . h_c + D_c u_c; S4D-real init A_{c s} = -(s+1).
    """

    A_log: Float[Array, "d n"]
    B: Float[Array, "d n"]
    C: Float[Array, "d n"]
    D: Float[Array, " d"]
    log_dt: Float[Array, " d"]
    method: AbstractEvaluation

    def __init__(
        self,
        d_model: int,
        d_state: int = 16,
        *,
        dt_min: float = 1e-3,
        dt_max: float = 1e-1,
        method: AbstractEvaluation = Auto(),
        dtype=None,
        key: PRNGKeyArray,
    ):
        check_sizes(d_model=d_model, d_state=d_state)
        check_dt_range(dt_min, dt_max)
        dt = _dtype(dtype)
        k = jr.split(key, 3)
        self.A_log = jnp.log(
            jnp.broadcast_to(jnp.arange(1, d_state + 1, dtype=dt), (d_model, d_state))
        )
        self.B = jnp.ones((d_model, d_state), dt)
        self.C = jr.normal(k[0], (d_model, d_state), dt) / math.sqrt(d_state)
        self.D = jnp.ones((d_model,), dt)
        self.log_dt = jr.uniform(k[1], (d_model,), dt, math.log(dt_min), math.log(dt_max))
        self.method = method

    def system(self, u):
        A = -jnp.exp(self.A_log)
        dtA = jnp.exp(self.log_dt)[:, None] * A
        Bbar = jnp.expm1(dtA) / A * self.B
        return ChannelDSF(
            dtA[None], jnp.ones((1, u.shape[1]), u.dtype), Bbar[None], self.C[None], D=self.D
        ), u

    def output(self, y, u):
        return y


class S5(AbstractDSFLayer):
    """S5 (complex diagonal, dense B and C shared across channels, ZOH), y = Re(C h) + D u."""

    lam_re: Float[Array, " P"]
    lam_im: Float[Array, " P"]
    B_re: Float[Array, "P d"]
    B_im: Float[Array, "P d"]
    C_re: Float[Array, "d P"]
    C_im: Float[Array, "d P"]
    D: Float[Array, " d"]
    log_dt: Float[Array, " P"]
    method: AbstractEvaluation

    def __init__(
        self,
        d_model: int,
        d_state: int = 16,
        *,
        dt_min: float = 1e-3,
        dt_max: float = 1e-1,
        method: AbstractEvaluation = Auto(),
        dtype=None,
        key: PRNGKeyArray,
    ):
        check_sizes(d_model=d_model, d_state=d_state)
        check_dt_range(dt_min, dt_max)
        dt = _dtype(dtype)
        k = jr.split(key, 5)
        P = d_state
        self.lam_re = jnp.full((P,), -0.5, dt)
        self.lam_im = math.pi * jnp.arange(P, dtype=dt)
        self.B_re = jr.normal(k[0], (P, d_model), dt) / math.sqrt(2 * d_model)
        self.B_im = jr.normal(k[1], (P, d_model), dt) / math.sqrt(2 * d_model)
        self.C_re = jr.normal(k[2], (d_model, P), dt) / math.sqrt(2 * P)
        self.C_im = jr.normal(k[3], (d_model, P), dt) / math.sqrt(2 * P)
        self.D = jnp.ones((d_model,), dt)
        self.log_dt = jr.uniform(k[4], (P,), dt, math.log(dt_min), math.log(dt_max))
        self.method = method

    def system(self, u):
        lam = jax.lax.complex(self.lam_re, self.lam_im)
        dtl = lam * jnp.exp(self.log_dt).astype(lam.dtype)
        B = jax.lax.complex(self.B_re, self.B_im)
        Bbar = (jnp.expm1(dtl) / lam)[:, None] * B
        C = jax.lax.complex(self.C_re, self.C_im)
        return DiagonalDSF(dtl[None], Bbar[None], C[None], self.D, real_output=True), u

    def output(self, y, u):
        return y


class LRU(AbstractDSFLayer):
    """Linear Recurrent Unit (Orvieto et al. 2023): lambda = exp(-e^nu + i e^theta),
    h = lambda h + gamma (B u), y = Re(C h) + D u, gamma = sqrt(1 - |lambda|^2)."""

    nu_log: Float[Array, " P"]
    theta_log: Float[Array, " P"]
    gamma_log: Float[Array, " P"]
    B_re: Float[Array, "P d"]
    B_im: Float[Array, "P d"]
    C_re: Float[Array, "d P"]
    C_im: Float[Array, "d P"]
    D: Float[Array, " d"]
    method: AbstractEvaluation

    def __init__(
        self,
        d_model: int,
        d_state: int = 16,
        *,
        r_min: float = 0.9,
        r_max: float = 0.999,
        max_phase: float = 2 * math.pi,
        method: AbstractEvaluation = Auto(),
        dtype=None,
        key: PRNGKeyArray,
    ):
        check_sizes(d_model=d_model, d_state=d_state)
        check_radius_range(r_min, r_max)
        dt = _dtype(dtype)
        k = jr.split(key, 7)
        P = d_state
        u1 = jr.uniform(k[0], (P,), dt)
        u2 = jr.uniform(k[1], (P,), dt)
        self.nu_log = jnp.log(-0.5 * jnp.log(u1 * (r_max**2 - r_min**2) + r_min**2))
        self.theta_log = jnp.log(max_phase * u2)
        mod = jnp.exp(-jnp.exp(self.nu_log))
        self.gamma_log = jnp.log(jnp.sqrt(1 - mod**2))
        self.B_re = jr.normal(k[2], (P, d_model), dt) / math.sqrt(2 * d_model)
        self.B_im = jr.normal(k[3], (P, d_model), dt) / math.sqrt(2 * d_model)
        self.C_re = jr.normal(k[4], (d_model, P), dt) / math.sqrt(P)
        self.C_im = jr.normal(k[5], (d_model, P), dt) / math.sqrt(P)
        self.D = jr.normal(k[6], (d_model,), dt)
        self.method = method

    def system(self, u):
        log_lam = jax.lax.complex(-jnp.exp(self.nu_log), jnp.exp(self.theta_log))
        B = jax.lax.complex(self.B_re, self.B_im) * jnp.exp(self.gamma_log)[:, None].astype(
            log_lam.dtype
        )
        C = jax.lax.complex(self.C_re, self.C_im)
        return DiagonalDSF(log_lam[None], B[None], C[None], self.D, real_output=True), u

    def output(self, y, u):
        return y


# ----------------------------------------------------------------------------- selective SSMs


class S6(AbstractDSFLayer):
    """S6 / Mamba selective SSM (as used in the paper's code, without conv and gate).

    Delta_i = softplus(W_dt2 W_dt1 u_i + b_dt), b_i = W_B u_i, c_i = W_C u_i, A = -exp(A_log);
    h_i = exp(Delta_i A) h_{i-1} + B(Delta_i, b_i) u_i, y_i = h_i c_i + D u_i, with the input map
    `discretisation="mamba"` (Delta b u, the ZOH transition with Euler input as in every public
    Mamba kernel) or `"zoh"` ((Delta A)^{-1}(e^{Delta A} - 1) Delta b u).
    """

    W_dt1: Float[Array, "r d"]
    W_dt2: Float[Array, "d r"]
    b_dt: Float[Array, " d"]
    W_B: Float[Array, "n d"]
    W_C: Float[Array, "n d"]
    A_log: Float[Array, "d n"]
    D: Float[Array, " d"]
    discretisation: str = eqx.field(static=True)
    method: AbstractEvaluation

    def __init__(
        self,
        d_model: int,
        d_state: int = 16,
        dt_rank: int | str = "auto",
        *,
        dt_min: float = 1e-3,
        dt_max: float = 1e-1,
        discretisation: str = "mamba",
        method: AbstractEvaluation = Auto(),
        dtype=None,
        key: PRNGKeyArray,
    ):
        if discretisation not in ("mamba", "zoh"):
            raise ValueError(f"`discretisation` must be 'mamba' or 'zoh', got {discretisation!r}.")
        check_sizes(d_model=d_model, d_state=d_state)
        check_dt_range(dt_min, dt_max)
        dt = _dtype(dtype)
        r = math.ceil(d_model / 16) if dt_rank == "auto" else int(dt_rank)
        k = jr.split(key, 5)
        self.W_dt1 = _linear(k[0], r, d_model, dt)
        self.W_dt2 = _linear(k[1], d_model, r, dt)
        dts = jnp.exp(jr.uniform(k[2], (d_model,), dt, math.log(dt_min), math.log(dt_max)))
        self.b_dt = _softplus_inverse(dts)
        self.W_B = _linear(k[3], d_state, d_model, dt)
        self.W_C = _linear(k[4], d_state, d_model, dt)
        self.A_log = jnp.log(
            jnp.broadcast_to(jnp.arange(1, d_state + 1, dtype=dt), (d_model, d_state))
        )
        self.D = jnp.ones((d_model,), dt)
        self.discretisation, self.method = discretisation, method

    def delta(self, u):
        """Delta_i, `(L, d)`."""
        return jax.nn.softplus(u @ self.W_dt1.T @ self.W_dt2.T + self.b_dt[None, :])

    def system(self, u):
        delta = self.delta(u)
        A = -jnp.exp(self.A_log)
        b = (u @ self.W_B.T)[:, None, :]
        c = (u @ self.W_C.T)[:, None, :]
        ll = delta[:, :, None] * A[None]
        if self.discretisation == "mamba":
            return ChannelDSF(ll, delta, b, c, D=self.D), u
        key = jnp.expm1(ll) / A[None] * b
        return ChannelDSF(ll, jnp.ones((1, u.shape[1]), u.dtype), key, c, D=self.D), u

    def output(self, y, u):
        return y


class SSD(AbstractDSFLayer):
    """Mamba-2 style scalar-decay SSM ("SSD"), without conv and gate.

    Mamba-2 proper (`per_channel_dt=False`): per head h, Delta^h_i = softplus(w_dt^h . u_i + b^h),
    scalar A^h, Lambda_i = exp(Delta^h_i A^h) I, input Delta^h_i b_i u_i, shared b_i = W_B u_i,
    c_i = W_C u_i. The paper's code (`per_channel_dt=True`, one head): a single scalar A and a
    single input-dependent scalar dt_i with a per-channel bias, Delta^c_i = softplus(dt_i + b^c).
    """

    W_dt: Float[Array, "h d"]
    b_dt: Float[Array, " k"]
    W_B: Float[Array, "n d"]
    W_C: Float[Array, "n d"]
    A_log: Float[Array, " h"]
    D: Float[Array, " d"]
    n_heads: int = eqx.field(static=True)
    per_channel_dt: bool = eqx.field(static=True)
    method: AbstractEvaluation

    def __init__(
        self,
        d_model: int,
        n_heads: int = 1,
        d_state: int = 16,
        *,
        per_channel_dt: bool = False,
        dt_min: float = 1e-3,
        dt_max: float = 1e-1,
        method: AbstractEvaluation = Auto(),
        dtype=None,
        key: PRNGKeyArray,
    ):
        _check_heads(d_model, n_heads)
        if per_channel_dt and n_heads != 1:
            raise ValueError("`per_channel_dt=True` (the paper's code) uses one head.")
        check_sizes(d_model=d_model, d_state=d_state)
        check_dt_range(dt_min, dt_max)
        dt = _dtype(dtype)
        k = jr.split(key, 5)
        nb = d_model if per_channel_dt else n_heads
        self.W_dt = _linear(k[0], n_heads, d_model, dt)
        dts = jnp.exp(jr.uniform(k[1], (nb,), dt, math.log(dt_min), math.log(dt_max)))
        self.b_dt = _softplus_inverse(dts)
        self.W_B = _linear(k[2], d_state, d_model, dt)
        self.W_C = _linear(k[3], d_state, d_model, dt)
        self.A_log = jnp.log(jr.uniform(k[4], (n_heads,), dt, 1.0, 16.0))
        self.D = jnp.ones((d_model,), dt)
        self.n_heads, self.per_channel_dt, self.method = n_heads, per_channel_dt, method

    def delta(self, u):
        """Delta, `(H, L)` per head, or `(L, d)` per channel for `per_channel_dt=True`."""
        s = u @ self.W_dt.T  # (L, H)
        if self.per_channel_dt:
            return jax.nn.softplus(s + self.b_dt[None, :])
        return jax.nn.softplus(s + self.b_dt[None, :]).T

    def system(self, u):
        A = -jnp.exp(self.A_log)
        b = (u @ self.W_B.T)[:, None, :]
        c = (u @ self.W_C.T)[:, None, :]
        if self.per_channel_dt:
            delta = self.delta(u)
            dsf = ChannelDSF((delta * A[None, :])[:, :, None], delta, b, c, D=self.D)
            return jax.tree.map(lambda a: a[None], dsf), u[None]
        H = self.n_heads
        x = _heads(u, H)
        Dh = self.D.reshape(H, -1)
        p = x.shape[-1]

        def mk(delta, A, D):
            return ChannelDSF(
                (delta * A)[:, None, None],
                jnp.broadcast_to(delta[:, None], (delta.shape[0], p)),
                b,
                c,
                D=D,
            )

        return jax.vmap(mk)(self.delta(u), A, Dh), x

    def output(self, y, u):
        return _unheads(y)


# ----------------------------------------------------------------------------- RNNs


class RGLRU(AbstractDSFLayer):
    """Real-Gated Linear Recurrent Unit (Griffin/Hawk; recurrentgemma `RGLRU`, no segment resets).

    r_i = sigma(W_a u_i + b_a), i_i = sigma(W_x u_i + b_x) (block-diagonal, `num_heads` blocks),
    log a_i = -c r_i softplus(a_param), h_i = a_i h_{i-1} + sqrt(1 - a_i^2) (i_i u_i), y_i = h_i.
    (recurrentgemma clips the gradient of the sqrt at 1000; here it is the plain sqrt.)

    **Sign convention.** `a_param` is recurrentgemma's `a_param`, which is *minus* the Lambda of
    the Griffin paper (De et al. 2024): the paper writes a = sigma(Lambda) and a_i = a^(c r_i),
    so log a_i = c r_i log sigma(Lambda) = -c r_i softplus(-Lambda), i.e. a_param = -Lambda.
    Weights copied from the paper's notation must be negated; weights from recurrentgemma are
    used as they are.
    """

    W_a: Float[Array, "h p p"]
    b_a: Float[Array, " d"]
    W_x: Float[Array, "h p p"]
    b_x: Float[Array, " d"]
    a_param: Float[Array, " d"]
    c: float = eqx.field(static=True)
    method: AbstractEvaluation

    def __init__(
        self,
        width: int,
        num_heads: int = 1,
        *,
        c: float = 8.0,
        min_rad: float = 0.9,
        max_rad: float = 0.999,
        method: AbstractEvaluation = Auto(),
        dtype=None,
        key: PRNGKeyArray,
    ):
        if width % num_heads:
            raise ValueError(f"`width`={width} must be divisible by `num_heads`={num_heads}.")
        dt = _dtype(dtype)
        p = width // num_heads
        k = jr.split(key, 3)
        self.W_a = jr.normal(k[0], (num_heads, p, p), dt) / math.sqrt(p)
        self.W_x = jr.normal(k[1], (num_heads, p, p), dt) / math.sqrt(p)
        self.b_a = jnp.zeros((width,), dt)
        self.b_x = jnp.zeros((width,), dt)
        a2 = jr.uniform(k[2], (width,), dt, min_rad**2, max_rad**2)
        # a^c... at gate r = 1: a = exp(-c softplus(a_param)) = sqrt(a2)
        self.a_param = _softplus_inverse(-0.5 * jnp.log(a2) / c)
        self.c, self.method = c, method

    def _block(self, W, b, u):
        H = W.shape[0]
        x = _heads(u, H)  # (H, L, p)
        return _unheads(jnp.einsum("hlp,hqp->hlq", x, W)) + b[None, :]

    def gates(self, u):
        """(log a_i, i_i), each `(L, d)`."""
        r = jax.nn.sigmoid(self._block(self.W_a, self.b_a, u))
        gi = jax.nn.sigmoid(self._block(self.W_x, self.b_x, u))
        log_a = -self.c * r * jax.nn.softplus(self.a_param)[None, :]
        return log_a, gi

    def system(self, u):
        log_a, gi = self.gates(u)
        beta = jnp.sqrt(-jnp.expm1(2 * log_a)) * gi
        one = jnp.ones((1, 1, 1), u.dtype)
        return ChannelDSF(log_a[:, :, None], beta, one, one), u

    def output(self, y, u):
        return y


class QLSTM(AbstractDSFLayer):
    """LSTM in the paper's linearised form (qLSTM): gates read u_i only and no tanh.

    c_i = f_i c_{i-1} + sigma(iota_i) z_i, y_i = sigma(o_i) c_i with f_i = sigma(W_f u_i + b_f), or,
    with `reversed_sigmoid=True` (paper eq. (22)), f_i = sigma(-(W_f u_i + b_f))^alpha =
    exp(-alpha softplus(W_f u_i + b_f)) with alpha = relu(alpha_param), learned, init 1.
    """

    W: Float[Array, "k d"]
    b: Float[Array, " k"]
    alpha: Float[Array, ""]
    reversed_sigmoid: bool = eqx.field(static=True)
    method: AbstractEvaluation

    def __init__(
        self,
        width: int,
        *,
        reversed_sigmoid: bool = False,
        method: AbstractEvaluation = Auto(),
        dtype=None,
        key: PRNGKeyArray,
    ):
        dt = _dtype(dtype)
        self.W = _linear(key, 4 * width, width, dt)
        self.b = jnp.zeros((4 * width,), dt)
        self.alpha = jnp.ones((), dt)
        self.reversed_sigmoid, self.method = reversed_sigmoid, method

    def pre(self, u):
        """Pre-activations (f, iota, o, z), each `(L, d)`."""
        a = u @ self.W.T + self.b[None, :]
        return jnp.split(a, 4, axis=1)

    def system(self, u):
        f, i, o, z = self.pre(u)
        if self.reversed_sigmoid:
            ll = -jax.nn.relu(self.alpha) * jax.nn.softplus(f)
        else:
            ll = jax.nn.log_sigmoid(f)
        one = jnp.ones((1, 1, 1), u.dtype)
        return ChannelDSF(ll[:, :, None], jax.nn.sigmoid(i), one, one, gamma=jax.nn.sigmoid(o)), z

    def output(self, y, u):
        return y
