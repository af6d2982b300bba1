"""Matrix-free cell-centred diffusion operators `-div(a grad u)` as lineax operators."""

import abc
from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, Float


_SIDES = ("dirichlet", "neumann", "periodic")


def parse_boundary(boundary, ndim: int) -> tuple[tuple[str, str], ...]:
    """Normalise a boundary specification to `((lo, hi), ...)` per axis.

    **Arguments:**

    - `boundary`: one of `"dirichlet"`, `"neumann"`, `"periodic"` for every side, or a sequence
        with one entry per axis, each a string or a `(lo, hi)` pair of strings.
    - `ndim`: number of spatial axes.

    **Returns:**

    A tuple of `(lo, hi)` pairs. Raises `ValueError` on unknown names or a one-sided periodic
    axis.
    """
    if isinstance(boundary, str):
        boundary = [boundary] * ndim
    boundary = list(boundary)
    if len(boundary) != ndim:
        raise ValueError(
            f"`boundary` must have one entry per axis ({ndim}); got {len(boundary)} entries."
        )
    out = []
    for ax, b in enumerate(boundary):
        pair = (b, b) if isinstance(b, str) else tuple(b)
        if len(pair) != 2 or any(s not in _SIDES for s in pair):
            raise ValueError(
                f"`boundary` entry for axis {ax} must be one of {_SIDES} or a (lo, hi) pair of "
                f"them; got {b!r}."
            )
        if ("periodic" in pair) and pair[0] != pair[1]:
            raise ValueError(f"`boundary` axis {ax}: periodic must hold on both sides; got {b!r}.")
        out.append(pair)
    return tuple(out)


class AbstractGridOperator(lx.AbstractLinearOperator):
    """A symmetric positive (semi)definite linear operator acting on grid-shaped arrays.

    Subclasses define `mv` on arrays of shape `grid_shape`, `diagonal_values` and
    `in_structure`. lineax sees them as symmetric and positive semidefinite (so `lx.CG` accepts
    them, as operators and as preconditioners).
    """

    @abc.abstractmethod
    def diagonal_values(self) -> Array:
        """The diagonal of the operator, grid-shaped."""

    def spectral_bound(self, diagonal: Array) -> Array | float:
        """An upper bound of the spectrum of `D^{-1} A` on the fluid cells (`diagonal` is
        `D`), used to cap the smoothers' eigenvalue estimates. The default, 2, is the
        Gershgorin bound of a diagonally dominant operator; override it otherwise."""
        return 2.0

    def as_matrix(self):
        return lx.materialise(self._function_operator()).as_matrix()

    def transpose(self):
        return self

    def out_structure(self):
        return self.in_structure()

    def _function_operator(self) -> lx.FunctionLinearOperator:
        return lx.FunctionLinearOperator(
            self.mv,
            self.in_structure(),
            tags=(lx.symmetric_tag, lx.positive_semidefinite_tag),
            closure_convert=False,
        )


@lx.linearise.register(AbstractGridOperator)
def _(operator):
    return operator


@lx.materialise.register(AbstractGridOperator)
def _(operator):
    return lx.materialise(operator._function_operator())


@lx.diagonal.register(AbstractGridOperator)
def _(operator):
    return operator.diagonal_values().reshape(-1)


@lx.tridiagonal.register(AbstractGridOperator)
def _(operator):
    return lx.tridiagonal(operator._function_operator())


@lx.is_symmetric.register(AbstractGridOperator)
@lx.is_positive_semidefinite.register(AbstractGridOperator)
def _(operator):
    return True


@lx.is_negative_semidefinite.register(AbstractGridOperator)
@lx.is_diagonal.register(AbstractGridOperator)
@lx.is_tridiagonal.register(AbstractGridOperator)
@lx.has_unit_diagonal.register(AbstractGridOperator)
@lx.is_lower_triangular.register(AbstractGridOperator)
@lx.is_upper_triangular.register(AbstractGridOperator)
def _(operator):
    return False


@lx.conj.register(AbstractGridOperator)
def _(operator):
    return operator


