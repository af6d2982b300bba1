"""The ensemble runner: chunked, vmapped, sharded, resumable evaluation of many members."""

import functools
import json
import math
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from jaxtyping import Array, ArrayLike, Key, PyTree, Real, Shaped

from .._core._checks import check_int
from .._core._fingerprint import callable_digest, tree_digest
from .._core._progress import ProgressBar
from .._core._results import code_names, code_of, enumeration_of, is_result, RESULTS
from ._reducers import AbstractReducer, Quantiles
from ._refill import DiffEqMember, refill_batch
from ._store import (
    digest_of,
    load_arrays,
    load_json,
    save_arrays,
    save_json,
    Store,
    StoreCorruptionError,
)


_AXIS = "members"


# ------------------------------------------------------------------------------------
# The compiled part: one chunk.
# ------------------------------------------------------------------------------------


class _Spec(eqx.Module):
    """Everything static about how one chunk is evaluated (hashable: the jit cache key)."""

    fn: Callable
    reducers: tuple[AbstractReducer, ...]
    result_fn: Callable | None
    save_fn: Callable | None
    mesh: Mesh | None = eqx.field(static=True)
    strategy: str = eqx.field(static=True)
    n_codes: int = eqx.field(static=True)
    nonfinite_code: int = eqx.field(static=True)
    schedule: str = eqx.field(static=True, default="vmap")
    lanes: int = eqx.field(static=True, default=0)
    refill_fraction: float = eqx.field(static=True, default=1 / 16)


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


def _result_of(spec: _Spec, out):
    if spec.result_fn is not None:
        return spec.result_fn(out)
    res = getattr(out, "result", None)
    return res if is_result(res) else None


def _quantity(reducer: AbstractReducer, out):
    q = out if reducer.of is None else reducer.of(out)
    return eqx.filter(q, eqx.is_inexact_array)


def _member(spec: _Spec, x):
    return _post(spec, spec.fn(x))


def _post(spec: _Spec, out):
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


def _evaluate(spec: _Spec, xs, valid):
    """The members of (one device's part of) a chunk -> per-member (qs, code, saved)."""
    if spec.schedule == "refill":
        # Lane refill: `lanes` members in flight, a finished lane loads the next member.
        # Padding members (valid is a prefix) are never solved.
        n_valid = jnp.sum(valid.astype(jnp.int32))
        outs, _ = refill_batch(
            spec.fn, xs, n_valid, lanes=spec.lanes, refill_fraction=spec.refill_fraction
        )
        return eqx.filter_vmap(lambda out: _post(spec, out), in_axes=eqx.if_array(0))(outs)
    return jax.vmap(lambda x: _member(spec, x))(xs)


def _chunk(spec: _Spec, xs, valid):
    f = functools.partial(_evaluate, spec)
    if spec.mesh is not None:
        if spec.strategy == "shard_map":
            # Each device runs its own loops: no cross-device stop condition.
            f = jax.shard_map(
                f,
                mesh=spec.mesh,
                in_specs=(PartitionSpec(_AXIS), PartitionSpec(_AXIS)),
                out_specs=PartitionSpec(_AXIS),
                check_vma=False,
            )
        else:  # "auto": let XLA's SPMD partitioner split the vmapped computation.
            sharding = NamedSharding(spec.mesh, PartitionSpec(_AXIS))
            xs = jax.tree.map(lambda x: jax.lax.with_sharding_constraint(x, sharding), xs)
    qs, codes, saved = f(xs, valid)
    counts = jnp.zeros((spec.n_codes,), jnp.int32).at[codes].add(valid.astype(jnp.int32))
    w = valid & (codes == 0)
    states = tuple(
        tuple(r.chunk(leaf, w) for leaf in jax.tree.leaves(q)) for r, q in zip(spec.reducers, qs)
    )
    return {"states": states, "counts": counts}, (saved, codes)


_chunk_jit = eqx.filter_jit(_chunk)


def _cost_chunk(cost_fn, xs):
    return jax.vmap(
        lambda x: jnp.asarray(cost_fn(x)).astype(
            jnp.float64 if jax.config.jax_enable_x64 else jnp.float32
        )
    )(xs)  # noqa: E501


_cost_jit = eqx.filter_jit(_cost_chunk)


