"""Large ensemble studies: vmap within a chunk, shard_map across devices, resumable on disk."""

from ._reducers import (
    AbstractReducer as AbstractReducer,
    Max as Max,
    Mean as Mean,
    Min as Min,
    Quantiles as Quantiles,
    Std as Std,
    Variance as Variance,
)
from ._refill import (
    DiffEqMember as DiffEqMember,
    DiffEqProblem as DiffEqProblem,
    refill_solve as refill_solve,
)
from ._runner import (
    chunk_size_for_budget as chunk_size_for_budget,
    EnsembleResult as EnsembleResult,
    run_ensemble as run_ensemble,
)
from ._store import load_outputs as load_outputs, StoreCorruptionError as StoreCorruptionError