class DiffusionOperator(AbstractGridOperator):
    """Cell-centred finite-volume `-div(a grad u)` on a 1/2/3-D grid, matrix-free.

    `(A u)_c = sum_d h_d^{-2} sum_{faces f of c normal to d} T_f (u_c - u_{nb(c, f)})` on fluid
    cells, with `T_f` the face coefficients (harmonic mean of the cell coefficients for
    `diffusion`); on a Dirichlet side the ghost value is `-u_c` (`u = 0` on the wall), which is a
    face coefficient `2 a_c`; on a Neumann side and on faces touching a solid cell `T_f = 0`;
    periodic axes wrap. Solid cells are identity rows, `(A u)_c = u_c`, so the full-grid operator
    is symmetric positive definite whenever every fluid region touches a Dirichlet side.

    Build it with [`scimlx.linsolve.poisson`][] or [`scimlx.linsolve.diffusion`][].

    **Fields:**

    - `faces`: per axis `d`, the face coefficients `T`: shape `grid_shape` with axis `d`
        replaced by `n_d + 1` (faces `0..n_d`, face `j` between cells `j-1` and `j`), or `n_d`
        for a periodic axis (face `0` between cell `n_d - 1` and cell `0`).
    - `solid`: boolean mask of solid cells.
    - `boundary`: per axis, the `(lo, hi)` boundary kinds (see
        [`scimlx.linsolve.parse_boundary`][]); informs the multigrid transfers.
    - `spacing`: grid spacing per axis.
    """

    faces: tuple[Array, ...]
    solid: Bool[Array, "*grid"]
    boundary: tuple[tuple[str, str], ...] = eqx.field(static=True)
    spacing: tuple[float, ...] = eqx.field(static=True)

    @property
    def periodic(self) -> tuple[bool, ...]:
        return tuple(b[0] == "periodic" for b in self.boundary)

    def __check_init__(self):
        shape = self.solid.shape
        if len(self.faces) != len(shape) or len(self.boundary) != len(shape):
            raise ValueError("`faces`, `periodic` and the grid must have one entry per axis.")
        for d, (f, per) in enumerate(zip(self.faces, self.periodic)):
            expect = list(shape)
            expect[d] = shape[d] + (0 if per else 1)
            if tuple(f.shape) != tuple(expect):
                raise ValueError(
                    f"`faces[{d}]` must have shape {tuple(expect)}; got {tuple(f.shape)}."
                )

    @property
    def grid_shape(self) -> tuple[int, ...]:
        return tuple(self.solid.shape)

    @property
    def dtype(self):
        return self.faces[0].dtype

    def in_structure(self):
        return jax.ShapeDtypeStruct(self.grid_shape, self.dtype)

    def mv(self, vector):
        u = vector
        out = jnp.zeros_like(u)
        for d, (T, per, h) in enumerate(zip(self.faces, self.periodic, self.spacing)):
            if per:
                flux = T * (u - jnp.roll(u, 1, axis=d))
                div = jnp.roll(flux, -1, axis=d) - flux
            else:
                pad = [(0, 0)] * u.ndim
                pad[d] = (1, 1)
                up = jnp.pad(u, pad)
                n = u.shape[d]
                diff = jax.lax.slice_in_dim(up, 1, n + 2, axis=d) - jax.lax.slice_in_dim(
                    up, 0, n + 1, axis=d
                )
                flux = T * diff
                div = jax.lax.slice_in_dim(flux, 1, n + 1, axis=d) - jax.lax.slice_in_dim(
                    flux, 0, n, axis=d
                )
            out = out - div * (1.0 / h**2)
        return jnp.where(self.solid, u, out)

    def diagonal_values(self):
        diag = jnp.zeros(self.grid_shape, self.dtype)
        for d, (T, per, h) in enumerate(zip(self.faces, self.periodic, self.spacing)):
            n = self.grid_shape[d]
            if per:
                s = T + jnp.roll(T, -1, axis=d)
            else:
                s = jax.lax.slice_in_dim(T, 0, n, axis=d) + jax.lax.slice_in_dim(
                    T, 1, n + 1, axis=d
                )
            diag = diag + s * (1.0 / h**2)
        return jnp.where(self.solid, jnp.ones_like(diag), diag)


