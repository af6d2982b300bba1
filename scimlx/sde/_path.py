"""Controlled paths built from irregular observations with missing values (NaNs)."""

from typing import Literal

import diffrax
import equinox as eqx
import jax
import jax.lax as lax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, Float, Int, Real


Interpolation = Literal["hermite", "natural", "linear", "rectilinear"]
_INTERPOLATIONS = ("hermite", "natural", "linear", "rectilinear")


def _is_concrete(*xs) -> bool:
    return not any(isinstance(x, jax.core.Tracer) for x in xs)


def check_observations(
    times: Real[ArrayLike, " length"],
    values: Real[ArrayLike, "length channels"],
    length: Int[ArrayLike, ""] | int | None = None,
) -> None:
    """Host-side validation of one series, raising `ValueError` with a clear message.

    Called automatically by [`scimlx.sde.make_path`][] when its inputs are concrete (not
    traced); inside `jit` the same conditions are checked with `eqx.error_if`.

    **Arguments:**

    - `times`: observation times, shape `(length,)`.
    - `values`: observations, shape `(length, channels)`, `NaN` where missing.
    - `length`: number of valid (non-padding) leading entries; `None` means all.

    **Returns:**

    Nothing; raises `ValueError` if the times are not finite and strictly increasing over the
    first `length` entries, if `length < 1`, or if the shapes do not match.
    """
    times = np.asarray(times)
    values = np.asarray(values)
    if times.ndim != 1:
        raise ValueError(f"`times` must have shape (length,), got {times.shape}.")
    if values.ndim != 2 or values.shape[0] != times.shape[0]:
        raise ValueError(
            f"`values` must have shape (length, channels) = ({times.shape[0]}, C), got "
            f"{values.shape}."
        )
    n = times.shape[0] if length is None else int(length)
    if n < 1 or n > times.shape[0]:
        raise ValueError(f"`length` must be in [1, {times.shape[0]}], got {n}.")
    t = times[:n]
    if not np.all(np.isfinite(t)):
        raise ValueError("`times` must be finite over the valid (non-padding) entries.")
    if n > 1 and not np.all(np.diff(t) > 0):
        bad = int(np.argmin(np.diff(t) > 0))
        raise ValueError(
            "`times` must be strictly increasing over the valid entries; "
            f"times[{bad}]={t[bad]} >= times[{bad + 1}]={t[bad + 1]}."
        )
    if np.any(np.isinf(values[:n])):
        raise ValueError("`values` must not contain inf (use NaN for missing values).")


def _pad_times(times, n):
    """Replace entries at index >= n by a continuation of the mean spacing."""
    L = times.shape[0]
    idx = jnp.arange(L)
    t0 = times[0]
    t_last = times[jnp.maximum(n - 1, 0)]
    gap = jnp.where(n > 1, (t_last - t0) / jnp.maximum(n - 1, 1).astype(times.dtype), 1.0)
    gap = jnp.where(gap > 0, gap, 1.0)
    extra = (idx - (n - 1)).astype(times.dtype) * gap
    return jnp.where(idx < n, times, t_last + extra)


def fill_nans(
    times: Real[Array, " length"], values: Float[Array, "length channels"]
) -> Float[Array, "length channels"]:
    """Fill missing values per channel the way `torchcde` does before building a spline.

    Interior gaps are linearly interpolated in time between the neighbouring observations;
    leading (trailing) gaps take the first (last) observed value. A channel with no
    observation at all is filled with zeros (documented handling: after standardisation this
    is the channel mean; the mask channel of [`scimlx.sde.make_path`][] records the absence).

    **Arguments:**

    - `times`: strictly increasing times, shape `(length,)`.
    - `values`: observations with `NaN` where missing, shape `(length, channels)`.

    **Returns:**

    The filled values, same shape, no `NaN`.
    """
    L = values.shape[0]
    obs = ~jnp.isnan(values)
    idx = jnp.arange(L)[:, None]
    prev = lax.cummax(jnp.where(obs, idx, -1), axis=0)
    nxt = lax.cummin(jnp.where(obs, idx, L), axis=0, reverse=True)
    has_prev = prev >= 0
    has_next = nxt < L
    p = jnp.clip(prev, 0, L - 1)
    q = jnp.clip(nxt, 0, L - 1)
    safe = jnp.where(obs, values, 0.0)
    yp = jnp.take_along_axis(safe, p, axis=0)
    yq = jnp.take_along_axis(safe, q, axis=0)
    tp = times[p]
    tq = times[q]
    denom = jnp.where(q > p, tq - tp, 1.0)
    w = jnp.where(q > p, (times[:, None] - tp) / denom, 0.0)
    interior = yp + w * (yq - yp)
    out = jnp.where(has_prev & has_next, interior, jnp.where(has_prev, yp, yq))
    out = jnp.where(has_prev | has_next, out, 0.0)
    return out.astype(values.dtype)


