"""Evaluation modes: small Modules that evaluate a DSF by calling the structure's own method."""

import abc
from typing import Any

import equinox as eqx
from jaxtyping import Array, Inexact

from ._dsf import AbstractDSF


DEFAULT_MAX_BYTES = 2**30  # 1 GiB for the materialised input-output matrix

# Chunk lengths per family: the best of the round-robin sweep (section 1b of the benchmark,
# fwd+bwd at L = 1024, batch 16) in the same runs as `AUTO_TABLE`: scalar Q = 32 (16-128 tried;
# 16 and 64 within 25%), per-state Q = 8 (1-32 tried; 2 and 4 within 25%, 16 and 32 1.5x slower
# and 6-12 s to compile).
CHUNK_SIZE: dict[str, int] = {"scalar": 32, "per_state": 8, "softmax": 128}


def choose_chunk_size(dsf: AbstractDSF) -> int:
    """Default block length of [`scimlx.dsf.Chunked`][] for this system's family (64 for a family
    without an entry in [`scimlx.dsf.CHUNK_SIZE`][])."""
    return CHUNK_SIZE.get(dsf.family, 64)


def check_budget(dsf: AbstractDSF, max_bytes: int, length: int, remedy: str = "Raise"):
    """Raise if materialising Phi of `dsf` at this length needs more than `max_bytes`."""
    est = dsf.matrix_bytes(length, None)
    if est > max_bytes:
        raise ValueError(
            f"Materialising Phi would take about {est / 2**20:.1f} MiB for "
            f"{type(dsf).__name__}(L={length}, d={dsf.in_dim}, state_dim={dsf.state_dim}), "
            f"above max_bytes={max_bytes} ({max_bytes / 2**20:.1f} MiB). {remedy} `max_bytes`."
        )


def _check_positive_int(name: str, value):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"`{name}` must be an integer >= 1, got {value!r}.")


class AbstractEvaluation(eqx.Module):
    """How [`scimlx.dsf.evaluate`][] evaluates a system: one Module per mode, holding that
    mode's options.

    The built-in modes are [`scimlx.dsf.Recurrence`][], [`scimlx.dsf.Scan`][],
    [`scimlx.dsf.Chunked`][], [`scimlx.dsf.Matrix`][] and [`scimlx.dsf.Auto`][]. Each calls the
    structure's own method for its mode (`dsf.recurrence`, `dsf.scan`, `dsf.chunked`,
    `dsf.matrix`), never asking which class the structure is, so a user's structure works with
    them, and a user's subclass of this class works with every structure that has the methods
    it calls.
    """

    @abc.abstractmethod
    def evaluate(
        self, dsf: AbstractDSF, x: Inexact[Array, "L d"], h0: Any
    ) -> tuple[Inexact[Array, "L d"], Any]:
        """Evaluate `dsf` on one unbatched `(L, d)` input `x` from the initial state `h0` (of
        shape `dsf.state_shape`, or `None` for zero); `evaluate` has checked both.

        **Returns:** `(y, final_state)`.
        """


class Recurrence(AbstractEvaluation):
    """`lax.scan` over the steps: O(L) depth, O(state) memory. For `SoftmaxDSF`, the growing KV
    state.

    **Arguments:** `unroll`: the `lax.scan` unroll (steps per loop iteration).
    """

    unroll: int = eqx.field(static=True, default=1)

    def __check_init__(self):
        _check_positive_int("unroll", self.unroll)

    def evaluate(self, dsf, x, h0):
        return dsf.recurrence(x, h0, self.unroll)


class Scan(AbstractEvaluation):
    """`lax.associative_scan` on the pairs (Lambda_i, B_i x_i): O(log L) depth, O(L state) memory.
    Not defined for `SoftmaxDSF` (infinite state)."""

    def evaluate(self, dsf, x, h0):
        return dsf.scan(x, h0)


class Chunked(AbstractEvaluation):
    """Blocks of `chunk_size` steps, with a recurrence across blocks: matmul-shaped blocks with a
    stable segment sum of log-decays for decays that are scalar per channel or head, the
    recurrence in blocks with a hand-written adjoint for per-state decays, online softmax over
    key blocks for `SoftmaxDSF`. Not defined for `DenseDSF`.

    **Arguments:** `chunk_size`: block length, or `None` for the measured default of the
    system's family ([`scimlx.dsf.choose_chunk_size`][]).
    """

    chunk_size: int | None = eqx.field(static=True, default=None)

    def __check_init__(self):
        if self.chunk_size is not None:
            _check_positive_int("chunk_size", self.chunk_size)

    def evaluate(self, dsf, x, h0):
        q = choose_chunk_size(dsf) if self.chunk_size is None else self.chunk_size
        return dsf.chunked(x, h0, q)


class Matrix(AbstractEvaluation):
    """Materialise y = Phi x and multiply; refused, with the memory estimate in the message,
    when the intermediates would need more than `max_bytes` (see
    [`scimlx.dsf.matrix_bytes`][]).

    **Arguments:** `max_bytes`: memory budget of the materialised matrix (default 1 GiB).
    """

    max_bytes: int = eqx.field(static=True, default=DEFAULT_MAX_BYTES)

    def __check_init__(self):
        if isinstance(self.max_bytes, bool) or not isinstance(self.max_bytes, int):
            raise ValueError(f"`max_bytes` must be an integer, got {self.max_bytes!r}.")

    def evaluate(self, dsf, x, h0):
        if "matrix" not in dsf.supported_methods():
            raise dsf.unsupported("matrix")
        check_budget(dsf, self.max_bytes, x.shape[0], "Use `Chunked()` or `Recurrence()`, or raise")
        return dsf.matrix(x, h0)
