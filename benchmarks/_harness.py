"""The shared benchmark harness: timing, memory, machine description, tables, JSON results.

Every `benchmarks/<area>.py` uses it, so that all areas time, print and record the same way
(see BENCHMARKS.md in the project notes and docs/benchmarks.md).
"""

import argparse
import importlib
import json
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax


RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def parse_args(description: str, argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Common command line: `--quick`, `--seeds N`, `--out PATH`."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--quick", action="store_true", help="small sizes; every row; <= 5 min on 2 cores"
    )
    parser.add_argument("--seeds", type=int, default=None, help="number of seeds")
    parser.add_argument("--out", default=None, help="where to write the JSON results")
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
        "cores": os.cpu_count(),
        "jax": jax.__version__,
        "python": platform.python_version(),
        "x64": bool(jax.config.jax_enable_x64),
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
    with open(out, "w") as f:
        json.dump(_jsonable(payload), f, indent=2)
    print(f"wrote {out}")
    return out
