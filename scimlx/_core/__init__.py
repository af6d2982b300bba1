from ._cache import (
    compilation_cache_from_env as compilation_cache_from_env,
    default_cache_dir as default_cache_dir,
    enable_compilation_cache as enable_compilation_cache,
)
from ._checks import (
    check_finite as check_finite,
    check_floating as check_floating,
    check_int as check_int,
    check_labels as check_labels,
    check_last_axis as check_last_axis,
    check_like as check_like,
    check_ndim as check_ndim,
    check_nonempty as check_nonempty,
    check_ordered as check_ordered,
    check_positive as check_positive,
    check_range as check_range,
    check_shape as check_shape,
    check_sizes as check_sizes,
    check_tolerances as check_tolerances,
    check_weight as check_weight,
    error_if_nonfinite as error_if_nonfinite,
    error_if_out_of_range as error_if_out_of_range,
)
from ._fingerprint import (
    callable_digest as callable_digest,
    tree_digest as tree_digest,
    tree_signature as tree_signature,
)
from ._fit import (
    default_batch as default_batch,
    fit as fit,
    FitResult as FitResult,
    steps_per_epoch as steps_per_epoch,
)
from ._persistence import (
    atomic_write_bytes as atomic_write_bytes,
    CheckpointError as CheckpointError,
    clean_orphans as clean_orphans,
    clean_orphans_in as clean_orphans_in,
    CorruptedFileError as CorruptedFileError,
    load as load,
    read_arrays as read_arrays,
    read_header as read_header,
    save as save,
    write_arrays as write_arrays,
)
from ._progress import ProgressBar as ProgressBar
from ._results import (
    as_result as as_result,
    is_successful as is_successful,
    result_from_codes as result_from_codes,
    RESULTS as RESULTS,
)
from ._sharding import (
    AbstractSharding as AbstractSharding,
    DataParallel as DataParallel,
    to_host as to_host,
)
from ._solution import Solution as Solution, solution as solution
