"""Mergeable streaming statistics for ensemble studies.

A reducer turns one chunk of member values into a small *chunk state* on device
(`chunk`), merges two states on the host (`merge`, exact and deterministic for a
fixed order), and turns the final state into the statistic (`finalise`). Every method
acts on one array leaf at a time: the runner maps it over the leaves of `of(output)`.
"""

import abc
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Shaped


class AbstractReducer(eqx.Module):
    """A mergeable statistic over the members of an ensemble.

    Subclasses define `chunk` (jittable; the statistic of one chunk, with a per-member
    weight mask that excludes padding and failed members), `merge` (host-side, NumPy;
    combines two chunk states) and `finalise` (host-side; the statistic itself).
    `of` picks what the statistic is taken of, from one member's output (identity when
    `None`); the statistic is taken elementwise over every floating leaf of it.
    """

    of: eqx.AbstractVar[Callable[[Any], Any] | None]

    @abc.abstractmethod
    def chunk(
        self,
        values: Shaped[Array, "members ..."],  # pyright: ignore
        mask: Bool[Array, " members"],  # pyright: ignore
    ) -> dict:
        """The state of one chunk. `mask[i]` says whether member `i` counts."""

    @abc.abstractmethod
    def merge(self, a: dict, b: dict) -> dict:
        """Combine the states of two disjoint sets of members (NumPy, on the host)."""

    @abc.abstractmethod
    def finalise(self, state: dict) -> np.ndarray:
        """The statistic from a state."""


def _bmask(mask, x):
    return jnp.reshape(mask, mask.shape + (1,) * (x.ndim - 1))


def _moments(values, mask):
    w = _bmask(mask, values).astype(values.dtype)
    n = jnp.sum(mask.astype(jnp.int32))
    nf = jnp.maximum(n, 1).astype(values.dtype)
    x = jnp.where(_bmask(mask, values), values, jnp.zeros((), values.dtype))
    mean = jnp.sum(x, axis=0) / nf
    m2 = jnp.sum(w * (x - mean[None]) ** 2, axis=0)
    return {"n": n, "mean": mean, "m2": m2}


def _merge_moments(a, b):
    # Chan, Golub & LeVeque (1979) pairwise update.
    na = np.asarray(a["n"], np.int64)
    nb = np.asarray(b["n"], np.int64)
    n = na + nb
    if n == 0:
        return {"n": n, "mean": a["mean"], "m2": a["m2"]}
    if na == 0:
        return {"n": n, "mean": b["mean"], "m2": b["m2"]}
    if nb == 0:
        return {"n": n, "mean": a["mean"], "m2": a["m2"]}
    dt = np.asarray(a["mean"]).dtype
    delta = np.asarray(b["mean"]) - np.asarray(a["mean"])
    fa, fb, fn = dt.type(na), dt.type(nb), dt.type(n)
    mean = np.asarray(a["mean"]) + delta * (fb / fn)
    m2 = np.asarray(a["m2"]) + np.asarray(b["m2"]) + delta * delta * (fa * fb / fn)
    return {"n": n, "mean": mean.astype(dt), "m2": m2.astype(dt)}


class _AbstractMoments(AbstractReducer):
    """Reducers whose state is the count, mean and sum of squared deviations."""

    def chunk(self, values, mask):
        return _moments(values, mask)

    def merge(self, a, b):
        return _merge_moments(a, b)


class Mean(_AbstractMoments):
    """The mean over the successful members (elementwise).

    **Arguments:**

    - `of`: a function of one member's output giving the quantity (identity if `None`).
    """

    of: Callable[[Any], Any] | None = None

    def finalise(self, state):
        mean = np.asarray(state["mean"])
        return np.where(state["n"] > 0, mean, np.nan).astype(mean.dtype)


class Variance(_AbstractMoments):
    """The variance over the successful members (elementwise), by Welford/Chan merges.

    **Arguments:**

    - `of`: a function of one member's output giving the quantity (identity if `None`).
    - `ddof`: delta degrees of freedom: the divisor is `n - ddof`.
    """

    of: Callable[[Any], Any] | None = None
    ddof: int = eqx.field(default=0, static=True)

    def finalise(self, state):
        m2 = np.asarray(state["m2"])
        d = int(state["n"]) - self.ddof
        if d <= 0:
            return np.full_like(m2, np.nan)
        return (m2 / m2.dtype.type(d)).astype(m2.dtype)


