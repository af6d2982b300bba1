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

import dataclasses
import math
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from ._transfer import conv, restrict, tensor_kernel


class _AbstractNetwork(eqx.Module):
    """A direction network whose static fields are its constructor's arguments (less `key`)."""

    def hyperparameters(self) -> dict[str, Any]:
        """The constructor arguments that rebuild this network's structure (JSON-able).

        [`scimlx.save`][] stores them, so [`scimlx.load`][] rebuilds the network by class name.
        """
        return {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if f.metadata.get("static", False)
        }


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


class DCDMNet(_AbstractNetwork):
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
    - `mask_input`: beyond the paper, feed the fluid mask as a second input channel (the
      paper's network sees the geometry only through the residual, which is zero on
      solids; with obstacles in the training and test scenes that was not enough here).
    - `levels`: beyond the paper, the number of pooling levels: 1 (default) is the paper's
      network; with more, the half-resolution pairs are applied again after each further
      pooling, with the same weights, and every coarser result is upsampled and added back
      (a U-Net whose levels share weights); `None` pools until a side would drop below
      `min_size`, so the network's reach grows with the grid (one pooling level reaches 22
      cells with the default pairs, 34 with the N=128 pairs, at any grid size).
    - `min_size`: the coarsest side for `levels=None` (default 4).
    - `odd`: beyond the paper, return $g(x) - g(-x)$ for the layer stack $g$, so the map
      is odd like $A^{-1}$ (the even part, which includes every bias's constant response,
      is removed; two passes of the stack). A trained non-odd network was found to spend
      about half its output norm on an input-independent field, on which the solve stalls.
    - `key`: PRNG key for the initialisation.
    """

    dim: int = eqx.field(static=True)
    channels: int = eqx.field(static=True)
    pre_pairs: int = eqx.field(static=True)
    mid_pairs: int = eqx.field(static=True)
    post_pairs: int = eqx.field(static=True)
    dtype: str = eqx.field(static=True)
    mask_input: bool = eqx.field(static=True)
    odd: bool = eqx.field(static=True)
    levels: int | None = eqx.field(static=True)
    min_size: int = eqx.field(static=True)
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
        mask_input: bool = False,
        odd: bool = False,
        levels: int | None = 1,
        min_size: int = 4,
        *,
        key: PRNGKeyArray,
    ):
        _check_dim(dim)
        if levels is not None and levels < 1:
            raise ValueError(f"`levels` must be >= 1 or None, got {levels}.")
        if min_size < 1:
            raise ValueError(f"`min_size` must be >= 1, got {min_size}.")
        self.levels, self.min_size = levels, min_size
        for name, v in (("pre_pairs", pre_pairs), ("mid_pairs", mid_pairs)):
            if v < 0:
                raise ValueError(f"`{name}` must be >= 0, got {v}.")
        if channels < 1:
            raise ValueError(f"`channels` must be >= 1, got {channels}.")
        dt = _dtype(dtype)
        self.dim, self.channels, self.dtype = dim, channels, dtype
        self.mask_input, self.odd = bool(mask_input), bool(odd)
        self.pre_pairs, self.mid_pairs, self.post_pairs = pre_pairs, mid_pairs, post_pairs
        n_pre = 2 + 2 * pre_pairs
        keys = iter(jax.random.split(key, 2 + n_pre + 2 * mid_pairs + 2 * post_pairs))

        def c(cin, cout, k=3):
            return eqx.nn.Conv(dim, cin, cout, k, padding="SAME", dtype=dt, key=next(keys))

        self.lift = c(2 if self.mask_input else 1, channels)
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

        `mask` (1 fluid, 0 solid; `None`: all fluid) is used only with `mask_input=True`;
        otherwise, as in the paper, the network sees the geometry only through the residual
        (zero in solids).
        """
        if r.ndim != self.dim:
            raise ValueError(f"`r` must have {self.dim} spatial axes, got shape {r.shape}.")
        dt = _dtype(self.dtype)
        x = r.astype(dt)[None]
        m = jnp.ones(r.shape, dt) if mask is None else mask.astype(dt)
        if not self.odd:
            return self._stack(x, m)
        both = jax.vmap(lambda s: self._stack(s * x, m))(jnp.array([1.0, -1.0], dt))
        return both[0] - both[1]

    def _coarse(self, h, level):
        # the half-resolution pairs, then (beyond the paper) the same pairs one level coarser,
        # upsampled and added back, while levels remain
        h = self._pairs(self.mid, h)
        deeper = self.levels is None or level < self.levels
        if deeper and min(h.shape[1:]) // 2 >= self.min_size:
            h = h + _upsample(self._coarse(_avg_pool(h), level + 1), h.shape[1:])
        return h

    def _stack(self, x, m):
        if self.mask_input:
            x = jnp.concatenate([x, m[None]], axis=0)
        first = self.lift(x)
        la = jax.nn.relu(self.pre[0](first))
        la = self._pairs(self.pre[1:-1], la)
        lb = jax.nn.relu(self.pre[-1](la))
        apa = self._coarse(_avg_pool(lb), 1)
        upa = _upsample(apa, m.shape) + lb
        upa = self._pairs(self.post, upa)
        return self.out(upa)[0]


