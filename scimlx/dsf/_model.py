"""A small sequence model on DSF layers: embedding, pre-norm residual blocks, tied LM head."""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array, Float, Int, PRNGKeyArray

from .._core._checks import check_int, check_sizes
from ._auto import Auto
from ._evaluation import AbstractEvaluation
from ._layers import (
    AbstractDSFLayer,
    LinearAttention,
    LRU,
    NormalisedAttention,
    QLSTM,
    RGLRU,
    S4D,
    S5,
    S6,
    SoftmaxAttention,
    SSD,
)
from ._validate import check_tokens


MIXERS = (
    "softmax",
    "linear",
    "normalised",
    "s4d",
    "s5",
    "lru",
    "s6",
    "ssd",
    "ssd_paper",
    "rglru",
    "qlstm",
    "qlstm_reversed",
)


def make_mixer(
    name: str,
    d_model: int,
    *,
    d_state: int = 16,
    n_heads: int = 1,
    method: AbstractEvaluation = Auto(),
    dtype=None,
    key: PRNGKeyArray,
) -> AbstractDSFLayer:
    """Build a DSF layer by name (one of `MIXERS`) with width `d_model` and state size `d_state`.

    `d_state` is the key/query width per head for attention layers, the state expansion n for
    S4D/S6/SSD, and the state dimension P for S5/LRU; RG-LRU and qLSTM have n = 1.
    """
    kw = dict(method=method, dtype=dtype, key=key)
    if name == "softmax":
        return SoftmaxAttention(d_model, n_heads, d_state, **kw)
    if name == "linear":
        return LinearAttention(d_model, n_heads, d_state, **kw)
    if name == "normalised":
        return NormalisedAttention(d_model, n_heads, d_state, **kw)
    if name == "s4d":
        return S4D(d_model, d_state, **kw)
    if name == "s5":
        return S5(d_model, d_state, **kw)
    if name == "lru":
        return LRU(d_model, d_state, **kw)
    if name == "s6":
        return S6(d_model, d_state, **kw)
    if name == "ssd":
        return SSD(d_model, n_heads, d_state, **kw)
    if name == "ssd_paper":
        return SSD(d_model, 1, d_state, per_channel_dt=True, **kw)
    if name == "rglru":
        return RGLRU(d_model, n_heads, **kw)
    if name == "qlstm":
        return QLSTM(d_model, **kw)
    if name == "qlstm_reversed":
        return QLSTM(d_model, reversed_sigmoid=True, **kw)
    raise ValueError(f"`mixer` must be one of {MIXERS}, got {name!r}.")


class SequenceModel(eqx.Module):
    """Token model: embedding (+ learned positions), `n_layers` pre-norm residual blocks
    `u + mixer(LayerNorm(u))` (and `u + MLP(LayerNorm(u))` if `mlp`), final norm, tied head.

    **Arguments:** `vocab_size`, `d_model`, `n_layers`, `mixer` (a name in `MIXERS`), `d_state`,
    `n_heads`, `max_len` (learned positions if > 0, 0 for none), `mlp` (hidden 4 d_model),
    `method` (evaluation mode of every layer, an [`scimlx.dsf.AbstractEvaluation`][]), `dtype`
    (e.g. `"float32"`), `key`. All but `key` and `method` are JSON-able, so `scimlx.load` can
    rebuild the model from the saved hyperparameters (with the default `method`, which does not
    change the parameters; pass another per call).
    """

    embedding: Float[Array, "V d"]
    positions: Float[Array, "P d"] | None
    layers: tuple[AbstractDSFLayer, ...]
    norms: tuple[eqx.nn.LayerNorm, ...]
    mlps: tuple[eqx.nn.MLP, ...] | None
    mlp_norms: tuple[eqx.nn.LayerNorm, ...] | None
    final_norm: eqx.nn.LayerNorm
    method: AbstractEvaluation

    def __init__(
        self,
        vocab_size: int,
        d_model: int,
        n_layers: int,
        mixer: str,
        *,
        d_state: int = 16,
        n_heads: int = 1,
        max_len: int = 0,
        mlp: bool = False,
        method: AbstractEvaluation = Auto(),
        dtype: str | None = None,
        key: PRNGKeyArray,
    ):
        check_sizes(vocab_size=vocab_size, d_model=d_model, n_layers=n_layers)
        check_int("max_len", max_len, minimum=0)
        dt = jnp.zeros(()).dtype if dtype is None else jnp.dtype(dtype)
        k = jr.split(key, 3 + 2 * n_layers)
        self.embedding = jr.normal(k[0], (vocab_size, d_model), dt) / math.sqrt(d_model)
        self.positions = jr.normal(k[1], (max_len, d_model), dt) * 0.02 if max_len > 0 else None
        self.layers = tuple(
            make_mixer(
                mixer,
                d_model,
                d_state=d_state,
                n_heads=n_heads,
                method=method,
                dtype=dt,
                key=k[3 + i],
            )
            for i in range(n_layers)
        )
        self.norms = tuple(eqx.nn.LayerNorm(d_model, dtype=dt) for _ in range(n_layers))
        if mlp:
            self.mlps = tuple(
                eqx.nn.MLP(
                    d_model,
                    d_model,
                    4 * d_model,
                    1,
                    activation=jax.nn.gelu,
                    dtype=dt,
                    key=k[3 + n_layers + i],
                )
                for i in range(n_layers)
            )
            self.mlp_norms = tuple(eqx.nn.LayerNorm(d_model, dtype=dt) for _ in range(n_layers))
        else:
            self.mlps = self.mlp_norms = None
        self.final_norm = eqx.nn.LayerNorm(d_model, dtype=dt)
        self.method = method

    def hidden(
        self, tokens: Int[Array, " L"], *, method: AbstractEvaluation | None = None
    ) -> Float[Array, "L d"]:
        """Final normalised hidden states, `(L, d_model)`; `method` overrides `self.method` (e.g.
        `Auto(training=True)` when gradients are taken).

        Token ids outside `[0, vocab_size)` raise (a `ValueError` for concrete ids, an
        `equinox.EquinoxRuntimeError` under `jit`), rather than being clamped.
        """
        tokens = check_tokens(tokens, self.embedding.shape[0])
        L = tokens.shape[0]
        u = self.embedding[tokens]
        if self.positions is not None:
            if L > self.positions.shape[0]:
                raise ValueError(
                    f"Sequence length {L} exceeds `max_len`={self.positions.shape[0]}."
                )
            u = u + self.positions[:L]
        m = self.method if method is None else method
        for i, (layer, norm) in enumerate(zip(self.layers, self.norms)):
            u = u + layer(jax.vmap(norm)(u), method=m)
            if self.mlps is not None and self.mlp_norms is not None:
                u = u + jax.vmap(self.mlps[i])(jax.vmap(self.mlp_norms[i])(u))
        return jax.vmap(self.final_norm)(u)

    def __call__(
        self, tokens: Int[Array, " L"], *, method: AbstractEvaluation | None = None
    ) -> Float[Array, "L V"]:
        """Logits `(L, vocab_size)` for one token sequence (`method` as in `hidden`)."""
        return self.hidden(tokens, method=method) @ self.embedding.T