class Std(_AbstractMoments):
    """The standard deviation over the successful members (elementwise).

    **Arguments:**

    - `of`: a function of one member's output giving the quantity (identity if `None`).
    - `ddof`: delta degrees of freedom: the divisor is `n - ddof`.
    """

    of: Callable[[Any], Any] | None = None
    ddof: int = eqx.field(default=0, static=True)

    def finalise(self, state):
        return np.sqrt(Variance(ddof=self.ddof).finalise(state))


def _extreme(values, mask, op, fill):
    x = jnp.where(_bmask(mask, values), values, jnp.asarray(fill, values.dtype))
    return {"v": op(x, axis=0)}


class Min(AbstractReducer):
    """The minimum over the successful members (elementwise; `inf` if there are none).

    **Arguments:**

    - `of`: a function of one member's output giving the quantity (identity if `None`).
    """

    of: Callable[[Any], Any] | None = None

    def chunk(self, values, mask):
        return _extreme(values, mask, jnp.min, jnp.inf)

    def merge(self, a, b):
        return {"v": np.minimum(a["v"], b["v"])}

    def finalise(self, state):
        return np.asarray(state["v"])


class Max(AbstractReducer):
    """The maximum over the successful members (elementwise; `-inf` if there are none).

    **Arguments:**

    - `of`: a function of one member's output giving the quantity (identity if `None`).
    """

    of: Callable[[Any], Any] | None = None

    def chunk(self, values, mask):
        return _extreme(values, mask, jnp.max, -jnp.inf)

    def merge(self, a, b):
        return {"v": np.maximum(a["v"], b["v"])}

    def finalise(self, state):
        return np.asarray(state["v"])


