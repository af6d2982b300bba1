"""`Auto`: the fastest evaluation mode, looked up in a measured table.

How the table is measured: `python -m benchmarks.dsf` (section 1, "cost vs L") times every mode
of a cell round-robin in one process (compiled; minimum over rounds, a sample being enough calls
for about 20 ms, so sub-millisecond cells are not timed by single calls) for the
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

import equinox as eqx
import jax

from ._dsf import AbstractDSF
from ._evaluation import AbstractEvaluation, Chunked, Matrix, Recurrence


# (backend, family, training) -> ((max_L, mode), ...): the first row with L <= max_L applies.
AUTO_TABLE: dict[tuple[str, str, bool], tuple[tuple[float, AbstractEvaluation], ...]] = {
    # Measured 2026-11-27 06:00-06:35 UTC on the 2-core AMD EPYC (cpu, float32, JAX 0.10.2)
    # while other jobs ran at nice 15 (load average 10-15), every mode of a cell timed
    # round-robin, minimum over rounds: `python -m benchmarks.dsf --quick` (L = 256, 1024), the
    # cost section alone at L = 64, 4096 (forward and training) and at L = 1024, and the
    # shortened full run behind benchmarks/results/dsf.json (forward L = 64 ... 4096, training
    # L = 64 ... 1024). Where runs disagreed the row follows the majority and says so:
    # - per_state inference, L = 64: recurrence faster in one run (1.9x), chunked in the other
    #   (1.6x); sub-0.2 ms cells on the loaded machine. Recurrence elsewhere (1.7-2x).
    # - per_state training, L = 64: recurrence 6.05 ms vs chunked 7.65 ms, and a tie (1.004)
    #   in the other run; chunked from L = 256 on (1.9-2.2x).
    # - softmax training, L = 1024: matrix faster in two runs timed without a warm-up call per
    #   turn (1.34x, and 1.15x on the quiet machine in the previous session); chunked faster in
    #   both runs with one (1.04x, 1.21x), i.e. when each mode is called repeatedly, as in
    #   training: chunked. On the quiet machine afterwards (07:16 UTC, load < 1, with the
    #   warm-up call) matrix was faster again (135.7 vs 151.4 ms minimum, 141 vs 171 median):
    #   the two are within ~20% and their order follows the machine's load; the row follows the
    #   quiet machine, matrix up to 1024. At L = 4096 the matrix exceeds the 1 GiB budget at
    #   batch 16 and the KV recurrence's compiled peak is 82 GiB, so chunked is the only mode
    #   that runs.
    # - softmax inference, L = 1024: matrix and chunked within 15% either way.
    # - scalar training, L = 64 (chunked form with segment-sum block decays, 2026-12-02 09:35-09:45
    #   UTC, load average 20-23): chunked faster than matrix in two round-robin runs, 2.75 vs
    #   3.98 ms (`benchmarks.dsf` cost section at L = 64) and 1.65 vs 2.79 ms (batch 16, 7
    #   rounds, minimum). In the run behind results/dsf.json the matrix was 1.12x faster than
    #   the previous chunked kernel (0.91 vs 1.02 ms), which the current one beats by 1.18x
    #   (1.65 vs 1.95 ms in the second run): chunked at every length.
    ("cpu", "scalar", False): ((math.inf, Chunked()),),
    ("cpu", "scalar", True): ((math.inf, Chunked()),),
    ("cpu", "per_state", False): ((math.inf, Recurrence()),),
    ("cpu", "per_state", True): ((64, Recurrence()), (math.inf, Chunked())),
    ("cpu", "softmax", False): (
        (64, Matrix()),
        (256, Chunked()),
        (1024, Matrix()),
        (math.inf, Chunked()),
    ),
    ("cpu", "softmax", True): ((1024, Matrix()), (math.inf, Chunked())),
}


def choose_method(
    dsf: AbstractDSF, length: int, *, training: bool, backend: str | None = None
) -> AbstractEvaluation:
    """The evaluation mode that [`scimlx.dsf.Auto`][] uses for this system.

    **Arguments:** `dsf`: the system; `length`: sequence length; `training`: whether gradients are
    taken; `backend`: defaults to `jax.default_backend()`.

    **Returns:** the mode of the first row of [`scimlx.dsf.AUTO_TABLE`][] for this backend,
    family and `training` whose length bound holds, e.g. `Chunked()` (its `chunk_size` left to
    the family's default); `Recurrence()` for a family without rows.
    """
    fam = dsf.family
    backend = backend or jax.default_backend()
    rows = AUTO_TABLE.get((backend, fam, training)) or AUTO_TABLE.get(("cpu", fam, training))
    if not rows:
        return Recurrence()  # a family not benchmarked (per-channel, diagonal, dense, yours)
    for max_len, method in rows:
        if length <= max_len:
            return method
    return rows[-1][1]


class Auto(AbstractEvaluation):
    """The mode measured fastest for the system's family and length on this backend, looked up in
    [`scimlx.dsf.AUTO_TABLE`][] by [`scimlx.dsf.choose_method`][].

    **Arguments:** `training`: whether gradients will be taken (training and inference have
    separate rows of the table).
    """

    training: bool = eqx.field(static=True, default=False)

    def evaluate(self, dsf, x, h0):
        return choose_method(dsf, x.shape[0], training=self.training).evaluate(dsf, x, h0)