def _faces_from_cells(a, solid, bnd):
    ndim = a.ndim
    faces = []
    fluid = ~solid
    for d in range(ndim):
        lo, hi = bnd[d]
        n = a.shape[d]
        if lo == "periodic":
            a_prev = jnp.roll(a, 1, axis=d)
            f_prev = jnp.roll(fluid, 1, axis=d)
            T = 2.0 * a * a_prev / (a + a_prev)
            T = jnp.where(fluid & f_prev, T, jnp.zeros_like(T))
        else:
            left = jax.lax.slice_in_dim(a, 0, n - 1, axis=d)
            right = jax.lax.slice_in_dim(a, 1, n, axis=d)
            fl = jax.lax.slice_in_dim(fluid, 0, n - 1, axis=d)
            fr = jax.lax.slice_in_dim(fluid, 1, n, axis=d)
            inner = 2.0 * left * right / (left + right)
            inner = jnp.where(fl & fr, inner, jnp.zeros_like(inner))
            first = jax.lax.slice_in_dim(a, 0, 1, axis=d)
            last = jax.lax.slice_in_dim(a, n - 1, n, axis=d)
            ffirst = jax.lax.slice_in_dim(fluid, 0, 1, axis=d)
            flast = jax.lax.slice_in_dim(fluid, n - 1, n, axis=d)
            lo_T = jnp.where(ffirst, 2.0 * first, jnp.zeros_like(first))
            hi_T = jnp.where(flast, 2.0 * last, jnp.zeros_like(last))
            if lo == "neumann":
                lo_T = jnp.zeros_like(lo_T)
            if hi == "neumann":
                hi_T = jnp.zeros_like(hi_T)
            T = jnp.concatenate([lo_T, inner, hi_T], axis=d)
        faces.append(T)
    return tuple(faces)


def _spacing(spacing, ndim):
    if isinstance(spacing, int | float):
        spacing = (float(spacing),) * ndim
    spacing = tuple(float(h) for h in spacing)
    if len(spacing) != ndim or any(not (h > 0) for h in spacing):
        raise ValueError(f"`spacing` must be positive, one value per axis; got {spacing}.")
    return spacing


def _solid(solid, shape):
    if solid is None:
        return jnp.zeros(shape, bool)
    solid = jnp.asarray(solid)
    if solid.shape != tuple(shape) or solid.dtype != jnp.bool_:
        raise ValueError(
            f"`solid` must be a boolean array of the grid shape {tuple(shape)}; got "
            f"{solid.dtype}{list(solid.shape)}."
        )
    return solid


def diffusion(
    coefficient: Float[Array, "*grid"],
    *,
    boundary="dirichlet",
    solid: Bool[ArrayLike, "..."] | None = None,
    spacing: float | Sequence[float] = 1.0,
) -> DiffusionOperator:
    """Variable-coefficient diffusion `-div(a grad u)`, cell-centred, matrix-free.

    Face coefficients are harmonic means of the two cells' `a`; differentiable in `a`.

    **Arguments:**

    - `coefficient`: positive cell coefficients `a`, shape `grid` (1, 2 or 3 axes).
    - `boundary`: `"dirichlet"` (`u = 0` on the wall), `"neumann"` (zero flux) or `"periodic"`,
        for all sides, or per axis (a string or `(lo, hi)` pair per axis).
    - `solid`: boolean mask of solid cells (Neumann at their faces, identity rows).
    - `spacing`: grid spacing `h` (scalar or one per axis).

    **Returns:**

    A [`scimlx.linsolve.DiffusionOperator`][] on arrays of shape `grid`.
    """
    a = coefficient
    if a.ndim not in (1, 2, 3):
        raise ValueError(f"`coefficient` must have 1, 2 or 3 axes; got shape {a.shape}.")
    if not jnp.issubdtype(a.dtype, jnp.floating):
        raise ValueError(f"`coefficient` must be floating point; got {a.dtype}.")
    if not isinstance(a, jax.core.Tracer):
        if not bool(jnp.all(jnp.isfinite(a))):
            raise ValueError("`coefficient` contains NaN or inf.")
        if not bool(jnp.all(a > 0)):
            raise ValueError("`coefficient` must be positive everywhere.")
    bnd = parse_boundary(boundary, a.ndim)
    solid = _solid(solid, a.shape)
    faces = _faces_from_cells(a, solid, bnd)
    periodic = tuple(b[0] == "periodic" for b in bnd)
    if any(p and n < 3 for p, n in zip(periodic, a.shape)):
        raise ValueError("periodic axes need at least 3 cells.")
    return DiffusionOperator(faces, solid, bnd, _spacing(spacing, a.ndim))


