"""Geometric multigrid for cell-centred diffusion operators: hierarchy, V-cycle, solve."""

import dataclasses
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PyTree

from .._core import Solution
from .._core._checks import Tolerance
from ._aggregation import Aggregation, channel_score
from ._blackbox import BlackBox
from ._coarsening import AbstractCoarsening, AbstractTransfer
from ._iterative import loop_solution, MAX_STEPS, NONFINITE, SUCCESSFUL
from ._operators import _probe_stencil, AbstractGridOperator, DiffusionOperator, StencilOperator
from ._sharding import constrain, GridSharding
from ._smoothers import AbstractSmoother, Chebyshev
from ._transfer import prolong, restrict, tensor_kernel


_P1 = (0.25, 0.75, 0.75, 0.25)  # cell-centred bilinear prolongation, per axis


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
    return _galerkin_level(op)[0]


def _galerkin_level(op: AbstractGridOperator) -> tuple[StencilOperator, "GeometricTransfer"]:
    shape, ndim, cshape, solid_c = _coarse_grid(op)
    periodic = op.periodic
    cfluid = (~solid_c).astype(op.dtype)
    bnd = _transfer_boundary(op)
    scale = _galerkin_scale(~op.solid, cfluid, bnd, op.dtype)
    # no extension into solid coarse cells (it would widen the stencil)
    transfer = GeometricTransfer(scale, jnp.zeros(cshape, op.dtype), cfluid, bnd, periodic)

    def rap(xc):
        return transfer.restrict(op.mv(transfer.prolong(xc)))

    S = _probe_stencil(rap, cshape, periodic, 5, op.dtype)
    S = jnp.where(solid_c[None], jnp.zeros_like(S), S)
    return StencilOperator(S, solid_c, op.boundary), transfer


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


class GeometricTransfer(AbstractTransfer):
    """The cell-centred geometric transfers of [`scimlx.linsolve.Rediscretise`][] and
    [`scimlx.linsolve.Galerkin`][] levels.

    `prolong(e) = s P E e`: the coarse correction extended into solid coarse cells (`E`, the
    mean of their fluid face-neighbours; no extension for Galerkin levels), cell-centred
    bilinear `P` (`[1, 3, 3, 1] / 4` per axis, antisymmetric ghosts at Dirichlet walls,
    mirrored at Neumann walls, wrapped on periodic axes) and a fine-cell factor `s` (the fluid
    mask, or for Galerkin levels the renormalisation of [`scimlx.linsolve.galerkin_coarsen`][]).
    `restrict(r) = E^T P^T (s r) / 2^d` (full weighting `[1, 3, 3, 1] / 8` per axis).
    """

    scale: Array
    extension: Array
    coarse_fluid: Array
    boundary: tuple[Any, ...] = eqx.field(static=True)
    coarse_periodic: tuple[bool, ...] = eqx.field(static=True)

    def restrict(self, r: Array) -> Array:
        ext = (self.extension, self.coarse_fluid)
        return _to_coarse(r, self.scale, self.boundary, ext, self.coarse_periodic)

    def prolong(self, e: Array) -> Array:
        ext = (self.extension, self.coarse_fluid)
        return _to_fine(e, self.scale, self.boundary, ext, self.coarse_periodic)


def _geometric_coarsenable(op: AbstractGridOperator) -> bool:
    return all(n % 2 == 0 and n >= 4 for n in op.grid_shape)


class Rediscretise(AbstractCoarsening):
    """Geometric coarse levels: [`scimlx.linsolve.coarsen`][] (face coefficients averaged, a
    coarse cell solid when all its children are) with the cell-centred bilinear transfers
    ([`scimlx.linsolve.GeometricTransfer`][]). Even sizes only; needs a
    [`scimlx.linsolve.DiffusionOperator`][].
    """

    eager = False

    def coarsen(
        self, operator: AbstractGridOperator
    ) -> tuple[AbstractGridOperator, AbstractTransfer] | None:
        if not isinstance(operator, DiffusionOperator):
            raise TypeError(
                f"`coarse=Rediscretise()` needs a DiffusionOperator; got {type(operator)}."
            )
        if not _geometric_coarsenable(operator):
            return None
        coarse = coarsen(operator)
        w, cfluid = _extension_weights(coarse.solid, coarse.periodic)
        scale = (~operator.solid).astype(operator.dtype)
        bnd = _transfer_boundary(operator)
        return coarse, GeometricTransfer(scale, w, cfluid, bnd, coarse.periodic)


