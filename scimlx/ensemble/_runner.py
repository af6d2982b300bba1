"""The ensemble runner: chunked, vmapped, sharded, resumable evaluation of many members."""

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec
from jaxtyping import Array, ArrayLike, Key, PyTree, Real, Shaped

from .._core._fingerprint import tree_digest
from .._core._progress import ProgressBar
from ._chunk import chunk, chunk_jit
from ._plan import Plan, plan_study
from ._record import fingerprint, StudyRecord
from ._reduce import finalise, Merger
from ._reducers import AbstractReducer
from ._schedule import AbstractSchedule
from ._store import Store
from ._strategy import AbstractStrategy, AXIS, ShardMap
from ._stream import chunk_stream, member_order, pad


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
    - `schedule`: the schedule the chunks were evaluated with, defaults filled in (e.g.
      `RefillSchedule(lanes=1024)`).
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
    schedule: AbstractSchedule
    wall_s: float

    @property
    def members_per_s(self) -> float:
        """Members computed per second of wall time in this call."""
        done = min(self.n_members, self.computed_chunks * self.chunk_size)
        return done / self.wall_s if self.wall_s > 0 else float("nan")


def _check_codes(codes: np.ndarray, n_codes: int, chunk: int) -> None:
    bad = (codes < 0) | (codes >= n_codes)
    if np.any(bad):
        raise ValueError(
            f"`result` gave the code {int(codes[bad][0])} in chunk {chunk} ({int(bad.sum())} "
            f"member(s)), outside the {n_codes} codes of its RESULTS enumeration (0 to "
            f"{n_codes - 1}, see `list(scimlx.RESULTS)`): such members would be counted "
            "neither as successes nor as failures."
        )


def _open_record(store, fn, inputs, reducers, result, order_by, plan: Plan):
    """The store's record of this study, identified by everything its results depend on,
    and the chunks it holds already (`None, set()` without a store)."""
    if store is None:
        return None, set()
    study = fingerprint(
        fn=fn,
        inputs=None if plan.source is not None else inputs,
        reducers=reducers,
        result=result,
        order_by=order_by,
        n_members=plan.n_members,
        chunk_size=plan.chunk_size,
        n_devices=plan.n_devices,
        strategy=plan.spec.strategy.fingerprint(),
        schedule=plan.spec.schedule.fingerprint(),
    )
    record = StudyRecord(store, study)
    return record, record.open(jax.process_index(), jax.process_count())


def _order(order_by, inputs, plan: Plan, record: StudyRecord | None):
    """The member order: read back from the store on resume, else computed (and saved)."""
    perm = None if record is None else record.load_order()
    if perm is None:
        assert plan.n_members is not None
        perm = member_order(order_by, inputs, plan.n_members, plan.chunk_size)
        if record is not None and jax.process_index() == 0:
            record.save_order(perm)
    return perm


def _finish(plan: Plan, record, merger: Merger, bar, on_chunk, i, fut, idx, n_valid, digest):
    """Record a computed chunk: check its codes, write it to the store, merge, report."""
    state, saved = jax.device_get(fut)
    _check_codes(np.asarray(saved[1])[:n_valid], len(plan.names), i)
    if record is not None:
        record.write_chunk(i, state, saved, idx, n_valid, digest)
    merger.add(i, state)
    bar.update(n_valid, chunk=i + 1, failed=int(np.sum(state["counts"][1:])))
    if on_chunk is not None:
        on_chunk(i)


def _run_chunks(
    plan: Plan,
    stream,
    *,
    done: set[int],
    record: StudyRecord | None,
    merger: Merger,
    bar: ProgressBar,
    on_chunk: Callable[[int], None] | None,
) -> tuple[int, int, int]:
    """Evaluate (or read back) this process's chunks, one dispatched while the previous
    one is recorded. Returns the members and chunks of the study and the chunks computed."""
    spec, size = plan.spec, plan.chunk_size
    n_proc, proc = jax.process_count(), jax.process_index()
    in_sharding = None if spec.mesh is None else NamedSharding(spec.mesh, PartitionSpec(AXIS))
    like = None  # the structure of a chunk state, for reading one back
    pending = None
    n_members = n_chunks = computed = 0
    for i, get, idx in stream:
        n_chunks, n_members = i + 1, n_members + len(idx)
        if n_proc > 1 and i % n_proc != proc:
            continue
        xs, n_valid = get()
        digest = "" if record is None else tree_digest(xs)
        xs = pad(xs, n_valid, size)
        valid = jnp.arange(size) < n_valid
        if i in done:
            assert record is not None
            if pending is not None:
                _finish(plan, record, merger, bar, on_chunk, *pending)
                computed, pending = computed + 1, None
            if like is None:
                like = eqx.filter_eval_shape(chunk, spec, xs, valid)[0]
            loaded = record.read_chunk(i, like, digest)
            if loaded is not None:
                merger.add(i, loaded)
                bar.update(n_valid, chunk=i + 1)
                continue
        if in_sharding is not None:
            xs = jax.device_put(xs, in_sharding)
            valid = jax.device_put(valid, in_sharding)
        fut = chunk_jit(spec, xs, valid)  # dispatched asynchronously
        if pending is not None:
            _finish(plan, record, merger, bar, on_chunk, *pending)
            computed += 1
        pending = (i, fut, idx, n_valid, digest)
    if pending is not None:
        _finish(plan, record, merger, bar, on_chunk, *pending)
        computed += 1
    return n_members, n_chunks, computed


