"""How one chunk is split over several local devices: `jax.shard_map` or XLA's partitioner."""

import abc
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from ._schedule import AbstractSchedule, VmapSchedule


AXIS = "members"


class AbstractStrategy(eqx.Module):
    """How the evaluation of one chunk is split over the devices of a one-axis mesh (axis
    `"members"`, the chunk's members split evenly). Not consulted on one device."""

    @abc.abstractmethod
    def check(self, schedule: AbstractSchedule) -> None:
        """Raise if this strategy cannot split chunks evaluated with `schedule`."""

    @abc.abstractmethod
    def distribute(self, f: Callable, mesh: Mesh, xs: Any) -> tuple[Callable, Any]:
        """`f(xs, valid)` (one chunk's evaluation, traced inside `jit`) -> the function that
        evaluates the chunk over `mesh`, and the inputs to give it."""

    @abc.abstractmethod
    def fingerprint(self) -> str:
        """What identifies the strategy in a store's study header."""


class ShardMap(AbstractStrategy):
    """Split a chunk with `jax.shard_map`: each device evaluates its own members with its own
    loops, and stops when *its* members are done (no cross-device stop condition). Works with
    every schedule.
    """

    def check(self, schedule):
        pass

    def distribute(self, f, mesh, xs):
        f = jax.shard_map(
            f,
            mesh=mesh,
            in_specs=(PartitionSpec(AXIS), PartitionSpec(AXIS)),
            out_specs=PartitionSpec(AXIS),
            check_vma=False,
        )
        return f, xs

    def fingerprint(self):
        return "shard_map"


class AutoSharding(AbstractStrategy):
    """Split a chunk with XLA's SPMD partitioner: the chunk's inputs are constrained to be
    split over the devices and the vmapped evaluation is partitioned automatically. The
    loop condition of a vmapped adaptive solve is then reduced across devices every step,
    so every device runs until the chunk's slowest member is done. Needs
    `schedule=VmapSchedule()`; kept for comparison with `ShardMap()`.
    """

    def check(self, schedule):
        if not isinstance(schedule, VmapSchedule):
            raise ValueError(
                f"`strategy=AutoSharding()` needs `schedule=VmapSchedule()`, got {schedule!r}; "
                "use `strategy=ShardMap()` (the default)."
            )

    def distribute(self, f, mesh, xs):
        sharding = NamedSharding(mesh, PartitionSpec(AXIS))
        return f, jax.tree.map(lambda x: jax.lax.with_sharding_constraint(x, sharding), xs)

    def fingerprint(self):
        return "auto"
