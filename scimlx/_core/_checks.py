"""Argument checks whose messages name the argument and what was expected."""

from collections.abc import Sequence
from typing import Any

import equinox as eqx
import jax.numpy as jnp
import numpy as np


def check_shape(name: str, x: Any, shape: Sequence[int | None]) -> None:
    """Raise a `ValueError` naming `name` unless `x.shape` matches `shape`.

    `None` in `shape` matches any size on that axis. Runs at trace time.
    """
    actual = tuple(np.shape(x))
    expected = tuple(shape)
    ok = len(actual) == len(expected) and all(e is None or a == e for a, e in zip(actual, expected))
    if not ok:
        shown = "(" + ", ".join("*" if e is None else str(e) for e in expected) + ")"
        raise ValueError(f"`{name}` must have shape {shown}, got {actual}.")


def check_ndim(name: str, x: Any, ndim: int | Sequence[int]) -> None:
    """Raise a `ValueError` naming `name` unless `x` has `ndim` dimensions."""
    allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
    if np.ndim(x) not in allowed:
        want = " or ".join(str(a) for a in allowed)
        raise ValueError(f"`{name}` must have {want} dimensions, got shape {tuple(np.shape(x))}.")


def check_floating(name: str, x: Any) -> None:
    """Raise a `TypeError` naming `name` unless `x` has a floating-point dtype."""
    dtype = jnp.result_type(x)
    if not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(f"`{name}` must be a floating-point array, got dtype {dtype}.")


def check_positive(name: str, value: float, *, allow_zero: bool = False) -> None:
    """Raise a `ValueError` naming `name` unless the Python number `value` is > 0 (>= 0)."""
    if allow_zero and not value >= 0:
        raise ValueError(f"`{name}` must be non-negative, got {value}.")
    if not allow_zero and not value > 0:
        raise ValueError(f"`{name}` must be positive, got {value}.")


def error_if_nonfinite(name: str, x: Any) -> Any:
    """Return `x`, raising at run time (also under `jit`) if it holds NaN or inf."""
    return eqx.error_if(x, ~jnp.all(jnp.isfinite(x)), f"`{name}` contains NaN or inf values.")
