"""Geometric multigrid for cell-centred diffusion operators: hierarchy, V-cycle, solve."""

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from .._core import Solution
from .._core._checks import Tolerance
from ._blackbox import blackbox_hierarchy
from ._iterative import loop_solution, MAX_STEPS, NONFINITE, SUCCESSFUL
from ._operators import _probe_stencil, AbstractGridOperator, DiffusionOperator, StencilOperator
from ._smoothers import chebyshev, estimate_lmax, jacobi, red_black_gauss_seidel
from ._transfer import prolong, restrict, tensor_kernel


_P1 = (0.25, 0.75, 0.75, 0.25)  # cell-centred bilinear prolongation, per axis
_SMOOTHERS = ("jacobi", "chebyshev", "rbgs")
_COARSE = ("blackbox", "rediscretise", "galerkin")


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

    S = _probe_stencil(rap, cshape, periodic, 5, op.dtype)
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
    """A multigrid V-cycle as a symmetric positive definite lineax operator.

    `VCycle.mv(r)` applies one V-cycle to `A e = r` from `e = 0`, i.e. an approximation of
    `A^{-1} r`: usable as `lx.CG(...)`'s preconditioner (`options={"preconditioner": vc}`),
    in [`scimlx.linsolve.pcg_solve`][], and stand-alone in
    [`scimlx.linsolve.multigrid_solve`][]. Build it with [`scimlx.linsolve.multigrid`][].

    Cycle on level `l`: pre-smoothing; residual restricted; coarse correction; prolongation;
    post-smoothing with the adjoint sweep (so the cycle is symmetric); exact solve (dense
    pseudo-inverse) on the coarsest grid. Transfers: with `transfers` (black-box levels, see
    [`scimlx.linsolve.blackbox_coarsen`][]) the operator-dependent `P` and `R = P^T`;
    otherwise the cell-centred geometric pair, `R = P^T / 2^d` (full weighting
    `[1, 3, 3, 1] / 8` per axis) and bilinear `P` (`[1, 3, 3, 1] / 4` per axis). Solid cells
    are excluded from every level and the fine solid rows (identity) are inverted exactly.
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
    transfers: tuple[Any, ...] = ()

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
        if self.transfers:
            tr = self.transfers[level]
            u = u + tr.prolong(self._cycle(level + 1, tr.restrict(r)))
            return self._smooth(level, f, u, fluid, post=True)
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


def _traced(op) -> bool:
    return any(isinstance(x, jax.core.Tracer) for x in jax.tree_util.tree_leaves(op))


def _uniform(op: AbstractGridOperator) -> bool:
    """Whether `op` is a concrete diffusion operator with one isotropic coefficient on every
    face between fluid cells (solids allowed)."""
    if not isinstance(op, DiffusionOperator):
        return False
    try:
        faces = [np.asarray(T) for T in op.faces]
    except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
        return False
    vals = []
    for d, (T, per, h) in enumerate(zip(faces, op.periodic, op.spacing)):
        inner = T if per else np.take(T, np.arange(1, T.shape[d] - 1), axis=d)
        inner = inner[inner != 0] / h**2  # faces at solids are zero
        if inner.size == 0:
            continue
        if np.ptp(inner) > 1e-12 * np.abs(inner).max():
            return False
        vals.append(float(inner.flat[0]))
    return not vals or max(vals) - min(vals) <= 1e-12 * max(abs(v) for v in vals)


def _geometric_depth_ok(shape, max_coarse: int) -> bool:
    """Whether halving even sizes reaches `max_coarse` cells (the geometric hierarchy)."""
    shape = tuple(shape)
    while int(np.prod(shape)) > max_coarse:
        if any(n % 2 or n < 4 for n in shape):
            return False
        shape = tuple(n // 2 for n in shape)
    return True


def multigrid(
    operator: AbstractGridOperator,
    *,
    smoother: str = "chebyshev",
    pre: int = 1,
    post: int = 1,
    omega: float | None = None,
    degree: int = 2,
    max_coarse: int = 256,
    levels: int | None = None,
    coarse: str | None = None,
    semicoarsen: float = 0.25,
) -> VCycle:
    """Set up a multigrid V-cycle for a cell-centred diffusion operator.

    Three kinds of coarse levels (`coarse`):

    - `"blackbox"`: operator-dependent interpolation and Galerkin coarse operators
        `P^T A P` (`3^d`-point stencils; see [`scimlx.linsolve.blackbox_coarsen`][]); any grid
        size (`n -> n // 2` per axis); axes much more weakly coupled than the strongest
        (below `semicoarsen` times its strength) are not coarsened (semi-coarsening, for
        anisotropic coefficients). Robust on obstacles, thin channels and coefficient jumps.
    - `"rediscretise"`: [`scimlx.linsolve.coarsen`][] (coefficients averaged, a coarse cell
        solid when all its children are) with cell-centred bilinear transfers; even sizes only.
    - `"galerkin"`: `R A P` with the cell-centred bilinear transfers
        ([`scimlx.linsolve.galerkin_coarsen`][], `5^d`-point stencils); even sizes only.

    The default (`None`) is `"rediscretise"` for constant-coefficient isotropic operators
    (with or without solids) whose sizes halve down to `max_coarse` cells, and `"blackbox"`
    otherwise (variable or anisotropic coefficients, odd sizes, traced operators). On
    obstacle scenes with thin channels (mazes) `"blackbox"` needs fewer iterations than
    `"rediscretise"`; on scattered obstacles more (see the benchmarks page).

    **Arguments:**

    - `operator`: a [`scimlx.linsolve.DiffusionOperator`][] (or, for `"blackbox"`, a
        `3^d`-point [`scimlx.linsolve.StencilOperator`][]).
    - `smoother`: `"jacobi"` (damped), `"chebyshev"` (on `D^{-1}A`, degree `degree`) or
        `"rbgs"` (red-black Gauss-Seidel, reversed after the correction).
    - `pre`, `post`: smoothing steps before/after the coarse correction. Use `pre == post`
        for a symmetric cycle (needed as a CG preconditioner).
    - `omega`: Jacobi damping (default `0.8` in 2-D, `6/7` in 3-D).
    - `degree`: Chebyshev degree.
    - `max_coarse`: coarsen until at most this many cells (the coarsest level is solved by a
        dense pseudo-inverse). A grid that cannot be coarsened that far raises `ValueError`
        naming the grid (e.g. odd periodic sides, or odd sides with `"rediscretise"`).
    - `levels`: number of levels (default: as many as needed for `max_coarse`).
    - `coarse`: `None` (automatic, above), `"blackbox"`, `"rediscretise"` or `"galerkin"`.
    - `semicoarsen`: black-box only; the relative coupling strength below which an axis is
        not coarsened (`0` coarsens every axis that can be halved).

    **Returns:**

    A [`scimlx.linsolve.VCycle`][].
    """
    if not isinstance(operator, DiffusionOperator | StencilOperator):
        raise TypeError(
            f"`operator` must be a DiffusionOperator (or a StencilOperator); got {type(operator)}."
        )
    if smoother not in _SMOOTHERS:
        raise ValueError(f"`smoother` must be one of {_SMOOTHERS}; got {smoother!r}.")
    if pre < 0 or post < 0:
        raise ValueError("`pre` and `post` must be non-negative.")
    if coarse is not None and coarse not in _COARSE:
        raise ValueError(f"`coarse` must be None or one of {_COARSE}; got {coarse!r}.")
    if max_coarse < 1:
        raise ValueError(f"`max_coarse` must be >= 1; got {max_coarse}.")
    if levels is not None and levels < 1:
        raise ValueError(f"`levels` must be >= 1; got {levels}.")
    if coarse is None:
        simple = _uniform(operator) and _geometric_depth_ok(operator.grid_shape, max_coarse)
        coarse = "rediscretise" if simple else "blackbox"
    if coarse != "blackbox" and not isinstance(operator, DiffusionOperator):
        raise TypeError(f"`coarse={coarse!r}` needs a DiffusionOperator; got {type(operator)}.")
    ndim = len(operator.grid_shape)
    if omega is None:
        omega = 0.8 if ndim <= 2 else 6.0 / 7.0
    # Black-box setup runs eagerly on a concrete operator: the coarsening decisions
    # (semi-coarsening) need concrete values, and op-by-op execution costs less than
    # compiling the whole setup.
    eager = coarse == "blackbox" and not _traced(operator)
    build = _build.__wrapped__ if eager else _build
    return build(
        operator,
        smoother,
        pre,
        post,
        float(omega),
        degree,
        max_coarse,
        levels,
        coarse,
        float(semicoarsen),
    )


@eqx.filter_jit
def _build(
    operator,
    smoother,
    pre,
    post,
    omega,
    degree,
    max_coarse,
    levels,
    coarse="rediscretise",
    semicoarsen=0.25,
):
    if coarse == "blackbox":
        ops, transfers = blackbox_hierarchy(
            operator, max_coarse=max_coarse, levels=levels, semicoarsen=semicoarsen
        )
        return _setup(tuple(ops), smoother, pre, post, omega, degree, transfers=tuple(transfers))
    ops = [operator]
    while True:
        shape = ops[-1].grid_shape
        if levels is not None and len(ops) >= levels:
            break
        if levels is None and int(np.prod(shape)) <= max_coarse:
            break
        if any(n % 2 or n < 4 for n in shape):
            if levels is None:
                raise ValueError(
                    f"`coarse={coarse!r}` cannot coarsen the grid {shape} (reached from "
                    f"{operator.grid_shape}): it halves even sizes only, and {int(np.prod(shape))}"
                    f" cells exceed `max_coarse={max_coarse}`; use `coarse='blackbox'` (any size)."
                )
            break
        ops.append(coarsen(ops[-1]) if coarse == "rediscretise" else galerkin_coarsen(ops[-1]))
    return _setup(tuple(ops), smoother, pre, post, omega, degree, galerkin=coarse == "galerkin")


def _gershgorin(op, D):
    """Gershgorin bound of `D^{-1} A` on fluid cells: 2 for diffusion operators (diagonally
    dominant), the largest `sum_j |a_ij| / a_ii` for Galerkin stencils (not always dominant)."""
    if not isinstance(op, StencilOperator):
        return 2.0
    rows = jnp.sum(jnp.abs(op.stencil), axis=0) / jnp.where(op.solid, 1.0, jnp.abs(D))
    return jnp.maximum(jnp.max(jnp.where(op.solid, 0.0, rows)), 2.0)


def _setup_arrays(ops, smoother, galerkin=False, blackbox=False):
    diags = tuple(op.diagonal_values() for op in ops)
    if smoother == "chebyshev":
        lmax = tuple(
            estimate_lmax(op.mv, D, ~op.solid, bound=_gershgorin(op, D))
            for op, D in zip(ops[:-1], diags[:-1])
        ) + (jnp.asarray(2.0, ops[0].dtype),)
    else:
        lmax = tuple(jnp.asarray(2.0, op.dtype) for op in ops)
    A = _dense(ops[-1])
    inv = jnp.linalg.pinv(A, hermitian=True)
    if blackbox:  # the transfers carry the coarse spaces
        return diags, lmax, inv, (), ()
    ext = tuple(_extension_weights(op.solid, op.periodic) for op in ops)
    scales = tuple((~op.solid).astype(op.dtype) for op in ops)
    if galerkin:  # the Galerkin coarse spaces: no extension, renormalised interpolation
        ext = tuple((jnp.zeros_like(w), f) for w, f in ext)
        scales = tuple(
            _galerkin_scale(~op.solid, f, _transfer_boundary(op), op.dtype)
            for op, (_, f) in zip(ops[:-1], ext[1:])
        ) + (scales[-1],)
    return diags, lmax, inv, ext, scales


def _setup(ops, smoother, pre, post, omega, degree, galerkin=False, transfers=()):
    boundaries = tuple(_transfer_boundary(op) for op in ops)
    diags, lmax, inv, ext, scales = _setup_arrays(ops, smoother, galerkin, bool(transfers))
    return VCycle(
        ops,
        diags,
        lmax,
        inv,
        ext,
        scales,
        boundaries,
        smoother,
        pre,
        post,
        omega,
        degree,
        transfers,
    )


@eqx.filter_jit
def multigrid_solve(
    operator: DiffusionOperator,
    b: Float[Array, "*grid"],
    *,
    vcycle: VCycle | None = None,
    rtol: Tolerance = 1e-6,
    atol: Tolerance = 0.0,
    max_steps: int = 100,
    throw: bool = True,
) -> Solution:
    """Solve `A x = b` by repeated V-cycles (stationary multigrid).

    Stops when `|r|_2 <= atol + rtol |b|_2`.

    **Arguments:**

    - `operator`: the [`scimlx.linsolve.DiffusionOperator`][].
    - `b`: right-hand side (grid-shaped).
    - `vcycle`: a prebuilt [`scimlx.linsolve.VCycle`][] (default: `multigrid(operator)`).
    - `rtol`, `atol`: tolerances; `max_steps`: maximum number of cycles.
    - `throw`: raise if not converged; under `vmap` pass `False` and read `result`.

    **Returns:**

    A [`scimlx.Solution`][]. `result` is `successful` (`|b - A x|_2` meets the tolerance),
    `max_steps_reached` or `nonfinite`. `stats` holds:

    - `num_steps`: V-cycles taken;
    - `residual_history`: `|r_i|_2` (`|b|_2` first), length `max_steps + 1`, NaN after the
      last cycle;
    - `residual_norm`: `|b - A x|_2` of the returned `value`.
    """
    if b.shape != operator.grid_shape:
        raise ValueError(f"`b` must have shape {operator.grid_shape}; got {b.shape}.")
    if rtol < 0 or atol < 0 or (rtol == 0 and atol == 0):
        raise ValueError("`rtol`, `atol` must be non-negative and not both zero.")
    if vcycle is not None and vcycle.in_structure() != operator.in_structure():
        s = vcycle.in_structure()
        raise ValueError(
            f"`vcycle` was built for the grid {s.shape} ({s.dtype}) but `operator` acts on "
            f"{operator.grid_shape} ({operator.dtype}); build it with `multigrid(operator)`."
        )
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
    code = jnp.where(rn <= tol, SUCCESSFUL, jnp.where(jnp.isfinite(rn), MAX_STEPS, NONFINITE))
    stats = {"num_steps": k, "residual_history": hist, "residual_norm": rn, "code": code}
    return loop_solution(x, stats, throw=throw)
