"""`method="auto"`: the fastest evaluation mode, looked up in a measured table.

How the table is measured: `python -m benchmarks.dsf` (section 1, "cost vs L") times every mode
(compiled; minimum over repeats, at least 0.3 s of repeats for sub-millisecond cells) for the
families below at d = 64, n = 16 (softmax: m = 16), forward at batch 1 and forward+backward (grad
of sum y^2) at batch 16. For every cell it prints the mode this table picks, the fastest mode and
their ratio (`auto_over_best`; the worst cell is `auto_over_best_mode` in the summary), and at the
end the fastest mode per cell as ready-made rows (`auto_table_measured` in the results JSON). To
re-measure, run the benchmark on the machine and backend in question and copy those rows here under
`(jax.default_backend(), family, training)`. Only CPU rows are measured; other backends fall back to
the CPU rows.

Families: "scalar" = ChannelDSF with one decay per step shared by all states and shared key/query
(linear attention, Mamba-2 SSD per head); "per_state" = ChannelDSF whose decay varies over the
state axis (S6, S4D); "softmax" = SoftmaxDSF. Per-channel decays (RG-LRU, qLSTM), DiagonalDSF (S5,
LRU) and DenseDSF are not in the benchmark and use the recurrence.
"""

import math

import jax

from ._dsf import AbstractDSF, ChannelDSF, DenseDSF, DiagonalDSF, SoftmaxDSF


# (backend, family, training) -> ((max_L, method), ...): the first row with L <= max_L applies.
AUTO_TABLE: dict[tuple[str, str, bool], tuple[tuple[float, str], ...]] = {
    # The `auto_table_measured` rows of benchmarks/results/dsf.json (2026-11-27, cpu, 2 cores
    # heavily shared with other jobs, float32; L = 64 ... 4096 forward, 256 and 1024 training).
    # Forward cells where recurrence, chunked and matrix are within a few tens of percent flipped
    # between that run and the one before it (see docs/dsf.md): re-measure on a quiet machine.
    ("cpu", "scalar", False): ((64, "matrix"), (1024, "chunked"), (math.inf, "recurrence")),
    ("cpu", "scalar", True): ((math.inf, "chunked"),),
    ("cpu", "per_state", False): ((1024, "recurrence"), (math.inf, "chunked")),
    ("cpu", "per_state", True): ((math.inf, "chunked"),),
    ("cpu", "softmax", False): ((256, "chunked"), (1024, "matrix"), (math.inf, "chunked")),
    ("cpu", "softmax", True): ((256, "matrix"), (math.inf, "chunked")),
}

# Chunk lengths per family (measured with the same benchmark; per-state: block lengths 1-8 measure
# alike within the noise of the loaded machine, see docs/dsf.md).
CHUNK_SIZE: dict[str, int] = {"scalar": 32, "per_state": 8, "softmax": 128}


def family(dsf: AbstractDSF) -> str:
    """The structure family used to look up `AUTO_TABLE`."""
    if isinstance(dsf, SoftmaxDSF):
        return "softmax"
    if isinstance(dsf, DenseDSF):
        return "dense"
    if isinstance(dsf, DiagonalDSF):
        return "diagonal"
    if (
        isinstance(dsf, ChannelDSF)
        and dsf.log_lam.shape[2] == 1
        and dsf.log_lam.shape[1] == 1
        and dsf.key.shape[1] == 1
        and dsf.query.shape[1] == 1
    ):
        return "scalar"
    if isinstance(dsf, ChannelDSF) and dsf.log_lam.shape[2] == 1:
        return "per_channel"
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
    if fam in ("dense", "diagonal", "per_channel"):
        return "recurrence"  # not benchmarked
    backend = backend or jax.default_backend()
    rows = AUTO_TABLE.get((backend, fam, training)) or AUTO_TABLE[("cpu", fam, training)]
    for max_len, method in rows:
        if length <= max_len:
            return method
    return rows[-1][1]


def choose_chunk_size(dsf: AbstractDSF) -> int:
    """Default chunk length of `method="chunked"` for this system's family."""
    return CHUNK_SIZE.get(family(dsf), 64)
