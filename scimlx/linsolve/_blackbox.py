"""Black-box multigrid: operator-dependent interpolation and Galerkin stencil hierarchies.

Structured coarsening after Dendy's black-box multigrid (BoxMG) and de Zeeuw's matrix-dependent
prolongation, on grids of any size: along a coarsened axis the coarse points are the fine points
of odd index (`n` cells coarsen to `n // 2`), along an axis that is not coarsened
(semi-coarsening) every point is a coarse point. A fine point that is even along the coarsened
axes in the set `E` is interpolated from its `2^|E|` coarse neighbours by the operator's own
equation, with the stencil collapsed (summed) over the axes outside `E`:

    e(p) = -(1 / a_E(0)) sum_{o != 0 in {-1, 0, 1}^E} a_E(o) e(p + o)

(points with smaller `E` first, coarse points by injection). So the interpolation follows
coefficient jumps and never crosses a solid wall (a coupling of zero gives a weight of zero).
Restriction is `R = P^T` and coarse operators are Galerkin products `A_c = P^T A P`: a 3^d-point
fine stencil stays 3^d-point on every level (5 -> 9 points in 2-D, 7 -> 27 in 3-D).
"""

import itertools

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array

from ._coarsening import AbstractCoarsening, AbstractTransfer
from ._operators import (
    _probe_stencil,
    _stencil_offsets,
    AbstractGridOperator,
    DiffusionOperator,
    StencilOperator,
)


def _axis_slices(n: int, nc: int, o: int, coarsened: bool):
    """(start, limit, stride) in the fine array padded by one cell on coarsened axes, giving the
    fine cells `2 I + 1 + o` (coarsened) or `I` (not coarsened) for coarse `I = 0..nc-1`."""
    if not coarsened:
        return 0, n, 1
    start = 2 + o
    return start, start + 2 * (nc - 1) + 1, 2


def _pad_coarsened(x, coarsened, periodic):
    for d, (c, per) in enumerate(zip(coarsened, periodic)):
        if c:
            pad = [(0, 0)] * x.ndim
            pad[d] = (1, 1)
            x = jnp.pad(x, pad, mode="wrap" if per else "constant")
    return x


def _gather(xp, shape, cshape, o, coarsened):
    """`x[fine(I, o)]` for all coarse `I`, from the padded fine array `xp`."""
    sl = [_axis_slices(n, m, oo, c) for n, m, oo, c in zip(shape, cshape, o, coarsened)]
    return jax.lax.slice(xp, [s[0] for s in sl], [s[1] for s in sl], [s[2] for s in sl])


def _transfer_offsets(coarsened) -> tuple[tuple[int, ...], ...]:
    return tuple(itertools.product(*[(-1, 0, 1) if c else (0,) for c in coarsened]))


class BoxTransfer(AbstractTransfer):
    """Operator-dependent prolongation `P` and restriction `R = P^T` between two grid levels.

    `weights[k, I]` is `P[fine(I, o_k), I]`, the weight of coarse cell `I` at the fine cell
    `2 I + 1 + o_k` (per coarsened axis; `I` itself on the other axes), for the offsets
    `o_k` in `offsets` (`{-1, 0, 1}` on coarsened axes, `0` on the others). Both maps are
    matrix-free: `3^d` strided slices (restriction) and their transposes (prolongation).
    Built by [`scimlx.linsolve.blackbox_coarsen`][].
    """

    weights: Array
    fine_shape: tuple[int, ...] = eqx.field(static=True)
    coarsened: tuple[bool, ...] = eqx.field(static=True)
    periodic: tuple[bool, ...] = eqx.field(static=True)

    @property
    def offsets(self) -> tuple[tuple[int, ...], ...]:
        return _transfer_offsets(self.coarsened)

    @property
    def coarse_shape(self) -> tuple[int, ...]:
        return tuple(self.weights.shape[1:])

    def restrict(self, r: Array) -> Array:
        """`P^T r`: fine grid -> coarse grid."""
        rp = _pad_coarsened(r, self.coarsened, self.periodic)
        out = jnp.zeros(self.coarse_shape, r.dtype)
        for k, o in enumerate(self.offsets):
            g = _gather(rp, self.fine_shape, self.coarse_shape, o, self.coarsened)
            out = out + self.weights[k] * g
        return out

    def prolong(self, e: Array) -> Array:
        """`P e`: coarse grid -> fine grid (the exact transpose of `restrict`)."""
        struct = jax.ShapeDtypeStruct(self.fine_shape, e.dtype)
        return jax.linear_transpose(self.restrict, struct)(e)[0]