def hermite_coefficients(
    times: Real[Array, " length"], values: Float[Array, "length channels"]
) -> tuple[Float[Array, "length-1 channels"], ...]:
    """Hermite cubic coefficients with backward differences (Morrill et al. 2021).

    On `[t_i, t_{i+1}]` the cubic matches `y_i`, `y_{i+1}`, and has slope at `t_i` equal to the
    backward difference `(y_i - y_{i-1}) / (t_i - t_{i-1})` (the forward difference at `i=0`)
    and slope at `t_{i+1}` equal to `(y_{i+1} - y_i) / (t_{i+1} - t_i)`. So the path at time
    `t` depends only on observations up to the next knot.

    **Arguments:**

    - `times`: strictly increasing, shape `(length,)` with `length >= 2`.
    - `values`: no `NaN`, shape `(length, channels)`.

    **Returns:**

    `(d, c, b, a)` in `diffrax.CubicInterpolation`'s convention
    (`a + b s + c s^2 + d s^3`, `s = t - t_i`).
    """
    dt = (times[1:] - times[:-1])[:, None]
    m = (values[1:] - values[:-1]) / dt
    b = jnp.concatenate([m[:1], m[:-1]], axis=0)
    a = values[:-1]
    c = 2.0 * (m - b) / dt
    d = -(m - b) / dt**2
    return d, c, b, a


def natural_cubic_coefficients(
    times: Real[Array, " length"],
    values: Float[Array, "length channels"],
    length: Int[ArrayLike, ""] | int | None = None,
) -> tuple[Float[Array, "length-1 channels"], ...]:
    """Natural cubic spline coefficients (second derivative zero at both ends).

    **Arguments:**

    - `times`: strictly increasing, shape `(length,)` with `length >= 2`.
    - `values`: no `NaN`, shape `(length, channels)`.
    - `length`: if given, the spline is the natural spline of the first `length` knots
      (the ends conditions hold at knot `length - 1`); beyond it the second derivatives are
      zero, so with values held constant there the path is constant.

    **Returns:**

    `(d, c, b, a)` in `diffrax.CubicInterpolation`'s convention.
    """
    L = times.shape[0]
    n = L if length is None else length
    h = (times[1:] - times[:-1])[:, None]  # (L-1, 1)
    m = (values[1:] - values[:-1]) / h  # (L-1, C)
    C = values.shape[1]
    if L == 2:
        M = jnp.zeros_like(values)
    else:
        # Tridiagonal system for the second derivatives M_1..M_{L-2} (M_0 = M_{n-1} = 0);
        # rows of knots i >= n-1 become M_i = 0.
        i = jnp.arange(1, L - 1)
        active = i < n - 1
        diag = jnp.where(active, 2.0 * (h[:-1] + h[1:])[:, 0], 1.0)
        lower = jnp.where(active & (i > 1), h[:-1, 0], 0.0)
        upper = jnp.where(active & (i < n - 2), h[1:, 0], 0.0)
        rhs = jnp.where(active[:, None], 6.0 * (m[1:] - m[:-1]), 0.0)
        interior = lax.linalg.tridiagonal_solve(
            jnp.broadcast_to(lower, (C, L - 2)),
            jnp.broadcast_to(diag, (C, L - 2)),
            jnp.broadcast_to(upper, (C, L - 2)),
            rhs.T[..., None],
        )[..., 0].T
        zero = jnp.zeros((1, C), values.dtype)
        M = jnp.concatenate([zero, interior, zero], axis=0)
    a = values[:-1]
    b = m - h * (2.0 * M[:-1] + M[1:]) / 6.0
    c = M[:-1] / 2.0
    d = (M[1:] - M[:-1]) / (6.0 * h)
    return d, c, b, a


class ControlPath(diffrax.AbstractPath):
    """A continuous path X(t) through one series' observations (a `diffrax.AbstractPath`).

    Built by [`scimlx.sde.make_path`][]. Beyond the last valid observation time `t_end` the
    path is held constant (its derivative is zero), so series of different lengths padded to
    one grid can be solved together. Use as the control of a `diffrax.ControlTerm` (neural
    CDE) or evaluate inside a drift (stable SDEs).
    """

    interpolation: diffrax.AbstractGlobalInterpolation
    t_end: Real[Array, ""]
    channels: int = eqx.field(static=True)

    @property
    def t0(self):
        return self.interpolation.t0

    @property
    def t1(self):
        return self.interpolation.t1

    def _clamp(self, t):
        return jnp.clip(t, self.interpolation.t0, self.t_end)

    def evaluate(
        self, t0: Real[ArrayLike, ""], t1: Real[ArrayLike, ""] | None = None, left: bool = True
    ) -> Float[Array, " channels"]:
        """X(t0), or X(t1) - X(t0) if `t1` is given. Held constant outside [t0, t_end]."""
        if t1 is not None:
            return self.evaluate(t1, left=left) - self.evaluate(t0, left=left)
        return self.interpolation.evaluate(self._clamp(t0), left=left)

    def derivative(self, t: Real[ArrayLike, ""], left: bool = True) -> Float[Array, " channels"]:
        """dX/dt at `t` (zero outside [t0, t_end])."""
        inside = (t >= self.interpolation.t0) & (t <= self.t_end)
        der = self.interpolation.derivative(self._clamp(t), left=left)
        return jnp.where(inside, der, jnp.zeros_like(der))


