"""scimlx: differentiable scientific computing in JAX."""

import importlib.metadata

from ._core import (
    AbstractSharding as AbstractSharding,
    as_result as as_result,
    atomic_write_bytes as atomic_write_bytes,
    CheckpointError as CheckpointError,
    compilation_cache_from_env as _compilation_cache_from_env,
    DataParallel as DataParallel,
    default_batch as default_batch,
    default_cache_dir as default_cache_dir,
    enable_compilation_cache as enable_compilation_cache,
    fit as fit,
    FitResult as FitResult,
    is_successful as is_successful,
    load as load,
    ProgressBar as ProgressBar,
    read_header as read_header,
    RESULTS as RESULTS,
    save as save,
    Solution as Solution,
    steps_per_epoch as steps_per_epoch,
)
from ._tour import tour as tour


_compilation_cache_from_env()


_SUBPACKAGES = ("data", "dsf", "ensemble", "linsolve", "nde", "neuralop", "sde")


def __getattr__(name: str):
    # Capabilities load on first use (`scimlx.linsolve`), keeping `import scimlx` light.
    if name in _SUBPACKAGES:
        import importlib

        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


try:
    __version__ = importlib.metadata.version("scimlx")
except importlib.metadata.PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0+unknown"
