"""Large ensemble studies: vmap within a chunk, shard_map across devices, resumable on disk."""

from ._chunk import chunk_memory as chunk_memory, chunk_size_for_budget as chunk_size_for_budget
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
from ._runner import EnsembleResult as EnsembleResult, run_ensemble as run_ensemble
from ._schedule import (
    AbstractSchedule as AbstractSchedule,
    RefillSchedule as RefillSchedule,
    VmapSchedule as VmapSchedule,
)
from ._store import (
    load_outputs as load_outputs,
    Store as Store,
    StoreCorruptionError as StoreCorruptionError,
)
from ._strategy import (
    AbstractStrategy as AbstractStrategy,
    AutoSharding as AutoSharding,
    ShardMap as ShardMap,
)