class Galerkin(AbstractCoarsening):
    """Galerkin coarse levels `R A P` with the cell-centred bilinear transfers
    ([`scimlx.linsolve.galerkin_coarsen`][], `5^d`-point stencils). Even sizes only.
    """

    eager = False

    def coarsen(
        self, operator: AbstractGridOperator
    ) -> tuple[AbstractGridOperator, AbstractTransfer] | None:
        if not isinstance(operator, DiffusionOperator | StencilOperator):
            raise TypeError(
                "`coarse=Galerkin()` needs a DiffusionOperator or a StencilOperator; got "
                f"{type(operator)}."
            )
        if not _geometric_coarsenable(operator):
            return None
        return _galerkin_level(operator)


class VCycle(AbstractGridOperator):
    """A multigrid V-cycle as a symmetric positive definite lineax operator.

    `VCycle.mv(r)` applies one V-cycle to `A e = r` from `e = 0`, i.e. an approximation of
    `A^{-1} r`: usable as `lx.CG(...)`'s preconditioner (`options={"preconditioner": vc}`),
    in [`scimlx.linsolve.pcg_solve`][], and stand-alone in
    [`scimlx.linsolve.multigrid_solve`][]. Build it with [`scimlx.linsolve.multigrid`][].

    Cycle on level `l`: `pre` smoothing sweeps; residual restricted (`transfers[l]`); coarse
    correction; prolongation; `post` sweeps of the adjoint smoother (so the cycle is
    symmetric); exact solve (dense pseudo-inverse) on the coarsest grid. Solid cells are
    excluded from every level and the fine solid rows (identity) are inverted exactly.

    **Fields:**

    - `operators`: the levels, finest first; `diagonals`: their diagonals.
    - `transfers`: one [`scimlx.linsolve.AbstractTransfer`][] between each level and the next.
    - `smoother`: the [`scimlx.linsolve.AbstractSmoother`][]; `smoother_data`: what its
      `init` returned on each level but the coarsest.
    - `coarse_inverse`: the coarsest operator's pseudo-inverse.
    - `pre`, `post`: sweeps before and after the coarse correction.
    - `sharding`: the [`scimlx.linsolve.GridSharding`][] every level's vectors are
      constrained to, or `None`.
    - `vector_dtype`: the dtype of the vectors the cycle is applied to when the hierarchy
      is held in a lower precision (`multigrid(..., dtype=...)`), else `None`: `mv` casts
      its input to the hierarchy's dtype and its result back.
    """

    operators: tuple[AbstractGridOperator, ...]
    diagonals: tuple[Array, ...]
    transfers: tuple[AbstractTransfer, ...]
    smoother: AbstractSmoother
    smoother_data: tuple[PyTree[Any], ...]
    coarse_inverse: Array
    pre: int = eqx.field(static=True)
    post: int = eqx.field(static=True)
    sharding: GridSharding | None = None
    vector_dtype: Any = eqx.field(static=True, default=None)

    def in_structure(self):
        inner = self.operators[0].in_structure()
        if self.vector_dtype is None:
            return inner
        return jax.ShapeDtypeStruct(inner.shape, self.vector_dtype)

    def diagonal_values(self):
        raise NotImplementedError(
            "the diagonal of a V-cycle is not available matrix-free; use `vc.as_matrix()` on "
            "small grids."
        )

    def _smooth(self, level, f, u, post):
        op = self.operators[level]
        D = self.diagonals[level]
        data = self.smoother_data[level]
        for _ in range(self.post if post else self.pre):
            u = constrain(self.sharding, self.smoother.step(op, D, data, f, u, post=post))
        return u

    def _cycle(self, level, f, one):
        op = self.operators[level]
        if level == len(self.operators) - 1:
            n = f.size
            u = (self.coarse_inverse @ f.reshape(n)).reshape(f.shape)
            return jnp.where(~op.solid, u, jnp.zeros_like(u))
        f = constrain(self.sharding, f)
        u = self._smooth(level, f, jnp.zeros_like(f), post=False)
        r = constrain(self.sharding, f - op.mv(u))
        tr = self.transfers[level]
        u = u + tr.prolong(self._cycle(level + 1, tr.restrict(r), one))
        return self._smooth(level, f, _computed_once(u, one), post=True)

    def mv(self, vector):
        solid = self.operators[0].solid
        v = vector.astype(self.operators[0].dtype)
        f = jnp.where(solid, jnp.zeros_like(v), v)
        one = 1.0 + 0.0 * f.reshape(-1)[0]  # a 1 that XLA cannot fold away (`_computed_once`)
        u = self._cycle(0, f, one).astype(vector.dtype)
        return jnp.where(solid, vector, u)


