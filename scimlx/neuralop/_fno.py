"""Fourier neural operator (FNO, Li et al. 2021) in 2-D: the baseline MgNO is compared with."""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from .._core._checks import check_finite, check_positive, check_sizes


def _default_dtype():
    return jnp.zeros(()).dtype if jax.config.jax_enable_x64 else jnp.float32  # pyright: ignore


class Pointwise(eqx.Module):
    """A 1x1 convolution (a linear map of the channels at every grid point).

    **Arguments:**

    - `in_channels`, `out_channels`: channel counts.
    - `use_bias`: whether to add a learned per-channel bias.
    - `dtype`: parameter dtype (default: float64 when x64 is on, else float32).
    - `key`: PRNG key (keyword-only).
    """

    weight: Float[Array, "out in"]
    bias: Float[Array, " out"] | None
    in_channels: int = eqx.field(static=True)
    out_channels: int = eqx.field(static=True)

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        use_bias: bool = True,
        dtype=None,
        *,
        key: PRNGKeyArray,
    ):
        dtype = _default_dtype() if dtype is None else dtype
        wkey, bkey = jax.random.split(key)
        lim = 1.0 / math.sqrt(in_channels)
        self.weight = jax.random.uniform(
            wkey, (out_channels, in_channels), dtype, minval=-lim, maxval=lim
        )
        self.bias = (
            jax.random.uniform(bkey, (out_channels,), dtype, minval=-lim, maxval=lim)
            if use_bias
            else None
        )
        self.in_channels = in_channels
        self.out_channels = out_channels

    def __call__(self, x: Float[Array, " in *spatial"]) -> Float[Array, " out *spatial"]:
        if x.shape[0] != self.in_channels:
            raise ValueError(
                f"`x` must have {self.in_channels} channels on axis 0, got shape {x.shape}."
            )
        y = jnp.tensordot(self.weight, x.astype(self.weight.dtype), axes=1)
        if self.bias is not None:
            y = y + self.bias.reshape((-1,) + (1,) * (x.ndim - 1))
        return y