def poisson(
    shape: Sequence[int],
    *,
    boundary="dirichlet",
    solid: Bool[ArrayLike, "..."] | None = None,
    spacing: float | Sequence[float] = 1.0,
    dtype=None,
) -> DiffusionOperator:
    """The cell-centred (2d+1)-point negative Laplacian `-lap u`, matrix-free.

    **Arguments:**

    - `shape`: grid shape (1, 2 or 3 axes).
    - `boundary`: as in [`scimlx.linsolve.diffusion`][].
    - `solid`: boolean mask of solid cells.
    - `spacing`: grid spacing.
    - `dtype`: floating dtype (default: JAX's default float).

    **Returns:**

    A [`scimlx.linsolve.DiffusionOperator`][].
    """
    shape = tuple(int(n) for n in shape)
    dtype = jnp.zeros((), dtype if dtype is not None else float).dtype
    return diffusion(jnp.ones(shape, dtype), boundary=boundary, solid=solid, spacing=spacing)


def to_scipy_sparse(operator: AbstractGridOperator):
    """Assemble a [`scimlx.linsolve.DiffusionOperator`][] (or a
    [`scimlx.linsolve.StencilOperator`][] or [`scimlx.linsolve.SparseOperator`][]) as a
    `scipy.sparse.csr_matrix`.

    Unknowns are ordered as `u.ravel()` (C order).

    **Arguments:**

    - `operator`: the operator.

    **Returns:**

    The `N x N` CSR matrix (float64 unless the operator is float32).
    """
    import scipy.sparse as sp

    from ._aggregation import sparse_to_scipy, SparseOperator

    if isinstance(operator, StencilOperator):
        return stencil_to_scipy_sparse(operator)
    if isinstance(operator, SparseOperator):
        return sparse_to_scipy(operator)
    if not isinstance(operator, DiffusionOperator):
        raise TypeError(
            "`operator` must be a DiffusionOperator, StencilOperator or SparseOperator; got "
            f"{type(operator)}."
        )
    shape = operator.grid_shape
    N = int(np.prod(shape))
    idx = np.arange(N).reshape(shape)
    solid = np.asarray(operator.solid)
    rows, cols, vals = [], [], []
    diag = np.zeros(shape)
    for d, (T, per, h) in enumerate(zip(operator.faces, operator.periodic, operator.spacing)):
        T = np.asarray(T, dtype=np.float64) / h**2
        n = shape[d]
        if per:
            prev = np.roll(idx, 1, axis=d)
            w = T
            diag += w + np.roll(w, -1, axis=d)
            i, j, ww = idx.ravel(), prev.ravel(), w.ravel()
        else:
            tail = np.take(T, np.arange(n), axis=d)
            head = np.take(T, np.arange(1, n + 1), axis=d)
            diag += tail + head
            w = np.take(T, np.arange(1, n), axis=d)
            i = np.take(idx, np.arange(1, n), axis=d).ravel()
            j = np.take(idx, np.arange(0, n - 1), axis=d).ravel()
            ww = w.ravel()
        keep = ww != 0
        rows += [i[keep], j[keep]]
        cols += [j[keep], i[keep]]
        vals += [-ww[keep], -ww[keep]]
    diag = np.where(solid, 1.0, diag)
    rows.append(idx.ravel())
    cols.append(idx.ravel())
    vals.append(diag.ravel())
    dtype = np.float32 if operator.dtype == jnp.float32 else np.float64
    A = sp.coo_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(N, N)
    )
    return A.tocsr().astype(dtype)


def _stencil_offsets(ndim: int, width: int) -> tuple[tuple[int, ...], ...]:
    h = width // 2
    return tuple(tuple(int(i) - h for i in idx) for idx in np.ndindex(*(width,) * ndim))