# ------------------------------------------------------------------------------------
# Results.
# ------------------------------------------------------------------------------------


class EnsembleResult(eqx.Module):
    """The outcome of an ensemble study.

    **Fields:**

    - `stats`: a dict, reducer name -> the statistic, with the structure of the
      reducer's quantity (`of(output)`, its floating leaves) and NumPy array leaves.
    - `failures`: a dict, `RESULTS` member name -> number of members that ended with it
      (only non-zero counts, `successful` excluded). Failed members are excluded from
      every statistic.
    - `n_members`: the number of members in the study.
    - `n_successful`: how many of them succeeded (and so entered the statistics).
    - `n_chunks`, `chunk_size`: how the study was split.
    - `n_devices`, `n_processes`: devices per process and processes that shared it.
    - `computed_chunks`: chunks computed by this call (the rest were read back from
      `store`).
    - `wall_s`: wall-clock seconds of this call, compile included.
    """

    stats: dict
    failures: dict
    n_members: int
    n_successful: int
    n_chunks: int
    chunk_size: int
    n_devices: int
    n_processes: int
    computed_chunks: int
    wall_s: float

    @property
    def members_per_s(self) -> float:
        """Members computed per second of wall time in this call."""
        done = min(self.n_members, self.computed_chunks * self.chunk_size)
        return done / self.wall_s if self.wall_s > 0 else float("nan")


# ------------------------------------------------------------------------------------
# Helpers.
# ------------------------------------------------------------------------------------


def _leading(tree) -> int:
    leaves = jax.tree.leaves(tree)
    if not leaves:
        raise ValueError("`inputs` has no array leaves.")
    sizes = {int(jnp.shape(x)[0]) if jnp.ndim(x) > 0 else -1 for x in leaves}
    if -1 in sizes:
        raise ValueError("Every leaf of `inputs` needs a leading member axis; found a scalar.")
    if len(sizes) != 1:
        raise ValueError(f"The leaves of `inputs` disagree on the member count: {sorted(sizes)}.")
    return sizes.pop()


def _take(x, idx):
    if isinstance(x, np.ndarray):
        return x[idx]
    return jnp.asarray(x)[jnp.asarray(idx)]


def _slice_chunk(inputs, contiguous: bool, start: int, stop: int, idx) -> tuple[Any, int]:
    if contiguous:
        return jax.tree.map(lambda x: x[start:stop], inputs), stop - start
    return jax.tree.map(lambda x: _take(x, idx), inputs), stop - start


def _pad_chunk(xs, n_valid: int, size: int):
    """Pad a chunk to `size` members by repeating its last member (masked out later)."""
    if n_valid == size:
        return xs
    idx = np.concatenate([np.arange(n_valid), np.full(size - n_valid, n_valid - 1)])
    return jax.tree.map(lambda x: _take(x, idx), xs)


def _default_chunk_per_device(mesh) -> int:
    # Measured (benchmarks/ensemble.py): on a 2-core CPU vmapped adaptive solves of small
    # systems run fastest at 1-2k members per chunk (the loop state stays in cache). On a
    # GPU each step of the batched loop costs about the same whatever the batch (kernel
    # launches), so a chunk should be as large as memory allows: pass `memory_budget`
    # for large members.
    dev = jax.local_devices()[0] if mesh is None else mesh.devices.reshape(-1)[0]
    return 2048 if dev.platform == "cpu" else 2**20


def _platform(mesh) -> str:
    dev = jax.local_devices()[0] if mesh is None else mesh.devices.reshape(-1)[0]
    return dev.platform


def _default_lanes(mesh) -> int:
    # Measured (benchmarks/ensemble.py, the lanes rows): on a 2-core CPU the refill loop
    # of a small adaptive ODE did the most members per CPU second at 1024-2048 lanes (8%
    # more than 512). On accelerators the cost of a step hardly depends on the lane
    # count, so many lanes.
    return 1024 if _platform(mesh) == "cpu" else 2**16


def _default_devices():
    return list(jax.local_devices())


def _mesh_from(mesh, devices) -> Mesh | None:
    if mesh is not None:
        if devices is not None:
            raise ValueError("Pass at most one of `mesh` and `devices`.")
        if tuple(mesh.axis_names) != (_AXIS,):
            mesh = Mesh(np.asarray(mesh.devices).reshape(-1), (_AXIS,))
        return mesh if mesh.devices.size > 1 else None
    devices = _default_devices() if devices is None else list(devices)
    if len(devices) <= 1:
        return None
    return Mesh(np.asarray(devices), (_AXIS,))


