"""A small progress meter for Python loops and for jitted code (through host callbacks)."""

import math
import os
import sys
import time
from typing import Any

import jax
import numpy as np


def _enabled() -> bool:
    return os.environ.get("SCIMLX_PROGRESS", "1") not in ("0", "false", "False", "")


def _fmt_seconds(s: float) -> str:
    if not math.isfinite(s):
        return "?"
    s = int(round(s))
    m, s = divmod(s, 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


def _fmt_value(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3g}"
    try:
        f = float(v)
    except (TypeError, ValueError):
        return str(v)
    return f"{f:.3g}" if not float(f).is_integer() else str(int(f))


class ProgressBar:
    """A progress meter: `done/total`, rate, elapsed time, ETA and named figures.

    Use it around a Python loop:

    ```python
    with scimlx.ProgressBar(total=1000, desc="train") as bar:
        for step in range(1000):
            ...
            bar.update(loss=loss)
    ```

    or from inside `jax.jit`-compiled code with `bar.tick(n)`, which reports through a
    host callback (as diffrax's progress meters do), so the bar moves while the compiled
    loop runs.

    Writes to standard error: a single refreshed line on a terminal, at most about
    `lines` lines otherwise (logs, CI). Set the environment variable `SCIMLX_PROGRESS=0`
    to silence every bar.

    **Arguments:**

    - `total`: the number of units of work (steps, members, chunks). Must be >= 0.
    - `desc`: a short label printed in front of the bar.
    - `unit`: the name of a unit, printed with the rate.
    - `lines`: in non-terminal output, roughly how many lines to print in all.
    - `file`: where to write; standard error by default.
    - `disable`: force the bar off.
    - `initial`: units already done (a resumed run); the bar says it resumes there.
    - `note`: printed once when the bar starts, e.g. `"compiling..."` before a jitted
      loop's first step, so a long first wait is explained.

    The rate and the ETA are measured from the first update on, so the first unit of work,
    which usually includes JAX's compilation, does not distort them.
    """

    def __init__(
        self,
        total: int,
        desc: str = "",
        *,
        unit: str = "it",
        lines: int = 10,
        file: Any = None,
        disable: bool = False,
        initial: int = 0,
        note: str | None = None,
    ):
        if total < 0:
            raise ValueError(f"`total` must be non-negative, got {total}.")
        if not 0 <= initial <= total:
            raise ValueError(f"`initial` must be in [0, total={total}], got {initial}.")
        self.total = int(total)
        self.desc = desc
        self.unit = unit
        self.n = int(initial)
        self.postfix: dict[str, Any] = {}
        self.file = sys.stderr if file is None else file
        self.disable = disable or not _enabled()
        self._tty = bool(getattr(self.file, "isatty", lambda: False)())
        self._every = max(1, self.total // max(lines, 1)) if self.total else 1
        self._next_print = self._every
        self._start = time.perf_counter()
        self._last_draw = 0.0
        self._ref: tuple[float, int] | None = None  # (time, count) at the first update
        self.closed = False
        if not self.disable:
            desc_ = f"{self.desc}: " if self.desc else ""
            if initial:
                print(f"{desc_}resuming at {initial}/{total}", file=self.file, flush=True)
            if note:
                print(f"{desc_}{note}", file=self.file, flush=True)

    # --- Python side -------------------------------------------------------------
    def update(self, n: int = 1, **postfix: Any) -> None:
        """Advance by `n` units and record named figures shown after the bar."""
        self.n += int(n)
        if self._ref is None:
            self._ref = (time.perf_counter(), self.n)
        if postfix:
            self.postfix.update(postfix)
        if self.disable:
            return
        now = time.perf_counter()
        if self._tty:
            if now - self._last_draw > 0.1 or self.n >= self.total:
                self._draw(now)
        elif self.n >= self._next_print or self.n >= self.total:
            while self._next_print <= self.n:
                self._next_print += self._every
            self._draw(now)

    def set_postfix(self, **postfix: Any) -> None:
        """Record named figures without advancing."""
        self.postfix.update(postfix)

    def line(self) -> str:
        """The current text of the bar."""
        now = time.perf_counter()
        elapsed = now - self._start
        rate = float("nan")
        if self._ref is not None and self.n > self._ref[1] and now > self._ref[0]:
            rate = (self.n - self._ref[1]) / (now - self._ref[0])
        remaining = (self.total - self.n) / rate if rate > 0 else float("nan")
        rate_s = f"{rate:.3g}" if math.isfinite(rate) else "?"
        frac = self.n / self.total if self.total else 1.0
        width = 20
        filled = int(round(width * min(frac, 1.0)))
        bar = "#" * filled + "-" * (width - filled)
        extras = " ".join(f"{k}={_fmt_value(v)}" for k, v in self.postfix.items())
        desc = f"{self.desc}: " if self.desc else ""
        return (
            f"{desc}{100 * frac:3.0f}% |{bar}| {self.n}/{self.total} "
            f"[{_fmt_seconds(elapsed)}<{_fmt_seconds(remaining)}, {rate_s} {self.unit}/s]"
            + (f" {extras}" if extras else "")
        )

    def _draw(self, now: float) -> None:
        self._last_draw = now
        end = "\r" if self._tty else "\n"
        print(self.line(), end=end, file=self.file, flush=True)

    def close(self) -> None:
        """Finish the bar (prints its final state once)."""
        if self.closed:
            return
        self.closed = True
        if not self.disable:
            if self._tty:
                print(self.line(), file=self.file, flush=True)
            elif self.n < self._next_print - self._every or self.n == 0:
                print(self.line(), file=self.file, flush=True)

    def __enter__(self) -> "ProgressBar":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- inside jit ----------------------------------------------------------------
    def tick(self, n=1) -> None:
        """Advance by `n` from inside traced (jitted, scanned) code via a host callback.

        Under `jax.vmap` the callback sees the batched `n`; the bar advances once per
        call, by the largest entry of the batch.
        """

        def _cb(k):
            self.update(int(np.max(np.asarray(k))))

        jax.debug.callback(_cb, n, ordered=True)
