"""Argument checks whose messages name the argument, what was expected and what was given.

Every public entry point of scimlx validates its arguments with these. A value known at
trace time (a Python number, an array's shape) is checked at once and raises a
`ValueError`/`TypeError`; a traced value is checked with `eqx.error_if`, which raises an
`equinox.EquinoxRuntimeError` when the computation runs (also under `jit`; under `vmap`
it raises if any element fails).
"""

import math
from collections.abc import Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import ArrayLike, Real


# A tolerance: a Python number (part of the compiled program: a new value recompiles) or a
# scalar array (a value: new values reuse the program).
Tolerance = float | Real[ArrayLike, ""]


def _is_static(x: Any) -> bool:
    """Whether the value of `x` is known now (not a tracer)."""
    return not any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree.leaves(x))


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


def check_last_axis(name: str, x: Any, size: int, *, what: str = "") -> None:
    """Raise a `ValueError` naming `name` unless `x` has at least one axis and its last
    axis has `size` entries (the width a model was built for). `what` says where `size`
    comes from (e.g. "the model's `dim`")."""
    shape = tuple(np.shape(x))
    if len(shape) == 0 or shape[-1] != size:
        source = f" ({what})" if what else ""
        raise ValueError(
            f"`{name}` must have a last axis of size {size}{source}, got shape {shape}."
        )


def check_floating(name: str, x: Any) -> None:
    """Raise a `TypeError` naming `name` unless `x` has a floating-point dtype."""
    dtype = jnp.result_type(x)
    if not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(f"`{name}` must be a floating-point array, got dtype {dtype}.")


