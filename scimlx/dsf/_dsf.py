"""The Dynamical Systems Framework (DSF) pytrees: one linear time-varying system per layer call.

Every system here is, for i = 1..L and h_0 = 0 (or a given h0),

    h_i = Lambda_i h_{i-1} + B_i x_i,    y_i = C_i h_i + D_i x_i,

stored in the structure that makes it cheap to evaluate:

- `ChannelDSF`: state H_i in R^{d x n} (one row per channel), Lambda_i diagonal and given by its
  logarithm with shape (L, d|1, n|1) -- a *scalar* decay (1, 1), a per-channel decay (d, 1), a
  per-state decay (1, n) or a fully *diagonal* one (d, n); B_i = diag(beta_i) (x) key_i and
  C_i = diag(gamma_i) (I (x) query_i^T), i.e. a *block* structure (one block per channel).
  Attention-like layers, S4D, S6, Mamba-2/SSD, RG-LRU and LSTM-type recurrences live here.
- `DiagonalDSF`: a diagonal (possibly complex) state h_i in C^N with dense B_i and C_i (S5, LRU).
- `DenseDSF`: the *full* per-step matrices; the reference for small cases (tests, inspection).
- `SoftmaxDSF`: causal softmax attention, whose state dimension is infinite (the DSF with the
  exponential kernel's feature map); it is evaluated by a growing KV state or the exact matrix,
  and `truncate(order)` gives the finite Taylor-feature `ChannelDSF`.
"""

import abc
import math
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Inexact, Shaped

from . import _kernels as k


def _check_ndim(name: str, x, ndim: int, what: str):
    if x.ndim != ndim:
        raise ValueError(f"`{name}` must have shape {what}, got shape {tuple(x.shape)}.")


def _check_dim(name: str, size: int, allowed: tuple[int, ...], axis_name: str, shape):
    if size not in allowed:
        raise ValueError(
            f"`{name}` has {axis_name} of size {size} (shape {tuple(shape)}); expected one of "
            f"{sorted(set(allowed))}."
        )


_MODES = ("recurrence", "scan", "chunked", "matrix")


