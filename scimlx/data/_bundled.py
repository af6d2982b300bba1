"""Loaders for the UEA/UCR data sets that aeon or sktime ship inside their wheels."""

import importlib.util
import os

import numpy as np

from ._ts import read_ts


BUNDLED = (
    "BasicMotions",
    "JapaneseVowels",
    "ArrowHead",
    "GunPoint",
    "ItalyPowerDemand",
    "OSULeaf",
    "ACSF1",
    "PickupGestureWiimoteZ",
    "UnitTest",
)
# Which wheel ships which set (verified in aeon 1.6.0 and sktime 1.2.0, see the methods notes).
_PACKAGES = ("aeon", "sktime")


def _package_data_dirs() -> list[str]:
    dirs = []
    for pkg in _PACKAGES:
        try:
            spec = importlib.util.find_spec(pkg)  # locates without importing the package
        except (ImportError, ValueError):
            spec = None
        if spec is None or not spec.submodule_search_locations:
            continue
        for loc in spec.submodule_search_locations:
            d = os.path.join(loc, "datasets", "data")
            if os.path.isdir(d):
                dirs.append(d)
    return dirs


def bundled_dataset_dir(name: str) -> str | None:
    """The folder holding `<name>_TRAIN.ts` in an installed aeon or sktime, or `None`."""
    for d in _package_data_dirs():
        p = os.path.join(d, name)
        if os.path.isfile(os.path.join(p, f"{name}_TRAIN.ts")):
            return p
    return None


def available_datasets() -> list[str]:
    """Names in `BUNDLED` whose files are found in an installed aeon or sktime."""
    return [n for n in BUNDLED if bundled_dataset_dir(n) is not None]


def load_uea_ucr(name: str) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """Load a bundled UEA/UCR classification set, train and test merged (the paper's protocol).

    Reads the `.ts` files directly from an installed `aeon` (or `sktime`) without importing the
    package (so its heavy dependencies need not be installed: `pip install aeon --no-deps` is
    enough). Nothing is downloaded.

    **Arguments:**

    - `name`: one of `scimlx.data.BUNDLED` (e.g. `"BasicMotions"`, `"JapaneseVowels"`).

    **Returns:**

    `(series, labels, is_train)`: a list of arrays of shape `(channels, length_i)`, integer
    labels `0..K-1` (classes sorted as in the file header), and a boolean array marking the
    original train part.
    """
    d = bundled_dataset_dir(name)
    if d is None:
        raise FileNotFoundError(
            f"Data set {name!r} not found: install aeon (e.g. `pip install aeon --no-deps`) "
            "or sktime, whose wheels ship it. Known bundled sets: " + ", ".join(BUNDLED)
        )
    tr, ytr, hdr = read_ts(os.path.join(d, f"{name}_TRAIN.ts"))
    te, yte, _ = read_ts(os.path.join(d, f"{name}_TEST.ts"))
    classes = hdr.get("classes") or sorted(set(ytr) | set(yte))
    index = {c: i for i, c in enumerate(classes)}
    labels = np.array([index[c] for c in np.concatenate([ytr, yte])], dtype=np.int64)
    is_train = np.concatenate([np.ones(len(tr), bool), np.zeros(len(te), bool)])
    return tr + te, labels, is_train