def _flatten_state(state) -> tuple[list[np.ndarray], Any]:
    leaves, treedef = jax.tree.flatten(state)
    return [np.asarray(x) for x in leaves], treedef


def _merge_chunk_states(spec: _Spec, a, b):
    states = tuple(
        tuple(r.merge(sa, sb) for sa, sb in zip(la, lb))
        for r, la, lb in zip(spec.reducers, a["states"], b["states"])
    )
    counts = np.asarray(a["counts"], np.int64) + np.asarray(b["counts"], np.int64)
    return {"states": states, "counts": counts}


_PROBE_CACHE: dict = {}


def _probe(spec: _Spec, member0):
    """One abstract evaluation of a member: its `RESULTS` enumeration and the tree
    structure of each reducer's quantity. Cached, so repeated studies skip the trace."""
    avals = member0
    try:
        key = (spec, jax.tree.structure(avals), tuple(jax.tree.leaves(avals)))
        hash(key)
    except TypeError:
        key = None
    if key is not None and key in _PROBE_CACHE:
        return _PROBE_CACHE[key]

    def f(x):
        out = spec.fn(x)
        return _result_of(spec, out), tuple(_quantity(r, out) for r in spec.reducers)

    res, qs = eqx.filter_eval_shape(f, avals)
    enum = enumeration_of(res) if is_result(res) else RESULTS
    value = (enum, tuple(jax.tree.structure(q) for q in qs))
    if key is not None:
        if len(_PROBE_CACHE) > 64:
            _PROBE_CACHE.clear()
        _PROBE_CACHE[key] = value
    return value


def _names(enum) -> list[str]:
    return code_names(enum)


def _compiled_bytes(spec, xs, valid) -> int:
    compiled = _chunk_jit.lower(spec, xs, valid).compile()
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