def check_int(name: str, value: Any, *, minimum: int | None = None) -> int:
    """Return `value` as a Python `int`, raising a `TypeError`/`ValueError` naming `name`
    unless it is an integer (not a bool) and, if given, at least `minimum`."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"`{name}` must be an integer, got {value!r}.")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"`{name}` must be an integer >= {minimum}, got {value}.")
    return value


def check_sizes(**sizes: Any) -> None:
    """Each keyword is a size (a count of channels, layers, states, ...): an integer >= 1."""
    for name, value in sizes.items():
        check_int(name, value, minimum=1)


def check_positive(name: str, value: Any, *, allow_zero: bool = False) -> None:
    """Raise a `ValueError` naming `name` unless `value` is > 0 (>= 0 with `allow_zero`).

    NaN fails. A traced value is not checked here.
    """
    if not _is_static(value):
        return
    arr = np.asarray(value)
    if allow_zero and not np.all(arr >= 0):
        raise ValueError(f"`{name}` must be non-negative, got {value}.")
    if not allow_zero and not np.all(arr > 0):
        raise ValueError(f"`{name}` must be positive, got {value}.")


def check_finite(name: str, value: Any) -> None:
    """Raise a `ValueError` naming `name` if the static `value` holds NaN or inf.

    A traced value is not checked here (see `error_if_nonfinite`).
    """
    if not _is_static(value):
        return
    arr = np.asarray(value)
    if arr.dtype.kind in "fc" and not np.all(np.isfinite(arr)):
        shown = value if arr.size <= 8 else f"an array of shape {arr.shape}"
        raise ValueError(f"`{name}` must be finite (no NaN or inf), got {shown}.")


def check_weight(name: str, value: Any) -> None:
    """A penalty weight: finite and non-negative. Static values raise now; traced ones
    (an annealed weight inside `jit`) are left to the caller."""
    check_finite(name, value)
    check_positive(name, value, allow_zero=True)


def check_tolerances(**tols: Any) -> None:
    """Each keyword (e.g. `rtol=`, `atol=`) must be a finite, non-negative number."""
    for name, value in tols.items():
        if value is None:
            continue
        check_finite(name, value)
        check_positive(name, value, allow_zero=True)


def check_controller_tolerances(controller: Any) -> None:
    """The `rtol`/`atol` of a step-size controller that has them as Python numbers must be
    finite and non-negative; the error names `stepsize_controller.rtol` (or `.atol`)."""
    check_tolerances(
        **{
            f"stepsize_controller.{name}": getattr(controller, name)
            for name in ("rtol", "atol")
            if isinstance(getattr(controller, name, None), (int, float))
        }
    )


def check_range(
    name: str,
    value: Any,
    *,
    lower: float | None = None,
    upper: float | None = None,
    lower_open: bool = False,
    upper_open: bool = False,
) -> None:
    """Raise a `ValueError` naming `name` unless the static `value` lies in the interval
    (each end closed unless `*_open`; `None` for no bound). NaN fails."""
    if not _is_static(value):
        return
    arr = np.asarray(value, dtype=float)
    ok = ~np.isnan(arr)
    if lower is not None:
        ok &= (arr > lower) if lower_open else (arr >= lower)
    if upper is not None:
        ok &= (arr < upper) if upper_open else (arr <= upper)
    if not np.all(ok):
        lo = "(-inf" if lower is None else ("(" if lower_open else "[") + f"{lower}"
        hi = "inf)" if upper is None else f"{upper}" + (")" if upper_open else "]")
        raise ValueError(f"`{name}` must lie in {lo}, {hi}, got {value}.")


def check_ordered(lo_name: str, lo: Any, hi_name: str, hi: Any, *, strict: bool = True) -> None:
    """Raise a `ValueError` unless the static values satisfy `lo < hi` (`<=` if not
    `strict`), naming both arguments."""
    if not (_is_static(lo) and _is_static(hi)):
        return
    a, b = float(np.asarray(lo)), float(np.asarray(hi))
    ok = a < b if strict else a <= b
    if not ok or math.isnan(a) or math.isnan(b):
        rel = "<" if strict else "<="
        raise ValueError(f"Need `{lo_name}` {rel} `{hi_name}`, got {lo_name}={lo}, {hi_name}={hi}.")


def check_nonempty(name: str, n: int, *, what: str = "members") -> None:
    """Raise a `ValueError` naming `name` when it holds no `what` (`n == 0`)."""
    if n <= 0:
        raise ValueError(f"`{name}` must hold at least one of its {what}, got {n}.")


def check_labels(name: str, labels: Any, n_classes: int) -> Any:
    """Integer class labels in `[0, n_classes)`.

    Static labels raise a `ValueError` now, naming the first offending value; traced ones
    return `labels` wrapped in `eqx.error_if` (raises when run).
    """
    if not jnp.issubdtype(jnp.result_type(labels), jnp.integer):
        raise TypeError(
            f"`{name}` must hold integer class labels, got dtype {jnp.result_type(labels)}."
        )
    if _is_static(labels):
        arr = np.asarray(labels)
        bad = (arr < 0) | (arr >= n_classes)
        if np.any(bad):
            raise ValueError(
                f"`{name}` must hold labels in [0, {n_classes}), got {arr[bad].reshape(-1)[0]} "
                f"({int(bad.sum())} of {arr.size} out of range)."
            )
        return labels
    return error_if_out_of_range(name, labels, 0, n_classes)


def error_if_out_of_range(name: str, x: Any, lo: int, hi: int) -> Any:
    """Return `x`, raising at run time (also under `jit`) unless `lo <= x < hi` everywhere."""
    bad = jnp.any((x < lo) | (x >= hi))
    return eqx.error_if(x, bad, f"`{name}` holds values outside [{lo}, {hi}).")


def error_if_nonfinite(name: str, x: Any) -> Any:
    """Return `x`, raising at run time (also under `jit`) if it holds NaN or inf.

    A static `x` (not a tracer) is checked at once with a `ValueError`.
    """
    if _is_static(x):
        check_finite(name, x)
        return x
    return eqx.error_if(x, ~jnp.all(jnp.isfinite(x)), f"`{name}` contains NaN or inf values.")


def check_like(name: str, x: Any, like: Any, *, what: str = "") -> None:
    """Raise a `ValueError` naming `name` unless `x` has the shape and dtype of `like` (an
    array or a `jax.ShapeDtypeStruct`); `what` says what `like` is (e.g. "the operator's
    input"). Runs at trace time."""
    shape, dtype = tuple(np.shape(x)), jnp.result_type(x)
    if shape != tuple(like.shape) or dtype != like.dtype:
        source = f" ({what})" if what else ""
        raise ValueError(
            f"`{name}` must have shape {tuple(like.shape)} and dtype {like.dtype}{source}, "
            f"got shape {shape} and dtype {dtype}."
        )
