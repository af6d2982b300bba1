"""Digests that tell two studies, runs or caches apart: of a pytree's structure, of its
array contents, and of a function (its code, and the values its closure captured)."""

import dataclasses
import functools
import hashlib
import types
from typing import Any

import jax
import numpy as np


def _leaf_array(x: Any) -> np.ndarray | None:
    if isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
        x = jax.random.key_data(x)
    if isinstance(x, (jax.Array, np.ndarray, np.generic)):
        return np.asarray(x)
    return None


def tree_signature(tree: Any) -> str:
    """A digest of the structure of `tree`'s array leaves: their paths, shapes and dtypes
    (not their values, nor static fields)."""
    h = hashlib.sha256()
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        arr = _leaf_array(leaf)
        if arr is None:
            continue
        h.update(f"{jax.tree_util.keystr(path)}|{arr.shape}|{arr.dtype};".encode())
    return h.hexdigest()[:16]


def tree_digest(tree: Any) -> str:
    """A digest of `tree`'s array leaves, values included (and of its scalars)."""
    h = hashlib.sha256()
    _update(h, tree, set(), 0)
    return h.hexdigest()[:16]


def callable_digest(fn: Any) -> str:
    """A digest of a function or callable pytree: for a pytree (e.g. an `eqx.Module`)
    its array leaves; for a Python function its code and, recursively, the values its
    closure, defaults and bound `self` hold. Global variables are not covered."""
    h = hashlib.sha256()
    _update(h, fn, set(), 0)
    return h.hexdigest()[:16]


def _update(h, obj: Any, seen: set, depth: int) -> None:
    if depth > 12:
        h.update(b"<deep>")
        return
    arr = _leaf_array(obj)
    if arr is not None:
        h.update(f"a{arr.shape}{arr.dtype}".encode())
        h.update(np.ascontiguousarray(arr).tobytes())
        return
    if obj is None or isinstance(obj, (bool, int, float, complex, str, bytes)):
        h.update(f"{type(obj).__name__}:{obj!r};".encode())
        return
    if id(obj) in seen:
        h.update(b"<seen>")
        return
    seen.add(id(obj))
    if isinstance(obj, types.CodeType):
        h.update(obj.co_code)
        for c in obj.co_consts:
            _update(h, c, seen, depth + 1)
        h.update(repr(obj.co_names).encode())
        return
    if isinstance(obj, (types.FunctionType, types.MethodType)):
        fn = obj.__func__ if isinstance(obj, types.MethodType) else obj
        h.update(f"fn:{fn.__module__}.{fn.__qualname__};".encode())
        _update(h, fn.__code__, seen, depth + 1)
        for cell in fn.__closure__ or ():
            try:
                _update(h, cell.cell_contents, seen, depth + 1)
            except ValueError:  # an empty cell
                h.update(b"<empty>")
        _update(h, fn.__defaults__, seen, depth + 1)
        _update(h, fn.__kwdefaults__, seen, depth + 1)
        if isinstance(obj, types.MethodType):
            _update(h, obj.__self__, seen, depth + 1)
        return
    if isinstance(obj, (types.BuiltinFunctionType, type, types.ModuleType)):
        h.update(f"{getattr(obj, '__module__', '')}.{getattr(obj, '__qualname__', obj)};".encode())
        return
    if isinstance(obj, dict):
        h.update(b"{")
        for k in sorted(obj, key=repr):
            h.update(repr(k).encode())
            _update(h, obj[k], seen, depth + 1)
        h.update(b"}")
        return
    if isinstance(obj, (list, tuple)) and not hasattr(obj, "_fields"):
        h.update(f"{type(obj).__name__}[".encode())
        for x in obj:
            _update(h, x, seen, depth + 1)
        h.update(b"]")
        return
    # Pytrees (equinox Modules, named tuples, functools.partial, ...): their leaves, with
    # non-array leaves (functions, static fields) hashed as above.
    h.update(f"{type(obj).__module__}.{type(obj).__qualname__}(".encode())
    leaves, treedef = jax.tree_util.tree_flatten(obj)
    if len(leaves) == 1 and leaves[0] is obj:
        if isinstance(obj, functools.partial):
            _update(h, (obj.func, obj.args, obj.keywords), seen, depth + 1)
        elif callable(obj) and hasattr(obj, "__call__"):
            _update(h, getattr(type(obj), "__call__", None), seen, depth + 1)
            _update(h, getattr(obj, "__dict__", None), seen, depth + 1)
        h.update(b")")
        return
    for leaf in leaves:
        _update(h, leaf, seen, depth + 1)
    for static in _static_fields(obj):
        _update(h, static, seen, depth + 1)
    h.update(b")")


def _static_fields(obj: Any) -> list:
    if not dataclasses.is_dataclass(obj):
        return []
    out = []
    for f in dataclasses.fields(obj):
        if f.metadata.get("static", False):
            out.append(getattr(obj, f.name, None))
    return out
