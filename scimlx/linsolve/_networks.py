"""Direction networks for the deep conjugate-direction method (DCDM).

- `DCDMNet`: the paper's CNN (Kaneda et al. 2023, from the official code's `train.py`) for
  2-D and 3-D from one builder: a linear 3x3(x3) lifting convolution to 16 channels, residual
  pairs of ReLU convolutions at full resolution, one 2x average pooling, residual pairs at half
  resolution, nearest upsampling plus a skip from the full-resolution branch, residual pairs at
  full resolution, and a final 1x1(x1) convolution to one channel.
- `LearnedMGNet`: beyond the paper, a learned V-cycle built from the multigrid transfer
  operators of `scimlx.linsolve` (`restrict`, `prolong`, `conv` with learned kernels, in the
  spirit of MgNO) whose weights are shared across levels, so the number of levels, hence the
  receptive field, grows with the grid: the map is defined at any size without retraining.

Both act on one unbatched residual of grid shape `(*spatial)` (2 or 3 axes) and return a
direction of the same shape; the solver normalises the residual and masks solid cells.
"""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from ._transfer import conv, prolong, restrict, tensor_kernel


def _dtype(name: str):
    if name not in ("float32", "float64"):
        raise ValueError(f"`dtype` must be 'float32' or 'float64', got {name!r}.")
    return jnp.dtype(name)


def _check_dim(dim: int) -> None:
    if dim not in (2, 3):
        raise ValueError(f"`dim` must be 2 or 3, got {dim!r}.")


