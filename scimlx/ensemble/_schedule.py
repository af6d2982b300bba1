"""How the members of one chunk are evaluated: `jax.vmap` or lane refill."""

import abc
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp

from .._core._checks import check_int, check_range
from ._refill import DiffEqMember, refill_batch


class AbstractSchedule(eqx.Module):
    """How one chunk's members are evaluated on one device."""

    @abc.abstractmethod
    def resolved(self, fn: Callable, platform: str) -> "AbstractSchedule":
        """This schedule with its defaults filled in for `platform` (checks `fn`)."""

    @abc.abstractmethod
    def evaluate(self, fn: Callable, xs: Any, valid: jax.Array, post: Callable) -> Any:
        """The members `xs` (padding where `valid` is False) -> `vmap(post)` of the outputs."""

    @abc.abstractmethod
    def chunk_per_device(self, platform: str) -> int:
        """The default number of members per device in one chunk."""

    @abc.abstractmethod
    def fingerprint(self) -> str:
        """What identifies the schedule in a store's study header."""


class VmapSchedule(AbstractSchedule):
    """Evaluate a chunk as `jax.vmap(fn)`: any member function. An adaptive solve then runs
    every member of the chunk until the chunk's slowest member is done.
    """

    def resolved(self, fn, platform):
        return self

    def evaluate(self, fn, xs, valid, post):
        return jax.vmap(lambda x: post(fn(x)))(xs)

    def chunk_per_device(self, platform):
        # Measured (benchmarks/ensemble): on a 2-core CPU vmapped adaptive solves of
        # small systems run fastest at 1-2k members per chunk (the loop state stays in
        # cache). On a GPU each step of the batched loop costs about the same whatever the
        # batch (kernel launches), so a chunk should be as large as memory allows: pass
        # `memory_budget` for large members.
        return 2048 if platform == "cpu" else 2**20

    def fingerprint(self):
        return "vmap"


class RefillSchedule(AbstractSchedule):
    """Evaluate a chunk with the lane-refill loop (needs `fn` to be a `DiffEqMember`).

    `lanes` members step together in one `while_loop`; a lane whose member is done writes
    its result and loads the next member, so a chunk costs about its *mean* step count per
    member rather than its maximum. Results equal `fn`'s (`diffeqsolve`) member by member.

    **Arguments:**

    - `lanes`: members in flight per device. Default (`None`): 1024 on CPU, 2^16 on
      accelerators.
    - `refill_fraction`: finished lanes are refilled together once at least this fraction
      of the lanes is waiting (as in `refill_solve`).
    """

    lanes: int | None = eqx.field(default=None, static=True)
    refill_fraction: float = eqx.field(default=1 / 16, static=True)

    def __check_init__(self):
        if self.lanes is not None:
            check_int("lanes", self.lanes, minimum=1)
        check_range("refill_fraction", self.refill_fraction, lower=0.0, upper=1.0, lower_open=True)

    def resolved(self, fn, platform):
        if not isinstance(fn, DiffEqMember):
            raise TypeError(
                "`schedule=RefillSchedule(...)` needs `fn` to be a scimlx.ensemble.DiffEqMember "
                f"(it steps the solver itself); got {type(fn).__name__}."
            )
        if self.lanes is not None:
            return self
        # Measured (benchmarks/ensemble, the lanes rows): on a 2-core CPU the refill
        # loop of a small adaptive ODE did the most members per CPU second at 1024-2048
        # lanes (8% more than 512). On accelerators the cost of a step hardly depends on
        # the lane count, so many lanes.
        lanes = 1024 if platform == "cpu" else 2**16
        return RefillSchedule(lanes, self.refill_fraction)

    def evaluate(self, fn, xs, valid, post):
        assert self.lanes is not None and isinstance(fn, DiffEqMember)
        # Padding members (`valid` is a prefix) are never solved.
        n_valid = jnp.sum(valid.astype(jnp.int32))
        outs, _ = refill_batch(
            fn, xs, n_valid, lanes=self.lanes, refill_fraction=self.refill_fraction
        )
        return eqx.filter_vmap(post, in_axes=eqx.if_array(0))(outs)

    def chunk_per_device(self, platform):
        # 64 x lanes on CPU, so the lanes' drain at the end of a chunk is short against it.
        assert self.lanes is not None
        return 64 * self.lanes if platform == "cpu" else 2**20

    def fingerprint(self):
        tag = f"refill:{self.lanes}"
        return tag if self.refill_fraction == 1 / 16 else f"{tag}:{self.refill_fraction}"


def default_schedule(fn: Callable) -> AbstractSchedule:
    """`RefillSchedule()` for a `DiffEqMember`, else `VmapSchedule()`."""
    return RefillSchedule() if isinstance(fn, DiffEqMember) else VmapSchedule()
