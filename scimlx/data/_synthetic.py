"""A synthetic irregular-series classification set (for tests, tours and examples)."""

import numpy as np
from numpy.typing import ArrayLike

from ._protocol import TimeSeriesData


def synthetic_irregular(
    num_series: int = 256,
    length: int = 32,
    channels: int = 2,
    num_classes: int = 3,
    *,
    missing: float = 0.0,
    min_length: int | None = None,
    noise: float = 0.1,
    seed: int = 0,
    dtype=np.float32,
) -> TimeSeriesData:
    """A bump whose position sets the class, on a random sinusoid, at irregular times.

    Class `k` of `K` has a Gaussian bump (width 0.1, random height in [1, 2] per channel)
    centred at `(k + 1) / (K + 1)`, added to a nuisance sinusoid (random frequency in [0.5, 2]
    cycles, phase, amplitude up to 0.5) and noise; each series has its own random time grid in
    [0, 1] (sorted uniform draws including 0), optional variable lengths, and entries dropped
    at random with probability `missing` (independently per entry).

    **Arguments:**

    - `num_series`, `length`, `channels`, `num_classes`: sizes.
    - `missing`: probability that an entry is `NaN`.
    - `min_length`: if given, lengths are uniform in `[min_length, length]` (padding after).
    - `noise`: observation noise standard deviation.
    - `seed`: random seed.
    - `dtype`: float dtype.

    **Returns:**

    A [`scimlx.data.TimeSeriesData`][] with labels `0..num_classes-1`.
    """
    if length < 1 or channels < 1 or num_classes < 1 or num_series < 1:
        raise ValueError("sizes must be positive.")
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, num_classes, num_series)
    if min_length is None:
        lengths = np.full(num_series, length)
    else:
        lengths = rng.integers(max(1, min_length), length + 1, num_series)
    times = np.empty((num_series, length), dtype)
    values = np.full((num_series, length, channels), np.nan, dtype)
    for i in range(num_series):
        n = int(lengths[i])
        t = np.sort(np.concatenate([[0.0], rng.uniform(0.0, 1.0, n - 1)]))
        t = t + np.arange(n) * 1e-6  # strictly increasing
        gap = (t[-1] - t[0]) / max(n - 1, 1) if n > 1 else 1.0
        times[i, :n] = t
        times[i, n:] = t[-1] + gap * np.arange(1, length - n + 1)
        centre = (labels[i] + 1.0) / (num_classes + 1.0)
        height = rng.uniform(1.0, 2.0, channels)
        freq = rng.uniform(0.5, 2.0, channels)
        phase = rng.uniform(0, 2 * np.pi, channels)
        amp = rng.uniform(0.0, 0.5, channels)
        tt = t[:, None]
        v = (
            height * np.exp(-(((tt - centre) / 0.1) ** 2))
            + amp * np.sin(2 * np.pi * freq * tt + phase)
            + noise * rng.normal(size=(n, channels))
        )
        if missing > 0:
            v[rng.random(v.shape) < missing] = np.nan
        values[i, :n] = v
    return TimeSeriesData(times, values, lengths.astype(np.int64), labels.astype(np.int64))


# Seven-segment layout on an 8 x 8 image: (row, col) cells of each segment, a-g.
_SEGMENT_CELLS = {
    "a": [(0, c) for c in range(2, 6)],
    "b": [(r, 6) for r in range(1, 4)],
    "c": [(r, 6) for r in range(4, 7)],
    "d": [(7, c) for c in range(2, 6)],
    "e": [(r, 1) for r in range(4, 7)],
    "f": [(r, 1) for r in range(1, 4)],
    "g": [(3, c) for c in range(2, 6)] + [(4, c) for c in range(2, 6)],
}
_DIGIT_SEGMENTS = (
    "abcdef",
    "bc",
    "abged",
    "abgcd",
    "fgbc",
    "afgcd",
    "afgedc",
    "abc",
    "abcdefg",
    "abcdfg",
)


def seven_segment_digits(
    num_samples: int = 1797, *, noise: float = 0.25, seed: int = 0, dtype=np.float32
) -> tuple[np.ndarray, np.ndarray]:
    """Handwriting-like 8 x 8 digit images drawn as seven-segment glyphs, with random
    stroke strength, a random shift of up to one pixel, dropped segments and noise.

    A small, dependency-free stand-in for the classic 8 x 8 digits set: ten classes whose
    images overlap (8 contains every other digit's strokes), so a classifier must combine
    pixels, and which a small network learns to ~90 % accuracy in a few dozen steps.

    **Arguments:**

    - `num_samples`: number of images.
    - `noise`: standard deviation of the additive Gaussian pixel noise (pixels are in [0, 1]
      before noise).
    - `seed`: random seed.
    - `dtype`: float dtype of the images.

    **Returns:**

    `(images, labels)`: `images` of shape `(num_samples, 64)` (row-major 8 x 8), `labels` of
    shape `(num_samples,)` with values `0..9`.
    """
    if num_samples < 1:
        raise ValueError(f"`num_samples` must be positive, got {num_samples}.")
    if not noise >= 0:
        raise ValueError(f"`noise` must be non-negative, got {noise}.")
    rng = np.random.default_rng(seed)
    templates = np.zeros((10, 7, 8, 8))
    for seg_i, seg in enumerate("abcdefg"):
        for r, c in _SEGMENT_CELLS[seg]:
            templates[:, seg_i, r, c] = 1.0
    on = np.array([[seg in _DIGIT_SEGMENTS[d] for seg in "abcdefg"] for d in range(10)], float)
    labels = rng.integers(0, 10, num_samples)
    strength = rng.uniform(0.5, 1.0, (num_samples, 7)) * (rng.uniform(size=(num_samples, 7)) > 0.05)
    weights = on[labels] * strength  # per-sample segment intensities, a few dropped
    images = np.einsum("ns,nsrc->nrc", weights, templates[labels])
    shifts = rng.integers(-1, 2, (num_samples, 2))
    for i in range(num_samples):
        images[i] = np.roll(images[i], tuple(shifts[i]), axis=(0, 1))
    images = images + noise * rng.standard_normal(images.shape)
    return images.reshape(num_samples, 64).astype(dtype), labels.astype(np.int32)


def damped_oscillator(ts: ArrayLike, omega: float = 2.0, zeta: float = 0.1) -> np.ndarray:
    r"""The analytic solution of $x'' + 2\zeta\omega x' + \omega^2 x = 0$, $x(0) = 1$,
    $x'(0) = 0$, underdamped ($0 \le \zeta < 1$), at the times `ts`.

    **Returns:** an array of shape `(len(ts), 2)` holding $(x, x')$.
    """
    if not omega > 0:
        raise ValueError(f"`omega` must be positive, got {omega}.")
    if not 0 <= zeta < 1:
        raise ValueError(f"`zeta` must lie in [0, 1) (underdamped), got {zeta}.")
    ts = np.asarray(ts)
    wd = omega * np.sqrt(1 - zeta**2)
    decay = np.exp(-zeta * omega * ts)
    x = decay * (np.cos(wd * ts) + zeta * omega / wd * np.sin(wd * ts))
    v = -decay * (omega**2 / wd) * np.sin(wd * ts)
    return np.stack([x, v], axis=-1)