def _init_kernel(key, shape, fan_in, dtype):
    lim = 1.0 / math.sqrt(fan_in)
    return jax.random.uniform(key, shape, dtype, -lim, lim)


class LearnedMGNet(_AbstractNetwork):
    r"""A learned additive multigrid (BPX-type) direction map, SPD and size independent.

    Beyond the paper. On level $l$ (level 0 the grid, level $l+1$ its restriction with
    the cell-centred `[1,3,3,1]/8` kernel, until a side would drop below `min_size`) the
    residual is restricted, masked by the level's fluid fraction $m_l$ and filtered by two
    learned stencils, $G_l r = \gamma^l K_2 * (K_1 * (m_l \odot R^l r))$; the direction is
    $q = \sum_l G_l^\top G_l\, r$ (the transposes by `jax.vjp`). So $q = M r$ with $M$
    linear, symmetric and positive semidefinite by construction: inside the
    conjugate-direction loop this is PCG with a learned BPX preconditioner (Bramble,
    Pasciak, Xu 1990), and it cannot stagnate as a nonlinear direction map can. The
    kernels $K_1, K_2$ (initially delta stencils, i.e. plain BPX) and the level weight
    $\gamma$ (initially $2^d$, which worked best for plain BPX on 2-D Poisson here) are
    shared by all levels, so the number of levels grows with the grid while the weights do
    not: the map is defined at any size without retraining. It uses
    `scimlx.linsolve.restrict` and `conv` (the multigrid transfer operators).

    **Arguments:**

    - `dim`: 2 or 3.
    - `channels`: feature channels of the stencils.
    - `min_size`: stop coarsening when a side would drop below this.
    - `dtype`: `"float32"` or `"float64"`.
    - `key`: PRNG key.
    """

    dim: int = eqx.field(static=True)
    channels: int = eqx.field(static=True)
    min_size: int = eqx.field(static=True)
    dtype: str = eqx.field(static=True)
    k1: Array
    k2: Array
    gamma: Array

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
        k1, k2 = jax.random.split(key)
        k3 = (3,) * dim
        # Start at plain BPX (delta stencils in channel 0, small noise elsewhere).
        delta = jnp.zeros(k3, dt).at[(1,) * dim].set(1.0)
        self.k1 = 0.01 * _init_kernel(k1, (channels, 1) + k3, 3**dim, dt)
        self.k1 = self.k1.at[0, 0].add(delta)
        self.k2 = 0.01 * _init_kernel(k2, (channels, channels) + k3, channels * 3**dim, dt)
        self.k2 = self.k2.at[0, 0].add(delta)
        self.gamma = jnp.asarray(2.0**dim, dt)

    def _forward(self, x, m):
        avg = tensor_kernel((0.125, 0.375, 0.375, 0.125), self.dim, 1, x.dtype)
        ys = []
        level = 0
        while True:
            ys.append(self.gamma**level * conv(conv(x * m, self.k1), self.k2))
            if not all(n >= 2 * self.min_size and n % 2 == 0 for n in x.shape[1:]):
                break
            x, m = restrict(x, avg), restrict(m, avg)
            level += 1
        return ys

    def __call__(
        self,
        r: Float[Array, "*spatial"],
        mask: Float[Array, "*spatial"] | None = None,
    ) -> Float[Array, "*spatial"]:
        """Direction $M r$ for residual `r`; `mask` is 1 on fluid cells, 0 on solid."""
        if r.ndim != self.dim:
            raise ValueError(f"`r` must have {self.dim} spatial axes, got shape {r.shape}.")
        dt = _dtype(self.dtype)
        m = jnp.ones((1,) + r.shape, dt) if mask is None else mask.astype(dt)[None]
        x = r.astype(dt)[None]
        ys, pullback = jax.vjp(lambda x: self._forward(x, m), x)
        (q,) = pullback(ys)
        return q[0]


