"""On-disk record of an ensemble study: per-chunk statistics, per-member outputs, state.

Every file is written to a temporary name in the same folder and moved into place with
`os.replace`, so a study killed at any moment leaves only complete files behind. A chunk
counts as done exactly when its statistics file exists.
"""

import io
import json
import os
import pathlib
import tempfile

import numpy as np


def _atomic_write_bytes(path: pathlib.Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_arrays(path: pathlib.Path, arrays: dict) -> None:
    """Write a dict of NumPy arrays as `.npz`, atomically."""
    buf = io.BytesIO()
    np.savez(buf, **{k: np.asarray(v) for k, v in arrays.items()})  # pyright: ignore
    _atomic_write_bytes(path, buf.getvalue())


def load_arrays(path: pathlib.Path) -> dict:
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


def save_json(path: pathlib.Path, obj) -> None:
    _atomic_write_bytes(path, json.dumps(obj, indent=1, sort_keys=True).encode())


class Store:
    """Paths and files of one study's folder."""

    def __init__(self, root):
        self.root = pathlib.Path(root)

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
        return self.root / "order.npy"

    def done(self, n_chunks: int) -> set[int]:
        return {i for i in range(n_chunks) if self.stats_path(i).exists()}

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

    - `store`: the study's folder (the `store` argument of `run_ensemble`).

    **Returns:**

    A pair `(leaves, result)`: `leaves` is the list of flattened output leaves (as
    `jax.tree.leaves` orders them), each with a leading member axis in the original
    member order; `result` holds each member's integer `RESULTS` code. Members whose
    chunks were not computed are absent (so the arrays are shorter than the study).
    """
    s = Store(store)
    files = sorted((s.root / "outputs").glob("chunk_*.npz"))
    if not files:
        raise FileNotFoundError(f"No saved outputs under {s.root / 'outputs'}.")
    parts = [load_arrays(p) for p in files]
    index = np.concatenate([p["index"] for p in parts])
    perm = np.argsort(index, kind="stable")
    n_leaves = len([k for k in parts[0] if k.startswith("leaf_")])
    leaves = [np.concatenate([p[f"leaf_{j:04d}"] for p in parts])[perm] for j in range(n_leaves)]
    result = np.concatenate([p["result"] for p in parts])[perm]
    return leaves, result
