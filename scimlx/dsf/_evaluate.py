"""`evaluate` and `phi`: argument checks, then the structure's own method for the mode."""

from typing import Any

from jaxtyping import Array, Float, Inexact

from ._auto import choose_chunk_size, choose_method
from ._dsf import AbstractDSF


METHODS = ("recurrence", "scan", "chunked", "matrix")
DEFAULT_MAX_BYTES = 2**30  # 1 GiB for the materialised input-output matrix


def _check_x(dsf: AbstractDSF, x):
    if x.ndim != 2:
        raise ValueError(f"`x` must have shape (L, d), got shape {tuple(x.shape)}.")
    if x.shape[1] != dsf.in_dim or dsf.length not in (1, x.shape[0]):
        raise ValueError(
            f"`x` has shape {tuple(x.shape)} but the system expects (L, d) = "
            f"({dsf.length}, {dsf.in_dim})."
        )


def _check_h0(dsf: AbstractDSF, h0):
    if h0 is None:
        return
    shape = dsf.state_shape
    if shape is None:
        raise ValueError(f"`h0` is not supported for {type(dsf).__name__}.")
    if tuple(h0.shape) != tuple(shape):
        raise ValueError(f"`h0` must have shape {tuple(shape)}, got {tuple(h0.shape)}.")


def matrix_bytes(dsf: AbstractDSF, length: int | None = None, itemsize: int | None = None) -> int:
    """Estimated bytes of the intermediates of `method="matrix"` (and of `phi`)."""
    return dsf.matrix_bytes(length or dsf.length, itemsize)


def _check_budget(dsf, max_bytes, L):
    est = matrix_bytes(dsf, L)
    if est > max_bytes:
        raise ValueError(
            f"method='matrix' would materialise about {est / 2**20:.1f} MiB for "
            f"{type(dsf).__name__}(L={L}, d={dsf.in_dim}, state_dim={dsf.state_dim}), "
            f"above max_bytes={max_bytes} ({max_bytes / 2**20:.1f} MiB). Use method='chunked' or "
            "'recurrence', or raise `max_bytes`."
        )


def evaluate(
    dsf: AbstractDSF,
    x: Inexact[Array, "L d"],
    *,
    method: str = "auto",
    h0: Inexact[Array, "..."] | None = None,
    chunk_size: int | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    training: bool = False,
    unroll: int = 1,
) -> tuple[Float[Array, "L d"], Any]:
    """Evaluate the DSF on the input (value) stream `x`: y_i = C_i h_i + D_i x_i.

    The structure evaluates itself: this checks the arguments and calls its method for the
    mode (`dsf.recurrence`, `dsf.scan`, `dsf.chunked`, `dsf.matrix`; see
    [`scimlx.dsf.AbstractDSF`][]), so a user's structure that defines them works too.

    **Arguments:**

    - `dsf`: the system (`ChannelDSF`, `DiagonalDSF`, `DenseDSF`, `SoftmaxDSF`, or any
      [`scimlx.dsf.AbstractDSF`][]).
    - `x`: `(L, d)` input stream (one unbatched sequence; batch with `jax.vmap`).
    - `method`: `"recurrence"` (`lax.scan`, O(L) depth, O(state) memory), `"scan"`
      (`lax.associative_scan`, O(log L) depth, O(L state) memory), `"chunked"` (matmul-shaped
      blocks of `chunk_size` with a stable segment-sum of log-decays, then a recurrence across
      blocks), `"matrix"` (materialise y = Phi x; refused above `max_bytes`), or `"auto"`, which
      picks by a table measured per backend, structure, length and `training`. For `SoftmaxDSF`:
      `"recurrence"` is the growing KV state, `"chunked"` online softmax over key blocks,
      `"matrix"` the exact matrix; `"scan"` is not defined (infinite state). `DenseDSF` has no
      `"chunked"`. A mode the structure does not define raises a `ValueError` listing those
      it does.
    - `h0`: initial state of shape `dsf.state_shape` (`(d, n)` for `ChannelDSF`, `(N,)` for
      `DiagonalDSF` and `DenseDSF`; not accepted by `SoftmaxDSF`); default 0.
    - `chunk_size`: block length for `"chunked"` (default: from the measured table).
    - `max_bytes`: memory budget of `"matrix"`.
    - `training`: whether gradients will be taken (only used by `"auto"`).
    - `unroll`: `lax.scan` unroll of `"recurrence"`.

    **Returns:** `(y, state)`: `y` of shape `(L, d)` and the final state (for softmax, the KV
    cache `(K, V)`).
    """
    _check_x(dsf, x)
    L = x.shape[0]
    if method == "auto":
        method = choose_method(dsf, L, training=training)
    if method not in METHODS:
        raise ValueError(f"`method` must be one of {METHODS + ('auto',)}, got {method!r}.")
    if chunk_size is None:
        chunk_size = choose_chunk_size(dsf)
    if chunk_size < 1:
        raise ValueError(f"`chunk_size` must be >= 1, got {chunk_size}.")
    _check_h0(dsf, h0)
    if method == "recurrence":
        return dsf.recurrence(x, h0, unroll)
    if method == "scan":
        return dsf.scan(x, h0)
    if method == "chunked":
        return dsf.chunked(x, h0, chunk_size)
    if "matrix" not in dsf.supported_methods():
        raise dsf.unsupported("matrix")
    _check_budget(dsf, max_bytes, L)
    return dsf.matrix(x, h0)


def phi(
    dsf: AbstractDSF, *, length: int | None = None, max_bytes: int = DEFAULT_MAX_BYTES
) -> Inexact[Array, "L L ..."]:
    """The materialised input-output matrix Phi of the DSF ("attention matrix" of any layer).

    Phi_ij = C_i Lambda_i ... Lambda_{j+1} B_j for j < i, Phi_ii = C_i B_i + D_i, 0 above the
    diagonal; y = Phi x.

    **Arguments:**

    - `dsf`: the system (its `phi` method computes the matrix).
    - `length`: sequence length L (needed only for time-invariant systems stored with length 1).
    - `max_bytes`: refuse (with the estimate in the message) if the computation would need more.

    **Returns:** `(L, L, d)` for `ChannelDSF` and `SoftmaxDSF` (Phi_ij is diagonal: its diagonal
    is returned), `(L, L, d, d)` for `DiagonalDSF` and `DenseDSF`.
    """
    L = length or dsf.length
    if type(dsf).phi is AbstractDSF.phi:
        raise ValueError(f"`dsf`: {type(dsf).__name__} does not define its matrix `phi`.")
    _check_budget(dsf, max_bytes, L)
    return dsf.phi(L)
