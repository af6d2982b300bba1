"""The compiled part of a study: one chunk of members -> chunk statistics and result codes."""

import functools
from collections.abc import Callable, Mapping
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from .._core._results import code_of, enumeration_of, is_result, RESULTS
from ._reducers import AbstractReducer
from ._schedule import AbstractSchedule, VmapSchedule
from ._strategy import AbstractStrategy, ShardMap


class ChunkSpec(eqx.Module):
    """Everything static about how one chunk is evaluated (hashable: the jit cache key)."""

    fn: Callable
    reducers: tuple[AbstractReducer, ...]
    result_fn: Callable | None
    save_fn: Callable | None
    schedule: AbstractSchedule
    mesh: Mesh | None = eqx.field(static=True)
    strategy: AbstractStrategy
    n_codes: int = eqx.field(static=True)
    nonfinite_code: int = eqx.field(static=True)


def _code_of(res) -> jax.Array:
    if res is None:
        return jnp.zeros((), jnp.int32)
    if not is_result(res):
        dtype = jnp.result_type(res)
        if not jnp.issubdtype(dtype, jnp.integer) or jnp.ndim(res) != 0:
            raise TypeError(
                "`result` must return one member's RESULTS item or a scalar integer code, got "
                f"{dtype} of shape {jnp.shape(res)}."
            )
    return code_of(res)


def _result_of(spec: ChunkSpec, out):
    if spec.result_fn is not None:
        return spec.result_fn(out)
    res = getattr(out, "result", None)
    return res if is_result(res) else None


def _quantity(reducer: AbstractReducer, out):
    q = out if reducer.of is None else reducer.of(out)
    return eqx.filter(q, eqx.is_inexact_array)


def _post(spec: ChunkSpec, out):
    """One member's output -> (reduced quantities, result code, what to save)."""
    code = _code_of(_result_of(spec, out))
    qs = tuple(_quantity(r, out) for r in spec.reducers)
    finite = jnp.array(True)
    for leaf in jax.tree.leaves(qs):
        finite = finite & jnp.all(jnp.isfinite(leaf))
    # A "successful" member whose values are NaN/inf is a failure: it must not poison.
    code = jnp.where((code == 0) & jnp.invert(finite), jnp.int32(spec.nonfinite_code), code)
    saved = None if spec.save_fn is None else eqx.filter(spec.save_fn(out), eqx.is_array)
    return qs, code, saved


def _evaluate(spec: ChunkSpec, xs, valid):
    """The members of (one device's part of) a chunk -> per-member (qs, code, saved)."""
    return spec.schedule.evaluate(spec.fn, xs, valid, functools.partial(_post, spec))


def _distributed(spec: ChunkSpec, xs):
    """`_evaluate` split over the devices of `spec.mesh`, and the inputs to give it."""
    f = functools.partial(_evaluate, spec)
    if spec.mesh is None:
        return f, xs
    return spec.strategy.distribute(f, spec.mesh, xs)


def chunk(spec: ChunkSpec, xs, valid):
    """One (padded) chunk -> ({reducer chunk states, code counts}, (saved, codes))."""
    f, xs = _distributed(spec, xs)
    qs, codes, saved = f(xs, valid)
    counts = jnp.zeros((spec.n_codes,), jnp.int32).at[codes].add(valid.astype(jnp.int32))
    w = valid & (codes == 0)
    states = tuple(
        tuple(r.chunk(leaf, w) for leaf in jax.tree.leaves(q)) for r, q in zip(spec.reducers, qs)
    )
    return {"states": states, "counts": counts}, (saved, codes)


chunk_jit = eqx.filter_jit(chunk)


def _cost_chunk(cost_fn, xs):
    dtype = jnp.float64 if jax.config.jax_enable_x64 else jnp.float32
    return jax.vmap(lambda x: jnp.asarray(cost_fn(x)).astype(dtype))(xs)


cost_jit = eqx.filter_jit(_cost_chunk)


_PROBE_CACHE: dict = {}


