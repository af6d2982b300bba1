"""Padded irregular time-series data sets and the paper's split / missing-data protocol."""

import equinox as eqx
import numpy as np
from jaxtyping import Float, Int


class TimeSeriesData(eqx.Module):
    """A batch of series padded to one length (NumPy arrays; index like `data[idx]`).

    **Fields:**

    - `times`: `(N, L)` observation times (padding continues the grid).
    - `values`: `(N, L, C)` observations, `NaN` where missing or padding.
    - `lengths`: `(N,)` number of valid leading entries of each series.
    - `labels`: `(N,)` integer class labels (or `(N, ...)` targets).
    """

    times: Float[np.ndarray, "N L"]
    values: Float[np.ndarray, "N L C"]
    lengths: Int[np.ndarray, " N"]
    labels: np.ndarray

    def __check_init__(self):
        if np.ndim(self.times) != 2:  # one series, `data[i]`
            return
        n = np.shape(self.times)[0]
        for name in ("values", "lengths", "labels"):
            m = np.shape(getattr(self, name))[0] if np.ndim(getattr(self, name)) else None
            if m != n:
                raise ValueError(
                    f"`{name}` must hold one entry per series ({n} series, from `times`), "
                    f"got shape {np.shape(getattr(self, name))}."
                )
        if np.shape(self.values)[1] != np.shape(self.times)[1]:
            raise ValueError(
                f"`values` must have shape (N, L, C) with L = {np.shape(self.times)[1]} "
                f"(from `times`), got {np.shape(self.values)}."
            )
        lengths = np.asarray(self.lengths)
        if lengths.size and (lengths.min() < 1 or lengths.max() > np.shape(self.times)[1]):
            raise ValueError(
                f"`lengths` must lie in [1, {np.shape(self.times)[1]}], got values from "
                f"{lengths.min()} to {lengths.max()}."
            )

    def __len__(self):
        return self.times.shape[0]

    def __getitem__(self, idx):
        return TimeSeriesData(
            self.times[idx], self.values[idx], self.lengths[idx], self.labels[idx]
        )

    @property
    def num_classes(self) -> int:
        return int(self.labels.max()) + 1

    @property
    def channels(self) -> int:
        return self.values.shape[2]


def from_series(
    series: list[np.ndarray], labels: np.ndarray, *, dtype=np.float32
) -> TimeSeriesData:
    """Pad a list of `(channels, length_i)` series onto one shared grid.

    All series use the times `j / (L_max - 1)`, `j = 0..L_max-1` (index time scaled to
    [0, 1], as the reference code does for the UEA/UCR sets); a shorter series occupies the
    first `length_i` grid points (its trailing NaNs in the file count as padding). The
    reference code instead stretches unequal series to the train maximum length; padding
    keeps the original sampling.

    **Arguments:**

    - `series`: list of arrays `(channels, length_i)`.
    - `labels`: `(N,)` labels.
    - `dtype`: float dtype of `times` and `values`.

    **Returns:**

    A [`scimlx.data.TimeSeriesData`][].
    """
    if len(series) == 0:
        raise ValueError("`series` is empty.")
    labels = np.asarray(labels)
    if labels.ndim == 0 or labels.shape[0] != len(series):
        raise ValueError(
            f"`labels` must hold one label per series: {len(series)} series, got labels of "
            f"shape {labels.shape}."
        )
    series = [np.asarray(s) for s in series]
    C = series[0].shape[0] if series[0].ndim == 2 else 0
    if C == 0:
        raise ValueError(
            f"`series` must hold arrays of shape (channels, length) with channels >= 1, got "
            f"{series[0].shape} for series 0."
        )
    lengths = []
    for i, s in enumerate(series):
        if s.ndim != 2 or s.shape[0] != C:
            raise ValueError(f"series {i} has shape {s.shape}, expected ({C}, length).")
        obs = np.where(~np.all(np.isnan(s), axis=0))[0]
        lengths.append(int(obs[-1]) + 1 if len(obs) else 1)
    L = max(lengths)
    values = np.full((len(series), L, C), np.nan, dtype=dtype)
    for i, (s, n) in enumerate(zip(series, lengths)):
        values[i, :n] = s[:, :n].T
    grid = np.linspace(0.0, 1.0, L, dtype=dtype) if L > 1 else np.zeros(1, dtype)
    times = np.tile(grid, (len(series), 1))
    return TimeSeriesData(times, values, np.asarray(lengths, np.int64), labels)


