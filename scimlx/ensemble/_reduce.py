"""Merging chunk statistics in chunk order (across processes too) and finishing them."""

from collections.abc import Mapping

import jax
import numpy as np

from ._reducers import AbstractReducer


def merge(reducers: tuple[AbstractReducer, ...], a: dict, b: dict) -> dict:
    """Two chunk states (reducer states and result-code counts) -> one."""
    states = tuple(
        tuple(r.merge(sa, sb) for sa, sb in zip(la, lb))
        for r, la, lb in zip(reducers, a["states"], b["states"])
    )
    counts = np.asarray(a["counts"], np.int64) + np.asarray(b["counts"], np.int64)
    return {"states": states, "counts": counts}


class Merger:
    """Folds chunk states as they come. One process merges at once, in chunk order; with
    several, each keeps its own chunks until `merged` all-gathers them."""

    def __init__(self, reducers: tuple[AbstractReducer, ...], n_processes: int):
        self.reducers = reducers
        self.n_processes = n_processes
        self.acc = None
        self.mine: dict[int, dict] = {}

    def add(self, i: int, state: dict) -> None:
        if self.n_processes > 1:
            self.mine[i] = state
        else:
            self.acc = state if self.acc is None else merge(self.reducers, self.acc, state)

    def merged(self, n_chunks: int) -> dict:
        """The state of the whole study (the same on every process)."""
        if self.n_processes > 1:
            return _gather_and_merge(self.reducers, self.mine, n_chunks, self.n_processes)
        if self.acc is None:
            raise ValueError("`inputs` yielded no chunks.")
        return self.acc


def _gather_and_merge(reducers, mine: dict, n_chunks: int, n_proc: int) -> dict:
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
        acc = state if acc is None else merge(reducers, acc, state)
    assert acc is not None
    return acc


def finalise(
    reducers: Mapping[str, AbstractReducer], q_structs: tuple, names: tuple[str, ...], merged: dict
) -> tuple[dict, dict, int]:
    """The merged state -> (statistics by reducer name, failure counts by name, successes)."""
    stats = {
        name: jax.tree.unflatten(q_structs[k], [r.finalise(s) for s in merged["states"][k]])
        for k, (name, r) in enumerate(reducers.items())
    }
    counts = np.asarray(merged["counts"], np.int64)
    failures = {names[c]: int(counts[c]) for c in range(1, len(names)) if counts[c] > 0}
    return stats, failures, int(counts[0])
