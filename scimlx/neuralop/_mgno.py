"""MgNO (He, Liu, Xu, ICLR 2024): neural operator layers whose linear maps are V-cycles."""

import dataclasses
import math
from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from .._core._checks import check_sizes
from ..linsolve import coarse_shape, conv, prolong, restrict
from ._fno import _default_dtype, Pointwise


_BOUNDARIES = ("dirichlet", "neumann", "periodic")
# The learned convolutions run in the backend's default precision (as equinox's layers do).
_PRECISION = None


def cell_restrict(u: Float[Array, " c *spatial"]) -> Float[Array, " c *coarse"]:
    """Cell averages of `2 x ... x 2` blocks: a grid of `n` cells per axis onto `n / 2` cells.

    Fine cells `2 i` and `2 i + 1` make coarse cell `i`, so this is exact for (multi)linear
    functions sampled at cell centres.

    **Arguments:**

    - `u`: `(C, *spatial)`, even sizes.

    **Returns:**

    `(C, *spatial / 2)`.
    """
    if any(n % 2 for n in u.shape[1:]):
        raise ValueError(f"`u` must have even grid sizes, got shape {u.shape}.")
    shape = [u.shape[0]]
    for n in u.shape[1:]:
        shape += [n // 2, 2]
    return u.reshape(shape).mean(axis=tuple(range(2, 2 * u.ndim, 2)))


def _ghosts(u, axis: int, boundary: str):
    n = u.shape[axis]
    lo = jax.lax.slice_in_dim(u, 0, 1, axis=axis)
    hi = jax.lax.slice_in_dim(u, n - 1, n, axis=axis)
    if boundary == "periodic":
        return jnp.concatenate([hi, u, lo], axis=axis)
    if boundary == "neumann" or n == 1:
        return jnp.concatenate([lo, u, hi], axis=axis)
    # dirichlet: linear extrapolation (second order; MgNO's features need not vanish there)
    lo2 = jax.lax.slice_in_dim(u, 1, 2, axis=axis)
    hi2 = jax.lax.slice_in_dim(u, n - 2, n - 1, axis=axis)
    return jnp.concatenate([2.0 * lo - lo2, u, 2.0 * hi - hi2], axis=axis)


def cell_prolong(
    u: Float[Array, " c *coarse"], boundary: str = "dirichlet"
) -> Float[Array, " c *spatial"]:
    """Cell-centred bilinear interpolation onto a grid of twice the cells per axis.

    Fine cell `2 i` gets `(3 u_i + u_{i-1}) / 4`, fine cell `2 i + 1` gets
    `(3 u_i + u_{i+1}) / 4` per axis (exact for linear functions). Ghost cells outside the
    grid: `"dirichlet"` linear extrapolation `2 u_0 - u_1`, `"neumann"` the edge value,
    `"periodic"` wrap.

    **Arguments:**

    - `u`: `(C, *coarse)`.
    - `boundary`: `"dirichlet"`, `"neumann"` or `"periodic"`.

    **Returns:**

    `(C, *2 coarse)`.
    """
    if boundary not in _BOUNDARIES:
        raise ValueError(f"`boundary` must be one of {_BOUNDARIES}, got {boundary!r}.")
    for axis in range(1, u.ndim):
        n = u.shape[axis]
        g = _ghosts(u, axis, boundary)
        mid = jax.lax.slice_in_dim(g, 1, n + 1, axis=axis)
        left = jax.lax.slice_in_dim(g, 0, n, axis=axis)
        right = jax.lax.slice_in_dim(g, 2, n + 2, axis=axis)
        both = jnp.stack([0.75 * mid + 0.25 * left, 0.75 * mid + 0.25 * right], axis=axis + 1)
        shape = list(u.shape)
        shape[axis] = 2 * n
        u = both.reshape(shape)
    return u


def _uniform(key, shape, fan_in, dtype):
    lim = 1.0 / math.sqrt(fan_in)
    return jax.random.uniform(key, shape, dtype, minval=-lim, maxval=lim)


def _normalise_iterations(iterations) -> tuple[tuple[int, int], ...]:
    out = []
    for it in iterations:
        if isinstance(it, int):
            pre, post = it, 0
        else:
            pre, post = it
        if pre < 0 or post < 0:
            raise ValueError(f"`iterations` must be non-negative, got {iterations}.")
        out.append((int(pre), int(post)))
    if not out:
        raise ValueError("`iterations` must list at least one level.")
    if out[0][0] < 1:
        raise ValueError(
            "`iterations[0]` must have at least one pre-smoothing step (the first is u = S f)."
        )
    return tuple(out)


def level_shapes(
    shape: Sequence[int], levels: int, transfer_padding: int = 1
) -> list[tuple[int, ...]]:
    """Grid shape on each level of an MgNO V-cycle.

    **Arguments:**

    - `shape`: finest grid shape.
    - `levels`: number of levels.
    - `transfer_padding`: 1 (reference MgNO, `n -> ceil(n / 2)`) or 0 (`n -> (n - 1) / 2`).

    **Returns:**

    A list of `levels` shapes, finest first.
    """
    shapes = [tuple(int(n) for n in shape)]
    for _ in range(levels - 1):
        shapes.append(tuple(coarse_shape(shapes[-1], 3, transfer_padding)))
    return shapes


class MgNOSmoother(eqx.Module):
    """One learned smoothing step `u <- u + S (f - A u)` with 3x3 convolutions `A`, `S`.

    **Arguments:** `A` (`(c_f, c_u, 3, 3)`) and `S` (`(c_u, c_f, 3, 3)`) kernels.
    """

    A: Float[Array, "cf cu *k"]
    S: Float[Array, "cu cf *k"]


class MgNOVCycle(eqx.Module):
    """One multi-channel V-cycle: a linear map from `c_f` input channels to `c_u` channels.

    Level 0 starts from `u = S f` and runs the remaining pre-smoothing steps
    `u <- u + S (f - A u)` (fresh `A`, `S` per step and level). Going down, `u <- Pi u` and
    `f <- R f` (or `f <- R (f - A u)` with `residual_restriction`) with learned stride-2 3x3
    convolutions, then pre-smoothing on the coarse level. Going up, `u_l <- u_l + P u_{l+1}`
    with a learned transposed stride-2 convolution, then post-smoothing. The boundary condition
    is the padding of every convolution. This is `MgConv_DC` of the reference code.

    **Arguments:**

    - `in_channels`: `c_f`.
    - `channels`: `c_u` (output channels).
    - `iterations`: per level `(pre, post)` smoothing counts (an int means `(pre, 0)`); its
      length is the number of levels. Post-smoothing on the coarsest level runs right after its
      pre-smoothing.
    - `boundary`: `"dirichlet"` (zero padding), `"neumann"` (mirror padding, `u[-1] = u[1]`,
      PyTorch's `"reflect"`, for the 3x3 convolutions) or `"periodic"`
      (wrap padding, prolongation included, so the V-cycle commutes with shifts by multiples of
      `2**(levels - 1)`).
    - `residual_restriction`: restrict the residual `f - A u` instead of `f`.
    - `transfer_padding`: padding of the stride-2 transfers. 1 (default, the reference code):
      coarse node `i` is fine node `2 i`, `n -> ceil(n / 2)`. 0: coarse node `i` is fine node
      `2 i + 1`, `n -> (n - 1) / 2`, the vertex-centred hierarchy of interior nodes
      (`2^m - 1`) under zero Dirichlet conditions.
    - `grid_shape`: the grid the model is built for; the prolongation kernel on each level and
      axis has size `4 - (n mod 2)` (4 on even, 3 on odd fine sizes), as the reference does
      for 211 x 211. Default: all 4. Any grid whose levels are consistent runs.
    - `dtype`: parameter dtype.
    - `key`: PRNG key (keyword-only).
    """

    init: Float[Array, "cu cf *k"]
    pre: tuple[tuple[MgNOSmoother, ...], ...]
    post: tuple[tuple[MgNOSmoother, ...], ...]
    Pi: tuple[Float[Array, "cu cu *k"], ...]
    R: tuple[Float[Array, "cf cf *k"], ...]
    A_res: tuple[Float[Array, "cf cu *k"], ...] | None
    P: tuple[Float[Array, "cu cu *kp"], ...]
    iterations: tuple[tuple[int, int], ...] = eqx.field(static=True)
    boundary: str = eqx.field(static=True)
    ndim: int = eqx.field(static=True)
    transfer_padding: int = eqx.field(static=True)

    def __init__(
        self,
        in_channels: int,
        channels: int,
        iterations: Sequence[int | Sequence[int]],
        boundary: str = "dirichlet",
        residual_restriction: bool = False,
        grid_shape: Sequence[int] | None = None,
        ndim: int = 2,
        transfer_padding: int = 1,
        dtype=None,
        *,
        key: PRNGKeyArray,
    ):
        if boundary not in _BOUNDARIES:
            raise ValueError(f"`boundary` must be one of {_BOUNDARIES}, got {boundary!r}.")
        if ndim not in (1, 2, 3):
            raise ValueError(f"`ndim` must be 1, 2 or 3, got {ndim}.")
        if transfer_padding not in (0, 1):
            raise ValueError(f"`transfer_padding` must be 0 or 1, got {transfer_padding}.")
        dtype = _default_dtype() if dtype is None else dtype
        its = _normalise_iterations(iterations)
        levels = len(its)
        cu, cf = channels, in_channels
        k3 = (3,) * ndim
        n3 = 3**ndim
        keys = iter(jax.random.split(key, 4 * levels + 2 * sum(p + q for p, q in its) + 4))

        def smoother():
            return MgNOSmoother(
                A=_uniform(next(keys), (cf, cu) + k3, cu * n3, dtype),
                S=_uniform(next(keys), (cu, cf) + k3, cf * n3, dtype),
            )

        self.init = _uniform(next(keys), (cu, cf) + k3, cf * n3, dtype)
        self.pre = tuple(
            tuple(smoother() for _ in range(pre - (1 if lvl == 0 else 0)))
            for lvl, (pre, _) in enumerate(its)
        )
        self.post = tuple(tuple(smoother() for _ in range(post)) for _, post in its)
        self.Pi = tuple(
            _uniform(next(keys), (cu, cu) + k3, cu * n3, dtype) for _ in range(levels - 1)
        )
        self.R = tuple(
            _uniform(next(keys), (cf, cf) + k3, cf * n3, dtype) for _ in range(levels - 1)
        )
        self.A_res = (
            tuple(_uniform(next(keys), (cf, cu) + k3, cu * n3, dtype) for _ in range(levels - 1))
            if residual_restriction
            else None
        )
        if grid_shape is None:
            pk = [(4,) * ndim] * (levels - 1)
        else:
            if len(grid_shape) != ndim:
                raise ValueError(f"`grid_shape` must have {ndim} entries, got {grid_shape}.")
            shapes = level_shapes(grid_shape, levels, transfer_padding)
            pk = []
            for lvl in range(levels - 1):
                ks = {4 - (n % 2) for n in shapes[lvl]}
                if len(ks) != 1:
                    raise ValueError(
                        f"`grid_shape` {tuple(grid_shape)} has sizes of different parity on "
                        f"level {lvl} ({shapes[lvl]}); use sizes of equal parity."
                    )
                pk.append((ks.pop(),) * ndim)
        self.P = tuple(_uniform(next(keys), (cu, cu) + k, cu * math.prod(k), dtype) for k in pk)
        self.iterations = its
        self.boundary = boundary
        self.ndim = ndim
        self.transfer_padding = transfer_padding

    @property
    def levels(self) -> int:
        return len(self.iterations)

    def check_shape(self, shape: Sequence[int]) -> None:
        """Raise a `ValueError` if the grid `shape` cannot be coarsened `levels - 1` times."""
        shapes = level_shapes(shape, self.levels, self.transfer_padding)
        if min(shapes[-1]) < 1 or (self.levels > 1 and min(shapes[-2]) < 2):
            raise ValueError(
                f"grid {tuple(shape)} is too small for {self.levels} levels "
                f"(level shapes {shapes})."
            )
        if self.boundary == "periodic":
            m = 2 ** (self.levels - 1)
            if any(n % m for n in shape):
                raise ValueError(
                    f"with boundary='periodic' every grid size must be divisible by "
                    f"2**(levels-1) = {m}, got grid {tuple(shape)}."
                )
        for lvl, p in enumerate(self.P):
            for n, k in zip(shapes[lvl], p.shape[2:]):
                if (k == 4 and n % 2) or (self.transfer_padding == 0 and n % 2 == 0):
                    raise ValueError(
                        f"grid {tuple(shape)} has size {n} on level {lvl}, which does not fit "
                        f"this model's size-{k} prolongation kernel with transfer padding "
                        f"{self.transfer_padding}; build the model with `grid_shape=` this grid "
                        "(kernel size 4 - (n mod 2) per level; odd sizes for padding 0)."
                    )

    def _smooth(self, s: MgNOSmoother, u, f):
        b = self.boundary
        pr = _PRECISION
        return u + conv(f - conv(u, s.A, boundary=b, precision=pr), s.S, boundary=b, precision=pr)

    def __call__(self, f: Float[Array, " cf *spatial"]) -> Float[Array, " cu *spatial"]:
        b = self.boundary
        if f.ndim != self.ndim + 1 or f.shape[0] != self.init.shape[1]:
            raise ValueError(
                f"`f` must have shape ({self.init.shape[1]}, <{self.ndim} grid sizes>), "
                f"got {f.shape}."
            )
        self.check_shape(f.shape[1:])
        f = f.astype(self.init.dtype)
        pad, pr = self.transfer_padding, _PRECISION
        us, fs = [], []
        u = conv(f, self.init, boundary=b, precision=pr)
        for lvl in range(self.levels):
            if lvl > 0:
                if self.A_res is None:
                    f = restrict(f, self.R[lvl - 1], boundary=b, padding=pad, precision=pr)
                else:
                    r = f - conv(u, self.A_res[lvl - 1], boundary=b, precision=pr)
                    f = restrict(r, self.R[lvl - 1], boundary=b, padding=pad, precision=pr)
                u = restrict(u, self.Pi[lvl - 1], boundary=b, padding=pad, precision=pr)
            for s in self.pre[lvl]:
                u = self._smooth(s, u, f)
            us.append(u)
            fs.append(f)
        for s in self.post[-1]:
            us[-1] = self._smooth(s, us[-1], fs[-1])
        for lvl in range(self.levels - 2, -1, -1):
            u = us[lvl] + prolong(
                us[lvl + 1],
                self.P[lvl],
                boundary=b,
                shape=us[lvl].shape[1:],
                padding=pad,
                precision=pr,
            )
            for s in self.post[lvl]:
                u = self._smooth(s, u, fs[lvl])
            us[lvl] = u
        return us[0]


def _check_finer_grids(finer_grids):
    if finer_grids not in ("transfer", "direct"):
        raise ValueError(f"`finer_grids` must be 'transfer' or 'direct', got {finer_grids!r}.")


class MgNO(eqx.Module):
    """Multigrid neural operator: layers `u <- GELU(V(u) + W u + b)` and a 1x1 head.

    `V` is a multi-channel [`scimlx.neuralop.MgNOVCycle`][] (all linear maps between the layer's
    channels, parameterised jointly), `W u + b` a 1x1 convolution with bias. There is no
    lifting network: the first V-cycle maps the input channels straight to `channels`. The head
    is a bias-free 1x1 convolution to `out_channels`. This is `MgNO_DC` of the reference code.

    **Arguments:**

    - `in_channels`, `out_channels`: input and output channels.
    - `channels`: hidden channels `c_u`.
    - `n_layers`: number of V-cycle layers.
    - `iterations`: per-level `(pre, post)` smoothing counts (see [`scimlx.neuralop.MgNOVCycle`][]).
    - `boundary`: `"dirichlet"`, `"neumann"` or `"periodic"`.
    - `residual_restriction`: restrict residuals instead of right-hand sides.
    - `grid_shape`: the training grid. It sets the prolongation kernel sizes
      (`4 - (n mod 2)` per level) and, with `finer_grids="transfer"`, how finer grids are
      evaluated.
    - `finer_grids`: how the model acts on a grid `2**k` times finer (per axis, `k >= 1`) than
      `grid_shape`. `"transfer"` (default): `k` extra fixed levels on top of the trained
      hierarchy: the input is restricted to `grid_shape` by cell averages
      ([`scimlx.neuralop.cell_restrict`][]), the model runs there, and the output is
      interpolated back ([`scimlx.neuralop.cell_prolong`][]). `"direct"`: run the layers on
      the finer grid itself. The learned 3x3 stencils are in grid units (an operator like
      `-Laplacian` scales as `h^-2`, and the coarsest level of the trained hierarchy moves
      to a finer grid), so `"direct"` is not resolution-consistent: on Darcy (32^2 -> 64^2)
      its error at 2x was 16x its error at the training grid, against 1.09x with
      `"transfer"`. Grids that are not such multiples of `grid_shape` always run directly.
    - `ndim`: number of spatial dimensions (1, 2 or 3).
    - `transfer_padding`: 1 (reference) or 0 (see [`scimlx.neuralop.MgNOVCycle`][]).
    - `dtype`: parameter dtype (default float64 under x64, else float32).
    - `key`: PRNG key (keyword-only).

    The reference Darcy configuration, `MgNO(1, 1, 24, 4, [(1, 0)] * 5 + [(2, 0)],
    grid_shape=(256, 256))`, has 572,661 parameters; the smooth-Darcy one (5 layers, grid 211)
    678,093.

    ??? cite "Reference"

        ```bibtex
        @inproceedings{he2024mgno,
          title={{MgNO}: Efficient Parameterization of Linear Operators via Multigrid},
          author={He, Juncai and Liu, Xinliang and Xu, Jinchao},
          booktitle={International Conference on Learning Representations},
          year={2024}
        }
        ```
    """

    vcycles: tuple[MgNOVCycle, ...]
    skips: tuple[Pointwise, ...]
    head: Pointwise
    in_channels: int = eqx.field(static=True)
    grid_shape: tuple[int, ...] | None = eqx.field(static=True)
    finer_grids: str = eqx.field(static=True)

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        channels: int,
        n_layers: int,
        iterations: Sequence[int | Sequence[int]],
        boundary: str = "dirichlet",
        residual_restriction: bool = False,
        grid_shape: Sequence[int] | None = None,
        ndim: int = 2,
        transfer_padding: int = 1,
        dtype=None,
        finer_grids: str = "transfer",
        *,
        key: PRNGKeyArray,
    ):
        check_sizes(
            in_channels=in_channels, out_channels=out_channels, channels=channels, n_layers=n_layers
        )
        _check_finer_grids(finer_grids)
        keys = jax.random.split(key, 2 * n_layers + 1)
        cins = [in_channels] + [channels] * (n_layers - 1)
        self.vcycles = tuple(
            MgNOVCycle(
                cin,
                channels,
                iterations,
                boundary,
                residual_restriction,
                grid_shape,
                ndim,
                transfer_padding,
                dtype,
                key=keys[i],
            )
            for i, cin in enumerate(cins)
        )
        self.skips = tuple(
            Pointwise(cin, channels, True, dtype, key=keys[n_layers + i])
            for i, cin in enumerate(cins)
        )
        self.head = Pointwise(channels, out_channels, False, dtype, key=keys[-1])
        self.in_channels = in_channels
        self.grid_shape = None if grid_shape is None else tuple(int(n) for n in grid_shape)
        self.finer_grids = finer_grids

    def with_finer_grids(self, finer_grids: str) -> "MgNO":
        """The same model (same weights) with another `finer_grids` mode."""
        _check_finer_grids(finer_grids)
        new = object.__new__(type(self))
        for f in dataclasses.fields(self):
            object.__setattr__(new, f.name, getattr(self, f.name))
        object.__setattr__(new, "finer_grids", finer_grids)
        return new

    def extra_levels(self, shape: Sequence[int]) -> int:
        """Number `k` of fixed levels added on a grid `shape` (`2**k` times `grid_shape`).

        0 when `shape` is the training grid, when `finer_grids="direct"`, without a
        `grid_shape`, or when `shape` is not such a multiple.
        """
        if self.grid_shape is None or self.finer_grids != "transfer":
            return 0
        shape = tuple(int(n) for n in shape)
        if len(shape) != len(self.grid_shape):
            return 0
        ratios = {n / g for n, g in zip(shape, self.grid_shape)}
        if len(ratios) != 1:
            return 0
        r = ratios.pop()
        k = round(math.log2(r)) if r >= 2 else 0
        if k < 1 or any(n != g * 2**k for n, g in zip(shape, self.grid_shape)):
            return 0
        return k

    def __call__(self, a: Float[Array, " cin *spatial"]) -> Float[Array, " cout *spatial"]:
        nd = self.vcycles[0].ndim
        if a.ndim != nd + 1 or a.shape[0] != self.in_channels:
            raise ValueError(
                f"`a` must have shape ({self.in_channels}, <{nd} grid sizes>), got {a.shape}."
            )
        u = a.astype(self.head.weight.dtype)
        k = self.extra_levels(a.shape[1:])
        for _ in range(k):
            u = cell_restrict(u)
        for v, w in zip(self.vcycles, self.skips):
            u = jax.nn.gelu(v(u) + w(u), approximate=False)
        u = self.head(u)
        for _ in range(k):
            u = cell_prolong(u, self.vcycles[0].boundary)
        return u


def count_params(model) -> int:
    """Number of real parameters (entries of the floating-point arrays) in `model`.

    Complex entries count twice. Works on a model built with `eqx.filter_eval_shape` too
    (leaves `jax.ShapeDtypeStruct`), so large models can be counted without allocating them.

    **Arguments:**

    - `model`: any pytree.

    **Returns:**

    The count, a Python int.
    """
    total = 0
    for x in jax.tree_util.tree_leaves(model):
        if isinstance(x, (jax.Array, jax.ShapeDtypeStruct)) or hasattr(x, "dtype"):
            dt = jnp.dtype(x.dtype)
            if jnp.issubdtype(dt, jnp.inexact):
                total += math.prod(x.shape) * (2 if jnp.issubdtype(dt, jnp.complexfloating) else 1)
    return int(total)