class StencilOperator(AbstractGridOperator):
    """A grid operator given by a spatially varying `w^d`-point stencil, matrix-free.

    `(A u)_c = sum_o S[o, c] u_{c + o}` over the offsets `o` in `{-h..h}^d` (`w = 2h + 1`,
    C order), with neighbours outside the grid taken as zero (the boundary conditions are
    already folded into the coefficients) or wrapped on periodic axes; solid cells are identity
    rows. This is what Galerkin coarsening (`multigrid(..., coarse=Galerkin())`) produces:
    the cell-centred `R A P` has a `5^d`-point stencil.

    **Fields:**

    - `stencil`: shape `(w^d, *grid)`, the coefficients per offset.
    - `solid`: boolean mask of solid (identity) cells.
    - `boundary`: per axis the `(lo, hi)` kinds of the grid it came from (informs the
        multigrid transfers; only `"periodic"` changes how the stencil is applied).
    """

    stencil: Float[Array, " offsets *grid"]
    solid: Bool[Array, "*grid"]
    boundary: tuple[tuple[str, str], ...] = eqx.field(static=True)

    def __check_init__(self):
        ndim = self.solid.ndim
        w = round(self.stencil.shape[0] ** (1.0 / ndim)) if ndim else 1
        if w**ndim != self.stencil.shape[0] or w % 2 == 0:
            raise ValueError(
                f"`stencil` must have w^{ndim} rows (w odd); got shape {self.stencil.shape}."
            )
        if tuple(self.stencil.shape[1:]) != tuple(self.solid.shape):
            raise ValueError(
                f"`stencil` shape {self.stencil.shape} does not match the grid {self.solid.shape}."
            )

    @property
    def width(self) -> int:
        return round(self.stencil.shape[0] ** (1.0 / self.solid.ndim))

    @property
    def offsets(self) -> tuple[tuple[int, ...], ...]:
        return _stencil_offsets(self.solid.ndim, self.width)

    @property
    def periodic(self) -> tuple[bool, ...]:
        return tuple(b[0] == "periodic" for b in self.boundary)

    @property
    def grid_shape(self) -> tuple[int, ...]:
        return tuple(self.solid.shape)

    @property
    def dtype(self):
        return self.stencil.dtype

    def in_structure(self):
        return jax.ShapeDtypeStruct(self.grid_shape, self.dtype)

    def mv(self, vector):
        u = jnp.where(self.solid, jnp.zeros_like(vector), vector)
        h = self.width // 2
        # pad once (wrap on periodic axes, zeros otherwise), then slice per offset
        for d, per in enumerate(self.periodic):
            pad = [(0, 0)] * u.ndim
            pad[d] = (h, h)
            u = jnp.pad(u, pad, mode="wrap" if per else "constant")
        shape = self.grid_shape
        out = jnp.zeros(shape, vector.dtype)
        offsets = self.offsets
        if len(offsets) <= 27:
            for i, off in enumerate(offsets):
                sl = tuple(slice(h + o, h + o + n) for o, n in zip(off, shape))
                out = out + self.stencil[i] * u[sl]
        else:  # 3-D 125-point stencils: a loop keeps the compiled program small
            starts = jnp.asarray(np.asarray(offsets) + h)

            def body(i, out):
                shifted = jax.lax.dynamic_slice(u, tuple(starts[i]), shape)
                return out + self.stencil[i] * shifted

            out = jax.lax.fori_loop(0, len(offsets), body, out)
        return jnp.where(self.solid, vector, out)

    def spectral_bound(self, diagonal: Array) -> Array:
        """The Gershgorin bound `max_i sum_j |a_ij| / a_ii` over fluid cells (at least 2):
        Galerkin stencils are not always diagonally dominant."""
        rows = jnp.sum(jnp.abs(self.stencil), axis=0) / jnp.where(
            self.solid, 1.0, jnp.abs(diagonal)
        )
        return jnp.maximum(jnp.max(jnp.where(self.solid, 0.0, rows)), 2.0)

    def diagonal_values(self):
        centre = len(self.offsets) // 2
        return jnp.where(self.solid, jnp.ones_like(self.stencil[centre]), self.stencil[centre])


def _probe_period(n: int, periodic: bool, width: int) -> int:
    if not periodic or n <= width:
        return min(n, width) if not periodic else n
    for p in range(width, n + 1):
        if n % p == 0:
            return p
    return n  # pragma: no cover - unreachable (p = n divides n)