class Quantiles(AbstractReducer):
    """Quantiles over the successful members (elementwise): exact, or by a histogram sketch.

    Two modes:

    - `range=None` (default): **exact**. The chunk states keep every successful member's
      value, and `finalise` calls `numpy.quantile` (linear interpolation), so the result
      equals `numpy.quantile` of the successful members. Memory grows with the member
      count: the runner refuses it for studies larger than `max_exact` members.
    - `range=(lo, hi)`: a **mergeable fixed-bin histogram** with `bins` equal bins on
      `[lo, hi]` plus an underflow and an overflow bin, and the exact min and max.
      Merging adds counts, so it is exact and order-independent; memory is
      `bins + 2` counts per element, independent of the member count. A quantile is
      read off the cumulative histogram (linear interpolation inside the bin where the
      cumulative fraction first reaches `q`), so it differs from the empirical quantile
      `numpy.quantile(values, q, method="inverted_cdf")` by at most one bin width
      `(hi - lo) / bins` when that quantile lies inside `[lo, hi]`; outside, the under-
      and overflow bins stretch to the observed min / max and the error is at most the
      width of that bin.

    **Arguments:**

    - `qs`: the quantile levels, in `[0, 1]`.
    - `of`: a function of one member's output giving the quantity (identity if `None`).
    - `range`: `(lo, hi)` for the histogram sketch, or `None` for exact quantiles.
    - `bins`: the number of histogram bins in sketch mode.
    - `max_exact`: the largest member count for which the exact mode is allowed.
    """

    qs: tuple[float, ...] = eqx.field(static=True)
    of: Callable[[Any], Any] | None
    range: tuple[float, float] | None = eqx.field(static=True)
    bins: int = eqx.field(static=True)
    max_exact: int = eqx.field(static=True)

    def __init__(self, qs, of=None, *, range=None, bins=1000, max_exact=2_000_000):
        qs = tuple(float(q) for q in np.atleast_1d(np.asarray(qs, dtype=np.float64)))
        if not all(0.0 <= q <= 1.0 for q in qs):
            raise ValueError(f"`qs` must lie in [0, 1], got {qs}.")
        if range is not None:
            lo, hi = float(range[0]), float(range[1])
            if not (np.isfinite(lo) and np.isfinite(hi) and hi > lo):
                raise ValueError(f"`range` must be finite (lo, hi) with hi > lo, got {range}.")
            range = (lo, hi)
        if int(bins) < 1:
            raise ValueError(f"`bins` must be >= 1, got {bins}.")
        self.qs = qs
        self.of = of
        self.range = range
        self.bins = int(bins)
        self.max_exact = int(max_exact)

    @property
    def exact(self) -> bool:
        return self.range is None

    def chunk(self, values, mask):
        if self.exact:
            return {"values": values, "mask": mask}
        assert self.range is not None
        lo, hi = self.range
        flat = jnp.reshape(values, (values.shape[0], -1))
        pos = (flat - jnp.asarray(lo, flat.dtype)) * jnp.asarray(self.bins / (hi - lo), flat.dtype)
        idx = jnp.clip(jnp.floor(pos), -1, self.bins).astype(jnp.int32) + 1
        elem = jnp.broadcast_to(jnp.arange(flat.shape[1], dtype=jnp.int32)[None, :], idx.shape)
        w = jnp.broadcast_to(mask[:, None], idx.shape).astype(jnp.int32)
        counts = jnp.zeros((flat.shape[1], self.bins + 2), jnp.int32).at[elem, idx].add(w)
        shape = values.shape[1:]
        mm = _bmask(mask, values)
        vmin = jnp.min(jnp.where(mm, values, jnp.asarray(jnp.inf, values.dtype)), axis=0)
        vmax = jnp.max(jnp.where(mm, values, jnp.asarray(-jnp.inf, values.dtype)), axis=0)
        return {"counts": jnp.reshape(counts, shape + (self.bins + 2,)), "min": vmin, "max": vmax}

    def merge(self, a, b):
        if self.exact:
            va, vb = np.asarray(a["values"]), np.asarray(b["values"])
            ma, mb = np.asarray(a["mask"], bool), np.asarray(b["mask"], bool)
            return {
                "values": np.concatenate([va[ma], vb[mb]]),
                "mask": np.ones(int(ma.sum() + mb.sum()), bool),
            }
        return {
            "counts": np.asarray(a["counts"], np.int64) + np.asarray(b["counts"], np.int64),
            "min": np.minimum(a["min"], b["min"]),
            "max": np.maximum(a["max"], b["max"]),
        }

    def finalise(self, state):
        qs = np.asarray(self.qs)
        if self.exact:
            v = np.asarray(state["values"])[np.asarray(state["mask"], bool)]
            if v.shape[0] == 0:
                return np.full(qs.shape + v.shape[1:], np.nan)
            return np.quantile(v, qs, axis=0)
        counts = np.asarray(state["counts"], np.int64)
        shape = counts.shape[:-1]
        counts = counts.reshape(-1, self.bins + 2)
        vmin = np.asarray(state["min"], np.float64).reshape(-1)
        vmax = np.asarray(state["max"], np.float64).reshape(-1)
        assert self.range is not None
        lo, hi = self.range
        inner = lo + (hi - lo) * np.arange(self.bins + 1) / self.bins
        out = np.full((qs.size, counts.shape[0]), np.nan)
        for e in range(counts.shape[0]):
            n = counts[e].sum()
            if n == 0:
                continue
            # Bin edges: underflow [min, lo], inner bins, overflow [hi, max].
            edges = np.concatenate([[min(vmin[e], lo)], inner, [max(vmax[e], hi)]])
            cdf = np.concatenate([[0.0], np.cumsum(counts[e]) / n])
            target = np.clip(qs, 0.0, 1.0)
            k = np.clip(np.searchsorted(cdf, target, side="left"), 1, self.bins + 2)
            c0, c1 = cdf[k - 1], cdf[k]
            frac = np.where(c1 > c0, (target - c0) / np.where(c1 > c0, c1 - c0, 1.0), 0.0)
            val = edges[k - 1] + frac * (edges[k] - edges[k - 1])
            out[:, e] = np.clip(val, vmin[e], vmax[e])
        return out.reshape(qs.shape + shape)
