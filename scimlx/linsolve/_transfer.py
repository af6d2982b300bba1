"""Grid-transfer operators (restriction, prolongation) and stencil convolutions.

Written once, used by the classical geometric multigrid of `scimlx.linsolve` and by MgNO
(`scimlx.neuralop`) with learned multi-channel kernels.

Conventions (all functions act on one unbatched, channel-first array `(C, *spatial)` with
1, 2 or 3 spatial axes):

- A stride-2 transfer kernel of size `k` along an axis couples coarse index `i` with fine
  indices `2 i + j - p`, `j = 0..k-1`, `p = (k - 1) // 2`. So `k = 3` (default, full weighting
  `[1, 2, 1] / 4`) is *vertex-centred*: coarse node `i` sits on fine node `2 i` and a grid of
  `n` nodes coarsens to `ceil(n / 2)` (the PyTorch `Conv(k=3, stride=2, padding=1)` rule used by
  MgNO). `k = 4` (`[1, 3, 3, 1] / 8`) and `k = 2` (`[1, 1] / 2`) are *cell-centred*: coarse cell
  `i` is the union of fine cells `2 i` and `2 i + 1`, and `n` (even) coarsens to `n / 2`.
- `padding` (default `p = (k - 1) // 2`, as in PyTorch) can be set to `0` for `k = 3`: then
  coarse node `i` sits on fine node `2 i + 1` and `n = 2^L - 1` interior nodes of a Dirichlet
  problem coarsen to `(n - 1) / 2` with the boundary aligned on every level (the classical
  vertex-centred hierarchy).
- `boundary` (a string, or one entry per axis: a string or a `(lo, hi)` pair) selects the
  padding that supplies the values outside the grid:
  `"dirichlet"` -> zeros, `"periodic"` -> wrap, `"neumann"` -> mirror: about the boundary node
  for odd kernels (`u[-1] = u[1]`, numpy "reflect", vertex-centred) and about the boundary face
  for even kernels (`u[-1] = u[0]`, numpy "edge", cell-centred). `"antisymmetric"` is the
  negated mirror (`u[-1] = -u[0]` for even kernels): the cell-centred Dirichlet ghost (`u = 0`
  on the wall), used by the cell-centred multigrid of `scimlx.linsolve.multigrid`.
- `prolong` is the transposed stride-2 convolution: `fine[2 i + j - p] += w[j] coarse[i]`.
  The coarse array is padded by one cell with the boundary mode first, then a VALID transposed
  convolution is taken and the result cropped to `shape`; for `"periodic"` this makes
  prolongation exactly periodic (it commutes with shifts by 2), unlike a zero-padded
  transposed convolution. For `"dirichlet"` and `"periodic"`, `prolong` with kernel `w` is the
  exact adjoint of `restrict` with the same kernel (so `restrict = prolong^T / 2^d` with the
  default kernels, which differ by that factor).
"""

from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float


_PAD_MODE = {"dirichlet": "constant", "neumann": "edge", "periodic": "wrap"}

_DEFAULT_RESTRICT_1D = {
    2: (0.5, 0.5),
    3: (0.25, 0.5, 0.25),
    4: (0.125, 0.375, 0.375, 0.125),
}
_DEFAULT_PROLONG_1D = {
    2: (1.0, 1.0),
    3: (0.5, 1.0, 0.5),
    4: (0.25, 0.75, 0.75, 0.25),
}


_KINDS = ("dirichlet", "neumann", "periodic", "antisymmetric")


def _check_boundary(boundary) -> None:
    entries = [boundary] if isinstance(boundary, str) else list(boundary)
    for b in entries:
        sides = (b,) if isinstance(b, str) else tuple(b)
        if len(sides) not in (1, 2) or any(s not in _KINDS for s in sides):
            raise ValueError(
                "`boundary` must be one of 'dirichlet', 'neumann', 'periodic' (or "
                f"'antisymmetric'), or one such entry / (lo, hi) pair per axis; got {boundary!r}."
            )


def _any_periodic(boundary) -> bool:
    if isinstance(boundary, str):
        return boundary == "periodic"
    return any(b == "periodic" or (not isinstance(b, str) and "periodic" in b) for b in boundary)