class AbstractDSF(eqx.Module):
    """A linear time-varying system h_i = Lambda_i h_{i-1} + B_i x_i, y_i = C_i h_i + D_i x_i.

    Concrete structures: [`scimlx.dsf.ChannelDSF`][], [`scimlx.dsf.DiagonalDSF`][],
    [`scimlx.dsf.DenseDSF`][], [`scimlx.dsf.SoftmaxDSF`][]. Evaluate one with
    [`scimlx.dsf.evaluate`][], inspect its input-output matrix with [`scimlx.dsf.phi`][].

    A structure evaluates itself: [`scimlx.dsf.evaluate`][] checks the arguments and the
    evaluation mode ([`scimlx.dsf.AbstractEvaluation`][]) calls the structure's method for it,
    never asking which class it has. A subclass defines `length`, `in_dim`, `state_dim`,
    `state_shape` and `recurrence` (every system has a recurrence), and whichever of `scan`,
    `chunked`, `matrix` (with `matrix_bytes`), `phi`, `materialise` and `eigenvalues` its
    structure allows; the others raise an error (for the modes, a `ValueError` that lists the
    modes it supports). Each mode method takes one unbatched `(L, d)` input `x` and an initial
    state `h0` (of shape `state_shape`, or `None` for zero) and returns `(y, final_state)`.
    `family` names the row of [`scimlx.dsf.AUTO_TABLE`][] that [`scimlx.dsf.Auto`][] reads
    (a family without rows uses the recurrence).
    """

    @property
    @abc.abstractmethod
    def length(self) -> int:
        """Sequence length L."""

    @property
    @abc.abstractmethod
    def in_dim(self) -> int:
        """Width d of the input (value) stream x_i."""

    @property
    @abc.abstractmethod
    def state_dim(self) -> int | float:
        """Dimension of the hidden state h_i (`math.inf` for softmax attention)."""

    @property
    @abc.abstractmethod
    def state_shape(self) -> tuple[int, ...] | None:
        """Shape of the state `h0` the modes accept (`None`: no initial state accepted)."""

    @property
    def family(self) -> str:
        """The structure family that `Auto` looks up (default: the class name)."""
        return type(self).__name__

    @abc.abstractmethod
    def recurrence(self, x: Inexact[Array, "L d"], h0: Any, unroll: int) -> tuple[Array, Any]:
        """`y` by `lax.scan` over the steps (O(L) depth, O(state) memory)."""

    def scan(self, x: Inexact[Array, "L d"], h0: Any) -> tuple[Array, Any]:
        """`y` by `lax.associative_scan` (O(log L) depth, O(L state) memory)."""
        raise self.unsupported("scan")

    def chunked(self, x: Inexact[Array, "L d"], h0: Any, chunk_size: int) -> tuple[Array, Any]:
        """`y` in blocks of `chunk_size` steps, with a recurrence across blocks."""
        raise self.unsupported("chunked")

    def matrix(self, x: Inexact[Array, "L d"], h0: Any) -> tuple[Array, Any]:
        """`y = Phi x` with Phi materialised (see `matrix_bytes`)."""
        raise self.unsupported("matrix")

    def matrix_bytes(self, length: int, itemsize: int | None) -> int:
        """Estimated bytes of the intermediates of `matrix` and `phi` at this length."""
        raise ValueError(
            f"{type(self).__name__} defines no `matrix_bytes`, which `Matrix` and "
            "`phi` need to respect `max_bytes`."
        )

    def phi(self, length: int) -> Inexact[Array, "L L ..."]:
        """The materialised input-output matrix Phi (see [`scimlx.dsf.phi`][])."""
        raise ValueError(f"{type(self).__name__} does not define its matrix `phi`.")

    def materialise(self, length: int) -> "DenseDSF":
        """The dense per-step matrices at this length (see [`scimlx.dsf.materialise`][])."""
        raise TypeError(
            f"Cannot materialise a {type(self).__name__} (state dimension {self._state_name()}): "
            "it defines no `materialise`."
        )

    def eigenvalues(self) -> Shaped[Array, "L N"]:
        """The eigenvalues of each Lambda_i (see [`scimlx.dsf.eigenvalues`][])."""
        raise TypeError(
            f"{type(self).__name__} (state dimension {self._state_name()}) defines no "
            "`eigenvalues`."
        )

    def supported_methods(self) -> tuple[str, ...]:
        """The evaluation modes this structure defines."""
        return tuple(m for m in _MODES if getattr(type(self), m) is not getattr(AbstractDSF, m))

    def unsupported(self, method: str) -> ValueError:
        """The error for a mode this structure does not define."""
        return ValueError(
            f"`method`: {method!r} is not defined for {type(self).__name__} (state "
            f"dimension {self._state_name()}); it supports {self.supported_methods()}."
        )

    def _state_name(self) -> str:
        return "infinite" if math.isinf(self.state_dim) else str(self.state_dim)


