"""Timing and memory measurements: first call apart, then the best of several runs."""

import dataclasses
import resource
import time
from typing import Any

import jax
import numpy as np

from scimlx import ensemble


@dataclasses.dataclass(frozen=True)
class Timed:
    """A timed computation: its (last) result, the best wall and process CPU seconds of the
    repeats, and the compile time (the first call's excess over the best run)."""

    result: Any
    wall_s: float
    cpu_s: float
    compile_s: float


def _timed(call, repeats: int) -> Timed:
    t0 = time.perf_counter()
    result = call()
    first = time.perf_counter() - t0
    times, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        result = call()
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    best = float(np.min(times))  # best of `repeats`: robust to other jobs on the machine
    return Timed(result, best, float(np.min(cpu)), max(first - best, 0.0))


def time_runner(fn, inputs, reducers, repeats: int, **kw) -> Timed:
    """`run_ensemble` timed; the result is an `EnsembleResult`."""
    return _timed(
        lambda: ensemble.run_ensemble(fn, inputs, reducers=reducers, progress=False, **kw),
        repeats,
    )


def time_jitted(f, x, repeats: int) -> Timed:
    """A jitted function timed; the result as a NumPy array."""
    t = _timed(lambda: jax.block_until_ready(f(x)), repeats)
    return dataclasses.replace(t, result=np.asarray(t.result))


def maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def compiled_mb(fn, *args) -> float | None:
    """XLA's memory analysis of the compiled `fn(*args)`, in MiB (`None` if unavailable)."""
    try:
        c = fn.lower(*args).compile()
        c = getattr(c, "compiled", c)
        m = c.memory_analysis()
        return (m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes) / 2**20
    except Exception:
        return None


def rel(a, b) -> float:
    """The largest relative difference of `a` from `b`."""
    a, b = np.asarray(a), np.asarray(b)
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-300)))