def probe(spec: ChunkSpec, member0):
    """One abstract evaluation of a member: its `RESULTS` enumeration and the tree
    structure of each reducer's quantity. Cached, so repeated studies skip the trace."""
    try:
        key = (spec, jax.tree.structure(member0), tuple(jax.tree.leaves(member0)))
        hash(key)
    except TypeError:
        key = None
    if key is not None and key in _PROBE_CACHE:
        return _PROBE_CACHE[key]

    def f(x):
        out = spec.fn(x)
        return _result_of(spec, out), tuple(_quantity(r, out) for r in spec.reducers)

    res, qs = eqx.filter_eval_shape(f, member0)
    enum = enumeration_of(res) if is_result(res) else RESULTS
    value = (enum, tuple(jax.tree.structure(q) for q in qs))
    if key is not None:
        if len(_PROBE_CACHE) > 64:
            _PROBE_CACHE.clear()
        _PROBE_CACHE[key] = value
    return value


def take(x, idx):
    """Members `idx` of one input leaf (NumPy stays NumPy)."""
    if isinstance(x, np.ndarray):
        return x[idx]
    return jnp.asarray(x)[jnp.asarray(idx)]


def _compiled_bytes(spec, xs, valid) -> int:
    compiled = chunk_jit.lower(spec, xs, valid).compile()
    compiled = getattr(compiled, "compiled", compiled)  # equinox wraps jax's Compiled
    m = compiled.memory_analysis()
    if m is None:
        raise RuntimeError("The backend gives no memory analysis; pass `chunk_size`.")
    return int(
        m.argument_size_in_bytes
        + m.output_size_in_bytes
        + m.temp_size_in_bytes
        - getattr(m, "alias_size_in_bytes", 0)
    )


def _memory_spec(fn, reducers, schedule) -> ChunkSpec:
    platform = jax.local_devices()[0].platform
    schedule = (VmapSchedule() if schedule is None else schedule).resolved(fn, platform)
    reducers = tuple((reducers or {}).values())
    return ChunkSpec(fn, reducers, None, None, schedule, None, ShardMap(), 64, 0)


def chunk_memory(
    fn: Callable,
    example: Any,
    *,
    reducers: Mapping[str, AbstractReducer] | None = None,
    schedule: AbstractSchedule | None = None,
) -> int:
    """Bytes of the compiled evaluation of one chunk on one device.

    **Arguments:**

    - `fn`: the member function.
    - `example`: the chunk's inputs (a pytree with a leading member axis).
    - `reducers`: the study's reducers (their chunk states count too).
    - `schedule`: `VmapSchedule()` (default) or `RefillSchedule(...)`.

    **Returns:**

    XLA's memory analysis of the compiled chunk: arguments + outputs + temporaries.
    """
    n = int(np.shape(jax.tree.leaves(example)[0])[0])
    spec = _memory_spec(fn, reducers, schedule)
    return _compiled_bytes(spec, example, jnp.ones((n,), bool))


def chunk_size_for_budget(
    fn: Callable,
    example: Any,
    memory_budget: int,
    *,
    reducers: Mapping[str, AbstractReducer] | None = None,
    n_devices: int = 1,
    max_chunk: int | None = None,
) -> int:
    """The largest chunk whose compiled evaluation fits in `memory_budget` bytes.

    Compiles the chunk computation (the vmapped `fn` plus the chunk statistics) for two
    small batch sizes, reads XLA's memory analysis (arguments + outputs + temporaries),
    and extrapolates linearly: `bytes(b) = fixed + b * per_member`.

    **Arguments:**

    - `fn`: the member function.
    - `example`: the inputs of a few members (leading axis), e.g. the study's inputs.
    - `memory_budget`: bytes available to one chunk on each device.
    - `reducers`: the study's reducers (their chunk states count too).
    - `n_devices`: devices a chunk is split over (the budget is per device).
    - `max_chunk`: an upper bound (e.g. the member count).

    **Returns:**

    A chunk size, a multiple of `n_devices`, at least `n_devices`.
    """
    spec = _memory_spec(fn, reducers, None)
    b1, b2 = 1, 17
    x1 = jax.tree.map(lambda x: take(x, np.zeros(b1, np.int64)), example)
    x2 = jax.tree.map(lambda x: take(x, np.zeros(b2, np.int64)), example)
    m1 = _compiled_bytes(spec, x1, jnp.ones((b1,), bool))
    m2 = _compiled_bytes(spec, x2, jnp.ones((b2,), bool))
    per = max((m2 - m1) / (b2 - b1), 1.0)
    fixed = max(m1 - b1 * per, 0.0)
    per_device = int(max((memory_budget - fixed) // per, 1))
    size = per_device * n_devices
    if max_chunk is not None:
        size = min(size, int(max_chunk))
    return max(n_devices, (size // n_devices) * n_devices)
