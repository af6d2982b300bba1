"""The shared benchmark harness: timing, memory, machine description, tables, JSON results.

Every `benchmarks/<area>.py` uses it, so that all areas time, print and record the same way
(see BENCHMARKS.md in the project notes and docs/benchmarks.md).
"""

import argparse
import contextlib
import importlib
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax

from scimlx import atomic_write_bytes


RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def parse_args(
    description: str,
    argv: Sequence[str] | None = None,
    add: Callable[[argparse.ArgumentParser], None] | None = None,
) -> argparse.Namespace:
    """Common command line: `--quick`, `--seeds N`, `--out PATH`; `add(parser)` adds an
    area's own options."""
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="small sizes; every row; <= 5 min on 2 cores"
    )
    parser.add_argument("--seeds", type=int, default=None, help="number of seeds")
    parser.add_argument("--out", default=None, help="where to write the JSON results")
    if add is not None:
        add(parser)
    return parser.parse_args(argv)


def block(x: Any) -> Any:
    """`jax.block_until_ready` over any pytree (non-array leaves are left alone)."""
    return jax.block_until_ready(x)


def time_compiled(fn: Callable[..., Any], *args: Any, repeats: int = 5, **kwargs: Any) -> dict:
    """Time `fn(*args, **kwargs)`: the first call (compile + run) apart, then the median.

    `fn` should be jitted (or call jitted code). Every call is followed by
    `jax.block_until_ready` on its output.

    **Returns:** `{"compile_s": first call, "median_s": median of the next `repeats`,
    "min_s": ..., "times": [...], "output": output of the last call}`.
    """
    if repeats < 1:
        raise ValueError(f"`repeats` must be >= 1, got {repeats}.")
    t0 = time.perf_counter()
    out = block(fn(*args, **kwargs))
    first = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = block(fn(*args, **kwargs))
        times.append(time.perf_counter() - t0)
    return {
        "compile_s": first,
        "median_s": statistics.median(times),
        "min_s": min(times),
        "times": times,
        "output": out,
    }


def time_host(fn: Callable[..., Any], *args: Any, repeats: int = 3, **kwargs: Any) -> dict:
    """Time a host (NumPy/SciPy/PyTorch) function: median of `repeats` calls, no warm-up split."""
    times = []
    out = None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn(*args, **kwargs)
        times.append(time.perf_counter() - t0)
    return {
        "median_s": statistics.median(times),
        "min_s": min(times),
        "times": times,
        "output": out,
    }


def time_interleaved(
    fns: dict[str, tuple], rounds: int, sample_s: float = 0.02, warm: bool | float = True
) -> dict[str, dict]:
    """Time several functions in turns (round-robin), so that changes of a shared machine's
    load hit them alike; the order of the turns rotates every round.

    Works for jitted JAX functions and for host peers (NumPy, SciPy, pyamg, PyTorch) alike:
    every call is followed by `jax.block_until_ready`, which leaves non-JAX outputs alone.

    `fns`: `{name: (fn, args)}` or `{name: (fn, args, seconds_of)}`, where
    `seconds_of(output)` returns the call's own measurement of itself (e.g. a subprocess
    peer timing its solve inside the subprocess, so that the pipe does not count), used
    instead of the wall clock around the call. Each function is called once to compile
    (timed: `compile_s`), once more to size a sample: a sample is `inner` calls (each
    waited for), enough for about `sample_s` seconds, so sub-millisecond functions are not
    timed by single calls. With `warm` (default), each turn starts with one untimed call, so
    that a sample measures the function called repeatedly (as in a training loop), not the
    first call after another function freed or took memory (on a 2-core CPU, the first
    call after a mode with a large footprint was up to 5x slower). `warm` may also be a
    number of seconds: only functions whose sizing call took less get the untimed call
    (for a call of seconds, one more untimed call costs much and changes little).

    **Returns:** `{name: {"min_s", "median_s", "max_s", "times", "inner", "rounds",
    "compile_s", "output"}}` (per-call seconds; `times[r]` is round `r`'s sample, so
    samples of different functions with the same index were taken close together);
    `{}` when `fns` is empty.
    """
    if rounds < 1:
        raise ValueError(f"`rounds` must be >= 1, got {rounds}.")
    if not fns:
        return {}

    def call(name):
        fn, args, *rest = fns[name]
        t0 = time.perf_counter()
        res = block(fn(*args))
        wall = time.perf_counter() - t0
        return res, (rest[0](res) if rest and rest[0] is not None else wall), wall

    out, inner, times, warms = {}, {}, {}, {}
    for name in fns:
        res, seconds, _ = call(name)
        out[name] = dict(compile_s=seconds, output=res, rounds=rounds)
        _, _, wall = call(name)  # samples are sized by the wall clock (pipes included)
        inner[name] = int(max(1, min(200, sample_s / max(wall, 1e-7))))
        warms[name] = bool(warm) if isinstance(warm, bool) else wall < warm
        times[name] = []
    names = list(fns)
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            if warms[name]:
                call(name)  # untimed: see the docstring
            total = sum(call(name)[1] for _ in range(inner[name]))
            times[name].append(total / inner[name])
    for name in names:
        ts = times[name]
        out[name].update(
            min_s=min(ts),
            median_s=statistics.median(ts),
            max_s=max(ts),
            times=ts,
            inner=inner[name],
        )
    return out