def _shift_from(x, off, periodic):
    """`y[p] = x[p + off]` (zero outside the grid, wrapped on periodic axes)."""
    for d, (s, per) in enumerate(zip(off, periodic)):
        if s == 0:
            continue
        if per:
            x = jnp.roll(x, -s, axis=d)
            continue
        n = x.shape[d]
        pad = [(0, 0)] * x.ndim
        pad[d] = (max(-s, 0), max(s, 0))
        xp = jnp.pad(x, pad)
        start = max(s, 0)
        x = jax.lax.slice_in_dim(xp, start, start + n, axis=d)
    return x


def _to_blocks(x, coarsened, fill):
    """Split a fine-grid array (`(*lead, *grid)`) by parity along the coarsened axes:
    `(2,) * |C| + lead + block`, where block `pi` holds the cells of parity `pi_a` along each
    coarsened axis `a` (`m_a = ceil(n_a / 2)` cells: an odd `n_a` leaves one odd cell past the
    grid, set to `fill`) and every cell along the other axes. One transpose of the array."""
    lead = x.ndim - len(coarsened)
    grid = x.shape[lead:]
    pads = [(0, 0)] * lead + [(0, n % 2 if c else 0) for n, c in zip(grid, coarsened)]
    x = jnp.pad(x, pads, constant_values=fill)
    split, parity = list(x.shape[:lead]), []
    for n, c in zip(x.shape[lead:], coarsened):
        if c:
            parity.append(len(split) + 1)
            split += [n // 2, 2]
        else:
            split.append(n)
    y = x.reshape(split)
    return y.transpose(parity + [i for i in range(y.ndim) if i not in parity])


def _block_read(x, steps, periodic):
    """`y[j] = x[j + steps]` on a parity block (`steps_a` in {-1, 0, 1}): zero past either end,
    wrapped on periodic axes."""
    for a, (s, per) in enumerate(zip(steps, periodic)):
        if s == 0:
            continue
        if per:
            x = jnp.roll(x, -s, axis=a)
        else:
            n = x.shape[a]
            pad = [(0, 0)] * x.ndim
            pad[a] = (max(-s, 0), max(s, 0))
            x = jax.lax.slice_in_dim(jnp.pad(x, pad), max(s, 0), max(s, 0) + n, axis=a)
    return x


def _block_shift(x, off, periodic):
    """`x` (a parity block) read at the block cells of `p + off` for the cells `p` of another
    block whose parity differs where `off != 0`: along an axis with `off_a = -1` the cell
    `j - 1`, else the cell `j`."""
    return _block_read(x, tuple(min(s, 0) for s in off), periodic)


def _transfer_weights(S, solid, coarsened, periodic):
    """The prolongation weights `W[k, I]` (see `BoxTransfer`) from the fine `3^d`-point stencil.

    Computed on the parity blocks of the fine grid (`_to_blocks`): the cells interpolated along
    the coarsened axes `E` (even along `E`, odd along the other coarsened axes) form one block,
    and each step below reads only the blocks it needs, so the work is that of one pass over
    the fine grid per stencil entry instead of one per entry and per set `E`.

    The optimisation barriers around the blocks, the collapsed stencils and each weight: without
    them the level's set-up ran 1.5-3x longer at 32^3-64^3 (same values). They act on XLA's
    simplification passes only; its CPU pipeline removes them before fusion, so they do not
    stop a value being recomputed inside several fused consumers (that is what
    `_multigrid._computed_once` is for)."""
    shape = tuple(solid.shape)
    ndim = len(shape)
    dtype = S.dtype
    axes = [a for a in range(ndim) if coarsened[a]]
    offs = _stencil_offsets(ndim, 3)
    index = {o: i for i, o in enumerate(offs)}
    zero = (0,) * ndim
    Sb = jax.lax.optimization_barrier(_to_blocks(S, coarsened, 0.0))
    fluid_b = _to_blocks(~solid, coarsened, False)
    solid_b = _to_blocks(solid, coarsened, False)

    def block(x, E):  # the block of the cells interpolated along the axes E
        return x[tuple(0 if a in E else 1 for a in axes)]

    bshape = fluid_b.shape[len(axes) :]
    # the interpolation is the identity on the coarse points
    Pf = {zero: block(fluid_b, ()).astype(dtype)}
    for k in range(1, len(axes) + 1):
        for E in itertools.combinations(axes, k):
            SE = block(Sb, E)
            # the stencil collapsed over the axes outside E
            ac = {}
            for o in offs:
                key = tuple(o[a] if a in E else 0 for a in range(ndim))
                ac[key] = ac[key] + SE[index[o]] if key in ac else SE[index[o]]
            ac = jax.lax.optimization_barrier(ac)
            den = ac[zero]
            ok = jnp.abs(den) > 1e-12 * jnp.abs(SE[index[zero]])
            inv = jnp.where(ok, 1.0 / jnp.where(ok, den, 1.0), 0.0)
            m = block(fluid_b, E)
            for signs in itertools.product((-1, 1), repeat=k):
                q = [0] * ndim
                for a, s in zip(E, signs):
                    q[a] = s
                q = tuple(q)
                num = jnp.zeros(bshape, dtype)
                # neighbours p + o with o_a in {0, q_a} on E (o != 0): their weight to p + q
                for sub in itertools.product((0, 1), repeat=k):
                    if not any(sub):
                        continue
                    o = [0] * ndim
                    for a, s, u in zip(E, signs, sub):
                        o[a] = s * u
                    o = tuple(o)
                    rest = tuple(qq - oo for qq, oo in zip(q, o))
                    if rest not in Pf:
                        continue
                    num = num + ac[o] * _block_shift(Pf[rest], o, periodic)
                Pf[q] = jax.lax.optimization_barrier(jnp.where(m, -num * inv, 0.0).astype(dtype))
            # a fluid cell that the equation interpolates from nothing (every coupling towards
            # its coarse neighbours is zero: a corridor between walls on the coarse points)
            # is injected from its first solid coarse neighbour, which becomes the coarse
            # unknown of that pocket; the fixed order keeps pockets on either side of a wall
            # apart (one representative each)
            corners = [
                q for q in Pf if q != zero and all((q[a] != 0) == (a in E) for a in range(ndim))
            ]
            total = sum(jnp.abs(Pf[q]) for q in corners)
            lost = m & (total == 0)
            taken = jnp.zeros(bshape, bool)
            for q in corners:
                pick = lost & ~taken & _block_shift(block(solid_b, ()), q, periodic)
                Pf[q] = jnp.where(pick, 1.0, Pf[q]).astype(dtype)
                taken = taken | pick
            Pf = jax.lax.optimization_barrier(Pf)
    # W[k, I] = Pf[-o_k] at the fine cell 2 I + 1 + o_k: the block of the cells interpolated
    # along supp(o_k), at block cell I + 1 where o_k = +1 and I elsewhere
    cshape = tuple(n // 2 if c else n for n, c in zip(shape, coarsened))
    ws = []
    for o in _transfer_offsets(coarsened):
        q = tuple(-x for x in o)
        if q not in Pf:
            ws.append(jnp.zeros(cshape, dtype))
            continue
        x = _block_read(Pf[q], tuple(max(s, 0) for s in o), periodic)
        ws.append(x[tuple(slice(0, n) for n in cshape)])
    return jax.lax.optimization_barrier(jnp.stack(ws))


# per coarsened axis, `s + o_k` (fine stencil offset plus the row's transfer offset) ->
# the pairs `(O, o_l)` with `2 O + o_l = s + o_k`, `O, o_l` in {-1, 0, 1}
_SPLITS = {
    -2: ((-1, 0),),
    -1: ((0, -1), (-1, 1)),
    0: ((0, 0),),
    1: ((0, 1), (1, -1)),
    2: ((1, 0),),
}


def _galerkin_stencil(S: Array, transfer: BoxTransfer) -> Array:
    """The coarse `3^d`-point stencil of `P^T A P`, from the fine `3^d`-point stencil `S`
    (`(3^d, *fine)`, `S[s, p] = A[p, p + s]`) and the transfer's weights, directly.

    `A_c[I, I + O] = sum W[k, I] S[s, fine(I, o_k)] W[l, I + O]` over the transfer offsets
    `o_k, o_l` and stencil offsets `s` with `fine(I, o_k) + s = fine(I + O, o_l)` (along a
    coarsened axis `2 O + o_l = s + o_k`, along the others `O = s`, `o = 0`): `13^d` products
    of coarse-grid arrays, where probing `P^T A P` with `3^d` vectors applies the fine operator
    and both transfers `3^d` times on the fine grid. Coarse periodic axes need at least 3
    cells (else offsets alias; `blackbox_coarsen` probes instead). Values equal probing's to
    rounding (tested)."""
    shape, cshape = transfer.fine_shape, transfer.coarse_shape
    coarsened, periodic = transfer.coarsened, transfer.periodic
    offs = _stencil_offsets(len(shape), 3)
    toffs = transfer.offsets
    tindex = {o: i for i, o in enumerate(toffs)}
    W = transfer.weights
    # which (row offset k, stencil offset s) pairs meet each (coarse offset O, column offset l)
    terms: dict[tuple[tuple[int, ...], int], list[tuple[int, int]]] = {}
    for k, ok in enumerate(toffs):
        for i, s in enumerate(offs):
            axes = [
                _SPLITS[s[a] + ok[a]] if coarsened[a] else ((s[a], 0),) for a in range(len(shape))
            ]
            for combo in itertools.product(*axes):
                shift = tuple(c[0] for c in combo)
                ol = tuple(c[1] for c in combo)
                terms.setdefault((shift, tindex[ol]), []).append((k, i))
    padded = [_pad_coarsened(S[i], coarsened, periodic) for i in range(len(offs))]
    rows: dict[tuple[int, int], Array] = {}  # S[s] at the fine cells fine(I, o_k)

    def row(k, i):
        if (k, i) not in rows:
            rows[(k, i)] = _gather(padded[i], shape, cshape, toffs[k], coarsened)
        return rows[(k, i)]

    out = {o: jnp.zeros(cshape, S.dtype) for o in offs}
    for (shift, col), ks in terms.items():
        inner = sum(W[k] * row(k, i) for k, i in ks)
        out[shift] = out[shift] + _shift_from(W[col], shift, periodic) * inner
    return jnp.stack([out[o] for o in offs])


def _stencil3(op: AbstractGridOperator) -> Array:
    """The 3^d-point stencil of a grid operator (a `DiffusionOperator` or a 3^d
    `StencilOperator`)."""
    if isinstance(op, StencilOperator):
        if op.width == 3:
            return (
                jnp.where(op.solid[None], 0.0, op.stencil)
                .at[len(op.offsets) // 2]
                .set(op.diagonal_values())
            )
        raise ValueError(
            f"black-box coarsening needs a 3^d-point stencil; got a {op.width}^d-point "
            f"StencilOperator on the grid {op.grid_shape}."
        )
    if not isinstance(op, DiffusionOperator):
        raise TypeError(
            f"`operator` must be a DiffusionOperator or StencilOperator; got {type(op)}."
        )
    return _diffusion_stencil3(op)


def _diffusion_stencil3(op: DiffusionOperator) -> Array:
    """The 3^d-point stencil `S[o, c] = A[c, c + o]` of a diffusion operator, read off its
    face coefficients (no probing): on a fluid row `-T_f / h_d^2` towards the neighbour across
    face `f` (zero across a Dirichlet/Neumann side) and the diagonal at the centre; a solid row
    is the identity row. (On a periodic axis of fewer than 3 cells, offsets -1 and +1 reach
    the same cell; their entries sum to the matrix entry there, as in `StencilOperator.mv`.)"""
    shape, ndim = op.grid_shape, len(op.grid_shape)
    offs = _stencil_offsets(ndim, 3)
    out = {o: jnp.zeros(shape, op.dtype) for o in offs}
    for d, (T, per, h) in enumerate(zip(op.faces, op.periodic, op.spacing)):
        n = shape[d]
        if per:
            lo, hi = T, jnp.roll(T, -1, axis=d)  # faces between c-1|c and c|c+1
        else:
            lo = jax.lax.slice_in_dim(T, 0, n, axis=d)
            hi = jax.lax.slice_in_dim(T, 1, n + 1, axis=d)
            # no neighbour beyond a wall: the side's face acts on the diagonal only
            edge = jnp.arange(n).reshape((n,) + (1,) * (ndim - 1 - d))
            lo = jnp.where(edge == 0, jnp.zeros_like(lo), lo)
            hi = jnp.where(edge == n - 1, jnp.zeros_like(hi), hi)
        for sign, Tf in ((-1, lo), (1, hi)):
            o = tuple(sign if a == d else 0 for a in range(ndim))
            out[o] = jnp.where(op.solid, jnp.zeros_like(Tf), -Tf * (1.0 / h**2))
    out[(0,) * ndim] = op.diagonal_values()
    return jnp.stack([out[o] for o in offs])


def _can_coarsen(n: int, periodic: bool) -> bool:
    return n >= 4 and n % 2 == 0 if periodic else n >= 2


def _axis_strengths(S, solid) -> np.ndarray | None:
    """Mean coupling strength along each axis: `sum |a(o)| / |supp o|` over the offsets moving
    along the axis, over fluid cells. None when traced."""
    try:
        Sn = np.asarray(S)
        fl = ~np.asarray(solid)
    except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
        return None
    ndim = solid.ndim
    offs = _stencil_offsets(ndim, 3)
    out = np.zeros(ndim)
    for i, o in enumerate(offs):
        nz = sum(1 for x in o if x)
        if nz == 0:
            continue
        v = float(np.abs(Sn[i][fl]).sum()) / nz
        for a in range(ndim):
            if o[a]:
                out[a] += v
    return out


def _choose_axes(
    op: AbstractGridOperator, S: Array | None = None, *, semicoarsen: float = 0.25
) -> tuple[bool, ...]:
    """The axes to coarsen next: those that can be halved (`n >= 2`; even and `>= 4` when
    periodic) and whose coupling strength is at least `semicoarsen` times the strongest one
    (so strongly anisotropic operators are semi-coarsened along the strong axes)."""
    shape = op.grid_shape
    ok = [_can_coarsen(n, per) for n, per in zip(shape, op.periodic)]
    if semicoarsen <= 0 or sum(ok) <= 1:
        return tuple(ok)
    S = _stencil3(op) if S is None else S
    s = _axis_strengths(S, op.solid)
    if s is None:
        return tuple(ok)
    smax = max(s[a] for a in range(len(shape)) if ok[a])
    return tuple(bool(ok[a] and s[a] >= semicoarsen * smax) for a in range(len(shape)))


def blackbox_coarsen(
    op: AbstractGridOperator,
    coarsened: tuple[bool, ...] | None = None,
    *,
    stencil: Array | None = None,
) -> tuple[StencilOperator, BoxTransfer]:
    """One level of black-box multigrid: operator-dependent interpolation and Galerkin `P^T A P`.

    Along each coarsened axis the coarse points are the fine cells of odd index (`n -> n // 2`,
    any `n >= 2`; periodic axes need even `n >= 4`); other axes keep every cell
    (semi-coarsening). Fine cells between coarse points are interpolated with the operator's own
    equation, the stencil collapsed over the axes along which the cell is a coarse point
    (Dendy's black-box multigrid; de Zeeuw's matrix-dependent prolongation), so interpolation
    follows coefficient jumps and solid walls; solid fine cells get no interpolated value, and a
    coarse cell whose interpolation column is empty is solid (an identity row). The coarse
    operator `P^T A P` is computed exactly on the coarse grid from the fine stencil and the
    interpolation weights (by probing with `3^d` coloured vectors on short periodic grids); a
    `3^d`-point stencil stays `3^d`-point (5/7-point fine stencils become 9/27-point ones).

    **Arguments:**

    - `op`: a [`scimlx.linsolve.DiffusionOperator`][] or a `3^d`-point
        [`scimlx.linsolve.StencilOperator`][].
    - `coarsened`: per axis, whether to coarsen it (default: every axis that can be halved
        and whose coupling strength is at least a quarter of the strongest axis's; every axis
        that can be halved when the operator is traced).
    - `stencil`: the operator's `3^d`-point stencil, if already at hand.

    **Returns:**

    `(coarse, transfer)`: the coarse [`scimlx.linsolve.StencilOperator`][] and the
    [`scimlx.linsolve.BoxTransfer`][] (`transfer.prolong`, `transfer.restrict`).
    """
    S = _stencil3(op) if stencil is None else stencil
    shape = op.grid_shape
    periodic = op.periodic
    if coarsened is None:
        coarsened = _choose_axes(op, S)
    coarsened = tuple(bool(c) for c in coarsened)
    if len(coarsened) != len(shape):
        raise ValueError(f"`coarsened` must have one entry per axis ({len(shape)}).")
    for n, per, c in zip(shape, periodic, coarsened):
        if c and not _can_coarsen(n, per):
            raise ValueError(
                f"cannot coarsen an axis of {n} cells (periodic: {per}) of the grid {shape}: "
                "coarsening needs n >= 2 (even n >= 4 on periodic axes)."
            )
    if not any(coarsened):
        raise ValueError(f"no axis of the grid {shape} can be coarsened (periodic: {periodic}).")
    cshape = tuple(n // 2 if c else n for n, c in zip(shape, coarsened))
    W = _transfer_weights(S, op.solid, coarsened, periodic)
    transfer = BoxTransfer(W, shape, coarsened, periodic)
    solid_c = jnp.all(W == 0, axis=0)

    if any(per and m < 3 for per, m in zip(periodic, cshape)):
        # offsets -1 and +1 reach the same coarse cell: probing resolves the aliasing
        def rap(xc):
            return transfer.restrict(op.mv(transfer.prolong(xc)))

        Sc = _probe_stencil(rap, cshape, periodic, 3, S.dtype)
    else:
        Sc = _galerkin_stencil(S, transfer)
    Sc = jnp.where(solid_c[None], jnp.zeros_like(Sc), Sc)
    return StencilOperator(Sc, solid_c, op.boundary), transfer


class BlackBox(AbstractCoarsening):
    """Black-box coarse levels: operator-dependent interpolation and Galerkin `P^T A P`.

    Each level is [`scimlx.linsolve.blackbox_coarsen`][] along the axes that can be halved
    (`n -> n // 2`, any `n >= 2`; periodic axes need even `n >= 4`) and whose coupling strength
    is at least `semicoarsen` times the strongest axis's (semi-coarsening, for anisotropic
    coefficients; every axis that can be halved when the operator is traced). `3^d`-point
    stencils on every level. Built eagerly on a concrete operator (the axis choice reads it).

    **Arguments:**

    - `semicoarsen`: the relative coupling strength below which an axis is not coarsened
        (default `0.25`; `0` coarsens every axis that can be halved).
    """

    semicoarsen: float = eqx.field(static=True, default=0.25)
    eager = True

    def __check_init__(self):
        if not self.semicoarsen >= 0:
            raise ValueError(f"`semicoarsen` must be >= 0; got {self.semicoarsen}.")

    def coarsen(
        self, operator: AbstractGridOperator
    ) -> tuple[AbstractGridOperator, AbstractTransfer] | None:
        # one compiled program per level (the axis choice between them reads the stencil):
        # op-by-op execution would dispatch and compile thousands of small operations
        S = _stencil3_jit(operator)
        axes = _choose_axes(operator, S, semicoarsen=float(self.semicoarsen))
        if not any(axes):
            return None
        return _coarsen_jit(operator, axes, S)


_stencil3_jit = eqx.filter_jit(_stencil3)


@eqx.filter_jit
def _coarsen_jit(operator, axes, stencil):
    return blackbox_coarsen(operator, axes, stencil=stencil)
