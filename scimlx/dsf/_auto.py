"""`method="auto"`: the fastest evaluation mode, looked up in a measured table.

How the table was measured: `python -m benchmarks.dsf` (section 1, "cost vs L") times every mode
(compiled, median of runs) for the two families below at d = 64, n = 16 (softmax: m = 16), forward
at batch 1 and forward+backward (grad of sum y^2) at batch 16, and prints the fastest mode per cell
as `AUTO_TABLE` rows. The CPU rows below were copied from such a run on a 2-core AMD EPYC (JAX
0.10.2, float32, machine shared with other jobs; see docs/dsf.md for the timings). Only CPU rows are
measured; other backends fall back to the CPU rows until someone measures them (run the benchmark on
that backend and add its rows).

Families: "scalar" = ChannelDSF with one decay per step shared by all states and shared key/query
(linear attention, Mamba-2 SSD per head); "per_state" = every other diagonal structure (S6,
S4D, RG-LRU, qLSTM, S5, LRU); "softmax" = SoftmaxDSF.
"""

import math

import jax

from ._dsf import AbstractDSF, ChannelDSF, DenseDSF, SoftmaxDSF


# (backend, family, training) -> ((max_L, method), ...): the first row with L <= max_L applies.
AUTO_TABLE: dict[tuple[str, str, bool], tuple[tuple[float, str], ...]] = {
    # measured 2026-11-27 by `python -m benchmarks.dsf --quick` (cpu, 2 cores shared with other
    # jobs, float32; fastest of the repeats per cell). L <= 64 in training is from an earlier run.
    ("cpu", "scalar", False): ((64, "matrix"), (1024, "recurrence"), (math.inf, "chunked")),
    ("cpu", "scalar", True): ((math.inf, "chunked"),),
    ("cpu", "per_state", False): ((math.inf, "recurrence"),),
    ("cpu", "per_state", True): ((math.inf, "chunked"),),
    ("cpu", "softmax", False): ((256, "chunked"), (1024, "matrix"), (math.inf, "chunked")),
    ("cpu", "softmax", True): ((64, "matrix"), (math.inf, "chunked")),
}

# Chunk lengths per family (measured with the same benchmark).
CHUNK_SIZE: dict[str, int] = {"scalar": 64, "per_state": 4, "softmax": 128}


def family(dsf: AbstractDSF) -> str:
    """The structure family used to look up `AUTO_TABLE`."""
    if isinstance(dsf, SoftmaxDSF):
        return "softmax"
    if isinstance(dsf, DenseDSF):
        return "dense"
    if (
        isinstance(dsf, ChannelDSF)
        and dsf.log_lam.shape[2] == 1
        and dsf.log_lam.shape[1] == 1
        and dsf.key.shape[1] == 1
        and dsf.query.shape[1] == 1
    ):
        return "scalar"
    return "per_state"


def choose_method(
    dsf: AbstractDSF, length: int, *, training: bool, backend: str | None = None
) -> str:
    """The evaluation mode that `method="auto"` uses for this system.

    **Arguments:** `dsf`: the system; `length`: sequence length; `training`: whether gradients are
    taken; `backend`: defaults to `jax.default_backend()`.

    **Returns:** one of `"recurrence"`, `"scan"`, `"chunked"`, `"matrix"`.
    """
    fam = family(dsf)
    if fam == "dense":
        return "recurrence"
    backend = backend or jax.default_backend()
    rows = AUTO_TABLE.get((backend, fam, training)) or AUTO_TABLE[("cpu", fam, training)]
    for max_len, method in rows:
        if length <= max_len:
            return method
    return rows[-1][1]


def choose_chunk_size(dsf: AbstractDSF) -> int:
    """Default chunk length of `method="chunked"` for this system's family."""
    return CHUNK_SIZE.get(family(dsf), 64)
