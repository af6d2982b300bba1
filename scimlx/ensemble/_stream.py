"""The host side of a study's inputs: member counts, cost-aware order, the chunk stream."""

import functools
from collections.abc import Callable, Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ._chunk import cost_jit, take


def leading(tree) -> int:
    """The member count of a pytree of inputs (every leaf's leading axis)."""
    leaves = jax.tree.leaves(tree)
    if not leaves:
        raise ValueError("`inputs` has no array leaves.")
    sizes = {int(jnp.shape(x)[0]) if jnp.ndim(x) > 0 else -1 for x in leaves}
    if -1 in sizes:
        raise ValueError("Every leaf of `inputs` needs a leading member axis; found a scalar.")
    if len(sizes) != 1:
        raise ValueError(f"The leaves of `inputs` disagree on the member count: {sorted(sizes)}.")
    return sizes.pop()


def pad(xs, n_valid: int, size: int):
    """Pad a chunk to `size` members by repeating its last member (masked out later)."""
    if n_valid == size:
        return xs
    idx = np.concatenate([np.arange(n_valid), np.full(size - n_valid, n_valid - 1)])
    return jax.tree.map(lambda x: take(x, idx), xs)


def split_first(inputs: Iterator[Any]) -> tuple[Any, Iterator[Any]]:
    """The first chunk of an iterator, and an iterator over all of its chunks."""
    try:
        first = next(inputs)
    except StopIteration:
        raise ValueError("`inputs` (an iterator) yielded no chunks: nothing to run.") from None

    def chunks():
        yield first
        yield from inputs

    return first, chunks()


def member_order(order_by, inputs, n_members: int, chunk_size: int) -> np.ndarray:
    """The members sorted by cost: `order_by` an array of costs, or a function of one
    member's input giving its cost (evaluated chunk by chunk)."""
    if callable(order_by):
        costs = []
        for start in range(0, n_members, chunk_size):
            stop = min(start + chunk_size, n_members)
            xs = jax.tree.map(lambda x: x[start:stop], inputs)
            xs = pad(xs, stop - start, chunk_size)
            costs.append(np.asarray(cost_jit(order_by, xs))[: stop - start])
        cost = np.concatenate(costs)
    else:
        cost = np.asarray(order_by, dtype=np.float64).reshape(-1)
        if cost.shape[0] != n_members:
            raise ValueError(f"`order_by` has {cost.shape[0]} costs for {n_members} members.")
    return np.argsort(cost, kind="stable")


def _slice(inputs, perm, start: int, stop: int, idx) -> tuple[Any, int]:
    if perm is None:
        return jax.tree.map(lambda x: x[start:stop], inputs), stop - start
    return jax.tree.map(lambda x: take(x, idx), inputs), stop - start


def chunk_stream(
    inputs, source: Iterator[Any] | None, n_members: int | None, chunk_size: int, perm
) -> Iterator[tuple[int, Callable[[], tuple[Any, int]], np.ndarray]]:
    """`(i, get, idx)` per chunk: its index, a function giving `(inputs, n_valid)` (the
    unpadded inputs, read only when the chunk is evaluated), and its members' indices."""
    if source is not None:
        start = 0
        for i, xs in enumerate(source):
            n = leading(xs)
            if n > chunk_size:
                raise ValueError(
                    f"Chunk {i} of `inputs` has {n} members, more than chunk_size={chunk_size}."
                )
            yield i, (lambda xs=xs, n=n: (xs, n)), np.arange(start, start + n)
            start += n
        return
    assert n_members is not None
    for i in range(-(-n_members // chunk_size)):
        start, stop = i * chunk_size, min((i + 1) * chunk_size, n_members)
        idx = np.arange(start, stop) if perm is None else perm[start:stop]
        yield i, functools.partial(_slice, inputs, perm, start, stop, idx), idx