def _probe_stencil(apply, shape, periodic, width: int, dtype) -> Array:
    """The `width^d`-point stencil `(w^d, *shape)` of a linear grid map `apply`, by probing.

    `apply` (grid array -> grid array) must couple each cell only with cells at offsets in
    `{-h..h}^d` (`w = 2h + 1`). It is applied to `w^d` coloured probe vectors (cells of one
    colour are `w` apart along every axis; more colours on short periodic axes), batched with
    `lax.map`, so the result is exact and jittable. On short periodic axes several offsets
    reach the same cell; the coupling goes to the nearest one (the centre keeps the diagonal).

    Under `jit` the probes and gather indices are computed in the program (from `iota`), not
    embedded as constants: on a 256^3 grid those would be gigabytes of literals.
    """
    ndim = len(shape)
    periods = tuple(_probe_period(n, per, width) for n, per in zip(shape, periodic))
    ncol = int(np.prod(periods))
    coords = jnp.indices(shape)
    colour = jnp.ravel_multi_index(
        tuple(c % p for c, p in zip(coords, periods)), periods, mode="clip"
    )
    probes = (colour[None] == jnp.arange(ncol).reshape((ncol,) + (1,) * ndim)).astype(dtype)
    # vmapped in chunks (no compilation of its own when run eagerly)
    Y = jnp.concatenate([jax.vmap(apply)(probes[i : i + 32]) for i in range(0, ncol, 32)])
    Y = Y.reshape(ncol, -1)
    # Eagerly the index bookkeeping runs in NumPy (no small programs to compile); under a
    # trace in jnp, so that it is computed rather than captured.
    xp = jnp if isinstance(Y, jax.core.Tracer) else np
    coords, colour = xp.indices(shape), xp.asarray(colour)
    N = int(np.prod(shape))
    cells = xp.arange(N)
    used = xp.zeros((ncol, N), bool)
    offsets = _stencil_offsets(ndim, width)
    rows = [None] * len(offsets)
    for io in sorted(range(len(offsets)), key=lambda i: sum(abs(o) for o in offsets[i])):
        off = offsets[io]
        nb = [c + o for c, o in zip(coords, off)]
        valid = xp.ones(shape, bool)
        for d, per in enumerate(periodic):
            if per:
                nb[d] = nb[d] % shape[d]
            else:
                valid = valid & (nb[d] >= 0) & (nb[d] < shape[d])
        nbc = tuple(xp.clip(n, 0, m - 1) for n, m in zip(nb, shape))
        cj = colour[nbc].ravel()
        v = valid.ravel() & ~used[cj, cells]
        if xp is np:
            used[cj[v], cells[v]] = True
        else:
            used = used.at[cj, cells].set(used[cj, cells] | v)
        rows[io] = jnp.where(jnp.asarray(v), Y[cj, cells], 0.0).reshape(shape)
    return jnp.stack(rows)


def stencil_to_scipy_sparse(operator: StencilOperator):
    """Assemble a `StencilOperator` as a CSR matrix (unknowns ordered as `u.ravel()`)."""
    import scipy.sparse as sp

    shape = operator.grid_shape
    N = int(np.prod(shape))
    idx = np.arange(N).reshape(shape)
    S = np.asarray(operator.stencil, dtype=np.float64)
    solid = np.asarray(operator.solid)
    rows, cols, vals = [], [], []
    coords = np.indices(shape)
    for i, off in enumerate(operator.offsets):
        nb = [c + o for c, o in zip(coords, off)]
        ok = ~solid
        for d, per in enumerate(operator.periodic):
            if per:
                nb[d] = nb[d] % shape[d]
            else:
                ok = ok & (nb[d] >= 0) & (nb[d] < shape[d])
        nbc = [np.clip(n, 0, s - 1) for n, s in zip(nb, shape)]
        j = idx[tuple(nbc)]
        ok = ok & ~solid[tuple(nbc)]
        keep = ok & (S[i] != 0)
        rows.append(idx[keep])
        cols.append(j[keep])
        vals.append(S[i][keep])
    rows.append(idx[solid])
    cols.append(idx[solid])
    vals.append(np.ones(int(solid.sum())))
    A = sp.coo_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(N, N)
    )
    return A.tocsr()