class ChannelDSF(AbstractDSF):
    """Channel-structured DSF (attention-like layers, S4D, S6, SSD, RG-LRU, qLSTM).

    With state H_i in R^{d x n} (row c is channel c),

        H_i = exp(log_lam_i) * H_{i-1} + (beta_i * x_i) key_i^T,
        y_i = gamma_i * (H_i query_i) + D * x_i,

    where `*` broadcasts. In dense form Lambda_i = diag(vec exp(log_lam_i)),
    B_i = diag(beta_i) (x) key_i, C_i = diag(gamma_i) (I_d (x) query_i^T).

    **Arguments:** (each leading axis may be L or 1 = time-invariant)

    - `log_lam`: `(L|1, d|1, n|1)` logarithm of the diagonal transition. Size 1 in both trailing
      axes is a scalar decay (Mamba-2, linear attention), `(d, 1)` per channel (RG-LRU),
      `(d, n)` per state (S6). Values above 0 are allowed (normalised attention).
    - `beta`: `(L|1, d)` input scale.
    - `key`: `(L|1, d|1, n)` input direction (shared by all channels when the middle axis is 1).
    - `query`: `(L|1, d|1, n)` output direction.
    - `gamma`: `(L|1, d)` output scale, or `None` for 1.
    - `D`: `(d,)` feedthrough, or `None` for 0.
    """

    log_lam: Float[Array, "_ _ _"]
    beta: Float[Array, "_ d"]
    key: Float[Array, "_ _ n"]
    query: Float[Array, "_ _ n"]
    gamma: Float[Array, "_ d"] | None = None
    D: Float[Array, " d"] | None = None

    def __check_init__(self):
        _check_ndim("log_lam", self.log_lam, 3, "(L|1, d|1, n|1)")
        _check_ndim("beta", self.beta, 2, "(L|1, d)")
        _check_ndim("key", self.key, 3, "(L|1, d|1, n)")
        _check_ndim("query", self.query, 3, "(L|1, d|1, n)")
        d = self.beta.shape[1]
        n = self.key.shape[2]
        lengths = [self.log_lam.shape[0], self.beta.shape[0], self.key.shape[0]]
        lengths += [self.query.shape[0]]
        if self.gamma is not None:
            _check_ndim("gamma", self.gamma, 2, "(L|1, d)")
            lengths.append(self.gamma.shape[0])
            _check_dim("gamma", self.gamma.shape[1], (d,), "axis 1", self.gamma.shape)
        long = {s for s in lengths if s != 1}
        if len(long) > 1:
            raise ValueError(f"The leading (time) axes disagree: sizes {sorted(long)}.")
        _check_dim(
            "log_lam", self.log_lam.shape[1], (1, d), "axis 1 (channels)", self.log_lam.shape
        )
        _check_dim("log_lam", self.log_lam.shape[2], (1, n), "axis 2 (states)", self.log_lam.shape)
        _check_dim("key", self.key.shape[1], (1, d), "axis 1 (channels)", self.key.shape)
        _check_dim("query", self.query.shape[1], (1, d), "axis 1 (channels)", self.query.shape)
        _check_dim("query", self.query.shape[2], (n,), "axis 2 (states)", self.query.shape)
        if self.D is not None:
            _check_ndim("D", self.D, 1, "(d,)")
            _check_dim("D", self.D.shape[0], (d,), "axis 0", self.D.shape)

    @property
    def length(self) -> int:
        shapes = [self.log_lam.shape[0], self.beta.shape[0], self.key.shape[0]]
        shapes.append(self.query.shape[0])
        if self.gamma is not None:
            shapes.append(self.gamma.shape[0])
        return max(shapes)

    @property
    def in_dim(self) -> int:
        return self.beta.shape[1]

    @property
    def n(self) -> int:
        """State expansion n (state columns per channel)."""
        return self.key.shape[2]

    @property
    def state_dim(self) -> int | float:
        return self.in_dim * self.n

    @property
    def scalar_decay(self) -> bool:
        """Whether Lambda_i is a multiple of the identity per channel (size 1 on the state axis)."""
        return self.log_lam.shape[2] == 1

    @property
    def state_shape(self) -> tuple[int, ...]:
        return (self.in_dim, self.n)

    @property
    def family(self) -> str:
        if not self.scalar_decay:
            return "per_state"
        shared = self.log_lam.shape[1] == 1 and self.key.shape[1] == 1
        return "scalar" if shared and self.query.shape[1] == 1 else "per_channel"

    def recurrence(self, x, h0, unroll):
        return k.channel_recurrence(self, x, h0, unroll)

    def scan(self, x, h0):
        return k.channel_scan(self, x, h0)

    def chunked(self, x, h0, chunk_size):
        if self.scalar_decay:
            return k.channel_chunked(self, x, h0, chunk_size)
        return k.channel_chunked_per_state(self, x, h0, chunk_size)

    def matrix(self, x, h0):
        return k.channel_matrix(self, x, h0)

    def matrix_bytes(self, length, itemsize):
        item = itemsize or self.beta.dtype.itemsize
        dl, nl = self.log_lam.shape[1:]
        per_ch = max(dl, self.key.shape[1], self.query.shape[1])
        inner = per_ch * self.n if (nl > 1 or per_ch > 1) else 1
        return length * length * (self.in_dim + dl * nl + inner) * item

    def phi(self, length):
        return k.channel_phi(self, length)

    def materialise(self, length):
        """State ordering vec(H) row-major."""
        L, d, n = length, self.in_dim, self.n
        log_lam, beta, key, query, gamma, D = full_channel_arrays(self, L)
        lam = jnp.broadcast_to(jnp.exp(log_lam), (L, d, n)).reshape(L, d * n)
        eye = jnp.eye(d, dtype=beta.dtype)
        # B[(c, s), e] = delta_ce beta_c key_{c s}
        keyb = jnp.broadcast_to(key, (L, d, n))
        B = eye[None, :, None, :] * (beta[:, :, None] * keyb)[:, :, :, None]
        B = B.reshape(L, d * n, d)
        qb = jnp.broadcast_to(query, (L, d, n))
        g = gamma if gamma is not None else jnp.ones((L, d), beta.dtype)
        C = eye[None, :, :, None] * (g[:, :, None] * qb)[:, :, None, :]
        C = C.reshape(L, d, d * n)
        Dm = (
            jnp.zeros((L, d, d), beta.dtype)
            if D is None
            else jnp.broadcast_to(jnp.diag(D), (L, d, d))
        )
        return DenseDSF(lam=jnp.vectorize(jnp.diag, signature="(k)->(k,k)")(lam), B=B, C=C, D=Dm)

    def eigenvalues(self):
        L, d, n = self.length, self.in_dim, self.n
        return jnp.broadcast_to(jnp.exp(self.log_lam), (L, d, n)).reshape(L, d * n)