def _computed_once(x, one):
    """`x` (divided by a run-time `one == 1`), stored once rather than recomputed.

    XLA's CPU fusion copies a chain of cheap element-wise operations into every consumer that
    reads it: the corrected iterate before post-smoothing (a prolongation on top of the
    coarse level's smoothing and stencil products) was re-evaluated inside each of the
    smoother's shifted reads. Inside PCG's `while_loop` that made the cycle 1.5x slower on a
    2-D black-box hierarchy and 5x slower on a 3-D one (512^2 and 64^3 log-normal
    coefficients) than the same cycle compiled alone. A division is an operation XLA does not
    duplicate, so the value is computed once. (`jax.lax.optimization_barrier` does not do this
    on CPU: XLA removes it before fusion.)"""
    return x / one


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


CHANNEL_SCORE = 0.3  # `channel_score` above which the default hierarchy aggregates


def _default_coarsening(operator: AbstractGridOperator, max_coarse: int) -> AbstractCoarsening:
    """`Aggregation()` for concrete 2-D operators whose solids form thin channels (mazes),
    `Rediscretise()` for other constant-coefficient isotropic operators that halve down to
    `max_coarse` cells, `BlackBox()` otherwise. (In 3-D aggregation converges as well but
    its coarse operators are several times denser, so it is not chosen automatically.)"""
    if len(operator.grid_shape) <= 2 and not _traced(operator):
        solid = np.asarray(operator.solid)
        if solid.any() and channel_score(solid, max_coarse) >= CHANNEL_SCORE:
            return Aggregation()
    if _uniform(operator) and _geometric_depth_ok(operator.grid_shape, max_coarse):
        return Rediscretise()
    return BlackBox()