def _avg_pool(x: Array) -> Array:
    """2x average pooling over the spatial axes of `(C, *spatial)`, padding odd sizes."""
    spatial = x.shape[1:]
    pads = [(0, 0)] + [(0, n % 2) for n in spatial]
    x = jnp.pad(x, pads)
    shape = [x.shape[0]]
    for n in x.shape[1:]:
        shape += [n // 2, 2]
    x = x.reshape(shape)
    return x.mean(axis=tuple(range(2, 2 + 2 * len(spatial), 2)))


def _upsample(x: Array, spatial: tuple[int, ...]) -> Array:
    """Nearest 2x upsampling of `(C, *coarse)`, cropped to `spatial`."""
    for ax in range(1, x.ndim):
        x = jnp.repeat(x, 2, axis=ax)
    return x[(slice(None),) + tuple(slice(0, n) for n in spatial)]


class DCDMNet(eqx.Module):
    """The DCDM convolutional network (2-D or 3-D), one pooling level, residual skips.

    With the defaults (`pre_pairs=1, mid_pairs=3, post_pairs=2`) the layer list is that of
    the official N=64 model: 1 linear lifting conv, 4 convs at full resolution, 6 at half
    resolution, 4 at full resolution, a 1x1 output conv. `pre_pairs=2, mid_pairs=5,
    post_pairs=3` gives the N=128 model.

    **Arguments:**

    - `dim`: 2 or 3 spatial axes.
    - `channels`: feature channels (16 in the paper).
    - `pre_pairs`, `mid_pairs`, `post_pairs`: residual pairs of convolutions before
      pooling, at half resolution, and after upsampling.
    - `dtype`: `"float32"` (default, as the paper) or `"float64"`.
    - `key`: PRNG key for the initialisation.
    """

    dim: int = eqx.field(static=True)
    channels: int = eqx.field(static=True)
    pre_pairs: int = eqx.field(static=True)
    mid_pairs: int = eqx.field(static=True)
    post_pairs: int = eqx.field(static=True)
    dtype: str = eqx.field(static=True)
    lift: eqx.nn.Conv
    pre: tuple[eqx.nn.Conv, ...]
    mid: tuple[eqx.nn.Conv, ...]
    post: tuple[eqx.nn.Conv, ...]
    out: eqx.nn.Conv

    def __init__(
        self,
        dim: int = 2,
        channels: int = 16,
        pre_pairs: int = 1,
        mid_pairs: int = 3,
        post_pairs: int = 2,
        dtype: str = "float32",
        *,
        key: PRNGKeyArray,
    ):
        _check_dim(dim)
        for name, v in (("pre_pairs", pre_pairs), ("mid_pairs", mid_pairs)):
            if v < 0:
                raise ValueError(f"`{name}` must be >= 0, got {v}.")
        if channels < 1:
            raise ValueError(f"`channels` must be >= 1, got {channels}.")
        dt = _dtype(dtype)
        self.dim, self.channels, self.dtype = dim, channels, dtype
        self.pre_pairs, self.mid_pairs, self.post_pairs = pre_pairs, mid_pairs, post_pairs
        n_pre = 2 + 2 * pre_pairs
        keys = iter(jax.random.split(key, 2 + n_pre + 2 * mid_pairs + 2 * post_pairs))

        def c(cin, cout, k=3):
            return eqx.nn.Conv(dim, cin, cout, k, padding="SAME", dtype=dt, key=next(keys))

        self.lift = c(1, channels)
        self.pre = tuple(c(channels, channels) for _ in range(n_pre))
        self.mid = tuple(c(channels, channels) for _ in range(2 * mid_pairs))
        self.post = tuple(c(channels, channels) for _ in range(2 * post_pairs))
        self.out = c(channels, 1, 1)

    @staticmethod
    def _pairs(convs, x):
        for i in range(0, len(convs), 2):
            y = jax.nn.relu(convs[i](x))
            x = jax.nn.relu(convs[i + 1](y)) + x
        return x

    def __call__(
        self,
        r: Float[Array, "*spatial"],
        mask: Float[Array, "*spatial"] | None = None,
    ) -> Float[Array, "*spatial"]:
        """Direction for a (normalised) residual `r` on the grid (cast to the net's dtype).

        `mask` is accepted for an interface shared with `LearnedMGNet` and not used: as in
        the paper, the network sees the geometry only through the residual (zero in solids).
        """
        del mask
        if r.ndim != self.dim:
            raise ValueError(f"`r` must have {self.dim} spatial axes, got shape {r.shape}.")
        x = r.astype(_dtype(self.dtype))[None]
        first = self.lift(x)
        la = jax.nn.relu(self.pre[0](first))
        la = self._pairs(self.pre[1:-1], la)
        lb = jax.nn.relu(self.pre[-1](la))
        apa = self._pairs(self.mid, _avg_pool(lb))
        upa = _upsample(apa, r.shape) + lb
        upa = self._pairs(self.post, upa)
        return self.out(upa)[0]


def _init_kernel(key, shape, fan_in, dtype):
    lim = 1.0 / math.sqrt(fan_in)
    return jax.random.uniform(key, shape, dtype, -lim, lim)


class LearnedMGNet(eqx.Module):
    """A learned V-cycle direction network, size independent (beyond the paper).

    Channels-first features on each level; on level `l` (fine to coarse):
    `u = B_pre(x) * m_l`; if the grid can still be halved (every side >= `2 * min_size`),
    `x_c = restrict(u, R) * m_{l+1}`, `u = u + prolong(V(x_c), P)`, `u = B_post(u) * m_l`,
    where `B(x) = x + W_2 * relu(W_1 * x)` are bias-free residual stencil blocks, `R`, `P` learned
    cell-centred transfer kernels (size 4 per axis) and `m_l` the fluid fraction of each cell on
    level `l` (the mask restricted by averaging). All kernels are shared across levels, so
    the number of levels grows with the grid (`log2(n / min_size)`) while the weights do not:
    the receptive field is the whole grid at any size. Bias-free layers make the map
    positively homogeneous (`f(c r) = c f(r)`, `c > 0`).

    **Arguments:**

    - `dim`: 2 or 3.
    - `channels`: feature channels.
    - `min_size`: stop coarsening when a side would drop below this.
    - `dtype`: `"float32"` or `"float64"`.
    - `key`: PRNG key.
    """

    dim: int = eqx.field(static=True)
    channels: int = eqx.field(static=True)
    min_size: int = eqx.field(static=True)
    dtype: str = eqx.field(static=True)
    lift: Array
    pre1: Array
    pre2: Array
    post1: Array
    post2: Array
    coarse1: Array
    coarse2: Array
    restrict_kernel: Array
    prolong_kernel: Array
    proj: Array

    def __init__(
        self,
        dim: int = 2,
        channels: int = 8,
        min_size: int = 4,
        dtype: str = "float32",
        *,
        key: PRNGKeyArray,
    ):
        _check_dim(dim)
        if channels < 1:
            raise ValueError(f"`channels` must be >= 1, got {channels}.")
        if min_size < 2:
            raise ValueError(f"`min_size` must be >= 2, got {min_size}.")
        dt = _dtype(dtype)
        self.dim, self.channels, self.min_size, self.dtype = dim, channels, min_size, dtype
        C = channels
        k3 = (3,) * dim
        ks = iter(jax.random.split(key, 10))
        fan = C * 3**dim
        self.lift = _init_kernel(next(ks), (C, 1) + k3, 3**dim, dt)
        self.pre1 = _init_kernel(next(ks), (C, C) + k3, fan, dt)
        self.pre2 = 0.1 * _init_kernel(next(ks), (C, C) + k3, fan, dt)
        self.post1 = _init_kernel(next(ks), (C, C) + k3, fan, dt)
        self.post2 = 0.1 * _init_kernel(next(ks), (C, C) + k3, fan, dt)
        self.coarse1 = _init_kernel(next(ks), (C, C) + k3, fan, dt)
        self.coarse2 = 0.1 * _init_kernel(next(ks), (C, C) + k3, fan, dt)
        # Transfers start at cell-centred full weighting / bilinear (depthwise as dense
        # identity-in-channels kernels) plus noise; the coarse correction's scale (h^2) is
        # learned through them.
        eye = jnp.eye(C, dtype=dt).reshape((C, C) + (1,) * dim)
        rk = tensor_kernel((0.125, 0.375, 0.375, 0.125), dim, 1, dt)[:1]
        pk = tensor_kernel((0.25, 0.75, 0.75, 0.25), dim, 1, dt)[:1]
        self.restrict_kernel = 4.0 * eye * rk + 0.01 * _init_kernel(
            next(ks), (C, C) + (4,) * dim, C * 4**dim, dt
        )
        self.prolong_kernel = eye * pk + 0.01 * _init_kernel(
            next(ks), (C, C) + (4,) * dim, C * 4**dim, dt
        )
        self.proj = _init_kernel(next(ks), (1, C) + (1,) * dim, C, dt)

    def _block(self, w1, w2, x):
        return x + conv(jax.nn.relu(conv(x, w1)), w2)

    def _cycle(self, x, m):
        u = self._block(self.pre1, self.pre2, x) * m
        if all(n >= 2 * self.min_size and n % 2 == 0 for n in x.shape[1:]):
            mc = restrict(m, tensor_kernel((0.5, 0.5), self.dim, 1, m.dtype))
            xc = restrict(u, self.restrict_kernel) * mc
            uc = self._cycle(xc, mc)
            u = u + prolong(uc, self.prolong_kernel, shape=x.shape[1:])
            u = self._block(self.post1, self.post2, u) * m
        else:
            u = self._block(self.coarse1, self.coarse2, u) * m
            u = self._block(self.coarse1, self.coarse2, u) * m
        return u

    def __call__(
        self,
        r: Float[Array, "*spatial"],
        mask: Float[Array, "*spatial"] | None = None,
    ) -> Float[Array, "*spatial"]:
        """Direction for residual `r`; `mask` is 1 on fluid cells, 0 on solid (default all 1)."""
        if r.ndim != self.dim:
            raise ValueError(f"`r` must have {self.dim} spatial axes, got shape {r.shape}.")
        dt = _dtype(self.dtype)
        m = jnp.ones((1,) + r.shape, dt) if mask is None else mask.astype(dt)[None]
        x = conv(r.astype(dt)[None], self.lift) * m
        u = self._cycle(x, m)
        return conv(u, self.proj)[0]