class SpectralConv2d(eqx.Module):
    """Spectral convolution: multiply the lowest `modes` Fourier modes by learned complex weights.

    The weights are stored as real and imaginary parts (so every leaf is real and optimisers and
    parameter counts treat a complex weight as two reals, as the FNO code's `count_params` does).

    **Arguments:**

    - `in_channels`, `out_channels`: channel counts.
    - `modes`: `(m1, m2)` Fourier modes kept along each axis (`m1` positive and `m1` negative
      frequencies along x, `m2` along the half-spectrum axis y).
    - `dtype`: parameter dtype.
    - `key`: PRNG key (keyword-only).
    """

    weight_re: Float[Array, "2 in out m1 m2"]
    weight_im: Float[Array, "2 in out m1 m2"]
    modes: tuple[int, int] = eqx.field(static=True)

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        modes: tuple[int, int],
        dtype=None,
        *,
        key: PRNGKeyArray,
    ):
        dtype = _default_dtype() if dtype is None else dtype
        scale = 1.0 / (in_channels * out_channels)
        shape = (2, in_channels, out_channels, modes[0], modes[1])
        k1, k2 = jax.random.split(key)
        self.weight_re = scale * jax.random.uniform(k1, shape, dtype)
        self.weight_im = scale * jax.random.uniform(k2, shape, dtype)
        self.modes = (int(modes[0]), int(modes[1]))

    def __call__(self, x: Float[Array, "in x y"]) -> Float[Array, "out x y"]:
        m1, m2 = self.modes
        nx, ny = x.shape[-2:]
        if 2 * m1 > nx or m2 > ny // 2 + 1:
            raise ValueError(
                f"`x` of spatial shape {(nx, ny)} is too small for modes {self.modes}: need "
                f"x >= {2 * m1} and y // 2 + 1 >= {m2}."
            )
        x_ft = jnp.fft.rfft2(x)
        w = jax.lax.complex(self.weight_re, self.weight_im)
        cdtype = w.dtype
        x_ft = x_ft.astype(cdtype)
        out_ch = self.weight_re.shape[2]
        low = jnp.einsum("ixy,ioxy->oxy", x_ft[:, :m1, :m2], w[0])
        high = jnp.einsum("ixy,ioxy->oxy", x_ft[:, nx - m1 :, :m2], w[1])
        out_ft = jnp.zeros((out_ch, nx, ny // 2 + 1), cdtype)
        out_ft = out_ft.at[:, :m1, :m2].set(low)
        out_ft = out_ft.at[:, nx - m1 :, :m2].set(high)
        return jnp.fft.irfft2(out_ft, s=(nx, ny)).astype(self.weight_re.dtype)


class FNO(eqx.Module):
    """Two-dimensional Fourier neural operator (as in the FNO paper's `fourier_2d.py`).

    Lifting (1x1 conv of the input channels and the two grid coordinates to `width`), `n_layers`
    Fourier layers `v <- GELU(K v + W v)` (no GELU after the last), zero padding of the domain by
    a fraction of the grid before the Fourier layers (for non-periodic data), and a projection
    `width -> projection -> out_channels` with a GELU between.

    **Arguments:**

    - `in_channels`: input channels (e.g. 1 for a Darcy coefficient field).
    - `out_channels`: output channels.
    - `modes`: Fourier modes per axis (int or pair).
    - `width`: channels of the Fourier layers.
    - `n_layers`: number of Fourier layers.
    - `projection`: hidden width of the projection.
    - `padding_fraction`: zero padding added at the end of each axis, as a fraction of the grid
      size (rounded up; 0 for periodic data). A fraction rather than a fixed count keeps the
      padded domain proportional when evaluating at another resolution.
    - `dtype`: parameter dtype.
    - `key`: PRNG key (keyword-only).

    With modes 12, width 32 this is the FNO paper's Darcy model: 2,368,001 real parameters
    (complex weights counted twice).
    """

    lift: Pointwise
    spectral: tuple[SpectralConv2d, ...]
    local: tuple[Pointwise, ...]
    proj1: Pointwise
    proj2: Pointwise
    in_channels: int = eqx.field(static=True)
    padding_fraction: float = eqx.field(static=True)

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        modes: int | tuple[int, int],
        width: int,
        n_layers: int = 4,
        projection: int = 128,
        padding_fraction: float = 0.1,
        dtype=None,
        *,
        key: PRNGKeyArray,
    ):
        if isinstance(modes, int):
            modes = (modes, modes)
        check_sizes(
            in_channels=in_channels,
            out_channels=out_channels,
            modes_x=modes[0],
            modes_y=modes[1],
            width=width,
            n_layers=n_layers,
            projection=projection,
        )
        check_finite("padding_fraction", padding_fraction)
        check_positive("padding_fraction", padding_fraction, allow_zero=True)
        keys = jax.random.split(key, 2 * n_layers + 3)
        self.lift = Pointwise(in_channels + 2, width, dtype=dtype, key=keys[0])
        self.spectral = tuple(
            SpectralConv2d(width, width, modes, dtype=dtype, key=keys[1 + i])
            for i in range(n_layers)
        )
        self.local = tuple(
            Pointwise(width, width, dtype=dtype, key=keys[1 + n_layers + i])
            for i in range(n_layers)
        )
        self.proj1 = Pointwise(width, projection, dtype=dtype, key=keys[-2])
        self.proj2 = Pointwise(projection, out_channels, dtype=dtype, key=keys[-1])
        self.in_channels = in_channels
        self.padding_fraction = float(padding_fraction)

    def __call__(self, a: Float[Array, "in x y"]) -> Float[Array, "out x y"]:
        if a.ndim != 3 or a.shape[0] != self.in_channels:
            raise ValueError(f"`a` must have shape ({self.in_channels}, x, y), got {a.shape}.")
        dtype = self.lift.weight.dtype
        a = a.astype(dtype)
        nx, ny = a.shape[1:]
        gx = jnp.linspace(0.0, 1.0, nx, dtype=dtype)
        gy = jnp.linspace(0.0, 1.0, ny, dtype=dtype)
        grid = jnp.stack(jnp.meshgrid(gx, gy, indexing="ij"))
        v = self.lift(jnp.concatenate([a, grid]))
        px = math.ceil(self.padding_fraction * nx)
        py = math.ceil(self.padding_fraction * ny)
        v = jnp.pad(v, ((0, 0), (0, px), (0, py)))
        n = len(self.spectral)
        for i, (k, w) in enumerate(zip(self.spectral, self.local)):
            v = k(v) + w(v)
            if i < n - 1:
                v = jax.nn.gelu(v, approximate=False)
        v = v[:, :nx, :ny]
        return self.proj2(jax.nn.gelu(self.proj1(v), approximate=False))