def _check_u(u, name: str = "u") -> int:
    if not isinstance(u, jax.Array | np.ndarray):
        raise TypeError(f"`{name}` must be an array of shape (C, *spatial); got {type(u)}.")
    ndim = u.ndim - 1
    if ndim not in (1, 2, 3):
        raise ValueError(
            f"`{name}` must have shape (C, *spatial) with 1, 2 or 3 spatial axes; "
            f"got shape {u.shape}."
        )
    return ndim


def tensor_kernel(weights_1d: Sequence[float], ndim: int, channels: int, dtype) -> Array:
    """Depthwise tensor-product kernel of shape `(channels, 1, k, ..., k)`.

    **Arguments:**

    - `weights_1d`: the one-dimensional weights `w`; the kernel is `w (x) w (x) ...`.
    - `ndim`: number of spatial axes.
    - `channels`: number of channels (each channel is transferred on its own).
    - `dtype`: dtype of the kernel.

    **Returns:**

    An array of shape `(channels, 1, k, ..., k)`, for use with `feature_group_count=channels`.
    """
    w = np.asarray(weights_1d, dtype=np.float64)
    kern = w
    for _ in range(ndim - 1):
        kern = np.multiply.outer(kern, w)
    kern = np.broadcast_to(kern, (channels, 1) + kern.shape)
    return jnp.asarray(kern, dtype=dtype)


def _resolve_kernel(u, kernel, ndim: int, default_1d: dict, default_size: int):
    """Return (kernel, feature_group_count, k)."""
    channels = u.shape[0]
    if kernel is None:
        return (
            tensor_kernel(default_1d[default_size], ndim, channels, u.dtype),
            channels,
            (default_size),
        )
    if kernel.ndim != ndim + 2:
        raise ValueError(
            f"`kernel` must have shape (C_out, C_in, k{', k' * (ndim - 1)}) for {ndim} spatial "
            f"axes; got shape {kernel.shape}."
        )
    ks = kernel.shape[2:]
    if len(set(ks)) != 1 or ks[0] not in (2, 3, 4):
        raise ValueError(f"`kernel` must have equal spatial sizes in {{2, 3, 4}}; got {ks}.")
    if kernel.dtype != u.dtype:
        raise ValueError(f"`kernel` dtype {kernel.dtype} must match the input's dtype {u.dtype}.")
    if kernel.shape[1] == channels:
        groups = 1
    elif kernel.shape[1] == 1 and kernel.shape[0] == channels:
        groups = channels
    else:
        raise ValueError(
            f"`kernel` has C_in={kernel.shape[1]} but the input has {channels} channels."
        )
    return kernel, groups, ks[0]


_HIGHEST = jax.lax.Precision.HIGHEST


def _conv(x, kernel, groups: int, strides, padding, precision, lhs_dilation=None):
    out = jax.lax.conv_general_dilated(
        x[None],
        kernel,
        window_strides=strides,
        padding=padding,
        lhs_dilation=lhs_dilation,
        feature_group_count=groups,
        precision=precision,
    )
    return out[0]


def _all_dirichlet(boundary) -> bool:
    """Whether every side is `"dirichlet"` (zeros outside): then the convolution pads."""
    entries = [boundary] if isinstance(boundary, str) else list(boundary)
    return all(s == "dirichlet" for b in entries for s in ((b,) if isinstance(b, str) else b))


def _side_mode(side: str, k: int) -> tuple[str, bool]:
    """numpy pad mode and whether to negate the padded values."""
    if side == "antisymmetric":
        return ("reflect" if k % 2 == 1 else "symmetric"), True
    mode = _PAD_MODE[side]
    if side == "neumann" and k % 2 == 1:
        # vertex-centred kernels mirror about the boundary node: u[-1] = u[1]
        mode = "reflect"
    return mode, False