class DiagonalDSF(AbstractDSF):
    """Diagonal DSF with dense input and output maps (S5, LRU; complex states allowed).

        h_i = exp(log_lam_i) * h_{i-1} + B_i x_i,   y_i = C_i h_i + D * x_i   (Re(.) if real_output)

    **Arguments:**

    - `log_lam`: `(L|1, N)` logarithm of the diagonal transition (real or complex).
    - `B`: `(L|1, N, d)`, `C`: `(L|1, d, N)`.
    - `D`: `(d,)` real feedthrough, or `None`.
    - `real_output`: take the real part of C_i h_i (for complex systems of real signals).
    """

    log_lam: Inexact[Array, "_ N"]
    B: Inexact[Array, "_ N d"]
    C: Inexact[Array, "_ d N"]
    D: Float[Array, " d"] | None = None
    real_output: bool = eqx.field(static=True, default=True)

    def __check_init__(self):
        _check_ndim("log_lam", self.log_lam, 2, "(L|1, N)")
        _check_ndim("B", self.B, 3, "(L|1, N, d)")
        _check_ndim("C", self.C, 3, "(L|1, d, N)")
        N, d = self.B.shape[1:]
        if self.C.shape[1:] != (d, N) or self.log_lam.shape[1] != N:
            raise ValueError(
                f"Shapes of `log_lam` {self.log_lam.shape}, `B` {self.B.shape}, `C` {self.C.shape}"
                " do not fit (L|1, N), (L|1, N, d), (L|1, d, N)."
            )
        long = {s.shape[0] for s in (self.log_lam, self.B, self.C) if s.shape[0] != 1}
        if len(long) > 1:
            raise ValueError(f"The leading (time) axes disagree: sizes {sorted(long)}.")

    @property
    def length(self) -> int:
        return max(self.log_lam.shape[0], self.B.shape[0], self.C.shape[0])

    @property
    def in_dim(self) -> int:
        return self.B.shape[2]

    @property
    def state_dim(self) -> int | float:
        return self.B.shape[1]

    @property
    def state_shape(self) -> tuple[int, ...]:
        return (self.log_lam.shape[1],)

    @property
    def family(self) -> str:
        return "diagonal"

    def recurrence(self, x, h0, unroll):
        return k.diag_recurrence(self, x, h0, unroll)

    def scan(self, x, h0):
        return k.diag_scan(self, x, h0)

    def chunked(self, x, h0, chunk_size):
        return k.diag_chunked(self, x, h0, chunk_size)

    def matrix(self, x, h0):
        return k.diag_matrix(self, x, h0)

    def matrix_bytes(self, length, itemsize):
        item = itemsize or self.B.dtype.itemsize
        return length * length * (int(self.state_dim) + self.in_dim**2) * item

    def phi(self, length):
        return k.diag_phi(self, length)[0]

    def materialise(self, length):
        L = length
        lam = jnp.broadcast_to(jnp.exp(self.log_lam), (L, self.log_lam.shape[1]))
        B = jnp.broadcast_to(self.B, (L,) + self.B.shape[1:])
        C = jnp.broadcast_to(self.C, (L,) + self.C.shape[1:])
        d = self.in_dim
        Dr = jnp.zeros((d,), jnp.real(B).dtype) if self.D is None else self.D
        Dm = jnp.broadcast_to(jnp.diag(Dr).astype(B.dtype), (L, d, d))
        return DenseDSF(
            lam=jnp.vectorize(jnp.diag, signature="(k)->(k,k)")(lam),
            B=B,
            C=C,
            D=Dm,
            real_output=self.real_output,
        )

    def eigenvalues(self):
        return jnp.broadcast_to(jnp.exp(self.log_lam), (self.length, self.log_lam.shape[1]))