def _allocate(counts: np.ndarray, n: int, rng) -> np.ndarray:
    """Split `n` draws over classes in proportion to `counts` (largest remainders)."""
    exact = counts * n / counts.sum()
    alloc = np.floor(exact).astype(np.int64)
    rest = n - alloc.sum()
    if rest > 0:
        frac = exact - alloc + 1e-9 * rng.random(len(counts))  # random tie-breaking
        order = np.argsort(-frac)
        for j in order:
            if rest == 0:
                break
            if alloc[j] < counts[j]:
                alloc[j] += 1
                rest -= 1
    return alloc


def paper_split(
    labels: np.ndarray, seed: int, train: float = 0.7
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stratified train / validation / test indices (the paper: 70 / 15 / 15 of train+test).

    As `sklearn.model_selection.train_test_split(train_size=train, stratify=labels)` followed
    by an even stratified split of the rest: `floor(train * N)` training series, then
    `floor(rest / 2)` validation and the remainder test, each class represented in
    proportion (largest remainders). Seeded; NumPy only.

    **Arguments:**

    - `labels`: `(N,)` integer labels.
    - `seed`: random seed.
    - `train`: training fraction.

    **Returns:**

    `(train_idx, val_idx, test_idx)`, disjoint, covering `0..N-1`.
    """
    labels = np.asarray(labels)
    if not 0.0 < train < 1.0:
        raise ValueError(f"`train` must be in (0, 1), got {train}.")
    rng = np.random.default_rng(seed)
    classes = np.unique(labels)

    def split(idx, n_first):
        counts = np.array([np.sum(labels[idx] == c) for c in classes])
        alloc = _allocate(counts, n_first, rng)
        first, second = [], []
        for c, k in zip(classes, alloc):
            members = rng.permutation(idx[labels[idx] == c])
            first.append(members[:k])
            second.append(members[k:])
        return np.concatenate(first), np.concatenate(second)

    all_idx = np.arange(len(labels))
    tr, rest = split(all_idx, int(np.floor(train * len(labels))))
    va, te = split(rest, int(np.floor(0.5 * len(rest))))
    return rng.permutation(tr), rng.permutation(va), rng.permutation(te)


def drop_values(data: TimeSeriesData, rate: float, seed: int) -> TimeSeriesData:
    """Drop `floor(length_i * rate)` time points at random, independently per channel (seeded).

    This is the paper's missing-data protocol (30 / 50 / 70 %): each channel of each series
    loses its own random set of time indices among its valid entries.

    **Arguments:**

    - `data`: the data set.
    - `rate`: fraction in `[0, 1)`.
    - `seed`: random seed.

    **Returns:**

    A copy with the dropped values set to `NaN`.
    """
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"`rate` must be in [0, 1), got {rate}.")
    rng = np.random.default_rng(seed)
    values = data.values.copy()
    N, _, C = values.shape
    for i in range(N):
        n = int(data.lengths[i])
        k = int(np.floor(n * rate))
        if k == 0:
            continue
        for c in range(C):
            values[i, rng.choice(n, size=k, replace=False), c] = np.nan
    return TimeSeriesData(data.times, values, data.lengths, data.labels)


def standardise(data: TimeSeriesData, reference: TimeSeriesData | None = None) -> TimeSeriesData:
    """Scale each channel to zero mean and unit variance using the observed values of
    `reference` (default: `data` itself; pass the training split to avoid leakage)."""
    ref = data if reference is None else reference
    mean = np.nanmean(ref.values, axis=(0, 1))
    std = np.nanstd(ref.values, axis=(0, 1))
    mean = np.where(np.isfinite(mean), mean, 0.0)
    std = np.where(np.isfinite(std) & (std > 0), std, 1.0)
    values = ((data.values - mean) / std).astype(data.values.dtype)
    return TimeSeriesData(data.times, values, data.lengths, data.labels)


def observed_fraction(data: TimeSeriesData) -> Float[np.ndarray, ""]:
    """Fraction of valid (non-padding) entries that are observed."""
    L = data.values.shape[1]
    valid = np.arange(L)[None, :, None] < data.lengths[:, None, None]
    valid = np.broadcast_to(valid, data.values.shape)
    obs = ~np.isnan(data.values) & valid
    return np.asarray(obs.sum() / valid.sum())