def usable_cores() -> int:
    """The cores this process may run on: its CPU affinity (`taskset -c 0 python ...` gives 1),
    else the machine's count. XLA's CPU backend sizes its thread pool the same way."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def run_on_cores(n: int, module: str) -> None:
    """Restrict this benchmark to the machine's first `n` cores (`n <= 0`: leave it alone).

    Re-executes `python -m module` with this process's arguments under that CPU affinity (unless
    it already holds), so every thread pool (XLA's, OpenBLAS's, a subprocess peer's) is created
    inside it and sized to it. On a shared virtual machine a multi-threaded JAX program and
    single-threaded host peers react differently to a core taken away by a neighbour: on two
    cores the linsolve benchmark's same-run ratios moved by 20-45 % between runs, on one core
    the obstacle-scene ratios by under 10 % (docs/benchmarks.md gives the figures). Where
    affinity cannot be set (not Linux), it runs as it is."""
    if n <= 0 or not hasattr(os, "sched_setaffinity"):
        return
    allowed = sorted(os.sched_getaffinity(0))
    want = set(allowed[:n])
    if set(allowed) == want:
        return
    os.sched_setaffinity(0, want)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, "-m", module, *sys.argv[1:]])


@contextlib.contextmanager
def pinned_threads(n: int | None = None):
    """Pin the host peers' thread pools (OpenBLAS/MKL/OpenMP via threadpoolctl, PyTorch's
    intra-op pool) to `n` threads for the duration of the block; default: the cores this
    process may use (`usable_cores`), which is what XLA's CPU backend uses. Yields `n`, to be
    recorded as `peer_threads`."""
    if n is None:
        n = usable_cores()
    if n < 1:
        raise ValueError(f"`n` must be >= 1, got {n}.")
    stack = contextlib.ExitStack()
    with stack:
        threadpoolctl = optional_import("threadpoolctl")
        if threadpoolctl is not None:
            stack.enter_context(threadpoolctl.threadpool_limits(limits=n))
        torch = sys.modules.get("torch")  # only where a peer already uses it
        if torch is not None:
            before = torch.get_num_threads()
            torch.set_num_threads(n)
            stack.callback(torch.set_num_threads, before)
        yield n


def load_avg() -> list[float] | None:
    """The 1/5/15-minute load averages (`None` where the OS has none)."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def machine_is_busy(load: list[float] | None = None) -> bool:
    """`True` when the 1-minute load average exceeds the number of cores: timings taken now
    are inflated, and ratios of host peers to JAX are less reliable."""
    load = load_avg() if load is None else load
    return bool(load) and load[0] > (os.cpu_count() or 1)