class DenseDSF(AbstractDSF):
    """The full DSF: per-step dense Lambda_i, B_i, C_i, D_i (reference for small cases).

    **Arguments:** `lam` `(L, N, N)`, `B` `(L, N, d)`, `C` `(L, d, N)`, `D` `(L, d, d)`;
    `real_output` takes the real part of the output of a complex system.
    """

    lam: Inexact[Array, "L N N"]
    B: Inexact[Array, "L N d"]
    C: Inexact[Array, "L d N"]
    D: Inexact[Array, "L d d"]
    real_output: bool = eqx.field(static=True, default=True)

    @property
    def length(self) -> int:
        return self.lam.shape[0]

    @property
    def in_dim(self) -> int:
        return self.B.shape[2]

    @property
    def state_dim(self) -> int | float:
        return self.lam.shape[1]

    @property
    def state_shape(self) -> tuple[int, ...]:
        return (self.lam.shape[1],)

    @property
    def family(self) -> str:
        return "dense"

    def recurrence(self, x, h0, unroll):
        return k.dense_recurrence(self, x, h0, unroll)

    def scan(self, x, h0):
        return k.dense_scan(self, x, h0)

    def matrix(self, x, h0):
        return k.dense_matrix(self, x, h0)

    def matrix_bytes(self, length, itemsize):
        item = itemsize or self.B.dtype.itemsize
        return length * length * (int(self.state_dim) * self.in_dim + self.in_dim**2) * item

    def phi(self, length):
        return k.dense_phi(self)

    def materialise(self, length):
        """The system itself."""
        return self


class SoftmaxDSF(AbstractDSF):
    """Causal softmax attention as a DSF with an infinite state.

    y_i = sum_{j<=i} exp(scale q_i.k_j) x_j / sum_{j<=i} exp(scale q_i.k_j). Writing
    exp(scale q.k) = phi(q).phi(k) with the (infinite) Taylor features of exp, this is normalised
    linear attention with Lambda_i = (eta_{i-1}/eta_i) I and beta_i = 1/eta_i; `truncate(p)` keeps
    the features up to order p.

    **Arguments:** `q`, `k`: `(L, m)`; `scale`: the score scale (1/sqrt(m) by default in layers);
    `value_dim`: the width d of the value stream x.
    """

    q: Float[Array, "L m"]
    k: Float[Array, "L m"]
    scale: float = eqx.field(static=True)
    value_dim: int = eqx.field(static=True)

    def __check_init__(self):
        if self.q.shape != self.k.shape:
            raise ValueError(f"`q` {self.q.shape} and `k` {self.k.shape} must have the same shape.")

    @property
    def length(self) -> int:
        return self.q.shape[0]

    @property
    def in_dim(self) -> int:
        return self.value_dim

    @property
    def state_dim(self) -> int | float:
        return math.inf

    @property
    def state_shape(self) -> None:
        return None

    @property
    def family(self) -> str:
        return "softmax"

    def recurrence(self, x, h0, unroll):
        """The growing KV state; the final state is the KV cache `(K, V)`."""
        return k.softmax_recurrence(self, x, unroll)

    def chunked(self, x, h0, chunk_size):
        """Online softmax over key blocks (flash-style)."""
        return k.softmax_chunked(self, x, chunk_size)

    def matrix(self, x, h0):
        return k.softmax_matrix(self, x)

    def matrix_bytes(self, length, itemsize):
        return 2 * length * length * (itemsize or self.q.dtype.itemsize)

    def phi(self, length):
        P = jax.nn.softmax(k.softmax_scores(self, self.q.dtype), axis=-1)
        return jnp.broadcast_to(P[:, :, None], P.shape + (self.value_dim,))

    def truncate(self, order: int) -> ChannelDSF:
        """The finite DSF whose features are the Taylor expansion of exp up to `order`.

        phi_p(x) = concat_{r=0..p} x^{(x) r} sqrt(scale^r / r!), so the state has
        n = sum_{r<=p} m^r columns per channel; normalisation is in Lambda_i as in the paper.

        **Arguments:** `order`: the highest power kept (>= 0).

        **Returns:** a `ChannelDSF` (normalised linear attention with those features).
        """
        if order < 0:
            raise ValueError(f"`order` must be >= 0, got {order}.")
        fq = _taylor_features(self.q, order, self.scale)
        fk = _taylor_features(self.k, order, self.scale)
        return normalised_linear_attention_dsf(fq, fk, self.value_dim)