def _pad(u, widths: Sequence[tuple[int, int]], boundary, k: int = 3):
    ndim = u.ndim - 1
    if isinstance(boundary, str):
        boundary = [boundary] * ndim
    boundary = list(boundary)
    if len(boundary) != ndim:
        raise ValueError(f"`boundary` must have one entry per spatial axis ({ndim}).")
    for d, (b, (wl, wr)) in enumerate(zip(boundary, widths)):
        lo, hi = (b, b) if isinstance(b, str) else tuple(b)
        if (lo == "periodic") != (hi == "periodic"):
            raise ValueError("periodic must hold on both sides of an axis.")
        if lo == "periodic":
            pads = [(0, 0)] * u.ndim
            pads[d + 1] = (wl, wr)
            u = jnp.pad(u, pads, mode="wrap")
            continue
        for side, w in ((lo, (wl, 0)), (hi, (0, wr))):
            if w == (0, 0):
                continue
            mode, negate = _side_mode(side, k)
            pads = [(0, 0)] * u.ndim
            pads[d + 1] = w
            padded = jnp.pad(u, pads, mode=mode)
            if negate:
                sign = jnp.pad(jnp.ones_like(u), pads, constant_values=-1.0)
                padded = padded * sign
            u = padded
    return u


def _coarse_len(n: int, k: int, p: int) -> int:
    return (n + 2 * p - k) // 2 + 1


def coarse_shape(shape: Sequence[int], k: int = 3, padding: int | None = None) -> tuple[int, ...]:
    """Spatial shape after one `restrict` with a kernel of size `k` and the given padding.

    **Arguments:**

    - `shape`: fine spatial shape.
    - `k`: transfer kernel size (3: vertex-centred, 2 or 4: cell-centred).
    - `padding`: cells of padding per side (default `(k - 1) // 2`).

    **Returns:**

    `(n + 2 p - k) // 2 + 1` per axis: `ceil(n / 2)` for `k = 3` (default padding), `n / 2`
    for `k` in `{2, 4}`, and `(n - 1) / 2` for `k = 3, padding = 0`.
    """
    p = (k - 1) // 2 if padding is None else int(padding)
    return tuple(_coarse_len(n, k, p) for n in shape)


def restrict(
    u: Float[Array, " c *spatial"],
    kernel: Float[Array, "c_out c_in *k"] | None = None,
    *,
    boundary="dirichlet",
    padding: int | None = None,
    precision: jax.lax.Precision | None = _HIGHEST,
) -> Float[Array, " c_out *coarse"]:
    """Restriction: stride-2 convolution with a `k`-point-per-axis kernel.

    **Arguments:**

    - `u`: fine-grid array of shape `(C, *spatial)`.
    - `kernel`: `(C_out, C_in, k, ..., k)` with `k` in `{2, 3, 4}`, or `(C, 1, k, ...)` for a
        depthwise kernel. Default: full weighting `[1, 2, 1] / 4` per axis, depthwise.
    - `boundary`: `"dirichlet"` (zero padding), `"neumann"` (mirror) or `"periodic"` (wrap).
    - `padding`: cells of padding on the left (default `(k - 1) // 2`); see the module notes.
    - `precision`: of the convolution, as in `jax.lax.conv_general_dilated` (default
        `HIGHEST`; `None` lets the backend choose, e.g. TF32 for float32 on GPUs).

    **Returns:**

    The coarse array, spatial size `(n + 2 p - k) // 2 + 1` (`ceil(n / 2)` for the default
    `k = 3`, `n / 2` for `k` in `{2, 4}`).
    """
    _check_boundary(boundary)
    ndim = _check_u(u)
    kernel, groups, k = _resolve_kernel(u, kernel, ndim, _DEFAULT_RESTRICT_1D, 3)
    p = (k - 1) // 2 if padding is None else int(padding)
    spatial = u.shape[1:]
    if k != 3 and any(n % 2 for n in spatial):
        raise ValueError(
            f"cell-centred restriction (kernel size {k}) needs even grid sizes; got {spatial}."
        )
    if _any_periodic(boundary) and any(n % 2 for n in spatial):
        raise ValueError(f"periodic restriction needs even grid sizes; got {spatial}.")
    # out[i] = sum_j w[j] u[2i + j - p]: pad p on the left and enough on the right.
    widths = []
    for n in spatial:
        m = _coarse_len(n, k, p)
        if m < 1:
            raise ValueError(f"grid size {n} is too small to restrict with kernel size {k}.")
        right = max(0, 2 * (m - 1) + k - p - n)
        widths.append((p, right))
    if _all_dirichlet(boundary):  # zeros outside: the convolution pads (no copy)
        return _conv(u, kernel, groups, (2,) * ndim, widths, precision)
    up = _pad(u, widths, boundary, k)
    return _conv(up, kernel, groups, (2,) * ndim, [(0, 0)] * ndim, precision)