def peak_memory_bytes(jitted: Callable[..., Any], *args: Any, **kwargs: Any) -> int | None:
    """Peak device memory of one call, from the compiled executable's memory analysis.

    `jitted` must have `.lower` (a `jax.jit` or `eqx.filter_jit` function). Returns
    arguments + outputs + temporaries in bytes, or `None` where the backend gives no
    analysis.
    """
    try:
        compiled = jitted.lower(*args, **kwargs).compile()
        analysis = compiled.memory_analysis()
    except Exception:
        return None
    if analysis is None:
        return None
    fields = ("argument_size_in_bytes", "output_size_in_bytes", "temp_size_in_bytes")
    try:
        return int(sum(getattr(analysis, f) for f in fields))
    except AttributeError:
        return None


def machine() -> dict:
    """A description of where the benchmark ran."""
    dev = jax.devices()[0]
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "platform": dev.platform,
        "device": getattr(dev, "device_kind", str(dev)),
        "cpu": cpu,
        "cores": usable_cores(),
        "machine_cores": os.cpu_count(),
        "jax": jax.__version__,
        "python": platform.python_version(),
        "x64": bool(jax.config.jax_enable_x64),
        "load_avg": load_avg(),
        "busy": machine_is_busy(),
    }


def optional_import(name: str):
    """Import an optional peer; `None` if it is not installed (the row then says so)."""
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


NOT_INSTALLED = "not installed"


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if v != v:
            return "nan"
        if v == 0:
            return "0"
        a = abs(v)
        if a >= 1e4 or a < 1e-3:
            return f"{v:.2e}"
        return f"{v:.4g}"
    return str(v)


def format_table(rows: list[dict], columns: list[str], title: str | None = None) -> str:
    """A plain-text table: one line per row, one column per key."""
    cells = [[_fmt(r.get(c)) for c in columns] for r in rows]
    widths = [
        max(len(c), *(len(row[i]) for row in cells)) if cells else len(c)
        for i, c in enumerate(columns)
    ]
    lines = []
    if title:
        lines.append(title)
    lines.append("  ".join(c.rjust(w) for c, w in zip(columns, widths, strict=True)))
    lines.append("  ".join("-" * w for w in widths))
    for row in cells:
        lines.append("  ".join(v.rjust(w) for v, w in zip(row, widths, strict=True)))
    return "\n".join(lines)


def print_table(rows: list[dict], columns: list[str], title: str | None = None) -> None:
    """Print [`format_table`][]'s table, followed by a blank line."""
    print(format_table(rows, columns, title))
    print(flush=True)


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if hasattr(x, "item") and getattr(x, "ndim", 1) == 0:
        return x.item()
    if isinstance(x, float) and x != x:
        return None
    if isinstance(x, (str, int, float, bool)) or x is None:
        return x
    return str(x)


def write_results(
    area: str,
    mode: str,
    rows: list[dict],
    summary: dict,
    *,
    out: str | None = None,
    extra: dict | None = None,
) -> str:
    """Write `benchmarks/results/<area>.json` (`<area>.quick.json` in quick mode).

    The JSON holds `area`, `mode`, `machine`, `rows` and `summary` as BENCHMARKS.md asks.
    """
    if mode not in ("quick", "full"):
        raise ValueError(f"`mode` must be 'quick' or 'full', got {mode!r}.")
    payload = {
        "area": area,
        "mode": mode,
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": machine(),
        "rows": [{k: v for k, v in r.items() if k != "output"} for r in rows],
        "summary": summary,
    }
    if extra:
        payload.update(extra)
    if out is None:
        os.makedirs(RESULTS_DIR, exist_ok=True)
        suffix = ".quick.json" if mode == "quick" else ".json"
        out = os.path.join(RESULTS_DIR, area + suffix)
    # atomic: a run killed while writing leaves the previous results file whole
    atomic_write_bytes(out, json.dumps(_jsonable(payload), indent=2).encode())
    print(f"wrote {out}")
    return out
