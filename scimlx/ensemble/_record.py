"""Recording a study in its `Store` and reading it back on resume."""

import json
import warnings
from typing import Any

import jax
import numpy as np

from .._core._fingerprint import callable_digest, tree_digest
from .._core._persistence import read_arrays, write_arrays
from ._store import (
    digest_of,
    load_json,
    save_json,
    Store,
    StoreCorruptionError,
    StoreFolder,
)


_START_OVER = (
    "Pass `Store(..., resume=False)` to start over (deletes the store's files), or use another "
    "folder."
)


def fingerprint(
    *, fn, inputs, reducers, result, order_by, n_members, chunk_size, n_devices, strategy, schedule
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


def _state_arrays(state) -> dict[str, np.ndarray]:
    return {f"s{j:05d}": np.asarray(x) for j, x in enumerate(jax.tree.leaves(state))}


class StudyRecord:
    """One study's files: header, member order, chunk statistics and outputs, state."""

    def __init__(self, store: Store, study: dict):
        self.folder = StoreFolder(store.folder)
        self.resume = store.resume
        self.study = study
        self.digest = digest_of(study)
        save_fn = store.save_fn
        self.saves = save_fn is not None
        self.save_digest = "" if save_fn is None else callable_digest(save_fn)

    def open(self, process: int, n_processes: int) -> set[int]:
        """Prepare the folder (process 0) and return the chunks already done."""
        if process == 0:
            self.folder.clean_orphans()
            if self.resume:
                self._check_study()
            else:
                self.folder.clear()
            save_json(self.folder.meta_path, self.study)
        if n_processes > 1:
            from jax.experimental import multihost_utils

            multihost_utils.sync_global_devices("scimlx.ensemble: store ready")
        return self.folder.done_chunks()

    def _check_study(self) -> None:
        """Refuse a store that holds another study; a corrupted header is rewritten (each
        chunk file is then checked against the study on its own)."""
        st = self.folder
        if not st.meta_path.exists():
            return
        try:
            old = load_json(st.meta_path)
        except StoreCorruptionError as e:
            warnings.warn(
                f"{e} Rewriting it; each saved chunk is checked against this study.", stacklevel=4
            )
            return
        if not isinstance(old, dict) or old.get("version") != self.study["version"]:
            raise ValueError(
                f"`store` {st.root} holds a study written by another scimlx version. " + _START_OVER
            )
        differ = sorted(k for k in self.study if old.get(k) != self.study[k])
        if differ:
            raise ValueError(
                f"`store` {st.root} holds a different study (it differs in: "
                f"{', '.join(differ)}). " + _START_OVER
            )

    def load_order(self) -> np.ndarray | None:
        """The member order saved by an earlier run, if any (and intact)."""
        if not (self.resume and self.folder.order_path.exists()):
            return None
        try:
            return read_arrays(self.folder.order_path)["perm"]
        except StoreCorruptionError as e:
            warnings.warn(f"{e} Recomputing the member order.", stacklevel=4)
            return None

    def save_order(self, perm: np.ndarray) -> None:
        write_arrays(self.folder.order_path, {"perm": perm})

    def write_chunk(self, i: int, state, saved, idx, n_valid: int, inputs_digest: str) -> None:
        """Write chunk `i`'s outputs (if saved) and statistics; the latter commits it."""
        if self.saves:
            out_tree, codes = saved
            leaves = jax.tree.leaves(out_tree)
            arrays = {f"leaf_{j:04d}": np.asarray(x)[:n_valid] for j, x in enumerate(leaves)}
            arrays["index"] = np.asarray(idx)
            arrays["result"] = np.asarray(codes)[:n_valid]
            arrays["__save__"] = np.asarray(self.save_digest)
            write_arrays(self.folder.outputs_path(i), arrays)
        arrays = _state_arrays(state)
        arrays["__study__"] = np.asarray(self.digest)
        arrays["__inputs__"] = np.asarray(inputs_digest)
        write_arrays(self.folder.stats_path(i), arrays)

    def read_chunk(self, i: int, like: Any, inputs_digest: str):
        """A done chunk's statistics; `None` (after a warning) if its files are corrupted
        or its outputs are missing, and the chunk is then to be recomputed."""
        st = self.folder
        try:
            arrays = read_arrays(st.stats_path(i))
            if self.saves:
                saved = read_arrays(st.outputs_path(i))
                if str(saved.get("__save__", "")) != self.save_digest:
                    st.forget(i)  # saved by a run with another (or no) `save`
                    return None
        except FileNotFoundError:  # outputs not saved by the earlier run
            st.forget(i)
            return None
        except StoreCorruptionError as e:
            warnings.warn(f"{e} Recomputing chunk {i}.", stacklevel=4)
            st.forget(i)
            return None
        if str(arrays.pop("__study__", "")) != self.digest or (
            str(arrays.pop("__inputs__", "")) != inputs_digest
        ):
            raise ValueError(
                f"`store` {st.root}: {st.stats_path(i).name} belongs to another study (other "
                "inputs, function, reducers or chunking). " + _START_OVER
            )
        leaves = [arrays[f"s{j:05d}"] for j in range(len(arrays))]
        return jax.tree.unflatten(jax.tree.structure(like), leaves)

    def write_state(self, merged, n_chunks: int, process: int) -> None:
        """The merged statistics of the whole study and its done chunks."""
        arrays = _state_arrays(merged)
        arrays["done"] = np.asarray(sorted(range(n_chunks)), np.int64)
        arrays["fingerprint"] = np.asarray(json.dumps(self.study, sort_keys=True))
        write_arrays(self.folder.state_path(process), arrays)
