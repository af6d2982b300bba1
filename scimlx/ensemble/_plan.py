"""Checking a study's arguments and resolving its defaults: devices, schedule, chunking."""

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import equinox as eqx
import jax
import numpy as np
from jax.sharding import Mesh

from .._core._checks import check_int
from .._core._results import code_names
from ._chunk import chunk_size_for_budget, ChunkSpec, probe
from ._reducers import AbstractReducer, Quantiles
from ._schedule import AbstractSchedule, default_schedule
from ._store import Store
from ._strategy import AbstractStrategy, AXIS
from ._stream import leading, split_first


class Plan(eqx.Module):
    """A study's resolved settings: the compiled chunk's spec and how members are chunked."""

    spec: ChunkSpec
    q_structs: tuple  # the tree structure of each reducer's quantity
    names: tuple[str, ...] = eqx.field(static=True)  # RESULTS names by code
    n_members: int | None = eqx.field(static=True)  # None: an iterator without `total`
    chunk_size: int = eqx.field(static=True)
    n_devices: int = eqx.field(static=True)
    source: Iterator[Any] | None  # the chunks of iterator `inputs`; None for a pytree


def _check_arguments(
    reducers, schedule, strategy, store, chunk_size, memory_budget, total, streaming, order_by
) -> None:
    if not isinstance(reducers, Mapping) or not all(
        isinstance(r, AbstractReducer) for r in reducers.values()
    ):
        raise TypeError("`reducers` must be a dict of name -> scimlx.ensemble reducer.")
    if not isinstance(strategy, AbstractStrategy):
        raise TypeError(
            "`strategy` must be `ensemble.ShardMap()` or `ensemble.AutoSharding()`, got "
            f"{strategy!r}."
        )
    if schedule is not None and not isinstance(schedule, AbstractSchedule):
        raise TypeError(
            "`schedule` must be `ensemble.VmapSchedule()`, `ensemble.RefillSchedule(...)` or "
            f"None, got {schedule!r}."
        )
    if store is not None and not isinstance(store, Store):
        raise TypeError(f"`store` must be an `ensemble.Store(folder, ...)`, got {store!r}.")
    if chunk_size is not None:
        check_int("chunk_size", chunk_size, minimum=1)
    if total is not None:
        check_int("total", total, minimum=1)
        if not streaming:
            raise ValueError(
                "`total` is the member count of iterator `inputs`; pytree `inputs` give their own."
            )
    if memory_budget is not None:
        if memory_budget <= 0:
            raise ValueError(f"`memory_budget` must be positive, got {memory_budget}.")
        if chunk_size is not None:
            raise ValueError("Pass at most one of `chunk_size` and `memory_budget`.")
        if streaming:
            raise ValueError(
                "`memory_budget` needs `inputs` as a pytree: an iterator's chunks set the "
                "chunk size."
            )
    if order_by is not None and streaming:
        raise ValueError("`order_by` needs `inputs` as a pytree, not an iterator.")


def _mesh(devices: Sequence[Any] | None) -> tuple[Mesh | None, str]:
    """The mesh over `devices` (`None` for one device) and their platform."""
    devices = list(jax.local_devices()) if devices is None else list(devices)
    if not devices:
        raise ValueError("`devices` is empty.")
    mesh = None if len(devices) <= 1 else Mesh(np.asarray(devices), (AXIS,))
    return mesh, devices[0].platform


def _check_quantiles(reducers: Mapping[str, AbstractReducer], n_members: int | None) -> None:
    for name, r in reducers.items():
        if isinstance(r, Quantiles) and r.exact and (n_members is None or n_members > r.max_exact):
            raise ValueError(
                f"Reducer {name!r}: exact quantiles need a known member count <= "
                f"max_exact={r.max_exact} (got {n_members}); give `range=(lo, hi)` for the "
                "mergeable histogram sketch."
            )


def plan_study(
    fn: Callable,
    inputs: Any,
    *,
    reducers: Mapping[str, AbstractReducer],
    result: Callable | None,
    schedule: AbstractSchedule | None,
    strategy: AbstractStrategy,
    store: Store | None,
    devices: Sequence[Any] | None,
    chunk_size: int | None,
    memory_budget: int | None,
    total: int | None,
    order_by: Any,
) -> Plan:
    """Check the arguments of `run_ensemble` and resolve every default."""
    streaming = isinstance(inputs, Iterator)
    _check_arguments(
        reducers, schedule, strategy, store, chunk_size, memory_budget, total, streaming, order_by
    )
    mesh, platform = _mesh(devices)
    n_dev = 1 if mesh is None else int(mesh.devices.size)
    schedule = (default_schedule(fn) if schedule is None else schedule).resolved(fn, platform)
    strategy.check(schedule)

    if streaming:
        example, source = split_first(inputs)
        if leading(example) == 0:
            raise ValueError("The first chunk of `inputs` holds no members.")
        n_members = total
        if chunk_size is None:
            chunk_size = leading(example)
    else:
        example, source = inputs, None
        n_members = leading(inputs)
        if n_members == 0:
            raise ValueError("`inputs` holds no members.")
    _check_quantiles(reducers, n_members)

    save_fn = None if store is None else store.save_fn
    reds = tuple(reducers.values())
    member0 = jax.tree.map(lambda x: jax.ShapeDtypeStruct(np.shape(x)[1:], x.dtype), example)
    probe_spec = ChunkSpec(fn, reds, result, save_fn, schedule, None, strategy, 1, 0)
    enum, q_structs = probe(probe_spec, member0)
    names = tuple(code_names(enum))
    nonfinite = names.index("nonfinite") if "nonfinite" in names else len(names) - 1
    spec = ChunkSpec(fn, reds, result, save_fn, schedule, mesh, strategy, len(names), nonfinite)

    if chunk_size is None:
        assert n_members is not None  # an iterator's first chunk set `chunk_size`
        limit = n_members
        if memory_budget is not None:
            chunk_size = chunk_size_for_budget(
                fn, example, memory_budget, reducers=reducers, n_devices=n_dev, max_chunk=limit
            )
        else:
            chunk_size = min(limit, schedule.chunk_per_device(platform) * n_dev)
    chunk_size = -(-int(chunk_size) // n_dev) * n_dev
    return Plan(spec, q_structs, names, n_members, chunk_size, n_dev, source)