def multigrid(
    operator: AbstractGridOperator,
    *,
    smoother: AbstractSmoother = Chebyshev(),
    pre: int = 1,
    post: int = 1,
    max_coarse: int = 256,
    levels: int | None = None,
    coarse: AbstractCoarsening | None = None,
    sharding: GridSharding | None = None,
    dtype: Any = None,
) -> VCycle:
    """Set up a multigrid V-cycle for a cell-centred diffusion operator.

    Four kinds of coarse levels (`coarse`):

    - [`scimlx.linsolve.BlackBox`][]: operator-dependent interpolation and Galerkin coarse
        operators `P^T A P` (`3^d`-point stencils; see [`scimlx.linsolve.blackbox_coarsen`][]);
        any grid size (`n -> n // 2` per axis); axes much more weakly coupled than the
        strongest are not coarsened (semi-coarsening, for anisotropic coefficients). Robust on
        coefficient jumps and anisotropy.
    - [`scimlx.linsolve.Rediscretise`][]: [`scimlx.linsolve.coarsen`][] (coefficients
        averaged, a coarse cell solid when all its children are) with cell-centred bilinear
        transfers; even sizes only.
    - [`scimlx.linsolve.Galerkin`][]: `R A P` with the cell-centred bilinear transfers
        ([`scimlx.linsolve.galerkin_coarsen`][], `5^d`-point stencils); even sizes only.

    - [`scimlx.linsolve.Aggregation`][]: smoothed aggregation over grid blocks split at
        walls and weak couplings (coarse levels are
        [`scimlx.linsolve.SparseOperator`][]s); any grid size; set up on the host. Robust
        on mazes and thin channels, where one unknown per coarse cell would join corridors.

    The default (`None`) is `Aggregation()` when the solids of a 2-D grid form thin channels
    ([`scimlx.linsolve.channel_score`][] at least 0.3: mazes, corridors about as thin as a
    coarse cell), else `Rediscretise()` for constant-coefficient isotropic operators (with
    or without scattered solids) whose sizes halve down to `max_coarse` cells, and
    `BlackBox()` otherwise (variable or anisotropic coefficients, odd sizes, traced
    operators). A subclass of [`scimlx.linsolve.AbstractCoarsening`][] plugs in its own
    levels.

    **Arguments:**

    - `operator`: a [`scimlx.linsolve.DiffusionOperator`][] (or, for `BlackBox()` and
        `Galerkin()`, a [`scimlx.linsolve.StencilOperator`][]).
    - `smoother`: an [`scimlx.linsolve.AbstractSmoother`][]:
        [`scimlx.linsolve.Chebyshev`][] (default, degree 2),
        [`scimlx.linsolve.Jacobi`][] (damped) or
        [`scimlx.linsolve.RedBlackGaussSeidel`][] (reversed after the correction), or a
        subclass of your own.
    - `pre`, `post`: smoothing sweeps before/after the coarse correction. Use `pre == post`
        for a symmetric cycle (needed as a CG preconditioner).
    - `max_coarse`: coarsen until at most this many cells (the coarsest level is solved by a
        dense pseudo-inverse). A grid that cannot be coarsened that far raises `ValueError`
        naming the grid (e.g. odd periodic sides, or odd sides with `Rediscretise()`).
    - `levels`: number of levels (default: as many as needed for `max_coarse`).
    - `coarse`: `None` (automatic, above) or an [`scimlx.linsolve.AbstractCoarsening`][].
    - `sharding`: a [`scimlx.linsolve.GridSharding`][] to split every level's vectors over a
        device mesh (levels too small to split are kept whole on each device).
    - `dtype`: the floating dtype the hierarchy is held and the cycle computed in (default
        `None`: the operator's). `jnp.float32` for a float64 operator is a mixed-precision
        preconditioner: the levels are set up in the operator's precision and then rounded,
        the cycle moves half the memory, and CG around it still works in float64 (it only
        needs an approximation of `A^{-1}`), so the solve reaches float64 tolerances.
        Measured time and iterations (incl. high-contrast coefficients) are on the
        Benchmarks page.

    **Returns:**

    A [`scimlx.linsolve.VCycle`][].
    """
    if not isinstance(operator, DiffusionOperator | StencilOperator):
        raise TypeError(
            f"`operator` must be a DiffusionOperator (or a StencilOperator); got {type(operator)}."
        )
    if not isinstance(smoother, AbstractSmoother):
        raise TypeError(
            "`smoother` must be an AbstractSmoother (e.g. `Chebyshev()`, `Jacobi()`, "
            f"`RedBlackGaussSeidel()`); got {smoother!r}."
        )
    if pre < 0 or post < 0:
        raise ValueError("`pre` and `post` must be non-negative.")
    if coarse is not None and not isinstance(coarse, AbstractCoarsening):
        raise TypeError(
            "`coarse` must be None or an AbstractCoarsening (e.g. `BlackBox()`, "
            f"`Rediscretise()`, `Galerkin()`); got {coarse!r}."
        )
    if max_coarse < 1:
        raise ValueError(f"`max_coarse` must be >= 1; got {max_coarse}.")
    if levels is not None and levels < 1:
        raise ValueError(f"`levels` must be >= 1; got {levels}.")
    if dtype is not None:
        try:
            dtype = jnp.dtype(dtype)
        except TypeError:
            raise TypeError(f"`dtype` must be None or a floating dtype; got {dtype!r}.") from None
        if not jnp.issubdtype(dtype, jnp.floating):
            raise TypeError(f"`dtype` must be None or a floating dtype; got {dtype}.")
    if coarse is None:
        coarse = _default_coarsening(operator, max_coarse)
    # Eager strategies (black-box) run op by op on a concrete operator: the coarsening
    # decisions (semi-coarsening) need concrete values, and op-by-op execution costs less
    # than compiling the whole setup.
    eager = coarse.eager and not _traced(operator)
    build = _build.__wrapped__ if eager else _build
    vc = build(operator, smoother, pre, post, max_coarse, levels, coarse, sharding)
    if dtype is None or dtype == operator.dtype:
        return vc
    return _cast_hierarchy(vc, dtype, operator.dtype)