def _evaluate(plan: Plan, inputs, order_by, record, done, progress, on_chunk):
    """Order the members, stream the chunks, evaluate them under a progress bar. Returns
    the merged chunk statistics, the members and chunks of the study, the chunks computed."""
    perm = None if order_by is None else _order(order_by, inputs, plan, record)
    stream = chunk_stream(inputs, plan.source, plan.n_members, plan.chunk_size, perm)
    merger = Merger(plan.spec.reducers, jax.process_count())
    bar = ProgressBar(plan.n_members or 0, desc="ensemble", unit="members", disable=not progress)
    try:
        n_members, n_chunks, computed = _run_chunks(
            plan, stream, done=done, record=record, merger=merger, bar=bar, on_chunk=on_chunk
        )
    finally:
        bar.close()
    return merger.merged(n_chunks), n_members, n_chunks, computed


def _result(
    plan: Plan, reducers, record, merged, n_members, n_chunks, computed, *, t_start: float
) -> EnsembleResult:
    """The merged chunk statistics -> the study's result (its final state saved)."""
    stats, failures, n_successful = finalise(reducers, plan.q_structs, plan.names, merged)
    if record is not None:
        record.write_state(merged, n_chunks, jax.process_index())
    return EnsembleResult(
        stats=stats,
        failures=failures,
        n_members=n_members,
        n_successful=n_successful,
        n_chunks=n_chunks,
        chunk_size=plan.chunk_size,
        n_devices=plan.n_devices,
        n_processes=jax.process_count(),
        computed_chunks=computed,
        schedule=plan.spec.schedule,
        wall_s=time.perf_counter() - t_start,
    )


def run_ensemble(
    fn: Callable[[Any], Any],
    inputs: PyTree[Shaped[ArrayLike, "members ..."] | Key[Array, "members ..."]]  # pyright: ignore
    | Iterator[Any],
    *,
    reducers: Mapping[str, AbstractReducer],
    result: Callable[[Any], Any] | None = None,
    chunk_size: int | None = None,
    memory_budget: int | None = None,
    schedule: AbstractSchedule | None = None,
    devices: Sequence[Any] | None = None,
    strategy: AbstractStrategy = ShardMap(),
    store: Store | None = None,
    order_by: Real[ArrayLike, " members"] | Callable[[Any], Any] | None = None,  # pyright: ignore
    total: int | None = None,
    progress: bool = True,
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
      with `throw=False`, or a `DiffEqMember`. Its output is any pytree.
    - `inputs`: either a pytree whose leaves share a leading member axis, or an
      iterator (e.g. a generator) of such pytrees, one per chunk (chunks smaller than
      `chunk_size` are padded).
    - `reducers`: name -> reducer (`Mean`, `Variance`, `Std`, `Min`, `Max`,
      `Quantiles`, or a subclass of `AbstractReducer`), each taken of `reducer.of(output)`.
    - `result`: a function of one output giving its `RESULTS` item (or integer code).
      By default the output's `.result` is used when it is an enumeration item
      (diffrax and lineax solutions); otherwise every member counts as successful.
      Members that succeed but whose reduced values are NaN/inf are counted as
      `nonfinite`. Failed members are counted by code and excluded from statistics.
    - `chunk_size`: members per compiled call. Default: chosen from `memory_budget` if
      given; for iterator `inputs`, the size of the first chunk; else
      `min(n_members, 2048)` members per device on CPU (2^20 on accelerators), and with
      `RefillSchedule`, 64 x `lanes` per device on CPU (so the lanes' drain at the end
      of a chunk is short against the chunk). Rounded up to a multiple of the devices.
    - `memory_budget`: bytes per device for one chunk, instead of `chunk_size` (pytree
      `inputs` only); the chunk size is measured from the compiled memory analysis (see
      `chunk_size_for_budget`) of the vmapped evaluation (for `RefillSchedule`, whose
      working set is `lanes` members plus one output per member, that is an
      overestimate: the chunk is conservative).
    - `schedule`: how the members of a chunk are evaluated: `VmapSchedule()` (any
      `fn`; an adaptive solve then runs every member until the chunk's slowest is
      done) or `RefillSchedule(lanes=...)` (needs a `DiffEqMember`: a chunk costs about
      its *mean* step count per member rather than its maximum). Default: `RefillSchedule()`
      for a `DiffEqMember`, else `VmapSchedule()`.
    - `devices`: the local devices to shard over (default: all local devices).
    - `strategy`: how a chunk is split over several devices: `ShardMap()` (default;
      each device stops on its own) or `AutoSharding()` (jit-sharded `vmap`; XLA
      synchronises the loop condition across devices; `VmapSchedule` only).
    - `store`: a `Store(folder, resume=..., save=...)` that records the study on disk so
      that it can be resumed, and optionally each member's output.
    - `order_by`: cost-aware ordering: an array of per-member cost estimates (e.g.
      step counts), or a function of one member's input returning one (e.g. the step
      count of a loose-tolerance pilot solve). Members are sorted by it so that a chunk
      holds members of similar cost. Needs pytree `inputs`.
    - `total`: the member count of iterator `inputs` (for the progress bar and exact
      quantiles).
    - `progress`: show a progress bar (members done, rate, ETA) across chunks.
    - `on_chunk`: called with the chunk index after each chunk is recorded.

    **Returns:**

    An `EnsembleResult`.
    """
    t_start = time.perf_counter()
    plan = plan_study(
        fn,
        inputs,
        reducers=reducers,
        result=result,
        schedule=schedule,
        strategy=strategy,
        store=store,
        devices=devices,
        chunk_size=chunk_size,
        memory_budget=memory_budget,
        total=total,
        order_by=order_by,
    )
    record, done = _open_record(store, fn, inputs, reducers, result, order_by, plan)
    evaluated = _evaluate(plan, inputs, order_by, record, done, progress, on_chunk)
    return _result(plan, reducers, record, *evaluated, t_start=t_start)
