"""`evaluate` and `phi`: argument checks, then the evaluation mode (or the structure's `phi`)."""

from typing import Any

from jaxtyping import Array, Float, Inexact

from ._auto import Auto
from ._dsf import AbstractDSF
from ._evaluation import AbstractEvaluation, check_budget, DEFAULT_MAX_BYTES


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
    """Estimated bytes of the intermediates of [`scimlx.dsf.Matrix`][] (and of `phi`)."""
    return dsf.matrix_bytes(length or dsf.length, itemsize)


def evaluate(
    dsf: AbstractDSF,
    x: Inexact[Array, "L d"],
    *,
    method: AbstractEvaluation = Auto(),
    h0: Inexact[Array, "..."] | None = None,
) -> tuple[Float[Array, "L d"], Any]:
    """Evaluate the DSF on the input (value) stream `x`: y_i = C_i h_i + D_i x_i.

    This checks the arguments and calls `method.evaluate(dsf, x, h0)`, which calls the
    structure's own method for the mode (`dsf.recurrence`, `dsf.scan`, `dsf.chunked`,
    `dsf.matrix`; see [`scimlx.dsf.AbstractDSF`][]), so a user's structure that defines them
    works too, and so does a user's [`scimlx.dsf.AbstractEvaluation`][].

    **Arguments:**

    - `dsf`: the system (`ChannelDSF`, `DiagonalDSF`, `DenseDSF`, `SoftmaxDSF`, or any
      [`scimlx.dsf.AbstractDSF`][]).
    - `x`: `(L, d)` input stream (one unbatched sequence; batch with `jax.vmap`).
    - `method`: the evaluation mode, with its options: [`scimlx.dsf.Recurrence`][]`(unroll)`
      (`lax.scan`, O(L) depth, O(state) memory), [`scimlx.dsf.Scan`][]`()`
      (`lax.associative_scan`, O(log L) depth, O(L state) memory),
      [`scimlx.dsf.Chunked`][]`(chunk_size)` (matmul-shaped blocks with a stable segment-sum of
      log-decays, then a recurrence across blocks), [`scimlx.dsf.Matrix`][]`(max_bytes)`
      (materialise y = Phi x; refused above `max_bytes`), or [`scimlx.dsf.Auto`][]`(training)`
      (the default), which picks by a table measured per backend, structure, length and
      `training`. For `SoftmaxDSF`: `Recurrence` is the growing KV state, `Chunked` online
      softmax over key blocks, `Matrix` the exact matrix; `Scan` is not defined (infinite
      state). `DenseDSF` has no `Chunked`. A mode the structure does not define raises a
      `ValueError` listing those it does.
    - `h0`: initial state of shape `dsf.state_shape` (`(d, n)` for `ChannelDSF`, `(N,)` for
      `DiagonalDSF` and `DenseDSF`; not accepted by `SoftmaxDSF`); default 0.

    **Returns:** `(y, state)`: `y` of shape `(L, d)` and the final state (for softmax, the KV
    cache `(K, V)`).
    """
    if not isinstance(method, AbstractEvaluation):
        raise TypeError(
            "`method` must be an evaluation mode (`scimlx.dsf.Recurrence()`, `Scan()`, "
            f"`Chunked()`, `Matrix()`, `Auto()` or an `AbstractEvaluation`), got {method!r}."
        )
    _check_x(dsf, x)
    _check_h0(dsf, h0)
    return method.evaluate(dsf, x, h0)


def phi(
    dsf: AbstractDSF, *, length: int | None = None, max_bytes: int = DEFAULT_MAX_BYTES
) -> Inexact[Array, "L L ..."]:
    """The materialised input-output matrix Phi of the DSF ("attention matrix" of any layer).

    Phi_ij = C_i Lambda_i ... Lambda_{j+1} B_j for j < i, Phi_ii = C_i B_i + D_i, 0 above the
    diagonal; y = Phi x.

    **Arguments:**

    - `dsf`: the system (its `phi` method computes the matrix).
    - `length`: sequence length L (needed only for time-invariant systems stored with length 1;
      for any other system it must be the system's own length).
    - `max_bytes`: refuse (with the estimate in the message) if the computation would need more.

    **Returns:** `(L, L, d)` for `ChannelDSF` and `SoftmaxDSF` (Phi_ij is diagonal: its diagonal
    is returned), `(L, L, d, d)` for `DiagonalDSF` and `DenseDSF`.
    """
    if length is not None and dsf.length not in (1, length):
        raise ValueError(
            f"`length`={length} differs from the system's length {dsf.length}: only a "
            "time-invariant system (stored with length 1) can be materialised at another length."
        )
    L = length or dsf.length
    if type(dsf).phi is AbstractDSF.phi:
        raise ValueError(f"`dsf`: {type(dsf).__name__} does not define its matrix `phi`.")
    check_budget(dsf, max_bytes, L)
    return dsf.phi(L)