@eqx.filter_jit  # one program rather than one dispatch per array
def _cast_hierarchy(vc: VCycle, dtype, vector_dtype) -> VCycle:
    """The V-cycle with every floating array of its levels rounded to `dtype`."""

    def cast(x):
        floating = eqx.is_array(x) and jnp.issubdtype(x.dtype, jnp.floating)
        return x.astype(dtype) if floating else x

    vc = jax.tree.map(cast, vc)
    return dataclasses.replace(vc, vector_dtype=vector_dtype)


def _constrain_level(sharding, tree, grid_shape):
    """Every array of a coarse level (operator or transfer) laid out on `grid_shape`,
    constrained to `sharding` as it is built, so that the partitioner splits the level's
    set-up as the V-cycle splits its vectors."""
    if sharding is None:
        return tree
    nd = len(grid_shape)

    def one(x):
        on_grid = eqx.is_array(x) and x.ndim >= nd and tuple(x.shape[x.ndim - nd :]) == grid_shape
        return sharding.constrain(x) if on_grid else x

    return jax.tree.map(one, tree)


def _hierarchy(operator, coarse, max_coarse, levels, sharding=None):
    ops, transfers = [operator], []
    while True:
        cur = ops[-1]
        size = int(np.prod(cur.grid_shape))
        if levels is not None and len(ops) >= levels:
            break
        if levels is None and size <= max_coarse:
            break
        level = coarse.coarsen(cur)
        if level is None:
            if levels is None:
                raise ValueError(
                    f"`coarse={coarse!r}` cannot coarsen the grid {cur.grid_shape} (periodic: "
                    f"{cur.periodic}; reached from {operator.grid_shape}), and its {size} cells "
                    f"exceed `max_coarse={max_coarse}`. `BlackBox()` coarsens any size "
                    "(periodic axes need even sizes); `Rediscretise()` and `Galerkin()` halve "
                    "even sizes only."
                )
            break
        ops.append(_constrain_level(sharding, level[0], tuple(level[0].grid_shape)))
        transfers.append(_constrain_level(sharding, level[1], tuple(level[0].grid_shape)))
    return ops, transfers


@eqx.filter_jit
def _build(operator, smoother, pre, post, max_coarse, levels, coarse, sharding):
    ops, transfers = _hierarchy(operator, coarse, max_coarse, levels, sharding)
    # per level one compiled program (inlined when `_build` itself is traced)
    parts = [_level_data(smoother, op) for op in ops[:-1]]
    diags = tuple(D for D, _ in parts) + (_diagonal(ops[-1]),)
    data = tuple(d for _, d in parts) + (None,)
    inv = _coarsest_inverse(ops[-1])
    return VCycle(tuple(ops), diags, tuple(transfers), smoother, data, inv, pre, post, sharding)


@eqx.filter_jit
def _level_data(smoother, op):
    D = op.diagonal_values()
    return D, smoother.init(op, D)


_diagonal = eqx.filter_jit(lambda op: op.diagonal_values())


@eqx.filter_jit
def _coarsest_inverse(op):
    return jnp.linalg.pinv(_dense(op), hermitian=True)


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
    - `vcycle`: a prebuilt [`scimlx.linsolve.VCycle`][] (default: `multigrid(operator)`);
      its `sharding`, if any, splits the iterates too.
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
    b = constrain(vc.sharding, b)
    bnorm = jnp.linalg.norm(b)
    tol = atol + rtol * bnorm
    hist = jnp.full((max_steps + 1,), jnp.nan, b.dtype).at[0].set(bnorm)

    def cond(c):
        x, r, rn, k, hist = c
        return (rn > tol) & (k < max_steps) & jnp.isfinite(rn)

    def body(c):
        x, r, rn, k, hist = c
        x = constrain(vc.sharding, x + vc.mv(r))
        r = constrain(vc.sharding, b - operator.mv(x))
        rn = jnp.linalg.norm(r)
        return x, r, rn, k + 1, hist.at[k + 1].set(rn)

    x, r, rn, k, hist = jax.lax.while_loop(
        cond, body, (jnp.zeros_like(b), b, bnorm, jnp.array(0), hist)
    )
    code = jnp.where(rn <= tol, SUCCESSFUL, jnp.where(jnp.isfinite(rn), MAX_STEPS, NONFINITE))
    stats = {"num_steps": k, "residual_history": hist, "residual_norm": rn, "code": code}
    return loop_solution(constrain(vc.sharding, x), stats, throw=throw)