class LearnedVCycleNet(_AbstractNetwork):
    r"""A learned geometric V-cycle as a DCDM direction map (beyond the paper).

    The cycle of [`scimlx.linsolve.multigrid`][] with rediscretised coarse grids for the
    Poisson operator on the fluid cells given by the mask (`boundary` walls, unit spacing; the
    scale of the operator does not matter for a direction): pre-smoothing
    $u \leftarrow u + m \odot D^{-1} (K * (m \odot r))$, the coarse-grid correction scaled by
    $\gamma$, and the adjoint post-smoothing $u \leftarrow u + m \odot (K^\flat * (m \odot
    D^{-1} r))$ ($K^\flat$ the flipped kernel), so the map is linear and symmetric. The
    $3^d$ smoothing kernel $K$ and $\gamma$ are shared by all levels, so the map is defined at
    any grid size (the number of levels grows with it). Initialised at damped Jacobi
    ($K = \omega\,\delta$, $\omega = 0.8$ in 2-D, $6/7$ in 3-D, $\gamma = 1$), i.e. the
    classical cycle, and then trained with the DCDM loss; it needs grid sides divisible by 2
    down to `min_size`.

    **Arguments:**

    - `dim`: 2 or 3.
    - `boundary`: wall boundary of the operator family (`"dirichlet"` by default).
    - `sweeps`: pre- and post-smoothing sweeps per level.
    - `max_coarse`: coarsen while the grid has more cells than this.
    - `dtype`: `"float32"` or `"float64"`.

    The initialisation is deterministic (the classical cycle), so there is no `key`.
    """

    dim: int = eqx.field(static=True)
    boundary: str = eqx.field(static=True)
    sweeps: int = eqx.field(static=True)
    max_coarse: int = eqx.field(static=True)
    dtype: str = eqx.field(static=True)
    kernel: Array
    gamma: Array

    def __init__(
        self,
        dim: int = 2,
        boundary: str = "dirichlet",
        sweeps: int = 1,
        max_coarse: int = 64,
        dtype: str = "float32",
    ):
        _check_dim(dim)
        if boundary not in ("dirichlet", "neumann", "periodic"):
            raise ValueError(f"`boundary` must be dirichlet/neumann/periodic, got {boundary!r}.")
        if sweeps < 1:
            raise ValueError(f"`sweeps` must be >= 1, got {sweeps}.")
        dt = _dtype(dtype)
        self.dim, self.boundary, self.sweeps = dim, boundary, sweeps
        self.max_coarse, self.dtype = max_coarse, dtype
        omega = 0.8 if dim == 2 else 6.0 / 7.0
        k3 = (3,) * dim
        self.kernel = jnp.zeros(k3, dt).at[(1,) * dim].set(omega)
        self.gamma = jnp.asarray(1.0, dt)

    def _smooth(self, mv, diag, fluid, f, u, adjoint):
        k = self.kernel[None, None]
        bnd = "periodic" if self.boundary == "periodic" else "dirichlet"
        inv = jnp.where(fluid, 1.0 / diag, 0.0)
        for _ in range(self.sweeps):
            r = jnp.where(fluid, f - mv(u), 0.0)
            if adjoint:
                kf = jnp.flip(k, axis=tuple(range(2, 2 + self.dim)))
                du = conv((inv * r)[None], kf, boundary=bnd)[0]
            else:
                du = inv * conv(r[None], k, boundary=bnd)[0]
            u = u + jnp.where(fluid, du, 0.0)
        return u

    def __call__(
        self,
        r: Float[Array, "*spatial"],
        mask: Float[Array, "*spatial"] | None = None,
    ) -> Float[Array, "*spatial"]:
        """Direction (one learned V-cycle applied to `r`); `mask` 1 on fluid, 0 on solid."""
        from ._multigrid import (
            _dense,
            _extension_weights,
            _to_coarse,
            _to_fine,
            _transfer_boundary,
            coarsen,
        )
        from ._operators import poisson

        if r.ndim != self.dim:
            raise ValueError(f"`r` must have {self.dim} spatial axes, got shape {r.shape}.")
        dt = _dtype(self.dtype)
        solid = jnp.zeros(r.shape, bool) if mask is None else mask < 0.5
        ops = [poisson(r.shape, boundary=self.boundary, solid=solid, dtype=dt)]
        while math.prod(ops[-1].grid_shape) > self.max_coarse and all(
            n % 2 == 0 and n >= 4 for n in ops[-1].grid_shape
        ):
            ops.append(coarsen(ops[-1]))
        ops = [jax.lax.stop_gradient(op) for op in ops]
        n_c = math.prod(ops[-1].grid_shape)
        coarse_inv = jnp.linalg.pinv(jax.lax.stop_gradient(_dense(ops[-1])), hermitian=True)

        def cycle(level, f):
            op = ops[level]
            fluid = ~op.solid
            if level == len(ops) - 1:
                u = (coarse_inv @ f.reshape(n_c)).reshape(f.shape)
                return jnp.where(fluid, u, 0.0)
            diag = op.diagonal_values()
            u = self._smooth(op.mv, diag, fluid, f, jnp.zeros_like(f), adjoint=False)
            res = f - op.mv(u)
            bnd = _transfer_boundary(op)
            cop = ops[level + 1]
            ext = _extension_weights(cop.solid, cop.periodic)
            scale = fluid.astype(f.dtype)
            ec = cycle(level + 1, _to_coarse(res, scale, bnd, ext, cop.periodic))
            u = u + self.gamma * _to_fine(ec, scale, bnd, ext, cop.periodic)
            return self._smooth(op.mv, diag, fluid, f, u, adjoint=True)

        x = jnp.where(solid, 0.0, r.astype(dt))
        return cycle(0, x)