def _taylor_features(x: Float[Array, "L m"], order: int, scale: float) -> Float[Array, "L n"]:
    L = x.shape[0]
    feats = [jnp.ones((L, 1), x.dtype)]
    cur = jnp.ones((L, 1), x.dtype)
    for r in range(1, order + 1):
        cur = (cur[:, :, None] * x[:, None, :]).reshape(L, -1)
        feats.append(cur * math.sqrt(scale**r / math.factorial(r)))
    return jnp.concatenate(feats, axis=1)


def normalised_linear_attention_dsf(
    fq: Float[Array, "L n"],
    fk: Float[Array, "L n"],
    value_dim: int,
    *,
    where: str = "state",
) -> ChannelDSF:
    """Normalised linear attention y_i = sum_{j<=i} (fq_i.fk_j) x_j / (fq_i . sum_{j<=i} fk_j).

    **Arguments:**

    - `fq`, `fk`: `(L, n)` positive query and key features.
    - `value_dim`: width d of the value stream.
    - `where`: `"state"` puts the normaliser eta_i = fq_i . sum_{j<=i} fk_j into the transition
      (Lambda_i = eta_{i-1}/eta_i, beta_i = 1/eta_i, the paper's recurrent normalisation);
      `"output"` keeps Lambda_i = I and scales the output by gamma_i = 1/eta_i. Both give the
      same y exactly (in exact arithmetic).

    **Returns:** a `ChannelDSF` with a scalar decay and shared key/query.
    """
    L, n = fk.shape
    z = jnp.cumsum(fk, axis=0)
    log_eta = jnp.log(jnp.sum(fq * z, axis=1))  # (L,)
    inv_eta = jnp.exp(-log_eta)
    if where == "state":
        log_lam = jnp.concatenate([jnp.zeros((1,), fq.dtype), log_eta[:-1] - log_eta[1:]])
        beta = jnp.broadcast_to(inv_eta[:, None], (L, value_dim))
        gamma = None
    elif where == "output":
        log_lam = jnp.zeros((L,), fq.dtype)
        beta = jnp.ones((1, value_dim), fq.dtype)
        gamma = jnp.broadcast_to(inv_eta[:, None], (L, value_dim))
    else:
        raise ValueError(f"`where` must be 'state' or 'output', got {where!r}.")
    return ChannelDSF(
        log_lam=log_lam[:, None, None],
        beta=beta,
        key=fk[:, None, :],
        query=fq[:, None, :],
        gamma=gamma,
    )


def full_channel_arrays(dsf: ChannelDSF, L: int):
    """The ChannelDSF's arrays broadcast to full length L (internal helper)."""

    def bl(a):
        return jnp.broadcast_to(a, (L,) + a.shape[1:])

    gamma = bl(dsf.gamma) if dsf.gamma is not None else None
    D = dsf.D
    return bl(dsf.log_lam), bl(dsf.beta), bl(dsf.key), bl(dsf.query), gamma, D


def materialise(dsf: AbstractDSF, length: int | None = None) -> DenseDSF:
    """The dense per-step matrices (Lambda_i, B_i, C_i, D_i) of a structured DSF.

    Calls the structure's `materialise(length)` method, so a user's structure that defines it
    works too.

    **Arguments:** `dsf`: a `ChannelDSF`, `DiagonalDSF` or `DenseDSF` (small sizes only: the
    result holds L N^2 numbers), or any structure with a `materialise` method; `length`: L, for
    time-invariant systems stored with length 1.

    **Returns:** a `DenseDSF` with state ordering vec(H) row-major for `ChannelDSF`.

    **Raises:** `TypeError` for a structure without `materialise` (`SoftmaxDSF`: its state is
    infinite).
    """
    return dsf.materialise(length or dsf.length)


def eigenvalues(dsf: AbstractDSF) -> Shaped[Array, "L N"]:
    """The eigenvalues of each Lambda_i (its diagonal, for diagonal structures), for analysis.

    Calls the structure's `eigenvalues()` method, so a user's structure that defines it works
    too.

    **Arguments:** `dsf`: a `ChannelDSF` or `DiagonalDSF`, or any structure with an
    `eigenvalues` method.

    **Returns:** `(L, N)` array (complex for complex systems).

    **Raises:** `TypeError` for a structure without `eigenvalues` (`DenseDSF`, `SoftmaxDSF`).
    """
    return dsf.eigenvalues()
