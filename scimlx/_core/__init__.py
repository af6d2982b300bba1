from ._cache import (
    compilation_cache_from_env as compilation_cache_from_env,
    default_cache_dir as default_cache_dir,
    enable_compilation_cache as enable_compilation_cache,
)
from ._checks import (
    check_floating as check_floating,
    check_ndim as check_ndim,
    check_positive as check_positive,
    check_shape as check_shape,
    error_if_nonfinite as error_if_nonfinite,
)
from ._fit import default_batch as default_batch, fit as fit, FitResult as FitResult
from ._persistence import (
    atomic_write_bytes as atomic_write_bytes,
    CheckpointError as CheckpointError,
    load as load,
    read_header as read_header,
    save as save,
)
from ._progress import ProgressBar as ProgressBar
from ._results import is_successful as is_successful, RESULTS as RESULTS