def _phase_selection(k: int, p: int) -> np.ndarray:
    """`M[r, t, j] = 1` where fine phase `r`, coarse tap `t` (offset `t - 1`) use weight `j`."""
    m = np.zeros((2, 3, k))
    for r in range(2):
        for t in range(3):
            j = r + p + 2 - 2 * t
            if 0 <= j < k:
                m[r, t, j] = 1.0
    return m


def prolong(
    u: Float[Array, " c *coarse"],
    kernel: Float[Array, "c_out c_in *k"] | None = None,
    *,
    boundary="dirichlet",
    shape: Sequence[int],
    padding: int | None = None,
    precision: jax.lax.Precision | None = _HIGHEST,
) -> Float[Array, " c_out *spatial"]:
    """Prolongation: transposed stride-2 convolution, `fine[2 i + j - p] += w[j] coarse[i]`.

    Computed by phase decomposition: the fine cells of one index parity per axis (`2^d`
    phases) are each a stride-1 3-tap convolution of the (padded) coarse grid, all taken by one
    convolution with `2^d` times the output channels and interleaved. Neither this nor its
    gradient needs an input-dilated convolution (which XLA runs several times slower on CPU).

    **Arguments:**

    - `u`: coarse-grid array `(C, *coarse)`.
    - `kernel`: `(C_out, C_in, k, ..., k)` with `k` in `{2, 3, 4}` or a depthwise `(C, 1, k, ...)`.
        Default: bilinear `[1, 2, 1] / 2` per axis (vertex-centred, `k = 3`). Pass a `k = 4`
        kernel (`[1, 3, 3, 1] / 4` is cell-centred bilinear) for cell-centred grids.
    - `boundary`: padding mode of the coarse array before the transposed convolution
        (`"dirichlet"`: zeros, `"neumann"`: edge, `"periodic"`: wrap, which makes the result
        exactly periodic).
    - `shape`: fine spatial shape to return.
    - `padding`: as in `restrict` (the pair is adjoint for equal kernels and padding).
    - `precision`: as in `restrict`.

    **Returns:**

    The fine array `(C_out, *shape)`.
    """
    _check_boundary(boundary)
    ndim = _check_u(u)
    shape = tuple(int(s) for s in shape)
    if len(shape) != ndim:
        raise ValueError(f"`shape` must have {ndim} entries; got {shape}.")
    kernel, groups, k = _resolve_kernel(u, kernel, ndim, _DEFAULT_PROLONG_1D, 3)
    p = (k - 1) // 2 if padding is None else int(padding)
    expect = tuple(_coarse_len(n, k, p) for n in shape)
    if tuple(u.shape[1:]) != expect:
        raise ValueError(
            f"coarse size {u.shape[1:]} does not match fine `shape` {shape} for a "
            f"size-{k} kernel with padding {p} (expected {expect})."
        )
    if _any_periodic(boundary) and any(n % 2 for n in shape):
        raise ValueError(f"periodic prolongation needs even grid sizes; got {shape}.")
    d = ndim
    cout, cin = kernel.shape[:2]
    half = [-(-n // 2) for n in shape]  # fine cells per phase
    extra = [h - m for h, m in zip(half, expect)]
    sel = jnp.asarray(_phase_selection(k, p), kernel.dtype)
    # phase kernel K[o, r_1..r_d, i, t_1..t_d] = sum_j prod_a M[r_a, t_a, j_a] w[o, i, j_1..j_d]
    # (output channel o's phases adjacent, so depthwise groups stay per channel)
    r, t, j = "abc"[:d], "def"[:d], "ghk"[:d]
    spec = ",".join(f"{r[a]}{t[a]}{j[a]}" for a in range(d)) + f",oi{j}->o{r}i{t}"
    kp = jnp.einsum(spec, *([sel] * d), kernel, precision=precision)
    kp = kp.reshape((cout * 2**d, cin) + (3,) * d)
    # the coarse array with one ghost cell per side (zeros: padded by the convolution)
    if _all_dirichlet(boundary):
        up, pads = u, [(1, 1 + e) for e in extra]
    else:
        up, pads = _pad(u, [(1, 1)] * d, boundary, k), [(0, e) for e in extra]
    out = _conv(up, kp, groups, (1,) * d, pads, precision)
    out = out.reshape((cout,) + (2,) * d + tuple(half))
    # (o, r_1..r_d, m_1..m_d) -> (o, m_1, r_1, ..., m_d, r_d)
    perm = [0] + [x for a in range(d) for x in (d + 1 + a, 1 + a)]
    out = jnp.transpose(out, perm).reshape((cout,) + tuple(2 * h for h in half))
    return out[(slice(None),) + tuple(slice(0, n) for n in shape)]


def conv(
    u: Float[Array, " c_in *spatial"],
    kernel: Float[Array, "c_out c_in *k"],
    *,
    boundary="dirichlet",
    precision: jax.lax.Precision | None = _HIGHEST,
) -> Float[Array, " c_out *spatial"]:
    """Same-size stencil convolution (cross-correlation) with boundary padding.

    `out[c, x] = sum_{c', j} kernel[c, c', j] u[c', x + j - (k - 1) / 2]`, with the values
    outside the grid supplied by `boundary` (zeros, edge or wrap).

    **Arguments:**

    - `u`: array `(C_in, *spatial)`.
    - `kernel`: `(C_out, C_in, k, ..., k)` with odd `k`, or depthwise `(C, 1, k, ...)`.
    - `boundary`: `"dirichlet"`, `"neumann"` or `"periodic"`.
    - `precision`: as in [`scimlx.linsolve.restrict`][].

    **Returns:**

    Array `(C_out, *spatial)`.
    """
    _check_boundary(boundary)
    ndim = _check_u(u)
    if kernel.ndim != ndim + 2:
        raise ValueError(
            f"`kernel` must have shape (C_out, C_in, k, ...) with {ndim} spatial axes; "
            f"got {kernel.shape}."
        )
    ks = kernel.shape[2:]
    if len(set(ks)) != 1 or ks[0] % 2 == 0:
        raise ValueError(f"`kernel` must have equal odd spatial sizes; got {ks}.")
    if kernel.dtype != u.dtype:
        raise ValueError(f"`kernel` dtype {kernel.dtype} must match the input's dtype {u.dtype}.")
    if kernel.shape[1] == u.shape[0]:
        groups = 1
    elif kernel.shape[1] == 1 and kernel.shape[0] == u.shape[0]:
        groups = u.shape[0]
    else:
        raise ValueError(f"`kernel` has C_in={kernel.shape[1]} but `u` has {u.shape[0]} channels.")
    h = ks[0] // 2
    if _all_dirichlet(boundary):  # zeros outside: the convolution pads (no copy)
        return _conv(u, kernel, groups, (1,) * ndim, [(h, h)] * ndim, precision)
    up = _pad(u, [(h, h)] * ndim, boundary)
    return _conv(up, kernel, groups, (1,) * ndim, [(0, 0)] * ndim, precision)


def laplacian_kernel(ndim: int, dtype=jnp.float64) -> Float[Array, "1 1 *k"]:
    """The (2d+1)-point negative Laplacian stencil (`[-1, 2, -1]` per axis), `(1, 1, 3, ...)`.

    **Arguments:**

    - `ndim`: number of spatial axes.
    - `dtype`: kernel dtype.

    **Returns:**

    The kernel (unit grid spacing; divide by `h^2` for spacing `h`).
    """
    k = np.zeros((3,) * ndim)
    centre = (1,) * ndim
    k[centre] = 2.0 * ndim
    for ax in range(ndim):
        for s in (0, 2):
            idx = list(centre)
            idx[ax] = s
            k[tuple(idx)] = -1.0
    return jnp.asarray(k[None, None], dtype=dtype)


def _jacobi(u, f, kern, diag, omega, boundary, sweeps):
    for _ in range(sweeps):
        u = u + (omega / diag) * (f - conv(u, kern, boundary=boundary))
    return u


@eqx.filter_jit
def vcycle_stencil(
    f: Float[Array, "h w"],
    u0: Float[Array, "h w"] | None = None,
    *,
    levels: int,
    pre: int = 1,
    post: int = 1,
    omega: float = 0.8,
    boundary: str = "dirichlet",
    coarse_sweeps: int = 10,
    spacing: float = 1.0,
) -> Float[Array, "h w"]:
    """One classical vertex-centred geometric-multigrid V-cycle for the 2-D 5-point Laplacian.

    Exact conventions (so that other implementations, e.g. a hand-set MgNO layer, can be
    checked against it):

    - Level 0 is the input grid `(H, W)` with spacing `h_0 = spacing`; level `l + 1` has spacing
      `h_{l+1} = 2 h_l`. `"dirichlet"`: the grid holds the interior nodes only (ghost nodes
      `u = 0` at indices -1 and n), transfers use `padding=0` (coarse node `i` = fine node
      `2 i + 1`), so `n_l = 2^m - 1` coarsens to `(n_l - 1) / 2` with the boundary aligned.
      `"periodic"` (even sizes) and `"neumann"` (nodes on the boundary, mirror ghost
      `u[-1] = u[1]`, sizes `2^m + 1`): default `padding=1`, coarse node `i` = fine node `2 i`,
      `n -> ceil(n / 2)`.
    - `A_l u = conv(u, K, boundary) / h_l^2` with `K = [[0,-1,0],[-1,4,-1],[0,-1,0]]` (with the
      neumann mirror this is the standard, non-symmetric, vertex-centred Neumann row).
      Coarse operators are rediscretised: `A_{l+1} = A_l / 4` as stencils.
    - Smoother: damped Jacobi `u <- u + omega (f - A_l u) / (4 / h_l^2)`.
    - V-cycle on level `l < levels - 1`: `pre` sweeps; `r = f - A_l u`; `f_{l+1} = restrict(r)`
      (full weighting `[1,2,1]/4` per axis); coarse correction `e` = V-cycle on level `l + 1`
      from zero; `u <- u + prolong(e)` (bilinear `[1,2,1]/2` per axis); `post` sweeps.
      On the coarsest level `l = levels - 1`: `coarse_sweeps` Jacobi sweeps (no exact solve).

    **Arguments:**

    - `f`: right-hand side `(H, W)`.
    - `u0`: initial guess (zeros if `None`).
    - `levels`: number of grid levels (1 = smoothing only).
    - `pre`, `post`: Jacobi sweeps before and after the coarse-grid correction.
    - `omega`: Jacobi damping.
    - `boundary`: `"dirichlet"`, `"neumann"` or `"periodic"` (periodic needs even sizes on
      every level but the coarsest).
    - `coarse_sweeps`: Jacobi sweeps on the coarsest level.
    - `spacing`: fine grid spacing `h_0`.

    **Returns:**

    The updated iterate `u` of shape `(H, W)`.
    """
    if f.ndim != 2:
        raise ValueError(f"`f` must have shape (H, W); got {f.shape}.")
    if levels < 1:
        raise ValueError(f"`levels` must be >= 1; got {levels}.")
    if u0 is None:
        u0 = jnp.zeros_like(f)
    if u0.shape != f.shape:
        raise ValueError(f"`u0` shape {u0.shape} must equal `f` shape {f.shape}.")
    kern = laplacian_kernel(2, f.dtype)
    pad = 0 if boundary == "dirichlet" else 1
    shape = f.shape
    for _ in range(levels - 1):
        if boundary == "dirichlet" and any(n % 2 == 0 or n < 3 for n in shape):
            raise ValueError(
                f"dirichlet `vcycle_stencil` needs odd sizes >= 3 on every level but the "
                f"coarsest (e.g. 2^m - 1); got {f.shape} with {levels} levels."
            )
        if boundary == "periodic" and any(n % 2 for n in shape):
            raise ValueError(
                f"periodic `vcycle_stencil` needs even sizes on every level but the coarsest; "
                f"got {f.shape} with {levels} levels."
            )
        shape = coarse_shape(shape, 3, pad)

    def cycle(level, fl, ul):
        h2 = (spacing * 2.0**level) ** 2
        kl = kern / h2
        diag = 4.0 / h2
        if level == levels - 1:
            return _jacobi(ul, fl, kl, diag, omega, boundary, coarse_sweeps)
        ul = _jacobi(ul, fl, kl, diag, omega, boundary, pre)
        r = fl - conv(ul, kl, boundary=boundary)
        fc = restrict(r, boundary=boundary, padding=pad)
        ec = cycle(level + 1, fc, jnp.zeros_like(fc))
        ul = ul + prolong(ec, boundary=boundary, shape=ul.shape[1:], padding=pad)
        return _jacobi(ul, fl, kl, diag, omega, boundary, post)

    return cycle(0, f[None], u0[None])[0]
