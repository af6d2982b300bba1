"""Geometric multigrid for cell-centred diffusion operators: hierarchy, V-cycle, solve."""

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from ._operators import _stencil_offsets, AbstractGridOperator, DiffusionOperator, StencilOperator
from ._smoothers import chebyshev, estimate_lmax, jacobi, red_black_gauss_seidel
from ._transfer import prolong, restrict, tensor_kernel


try:
    from scimlx._core._results import RESULTS
except ImportError:  # pragma: no cover
    import diffrax

    RESULTS = diffrax.RESULTS

_P1 = (0.25, 0.75, 0.75, 0.25)  # cell-centred bilinear prolongation, per axis
_SMOOTHERS = ("jacobi", "chebyshev", "rbgs")
_COARSE = ("rediscretise", "galerkin")


def _coarse_grid(op):
    """The fine shape, dimension, coarse shape and coarse solid mask of a 2x coarsening."""
    shape = op.grid_shape
    if any(n % 2 for n in shape):
        raise ValueError(f"cannot coarsen a grid with odd sizes {shape}.")
    return shape, len(shape), tuple(n // 2 for n in shape), _coarse_solid(op.solid)


def _coarse_solid(solid):
    """A coarse cell is solid when all its `2^d` children are."""
    cshape = tuple(n // 2 for n in solid.shape)
    blocks = solid.reshape(sum(((m, 2) for m in cshape), ()))
    return jnp.all(blocks, axis=tuple(range(1, 2 * solid.ndim, 2)))


def _transfer_boundary(op):
    """The padding kinds of the cell-centred transfers (Dirichlet walls: antisymmetric ghost)."""
    return tuple(tuple("antisymmetric" if s == "dirichlet" else s for s in b) for b in op.boundary)


def _to_coarse(r, scale, bnd, ext, cperiodic):
    """`R_eff r = E^T R (s r)`: scale (fluid mask), full weighting `P^T / 2^d`, `E^T`."""
    d = r.ndim
    kern = tensor_kernel(_P1, d, 1, r.dtype)
    r = r * scale.astype(r.dtype)
    rc = restrict(r[None], kern, boundary=bnd)[0] * (1.0 / 2**d)
    w, cfluid = ext
    return _extend_t(rc, w, cfluid, cperiodic)


def _to_fine(ec, scale, bnd, ext, cperiodic):
    """`P_eff e = s P (E e)`: extension into solid coarse cells, bilinear, scale (mask)."""
    d = ec.ndim
    kern = tensor_kernel(_P1, d, 1, ec.dtype)
    w, cfluid = ext
    ec = _extend(ec, w, cfluid, cperiodic)
    e = prolong(ec[None], kern, boundary=bnd, shape=scale.shape)[0]
    return e * scale.astype(e.dtype)


def _galerkin_scale(fluid, cfluid, bnd, dtype):
    """Fine-cell factor `P 1 / P m_c` on fluid cells (0 on solids): renormalises the bilinear
    weights over the fluid coarse cells, so the interpolation next to obstacles keeps constants
    (as the extension does for rediscretised grids) without widening the Galerkin stencil."""
    d = fluid.ndim
    kern = tensor_kernel(_P1, d, 1, dtype)
    full = prolong(jnp.ones((1,) + cfluid.shape, dtype), kern, boundary=bnd, shape=fluid.shape)[0]
    part = prolong(cfluid.astype(dtype)[None], kern, boundary=bnd, shape=fluid.shape)[0]
    ok = fluid & (part > 0)
    return jnp.where(ok, full / jnp.where(ok, part, 1.0), 0.0)


def _probe_period(n: int, periodic: bool, width: int) -> int:
    if not periodic or n <= width:
        return min(n, width) if not periodic else n
    for p in range(width, n + 1):
        if n % p == 0:
            return p
    return n  # pragma: no cover - unreachable (p = n divides n)


def galerkin_coarsen(op: AbstractGridOperator) -> StencilOperator:
    """Galerkin coarse operator `R_eff A P_eff` of a cell-centred grid operator, as a stencil.

    `P_eff = S P M_c` is the cell-centred bilinear prolongation `P` (`[1, 3, 3, 1] / 4` per
    axis, antisymmetric ghosts at Dirichlet walls, mirrored at Neumann walls, wrapped on periodic
    axes) from the fluid coarse cells (`M_c`), with its rows on fine fluid cells renormalised
    to the weights of the fluid coarse cells (`S = diag(P 1 / P m_c)` on fluid, 0 on solid
    cells), and `R_eff = P_eff^T / 2^d` the full weighting used by the V-cycle; a coarse cell is
    solid (an identity row) when all its children are. The product has a `5^d`-point stencil,
    computed matrix-free by probing with `5^d` coloured vectors (more on short periodic axes),
    so it is exact, symmetric and jittable, and coarse grids see the obstacles and coefficient
    jumps through `A` itself.

    **Arguments:**

    - `op`: a [`scimlx.linsolve.DiffusionOperator`][] or [`scimlx.linsolve.StencilOperator`][]
        with even sizes.

    **Returns:**

    The coarse [`scimlx.linsolve.StencilOperator`][].
    """
    shape, ndim, cshape, solid_c = _coarse_grid(op)
    periodic = op.periodic
    cfluid = (~solid_c).astype(op.dtype)
    ext = (jnp.zeros(cshape, op.dtype), cfluid)  # no extension (it would widen the stencil)
    bnd = _transfer_boundary(op)
    scale = _galerkin_scale(~op.solid, cfluid, bnd, op.dtype)

    def rap(xc):
        return _to_coarse(op.mv(_to_fine(xc, scale, bnd, ext, periodic)), scale, bnd, ext, periodic)

    width = 5
    periods = tuple(_probe_period(n, per, width) for n, per in zip(cshape, periodic))
    coords = np.indices(cshape)
    colour = np.ravel_multi_index(tuple(c % p for c, p in zip(coords, periods)), periods)
    ncol = int(np.prod(periods))
    probes = (colour[None] == np.arange(ncol).reshape((ncol,) + (1,) * ndim)).astype(np.float64)
    probes = jnp.asarray(probes, op.dtype)
    Y = jax.lax.map(rap, probes, batch_size=min(ncol, 32)).reshape(ncol, -1)
    N = int(np.prod(cshape))
    cells = np.arange(N)
    used = np.zeros((ncol, N), bool)
    offsets = _stencil_offsets(ndim, width)
    rows = [None] * len(offsets)
    # nearest offsets first: on short periodic axes several offsets reach the same cell, and
    # the coupling goes to the nearest one (the centre keeps the diagonal)
    for io in sorted(range(len(offsets)), key=lambda i: sum(abs(o) for o in offsets[i])):
        off = offsets[io]
        nb = [c + o for c, o in zip(coords, off)]
        valid = np.ones(cshape, bool)
        for d, per in enumerate(periodic):
            if per:
                nb[d] = nb[d] % cshape[d]
            else:
                valid &= (nb[d] >= 0) & (nb[d] < cshape[d])
        nbc = tuple(np.clip(n, 0, m - 1) for n, m in zip(nb, cshape))
        cj = colour[nbc].ravel()
        v = valid.ravel() & ~used[cj, cells]
        used[cj[v], cells[v]] = True
        rows[io] = jnp.where(jnp.asarray(v), Y[cj, cells], 0.0).reshape(cshape)
    S = jnp.stack(rows)
    S = jnp.where(solid_c[None], jnp.zeros_like(S), S)
    return StencilOperator(S, solid_c, op.boundary)


def coarsen(op: DiffusionOperator) -> DiffusionOperator:
    """Rediscretise a cell-centred diffusion operator on the grid coarsened by 2 per axis.

    A coarse cell is solid when all its `2^d` children are; the coarse face coefficient is the
    mean of the `2^(d-1)` fine face coefficients it covers (faces touching solids or Neumann
    walls count as zero, Dirichlet wall faces keep their ghost factor), and the spacing
    doubles. For constant coefficients and no solids this is the standard coarse stencil.

    **Arguments:**

    - `op`: a [`scimlx.linsolve.DiffusionOperator`][] with even sizes.

    **Returns:**

    The coarse [`scimlx.linsolve.DiffusionOperator`][].
    """
    shape, ndim, cshape, solid_c = _coarse_grid(op)
    faces = []
    for d, (T, per) in enumerate(zip(op.faces, op.periodic)):
        # every other face along d
        Td = T[tuple(slice(None, None, 2) if a == d else slice(None) for a in range(ndim))]
        # average pairs along the other axes
        new_shape = []
        red_axes = []
        for a in range(ndim):
            if a == d:
                new_shape.append(Td.shape[a])
            else:
                new_shape += [cshape[a], 2]
                red_axes.append(len(new_shape) - 1)
        Tc = jnp.mean(Td.reshape(new_shape), axis=tuple(red_axes))
        faces.append(Tc)
    spacing = tuple(2.0 * h for h in op.spacing)
    return DiffusionOperator(tuple(faces), solid_c, op.boundary, spacing)


def _shift(x, d: int, s: int, periodic: bool):
    """y[i] = x[i - s] along axis d (zero-filled unless periodic)."""
    if periodic:
        return jnp.roll(x, s, axis=d)
    n = x.shape[d]
    pad = [(0, 0)] * x.ndim
    pad[d] = (max(s, 0), max(-s, 0))
    xp = jnp.pad(x, pad)
    start = 0 if s > 0 else -s
    return jax.lax.slice_in_dim(xp, start, start + n, axis=d)


def _extension_weights(solid, periodic):
    """For each solid cell, 1 / (number of fluid face-neighbours) (0 if none)."""
    fluid = (~solid).astype(jnp.float64 if jax.config.jax_enable_x64 else jnp.float32)
    cnt = jnp.zeros_like(fluid)
    for d, per in enumerate(periodic):
        for s in (1, -1):
            cnt = cnt + _shift(fluid, d, s, per)
    w = jnp.where(solid & (cnt > 0), 1.0 / jnp.maximum(cnt, 1.0), 0.0)
    return w, fluid


def _extend(c, w, fluid, periodic):
    """E c: fill solid cells with the mean of their fluid face-neighbours."""
    acc = jnp.zeros_like(c)
    cf = c * fluid.astype(c.dtype)
    for d, per in enumerate(periodic):
        for s in (1, -1):
            acc = acc + _shift(cf, d, s, per)
    return cf + w.astype(c.dtype) * acc


def _extend_t(y, w, fluid, periodic):
    """E^T y: fluid cells collect the solid neighbours' values / count; solids dropped."""
    ws = y * w.astype(y.dtype)
    acc = jnp.zeros_like(y)
    for d, per in enumerate(periodic):
        for s in (1, -1):
            acc = acc + _shift(ws, d, s, per)
    return (y + acc) * fluid.astype(y.dtype)


def _dense(op: AbstractGridOperator) -> Array:
    n = int(np.prod(op.grid_shape))
    eye = jnp.eye(n, dtype=op.dtype).reshape((n,) + op.grid_shape)
    return jax.vmap(op.mv)(eye).reshape(n, n).T


class VCycle(AbstractGridOperator):
    """A geometric-multigrid V-cycle as a symmetric positive definite lineax operator.

    `VCycle.mv(r)` applies one V-cycle to `A e = r` from `e = 0`, i.e. an approximation of
    `A^{-1} r`: usable as `lx.CG(...)`'s preconditioner (`options={"preconditioner": vc}`),
    in [`scimlx.linsolve.pcg_solve`][], and stand-alone in
    [`scimlx.linsolve.multigrid_solve`][]. Build it with [`scimlx.linsolve.multigrid`][].

    Cycle on level `l`: pre-smoothing; residual restricted by `R = P^T / 2^d` (the cell-centred
    full weighting `[1, 3, 3, 1] / 8` per axis); coarse correction; prolongation by
    cell-centred bilinear interpolation `P` (`[1, 3, 3, 1] / 4` per axis); post-smoothing with
    the adjoint sweep (so the cycle is symmetric); exact solve (dense pseudo-inverse) on the
    coarsest grid. Solid cells are excluded from every level (a coarse cell is solid when all its
    children are) and the fine solid rows (identity) are inverted exactly.
    """

    operators: tuple[AbstractGridOperator, ...]
    diagonals: tuple[Array, ...]
    lmax: tuple[Array, ...]
    coarse_inverse: Array
    extension: tuple[Any, ...]
    scales: tuple[Array, ...]
    boundaries: tuple[Any, ...] = eqx.field(static=True)
    smoother: str = eqx.field(static=True)
    pre: int = eqx.field(static=True)
    post: int = eqx.field(static=True)
    omega: float = eqx.field(static=True)
    degree: int = eqx.field(static=True)

    def in_structure(self):
        return self.operators[0].in_structure()

    def diagonal_values(self):
        raise NotImplementedError(
            "the diagonal of a V-cycle is not available matrix-free; use `vc.as_matrix()` on "
            "small grids."
        )

    def _smooth(self, level, f, u, fluid, post):
        op = self.operators[level]
        D = self.diagonals[level]
        sweeps = self.post if post else self.pre
        if sweeps == 0:
            return u
        if self.smoother == "jacobi":
            return jacobi(op.mv, f, u, D, fluid, sweeps=sweeps, omega=self.omega)
        if self.smoother == "chebyshev":
            for _ in range(sweeps):
                u = chebyshev(op.mv, f, u, D, fluid, lmax=self.lmax[level], degree=self.degree)
            return u
        return red_black_gauss_seidel(op.mv, f, u, D, fluid, sweeps=sweeps, reverse=post)

    def _cycle(self, level, f):
        op = self.operators[level]
        fluid = ~op.solid
        if level == len(self.operators) - 1:
            n = f.size
            u = (self.coarse_inverse @ f.reshape(n)).reshape(f.shape)
            return jnp.where(fluid, u, jnp.zeros_like(u))
        u = self._smooth(level, f, jnp.zeros_like(f), fluid, post=False)
        r = f - op.mv(u)
        bnd = self.boundaries[level]
        cper = self.operators[level + 1].periodic
        ext = self.extension[level + 1]
        sc = self.scales[level]
        ec = self._cycle(level + 1, _to_coarse(r, sc, bnd, ext, cper))
        u = u + _to_fine(ec, sc, bnd, ext, cper)
        return self._smooth(level, f, u, fluid, post=True)

    def mv(self, vector):
        solid = self.operators[0].solid
        f = jnp.where(solid, jnp.zeros_like(vector), vector)
        u = self._cycle(0, f)
        return jnp.where(solid, vector, u)


def multigrid(
    operator: DiffusionOperator,
    *,
    smoother: str = "chebyshev",
    pre: int = 1,
    post: int = 1,
    omega: float | None = None,
    degree: int = 2,
    max_coarse: int = 256,
    levels: int | None = None,
    coarse: str = "rediscretise",
) -> VCycle:
    """Set up a geometric-multigrid V-cycle for a cell-centred diffusion operator.

    Coarse operators are rediscretised by [`scimlx.linsolve.coarsen`][] (the coefficients and
    the solid mask are coarsened, so coarse grids see the obstacles), or with
    `coarse="galerkin"` built as `R A P` by [`scimlx.linsolve.galerkin_coarsen`][] (`5^d`-point
    stencils). Grids are halved while all sizes are even and the grid has more than
    `max_coarse` cells (or `levels` times).

    **Arguments:**

    - `operator`: a [`scimlx.linsolve.DiffusionOperator`][].
    - `smoother`: `"jacobi"` (damped), `"chebyshev"` (on `D^{-1}A`, degree `degree`) or
        `"rbgs"` (red-black Gauss-Seidel, reversed after the correction).
    - `pre`, `post`: smoothing steps before/after the coarse correction. Use `pre == post`
        for a symmetric cycle (needed as a CG preconditioner).
    - `omega`: Jacobi damping (default `0.8` in 2-D, `6/7` in 3-D).
    - `degree`: Chebyshev degree.
    - `max_coarse`: stop coarsening at or below this many cells.
    - `levels`: number of levels (default: as many as allowed).
    - `coarse`: `"rediscretise"` (default) or `"galerkin"`.

    **Returns:**

    A [`scimlx.linsolve.VCycle`][].
    """
    if not isinstance(operator, DiffusionOperator):
        raise TypeError(f"`operator` must be a DiffusionOperator; got {type(operator)}.")
    if smoother not in _SMOOTHERS:
        raise ValueError(f"`smoother` must be one of {_SMOOTHERS}; got {smoother!r}.")
    if pre < 0 or post < 0:
        raise ValueError("`pre` and `post` must be non-negative.")
    if coarse not in _COARSE:
        raise ValueError(f"`coarse` must be one of {_COARSE}; got {coarse!r}.")
    ndim = len(operator.grid_shape)
    if omega is None:
        omega = 0.8 if ndim <= 2 else 6.0 / 7.0
    return _build(operator, smoother, pre, post, float(omega), degree, max_coarse, levels, coarse)


@eqx.filter_jit
def _build(operator, smoother, pre, post, omega, degree, max_coarse, levels, coarse="rediscretise"):
    ops = [operator]
    while True:
        shape = ops[-1].grid_shape
        if levels is not None and len(ops) >= levels:
            break
        if levels is None and int(np.prod(shape)) <= max_coarse:
            break
        if any(n % 2 or n < 4 for n in shape):
            break
        ops.append(coarsen(ops[-1]) if coarse == "rediscretise" else galerkin_coarsen(ops[-1]))
    return _setup(tuple(ops), smoother, pre, post, omega, degree, galerkin=coarse == "galerkin")


def _setup_arrays(ops, smoother, galerkin=False):
    diags = tuple(op.diagonal_values() for op in ops)
    if smoother == "chebyshev":
        lmax = tuple(estimate_lmax(op.mv, D, ~op.solid) for op, D in zip(ops[:-1], diags[:-1])) + (
            jnp.asarray(2.0, ops[0].dtype),
        )
    else:
        lmax = tuple(jnp.asarray(2.0, op.dtype) for op in ops)
    A = _dense(ops[-1])
    inv = jnp.linalg.pinv(A, hermitian=True)
    ext = tuple(_extension_weights(op.solid, op.periodic) for op in ops)
    scales = tuple((~op.solid).astype(op.dtype) for op in ops)
    if galerkin:  # the Galerkin coarse spaces: no extension, renormalised interpolation
        ext = tuple((jnp.zeros_like(w), f) for w, f in ext)
        scales = tuple(
            _galerkin_scale(~op.solid, f, _transfer_boundary(op), op.dtype)
            for op, (_, f) in zip(ops[:-1], ext[1:])
        ) + (scales[-1],)
    return diags, lmax, inv, ext, scales


def _setup(ops, smoother, pre, post, omega, degree, galerkin=False):
    boundaries = tuple(_transfer_boundary(op) for op in ops)
    diags, lmax, inv, ext, scales = _setup_arrays(ops, smoother, galerkin)
    return VCycle(
        ops, diags, lmax, inv, ext, scales, boundaries, smoother, pre, post, omega, degree
    )


class MGSolution(eqx.Module):
    """Result of [`scimlx.linsolve.multigrid_solve`][]: `value`, `result` (a `scimlx.RESULTS`)
    and `stats` (`num_steps`, `residual_history` of length `max_steps + 1`, NaN-padded)."""

    value: Array
    result: Any
    stats: dict[str, Any]


@eqx.filter_jit
def multigrid_solve(
    operator: DiffusionOperator,
    b: Float[Array, "*grid"],
    *,
    vcycle: VCycle | None = None,
    rtol: float = 1e-6,
    atol: float = 0.0,
    max_steps: int = 100,
    throw: bool = True,
) -> MGSolution:
    """Solve `A x = b` by repeated V-cycles (stationary multigrid).

    Stops when `|r|_2 <= atol + rtol |b|_2`.

    **Arguments:**

    - `operator`: the [`scimlx.linsolve.DiffusionOperator`][].
    - `b`: right-hand side (grid-shaped).
    - `vcycle`: a prebuilt [`scimlx.linsolve.VCycle`][] (default: `multigrid(operator)`).
    - `rtol`, `atol`: tolerances; `max_steps`: maximum number of cycles.
    - `throw`: raise if not converged; under `vmap` pass `False` and read `result`.

    **Returns:**

    An [`scimlx.linsolve.MGSolution`][].
    """
    if b.shape != operator.grid_shape:
        raise ValueError(f"`b` must have shape {operator.grid_shape}; got {b.shape}.")
    if rtol < 0 or atol < 0 or (rtol == 0 and atol == 0):
        raise ValueError("`rtol`, `atol` must be non-negative and not both zero.")
    vc = multigrid(operator) if vcycle is None else vcycle
    bnorm = jnp.linalg.norm(b)
    tol = atol + rtol * bnorm
    hist = jnp.full((max_steps + 1,), jnp.nan, b.dtype).at[0].set(bnorm)

    def cond(c):
        x, r, rn, k, hist = c
        return (rn > tol) & (k < max_steps) & jnp.isfinite(rn)

    def body(c):
        x, r, rn, k, hist = c
        x = x + vc.mv(r)
        r = b - operator.mv(x)
        rn = jnp.linalg.norm(r)
        return x, r, rn, k + 1, hist.at[k + 1].set(rn)

    x, r, rn, k, hist = jax.lax.while_loop(
        cond, body, (jnp.zeros_like(b), b, bnorm, jnp.array(0), hist)
    )
    result = RESULTS.where(
        rn <= tol,
        RESULTS.successful,
        RESULTS.where(jnp.isfinite(rn), RESULTS.max_steps_reached, _nonfinite()),
    )
    if throw:
        x = result.error_if(x, result != RESULTS.successful)
    return MGSolution(x, result, {"num_steps": k, "residual_history": hist, "residual_norm": rn})


def _nonfinite():
    names = RESULTS._name_to_item
    return RESULTS.nonfinite if "nonfinite" in names else RESULTS.breakdown