def make_path(
    times: Real[ArrayLike, " length"],
    values: Real[ArrayLike, "length channels"],
    length: Int[ArrayLike, ""] | int | None = None,
    *,
    interpolation: str = "hermite",
    time_channel: bool = True,
    mask_channel: bool = False,
) -> ControlPath:
    """Build a controlled path X(t) from one irregularly observed series with NaNs.

    Missing values are filled per channel as `torchcde` does (linear in time between
    observations, nearest observation at the ends, zeros for a channel never observed), then
    interpolated. Entries at index `>= length` are padding: their times are replaced by a
    continuation of the mean spacing and the path is held constant there. Map over a batch with
    `jax.vmap(make_path)(times, values, lengths)`.

    Channels of X, in order: `[t]` if `time_channel`, the data channels, then, if
    `mask_channel`, the cumulative count of observations of each data channel (the
    "observational intensity" of Kidger et al. 2020), so the model can see where data are
    missing.

    Handling of degenerate input (never NaN outputs): a single observation (`length == 1`)
    gives a constant path; an all-NaN channel gives zeros; times that are not strictly
    increasing over the valid entries raise `ValueError` (or an `eqx.error_if` error under
    `jit`).

    **Arguments:**

    - `times`: observation times, shape `(length,)`, strictly increasing over the valid entries.
    - `values`: observations, shape `(length, channels)`, `NaN` for missing.
    - `length`: number of valid leading entries (the rest is padding); `None` means all.
    - `interpolation`: `"hermite"` (cubic Hermite with backward differences, the paper's
      choice), `"natural"` (natural cubic spline), `"linear"`, or `"rectilinear"`
      (piecewise constant, Morrill et al. 2021; returned as a linear interpolation on the
      doubled grid `t0, t1, t1, t2, ...` with the data changing at the second copy, so that
      X at an observation time equals the previous observation, a causal path).
    - `time_channel`: prepend time as a channel (the paper does).
    - `mask_channel`: append cumulative observation counts per data channel.

    **Returns:**

    A [`scimlx.sde.ControlPath`][].
    """
    if interpolation not in _INTERPOLATIONS:
        raise ValueError(
            f"`interpolation` must be one of {_INTERPOLATIONS}, got {interpolation!r}."
        )
    if _is_concrete(times, values, length):
        check_observations(times, values, length)
    values = jnp.asarray(values)
    if not jnp.issubdtype(values.dtype, jnp.floating):
        values = values.astype(float)
    times = jnp.asarray(times).astype(values.dtype)
    if times.ndim != 1 or values.ndim != 2 or values.shape[0] != times.shape[0]:
        raise ValueError(
            f"`times` must be (length,) and `values` (length, channels); got {times.shape}, "
            f"{values.shape}."
        )
    L = times.shape[0]
    n = jnp.asarray(L if length is None else length).astype(jnp.arange(1).dtype)
    return _make_path(times, values, n, interpolation, time_channel, mask_channel)


@eqx.filter_jit
def _make_path(times, values, n, interpolation, time_channel, mask_channel):
    L = times.shape[0]
    valid_gap = (jnp.arange(L - 1) < n - 1) & (times[1:] <= times[:-1])
    times = eqx.error_if(
        times,
        jnp.any(valid_gap) | (n < 1) | jnp.any(jnp.isnan(times) & (jnp.arange(L) < n)),
        "`times` must be finite and strictly increasing over the valid entries, and `length >= 1`.",
    )
    times = _pad_times(times, n)
    valid = (jnp.arange(L) < n)[:, None]
    values = jnp.where(valid, values, jnp.nan)
    observed = ~jnp.isnan(values)
    data = fill_nans(times, values)
    channels = [data]
    if time_channel:
        channels.insert(0, times[:, None])
    if mask_channel:
        channels.append(jnp.cumsum(observed.astype(values.dtype), axis=0))
    ys = jnp.concatenate(channels, axis=1)
    if L == 1:  # a single knot: duplicate it one time unit later (constant path).
        times = jnp.concatenate([times, times + 1.0])
        ys = jnp.concatenate([ys, ys], axis=0)
    t_end = times[jnp.maximum(n - 1, 0)]
    if interpolation == "hermite":
        interp = diffrax.CubicInterpolation(times, hermite_coefficients(times, ys))
    elif interpolation == "natural":
        interp = diffrax.CubicInterpolation(times, natural_cubic_coefficients(times, ys, n))
    elif interpolation == "linear":
        interp = diffrax.LinearInterpolation(times, ys)
    else:
        new_ts = jnp.repeat(times, 2)[1:]
        new_ys = jnp.repeat(ys, 2, axis=0)[:-1]
        interp = diffrax.LinearInterpolation(new_ts, new_ys)
    return ControlPath(interp, t_end, ys.shape[1])


def observation_mask(
    values: Float[Array, "length channels"], length: Int[ArrayLike, ""] | int | None = None
) -> Bool[Array, "length channels"]:
    """`True` where a value is observed (not NaN, and not padding)."""
    L = values.shape[0]
    n = L if length is None else length
    return ~jnp.isnan(values) & (jnp.arange(L) < n)[:, None]
