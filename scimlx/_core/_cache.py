"""A persistent compilation cache for scimlx's programs (JAX's own, configured)."""

import os
import pathlib

import jax


_ENV = "SCIMLX_COMPILATION_CACHE"
_OFF = ("0", "off", "false", "no", "")
_MAX_BYTES = 2 * 2**30  # bounded: eviction on, and with it JAX's cross-process file lock


def default_cache_dir() -> pathlib.Path:
    """The platform's user cache directory for scimlx's compiled programs:
    `$XDG_CACHE_HOME/scimlx/jax` (`~/.cache/scimlx/jax` when unset) on Linux,
    `~/Library/Caches/scimlx/jax` on macOS, `%LOCALAPPDATA%\\scimlx\\jax` on Windows."""
    if os.name == "nt":
        base = pathlib.Path(os.environ.get("LOCALAPPDATA", pathlib.Path.home() / "AppData/Local"))
    elif os.uname().sysname == "Darwin":
        base = pathlib.Path.home() / "Library" / "Caches"
    else:
        base = pathlib.Path(os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache")
    return base / "scimlx" / "jax"


def enable_compilation_cache(
    path: str | os.PathLike | None = None, *, min_compile_seconds: float = 0.2
) -> pathlib.Path | None:
    """Keep compiled XLA programs on disk, so that a new process skips recompiling them.

    JAX compiles every jitted program on its first call; for scimlx's solvers and training
    steps this takes seconds to minutes on a small CPU, and is paid again in every new
    process. This switches on JAX's persistent compilation cache for the whole process.
    `scimlx tour` turns it on by default; library users opt in by calling this (or by
    setting the environment variable `SCIMLX_COMPILATION_CACHE` to a directory before
    `import scimlx`), since the setting applies to every JAX program of the process, not
    only to scimlx's.

    The cache holds at most 2 GiB (least recently used entries are evicted), and every read
    and write takes JAX's file lock, so several processes can share one directory. Entries
    are keyed by the program, the JAX/XLA versions and the device, so a stale entry is never
    used for a changed program.

    **Arguments:**

    - `path`: the cache directory. Default: the environment variable
      `SCIMLX_COMPILATION_CACHE` if it names a directory, else [`scimlx.default_cache_dir`][]'s.
      The variable set to `0`/`off` disables the cache (this function then returns `None`).
    - `min_compile_seconds`: programs that compiled faster than this are not stored (JAX's
      own default, 1 s, misses the many sub-second programs that add up in a short script).

    **Returns:** the directory in use, or `None` when disabled.
    """
    if not min_compile_seconds >= 0:
        raise ValueError(f"`min_compile_seconds` must be >= 0, got {min_compile_seconds}.")
    if path is None:
        env = os.environ.get(_ENV)
        if env is not None and env.strip().lower() in _OFF:
            return None
        path = env or default_cache_dir()
    directory = pathlib.Path(path).expanduser()
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ValueError(f"`path`: cannot create the compilation cache directory {directory}: {e}")
    if not os.access(directory, os.W_OK):
        raise ValueError(f"`path`: the compilation cache directory {directory} is not writable.")
    jax.config.update("jax_compilation_cache_dir", str(directory))
    jax.config.update("jax_compilation_cache_max_size", _MAX_BYTES)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", float(min_compile_seconds))
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return directory


def compilation_cache_from_env() -> None:
    """Called at `import scimlx`: enable the cache if `SCIMLX_COMPILATION_CACHE` names a
    directory (opt-in for library use)."""
    env = os.environ.get(_ENV)
    if env is not None and env.strip().lower() not in _OFF:
        enable_compilation_cache(env)
