"""On-disk record of an ensemble study: per-chunk statistics, per-member outputs, state.

Every file is written with the core's atomic write (a temporary file in the same folder,
fsynced, moved into place with `os.replace`, the folder fsynced), so a study killed at any
moment leaves only complete files behind; temporary files of killed writers are removed
when the study starts again. A chunk counts as done exactly when its statistics file
exists and verifies. Each array file carries the SHA-256 of its arrays and the header
(`study.json`) the SHA-256 of its content, so a truncated or altered file is detected and
named rather than read.
"""

import hashlib
import json
import pathlib
from collections.abc import Callable
from typing import Any

import equinox as eqx
import numpy as np

from .._core._persistence import (
    atomic_write_bytes,
    clean_orphans_in,
    CorruptedFileError,
    read_arrays,
)


# A store file that fails its checksum (truncated, altered, unreadable).
StoreCorruptionError = CorruptedFileError


def save_json(path: pathlib.Path, obj) -> None:
    """Write `obj` as JSON with the SHA-256 of its canonical form, atomically."""
    body = json.dumps(obj, sort_keys=True)
    record = {"content": obj, "sha256": hashlib.sha256(body.encode()).hexdigest()}
    atomic_write_bytes(path, json.dumps(record, indent=1, sort_keys=True).encode())


def load_json(path: pathlib.Path):
    """Read a file written by `save_json`, verifying its checksum (raises
    `StoreCorruptionError` naming the file otherwise)."""
    try:
        record = json.loads(pathlib.Path(path).read_bytes())
        content, want = record["content"], record["sha256"]
    except FileNotFoundError:
        raise
    except (ValueError, KeyError, TypeError, OSError) as e:
        raise StoreCorruptionError(path, f"unreadable: {type(e).__name__}: {e}") from None
    if hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest() != want:
        raise StoreCorruptionError(path, "its checksum does not match its content")
    return content


def digest_of(obj) -> str:
    """A short digest of a JSON-serialisable object (a study's fingerprint)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


class StoreFolder:
    """Paths and files of one study's folder."""

    def __init__(self, root):
        self.root = pathlib.Path(root)
        if self.root.exists() and not self.root.is_dir():
            raise ValueError(f"`store` must be a folder, got the file {self.root}.")

    @property
    def meta_path(self):
        return self.root / "study.json"

    def state_path(self, process: int = 0):
        return self.root / ("state.npz" if process == 0 else f"state.p{process}.npz")

    def stats_path(self, i: int):
        return self.root / "chunks" / f"stats_{i:07d}.npz"

    def outputs_path(self, i: int):
        return self.root / "outputs" / f"chunk_{i:07d}.npz"

    @property
    def order_path(self):
        return self.root / "order.npz"

    def done_chunks(self) -> set[int]:
        """Indices of the chunks whose statistics file exists."""
        return {int(p.stem.split("_")[1]) for p in (self.root / "chunks").glob("stats_*.npz")}

    def forget(self, i: int) -> None:
        """Remove chunk `i`'s files (to recompute it)."""
        for p in (self.stats_path(i), self.outputs_path(i)):
            if p.exists():
                p.unlink()

    def clean_orphans(self) -> list[str]:
        """Remove temporary files that writers killed mid-write left behind."""
        removed = []
        for d in (self.root, self.root / "chunks", self.root / "outputs"):
            removed += clean_orphans_in(d)
        return removed

    def clear(self):
        for sub in ("chunks", "outputs"):
            d = self.root / sub
            if d.exists():
                for p in d.iterdir():
                    p.unlink()
        for p in (self.meta_path, self.order_path, self.state_path(0)):
            if p.exists():
                p.unlink()
        for p in self.root.glob("state.p*.npz"):
            p.unlink()


def load_outputs(store) -> tuple[list[np.ndarray], np.ndarray]:
    """Read back the per-member outputs a study saved with `save=...`.

    **Arguments:**

    - `store`: the study's folder (the `folder` of the `Store` given to `run_ensemble`).

    **Returns:**

    A pair `(leaves, result)`: `leaves` is the list of flattened output leaves (as
    `jax.tree.leaves` orders them), each with a leading member axis in the original
    member order; `result` holds each member's integer `RESULTS` code. Members whose
    chunks were not computed are absent (so the arrays are shorter than the study).

    **Raises:**

    `StoreCorruptionError` (a `ValueError`) naming a truncated or altered file; run
    the study again with the same `store` to recompute its chunk.
    """
    s = StoreFolder(store)
    files = sorted((s.root / "outputs").glob("chunk_*.npz"))
    if not files:
        raise FileNotFoundError(f"No saved outputs under {s.root / 'outputs'}.")
    parts = [read_arrays(p) for p in files]
    index = np.concatenate([p["index"] for p in parts])
    perm = np.argsort(index, kind="stable")
    n_leaves = len([k for k in parts[0] if k.startswith("leaf_")])
    leaves = [np.concatenate([p[f"leaf_{j:04d}"] for p in parts])[perm] for j in range(n_leaves)]
    result = np.concatenate([p["result"] for p in parts])[perm]
    return leaves, result


def _whole(out):
    return out


class Store(eqx.Module):
    """Where a study is recorded on disk, so that it can be resumed.

    The folder holds per-chunk statistics (each written atomically; a chunk is done when
    its file exists and verifies), a `state.npz` with the merged statistics and the done
    chunks, the member order of a cost-ordered study, and optional per-member outputs.

    **Arguments:**

    - `folder`: the study's folder (created if missing).
    - `resume`: if `True` and the folder holds this study, only missing chunks are
      computed; if `False` the folder's study files are deleted first.
    - `save`: a function of one member's output giving what to store per member (or
      `True` for the whole output); written per chunk to `folder/outputs/`. Read back
      with `load_outputs`.
    """

    folder: pathlib.Path = eqx.field(static=True, converter=pathlib.Path)
    resume: bool = eqx.field(default=True, static=True)
    save: Callable[[Any], Any] | bool | None = None

    @property
    def save_fn(self) -> Callable[[Any], Any] | None:
        """The function of one output that gives what is saved (`None`: nothing)."""
        if self.save is True:
            return _whole
        return self.save or None