def chunk_size_for_budget(
    fn: Callable,
    example: Any,
    memory_budget: int,
    *,
    reducers: dict[str, AbstractReducer] | None = None,
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
    spec = _Spec(fn, tuple((reducers or {}).values()), None, None, None, "shard_map", 64, 0)
    b1, b2 = 1, 17
    x1 = jax.tree.map(lambda x: _take(x, np.zeros(b1, np.int64)), example)
    x2 = jax.tree.map(lambda x: _take(x, np.zeros(b2, np.int64)), example)
    m1 = _compiled_bytes(spec, x1, jnp.ones((b1,), bool))
    m2 = _compiled_bytes(spec, x2, jnp.ones((b2,), bool))
    per = max((m2 - m1) / (b2 - b1), 1.0)
    fixed = max(m1 - b1 * per, 0.0)
    per_device = int(max((memory_budget - fixed) // per, 1))
    size = per_device * n_devices
    if max_chunk is not None:
        size = min(size, int(max_chunk))
    return max(n_devices, (size // n_devices) * n_devices)


# ------------------------------------------------------------------------------------
# The runner.
# ------------------------------------------------------------------------------------


def run_ensemble(
    fn: Callable[[Any], Any],
    inputs: PyTree[Shaped[ArrayLike, "members ..."] | Key[Array, "members ..."]]  # pyright: ignore
    | Iterator[Any],
    *,
    reducers: dict[str, AbstractReducer],
    result: Callable[[Any], Any] | None = None,
    save: Callable[[Any], Any] | bool | None = None,
    chunk_size: int | None = None,
    memory_budget: int | None = None,
    devices: Sequence[Any] | None = None,
    mesh: Mesh | None = None,
    strategy: str = "shard_map",
    store: Any = None,
    resume: bool = True,
    progress: bool = True,
    order_by: Real[ArrayLike, " members"] | Callable[[Any], Any] | None = None,  # pyright: ignore
    schedule: str = "auto",
    lanes: int | None = None,
    total: int | None = None,
    on_chunk: Callable[[int], None] | None = None,
) -> EnsembleResult:
    """Evaluate `fn` on every member of an ensemble and reduce the outputs to statistics.

    The members are split into chunks of `chunk_size`; each chunk is evaluated by one
    compiled call that `jax.vmap`s `fn` over the chunk (or, for a `DiffEqMember`, steps
    the members with the lane-refill schedule: see `schedule`), splits the chunk over
    the devices with `jax.shard_map` (so each device runs its own adaptive loops and
    stops when *its* members are done), and reduces the outputs to small mergeable chunk
    statistics on device. Chunk statistics are merged on the host in chunk order, so
    the result does not depend on whether the study ran in one go or was resumed.

    With several processes (after `jax.distributed.initialize`), process `p` evaluates
    chunks `p, p + P, p + 2P, ...` on its local devices; the chunk statistics are then
    all-gathered across processes and merged in chunk order, so every process returns
    the same result, equal to the single-process one.

    **Arguments:**

    - `fn`: a pure function of one member's input, e.g. a `diffrax.diffeqsolve` call
      with `throw=False`. Its output is any pytree.
    - `inputs`: either a pytree whose leaves share a leading member axis, or an
      iterator (e.g. a generator) of such pytrees, one per chunk (chunks smaller than
      `chunk_size` are padded).
    - `reducers`: name -> reducer (`Mean`, `Variance`, `Std`, `Min`, `Max`,
      `Quantiles`), each taken of `reducer.of(output)`.
    - `result`: a function of one output giving its `RESULTS` item (or integer code).
      By default the output's `.result` is used when it is an enumeration item
      (diffrax and lineax solutions); otherwise every member counts as successful.
      Members that succeed but whose reduced values are NaN/inf are counted as
      `nonfinite`. Failed members are counted by code and excluded from statistics.
    - `save`: a function of one output giving what to store per member (or `True` for
      the whole output); written per chunk to `store/outputs/` (needs `store`).
      Read back with `load_outputs`.
    - `chunk_size`: members per compiled call. Default: chosen from `memory_budget` if
      given, else `min(n_members, 2048)` members per device on CPU (2^20 on
      accelerators); with `schedule="refill"`, 64 x `lanes` per device on CPU (so
      the lanes' drain at the end of a chunk is short against the chunk). Rounded up
      to a multiple of the devices.
    - `memory_budget`: bytes per device for one chunk; the chunk size is measured
      from the compiled memory analysis (see `chunk_size_for_budget`) of the vmapped
      evaluation (for `schedule="refill"`, whose working set is `lanes` members plus
      one output per member, that is an overestimate: the chunk is conservative).
    - `devices`, `mesh`: the local devices to shard over (default: all local devices).
    - `strategy`: `"shard_map"` (default; each device stops on its own) or `"auto"`
      (jit-sharded `vmap`; XLA synchronises the loop condition across devices).
    - `store`: a folder that records the study: per-chunk statistics (each written
      atomically; a chunk is done when its file exists), a `state.npz` with the
      merged statistics and the done chunks, optional outputs.
    - `resume`: if `True` and `store` holds this study, only missing chunks are
      computed; if `False` the store is cleared first.
    - `progress`: show a progress bar (members done, rate, ETA) across chunks.
    - `schedule`: how the members of a chunk are evaluated. `"vmap"`: `jax.vmap(fn)`
      (any `fn`; an adaptive solve then runs every member until the chunk's slowest
      is done). `"refill"`: the lane-refill loop (needs `fn` to be a `DiffEqMember`):
      `lanes` members step together in one `while_loop` and a lane whose member is
      done writes its result and loads the next member, so a chunk costs about its
      *mean* step count per member rather than its maximum; results equal `fn`'s
      (`diffeqsolve`) member by member. `"auto"` (default): `"refill"` when `fn` is a
      `DiffEqMember`, else `"vmap"`.
    - `lanes`: members in flight per device for `schedule="refill"`. Default 1024 on
      CPU, 2^16 on accelerators.
    - `order_by`: cost-aware ordering: an array of per-member cost estimates (e.g.
      step counts), or a function of one member's input returning one (e.g. the step
      count of a loose-tolerance pilot solve). Members are sorted by it so that a chunk
      holds members of similar cost. Needs pytree `inputs`.
    - `total`: the member count, for a progress bar over iterator `inputs`.
    - `on_chunk`: called with the chunk index after each chunk is recorded.

    **Returns:**

    An `EnsembleResult`.
    """
    t_start = time.perf_counter()
    if not isinstance(reducers, dict) or not all(
        isinstance(r, AbstractReducer) for r in reducers.values()
    ):
        raise TypeError("`reducers` must be a dict of name -> scimlx.ensemble reducer.")
    if strategy not in ("shard_map", "auto"):
        raise ValueError(f"`strategy` must be 'shard_map' or 'auto', got {strategy!r}.")
    if schedule not in ("auto", "vmap", "refill"):
        raise ValueError(f"`schedule` must be 'auto', 'vmap' or 'refill', got {schedule!r}.")
    if schedule == "auto":
        schedule = "refill" if isinstance(fn, DiffEqMember) else "vmap"
    if schedule == "refill" and not isinstance(fn, DiffEqMember):
        raise TypeError(
            "`schedule='refill'` needs `fn` to be a scimlx.ensemble.DiffEqMember (it steps "
            f"the solver itself); got {type(fn).__name__}."
        )
    if lanes is not None:
        lanes = check_int("lanes", lanes, minimum=1)
    if chunk_size is not None:
        chunk_size = check_int("chunk_size", chunk_size, minimum=1)
    if total is not None:
        total = check_int("total", total, minimum=1)
    if memory_budget is not None and memory_budget <= 0:
        raise ValueError(f"`memory_budget` must be positive, got {memory_budget}.")
    if save is not None and save is not False and store is None:
        raise ValueError("`save` needs a `store` folder to write the outputs to.")
    save_fn = (lambda out: out) if save is True else (save or None)

    mesh = _mesh_from(mesh, devices)
    n_dev = 1 if mesh is None else int(mesh.devices.size)
    if schedule == "refill" and mesh is not None and strategy != "shard_map":
        raise ValueError("`schedule='refill'` across devices needs `strategy='shard_map'`.")
    n_lanes = 0
    if schedule == "refill":
        n_lanes = int(lanes) if lanes is not None else _default_lanes(mesh)
    n_proc, proc = jax.process_count(), jax.process_index()

    streaming = isinstance(inputs, Iterator)
    if streaming:
        if order_by is not None:
            raise ValueError("`order_by` needs `inputs` as a pytree, not an iterator.")
        try:
            first = next(inputs)
        except StopIteration:
            raise ValueError("`inputs` (an iterator) yielded no chunks: nothing to run.") from None
        n_first = _leading(first)
        if n_first == 0:
            raise ValueError("The first chunk of `inputs` holds no members.")

        def _rest(first=first, it=inputs):
            yield first
            yield from it

        source = _rest()
        n_members = total
        if chunk_size is None:
            chunk_size = n_first
        example = first
    else:
        n_members = _leading(inputs)
        if n_members == 0:
            raise ValueError("`inputs` holds no members.")
        example = inputs
        source = None

    for name, r in reducers.items():
        if isinstance(r, Quantiles) and r.exact and (n_members is None or n_members > r.max_exact):
            raise ValueError(
                f"Reducer {name!r}: exact quantiles need a known member count <= "
                f"max_exact={r.max_exact} (got {n_members}); give `range=(lo, hi)` for the "
                "mergeable histogram sketch."
            )

    spec_probe = _Spec(fn, tuple(reducers.values()), result, save_fn, None, strategy, 1, 0)
    member0 = jax.tree.map(lambda x: jax.ShapeDtypeStruct(np.shape(x)[1:], x.dtype), example)
    enum, q_structs = _probe(spec_probe, member0)
    names = _names(enum)
    nonfinite = names.index("nonfinite") if "nonfinite" in names else len(names) - 1
    spec = _Spec(
        fn,
        tuple(reducers.values()),
        result,
        save_fn,
        mesh,
        strategy,
        len(names),
        nonfinite,
        schedule,
        n_lanes,
    )

    if chunk_size is None:
        limit = n_members if n_members is not None else 8192
        if memory_budget is not None:
            chunk_size = chunk_size_for_budget(
                fn, example, memory_budget, reducers=reducers, n_devices=n_dev, max_chunk=limit
            )
        elif schedule == "refill":
            per_device = 64 * n_lanes if _platform(mesh) == "cpu" else 2**20
            chunk_size = min(limit, per_device * n_dev)
        else:
            chunk_size = min(limit, _default_chunk_per_device(mesh) * n_dev)
    chunk_size = int(math.ceil(int(chunk_size) / n_dev) * n_dev)
    n_chunks = None if n_members is None else math.ceil(n_members / chunk_size)

    st = None if store is None else Store(store)
    fingerprint = None
    study_digest = ""
    if st is not None:
        fingerprint = _fingerprint(
            fn=fn,
            inputs=None if streaming else inputs,
            reducers=reducers,
            result=result,
            order_by=order_by,
            n_members=n_members,
            chunk_size=chunk_size,
            n_devices=n_dev,
            strategy=strategy,
            schedule=f"refill:{n_lanes}" if schedule == "refill" else schedule,
        )
        study_digest = digest_of(fingerprint)
        if proc == 0:
            st.clean_orphans()
            if not resume:
                st.clear()
            else:
                _check_study(st, fingerprint)
            save_json(st.meta_path, fingerprint)
        if n_proc > 1:
            from jax.experimental import multihost_utils

            multihost_utils.sync_global_devices("scimlx.ensemble: store ready")

    # --- cost-aware ordering -----------------------------------------------------------
    perm = None
    if order_by is not None:
        if st is not None and resume and st.order_path.exists():
            try:
                perm = load_arrays(st.order_path)["perm"]
            except StoreCorruptionError as e:
                warnings.warn(f"{e} Recomputing the member order.", stacklevel=2)
        if perm is None:
            assert n_members is not None
            if callable(order_by):
                costs = []
                for start in range(0, n_members, chunk_size):
                    stop = min(start + chunk_size, n_members)
                    xs = jax.tree.map(lambda x: x[start:stop], inputs)
                    xs = _pad_chunk(xs, stop - start, chunk_size)
                    costs.append(np.asarray(_cost_jit(order_by, xs))[: stop - start])
                cost = np.concatenate(costs)
            else:
                cost = np.asarray(order_by, dtype=np.float64).reshape(-1)
                if cost.shape[0] != n_members:
                    raise ValueError(
                        f"`order_by` has {cost.shape[0]} costs for {n_members} members."
                    )
            perm = np.argsort(cost, kind="stable")
            if st is not None and proc == 0:
                save_arrays(st.order_path, {"perm": perm})

    # --- the chunk stream ---------------------------------------------------------------
    def chunks():
        if streaming:
            assert source is not None
            start = 0
            for i, xs in enumerate(source):
                n = _leading(xs)
                if n > chunk_size:
                    raise ValueError(
                        f"Chunk {i} of `inputs` has {n} members, more than chunk_size={chunk_size}."
                    )
                yield i, (lambda xs=xs, n=n: (xs, n)), np.arange(start, start + n)
                start += n
        else:
            assert n_chunks is not None and n_members is not None
            for i in range(n_chunks):
                start, stop = i * chunk_size, min((i + 1) * chunk_size, n_members)
                idx = np.arange(start, stop) if perm is None else perm[start:stop]

                yield (
                    i,
                    functools.partial(_slice_chunk, inputs, perm is None, start, stop, idx),
                    idx,
                )

    done = set() if st is None else st.done_chunks()
    in_sharding = None if mesh is None else NamedSharding(mesh, PartitionSpec(_AXIS))

    acc = None  # running merge, single process
    mine: dict[int, Any] = {}  # per-chunk states, multi-process
    counted = {"members": 0, "computed": 0, "chunks": 0}

    def fold(i, state):
        nonlocal acc
        if n_proc > 1:
            mine[i] = state
        else:
            acc = state if acc is None else _merge_chunk_states(spec, acc, state)

    def record(i, state, saved, idx, n_valid):
        if st is not None:
            if saved is not None:
                out_tree, codes = saved
                leaves = jax.tree.leaves(out_tree)
                arrays = {f"leaf_{j:04d}": np.asarray(x)[:n_valid] for j, x in enumerate(leaves)}
                arrays["index"] = np.asarray(idx)
                arrays["result"] = np.asarray(codes)[:n_valid]
                arrays["__save__"] = np.asarray(save_digest)
                save_arrays(st.outputs_path(i), arrays)
            leaves, _ = _flatten_state(state)
            arrays = {f"s{j:05d}": x for j, x in enumerate(leaves)}
            arrays["__study__"] = np.asarray(study_digest)
            arrays["__inputs__"] = np.asarray(inputs_digest(i))
            # The statistics file is the commit point of a chunk.
            save_arrays(st.stats_path(i), arrays)

    chunk_digests: dict[int, str] = {}
    save_digest = "" if save_fn is None else callable_digest(save_fn)

    def inputs_digest(i):
        return chunk_digests.get(i, "")

    def load_state(i, like):
        """A done chunk's statistics; `None` (after a warning) if its files are corrupted."""
        assert st is not None
        try:
            arrays = load_arrays(st.stats_path(i))
            if spec.save_fn is not None:
                saved = load_arrays(st.outputs_path(i))
                if str(saved.get("__save__", "")) != save_digest:
                    st.forget(i)  # saved by a run with another (or no) `save`
                    return None
        except FileNotFoundError:  # outputs not saved by the earlier run
            st.forget(i)
            return None
        except StoreCorruptionError as e:
            warnings.warn(f"{e} Recomputing chunk {i}.", stacklevel=3)
            st.forget(i)
            return None
        if str(arrays.pop("__study__", "")) != study_digest or (
            str(arrays.pop("__inputs__", "")) != inputs_digest(i)
        ):
            raise ValueError(
                f"`store` {st.root}: {st.stats_path(i).name} belongs to another study (other "
                "inputs, function, reducers or chunking). Pass `resume=False` to start over "
                "(deletes the store's files), or use another folder."
            )
        leaves = [arrays[f"s{j:05d}"] for j in range(len(arrays))]
        return jax.tree.unflatten(jax.tree.structure(like), leaves)

    like_box: list = []

    def state_like(xs_padded, valid):
        if not like_box:
            shapes = eqx.filter_eval_shape(_chunk, spec, xs_padded, valid)[0]
            like_box.append(shapes)
        return like_box[0]

    bar_total = n_members if n_members is not None else (total or 0)
    bar = ProgressBar(bar_total, desc="ensemble", unit="members", disable=not progress)
    pending = None
    n_succ_seen = 0

    def finish(p):
        nonlocal n_succ_seen
        i, fut, idx, n_valid = p
        state, saved = fut
        state = jax.device_get(state)
        saved = jax.device_get(saved)
        _check_codes(np.asarray(saved[1])[:n_valid], len(names), i)
        saved = None if spec.save_fn is None else saved
        record(i, state, saved, idx, n_valid)
        fold(i, state)
        counted["computed"] += 1
        bar.update(n_valid, chunk=i + 1, failed=int(np.sum(state["counts"][1:])))
        if on_chunk is not None:
            on_chunk(i)

    try:
        for i, get, idx in chunks():
            counted["chunks"] = i + 1
            counted["members"] += len(idx)
            if n_proc > 1 and i % n_proc != proc:
                continue
            xs, n_valid = get()
            if st is not None:
                chunk_digests[i] = tree_digest(xs)
            xs = _pad_chunk(xs, n_valid, chunk_size)
            valid = jnp.arange(chunk_size) < n_valid
            if i in done:
                if pending is not None:
                    finish(pending)
                    pending = None
                loaded = load_state(i, state_like(xs, valid))
                if loaded is not None:
                    fold(i, loaded)
                    bar.update(n_valid, chunk=i + 1)
                    continue
            if in_sharding is not None:
                xs = jax.device_put(xs, in_sharding)
                valid = jax.device_put(valid, in_sharding)
            fut = _chunk_jit(spec, xs, valid)  # dispatched asynchronously
            if pending is not None:
                finish(pending)
            pending = (i, fut, idx, n_valid)
        if pending is not None:
            finish(pending)
            pending = None
    finally:
        bar.close()

    n_members_seen = counted["members"]
    n_chunks = counted["chunks"]
    if n_proc > 1:
        acc = _gather_and_merge(spec, mine, n_chunks, n_proc)
    if acc is None:
        raise ValueError("`inputs` yielded no chunks.")
    stats = {
        name: jax.tree.unflatten(
            q_structs[k],
            [r.finalize(s) for s in acc["states"][k]],
        )
        for k, (name, r) in enumerate(reducers.items())
    }
    counts = np.asarray(acc["counts"], np.int64)
    failures = {names[c]: int(counts[c]) for c in range(1, len(names)) if counts[c] > 0}
    n_successful = int(counts[0])
    if st is not None:
        leaves, _ = _flatten_state(acc)
        arrays = {f"s{j:05d}": x for j, x in enumerate(leaves)}
        arrays["done"] = np.asarray(sorted(range(n_chunks)), np.int64)
        arrays["fingerprint"] = np.asarray(json.dumps(fingerprint, sort_keys=True))
        save_arrays(st.state_path(proc), arrays)
    return EnsembleResult(
        stats=stats,
        failures=failures,
        n_members=n_members_seen,
        n_successful=n_successful,
        n_chunks=n_chunks,
        chunk_size=chunk_size,
        n_devices=n_dev,
        n_processes=n_proc,
        computed_chunks=counted["computed"],
        wall_s=time.perf_counter() - t_start,
    )


def _fingerprint(
    *,
    fn,
    inputs,
    reducers,
    result,
    order_by,
    n_members,
    chunk_size,
    n_devices,
    strategy,
    schedule,
) -> dict:
    """What a store's study is: a resumed run must agree on all of it."""
    return {
        "version": 2,
        "fn": callable_digest(fn),
        # Pytree inputs are hashed whole; an iterator's chunks are hashed one by one
        # (each chunk file records the digest of its inputs).
        "inputs": None if inputs is None else tree_digest(inputs),
        "reducers": {k: f"{type(r).__name__}:{callable_digest(r)}" for k, r in reducers.items()},
        "result": None if result is None else callable_digest(result),
        "order_by": None if order_by is None else callable_digest(order_by),
        "n_members": n_members,
        "chunk_size": chunk_size,
        "n_devices": n_devices,
        "strategy": strategy,
        "schedule": schedule,
    }


def _check_study(st: Store, fingerprint: dict) -> None:
    """Refuse a store that holds another study; a corrupted header is rewritten (each
    chunk file is then checked against the study on its own)."""
    if not st.meta_path.exists():
        return
    try:
        old = load_json(st.meta_path)
    except StoreCorruptionError as e:
        warnings.warn(
            f"{e} Rewriting it; each saved chunk is checked against this study.", stacklevel=3
        )
        return
    if not isinstance(old, dict) or old.get("version") != fingerprint["version"]:
        raise ValueError(
            f"`store` {st.root} holds a study written by another scimlx version. Pass "
            "`resume=False` to start over (deletes the store's files), or use another folder."
        )
    differ = sorted(k for k in fingerprint if old.get(k) != fingerprint[k])
    if differ:
        raise ValueError(
            f"`store` {st.root} holds a different study (it differs in: {', '.join(differ)}). "
            "Pass `resume=False` to start over (deletes the store's files), or use another "
            "folder."
        )


def _check_codes(codes: np.ndarray, n_codes: int, chunk: int) -> None:
    bad = (codes < 0) | (codes >= n_codes)
    if np.any(bad):
        raise ValueError(
            f"`result` gave the code {int(codes[bad][0])} in chunk {chunk} ({int(bad.sum())} "
            f"member(s)), outside the {n_codes} codes of its RESULTS enumeration (0 to "
            f"{n_codes - 1}, see `list(scimlx.RESULTS)`): such members would be counted "
            "neither as successes nor as failures."
        )


def _gather_and_merge(spec: _Spec, mine: dict, n_chunks: int, n_proc: int):
    """All-gather every process's chunk states and merge them in chunk order."""
    from jax.experimental import multihost_utils

    if not mine:
        raise RuntimeError(
            "A process evaluated no chunk; use at least as many chunks as processes."
        )
    like = next(iter(mine.values()))
    leaves0, treedef = jax.tree.flatten(like)
    stacked = []
    for j, leaf0 in enumerate(leaves0):
        leaf0 = np.asarray(leaf0)
        buf = np.zeros((n_chunks,) + leaf0.shape, leaf0.dtype)
        for i, s in mine.items():
            buf[i] = np.asarray(jax.tree.leaves(s)[j])
        stacked.append(buf)
    gathered = multihost_utils.process_allgather(stacked)
    acc = None
    for i in range(n_chunks):
        owner = i % n_proc
        state = jax.tree.unflatten(treedef, [np.asarray(g[owner, i]) for g in gathered])
        acc = state if acc is None else _merge_chunk_states(spec, acc, state)
    return acc
