"""Smoothed aggregation over grid blocks: coarse levels that follow the operator's connectivity.

A structured coarse lattice (black-box or rediscretised) has one coarse unknown per coarse
cell, so once coarse cells are wider than the walls between two corridors of a maze, one
unknown must serve both corridors, which are far apart along the path: the coarse grid stops
representing the smooth error and the iteration count grows with the grid. Here the coarse
unknowns are **aggregates**: the unknowns of a level are grouped by the grid block they lie in
(`block^d` cells), and each block is split into the connected components of its strong
couplings (`|a_ij| >= strength sqrt(a_ii a_jj)`), one aggregate each. So a block cut by a wall
gives one aggregate per side, a weakly coupled direction (anisotropy, an insulating inclusion)
is not aggregated across, and the coarse levels are general sparse matrices
([`scimlx.linsolve.SparseOperator`][]) whose unknowns remember their block for the next level.

The prolongation is smoothed aggregation's (Vanek, Mandel and Brezina, 1996):
`P = (I - omega / rho D^{-1} A) T`, `T` the piecewise-constant, column-normalised tentative
prolongation over the aggregates, `rho` the spectral radius of `D^{-1} A`; restriction
`R = P^T` and the coarse operator `P^T A P` (Galerkin), so the V-cycle is symmetric.

The hierarchy is set up on the host (NumPy/SciPy: sparse products and
`scipy.sparse.csgraph.connected_components`); the cycle itself runs in JAX, the finest level
matrix-free and the coarse levels and transfers as fixed-width row lists (ELLPACK, gathers
only).
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int

from ._coarsening import AbstractCoarsening, AbstractTransfer
from ._operators import AbstractGridOperator, DiffusionOperator, StencilOperator


def _ell(M) -> tuple[np.ndarray, np.ndarray]:
    """Rows of a SciPy sparse matrix as `(columns, values)` of shape `(rows, width)`, padded
    with column 0 and value 0 (`width` the longest row, at least 1)."""
    M = M.tocsr()
    M.sort_indices()
    counts = np.diff(M.indptr)
    width = max(int(counts.max()) if counts.size else 0, 1)
    n = M.shape[0]
    cols = np.zeros((n, width), np.int32)
    vals = np.zeros((n, width), M.dtype)
    pos = np.arange(M.nnz) - np.repeat(M.indptr[:-1], counts)
    rows = np.repeat(np.arange(n), counts)
    cols[rows, pos] = M.indices
    vals[rows, pos] = M.data
    return cols, vals


def _ell_apply(columns: Array, values: Array, x: Array) -> Array:
    return jnp.sum(values * x[columns], axis=1)


class SparseOperator(AbstractGridOperator):
    """A symmetric positive (semi)definite matrix acting on a flat vector of `n` unknowns,
    stored by rows with a fixed number of entries per row (ELLPACK: padded with zeros).

    The coarse levels of [`scimlx.linsolve.Aggregation`][] are `SparseOperator`s: `mv` is one
    gather and a row sum, so it runs under `jit`, `vmap` and `grad` like the grid operators.
    Build one from a SciPy matrix with `SparseOperator.from_scipy(A)`; `to_scipy_sparse`
    turns it back.

    **Fields:**

    - `columns`, `values`: shape `(n, width)`, the column index and value of each row's
        entries.
    - `diagonal`: shape `(n,)`, the matrix diagonal.
    - `points`: shape `(n, d)`, for each unknown the grid cell (in this level's cells)
        it lies in; what [`scimlx.linsolve.Aggregation`][] groups by.
    """

    columns: Int[Array, "n width"]
    values: Float[Array, "n width"]
    diagonal: Float[Array, " n"]
    points: Int[Array, "n d"]

    def __check_init__(self):
        n = self.diagonal.shape[0]
        if self.columns.shape != self.values.shape or self.columns.shape[0] != n:
            raise ValueError(
                f"`columns` {self.columns.shape}, `values` {self.values.shape} and `diagonal` "
                f"{self.diagonal.shape} must describe the same {n} rows."
            )
        if self.points.shape[0] != n:
            raise ValueError(
                f"`points` must have one row per unknown ({n}); got {self.points.shape}."
            )

    @classmethod
    def from_scipy(cls, A, points=None) -> "SparseOperator":
        """From a symmetric SciPy sparse matrix (`points`: default, unknown `i` at cell `(i,)`)."""
        A = A.tocsr()
        cols, vals = _ell(A)
        n = A.shape[0]
        pts = np.arange(n)[:, None] if points is None else np.asarray(points)
        return cls(
            jnp.asarray(cols), jnp.asarray(vals), jnp.asarray(A.diagonal()), jnp.asarray(pts)
        )

    @property
    def solid(self) -> Array:
        return jnp.zeros(self.diagonal.shape, bool)

    @property
    def periodic(self) -> tuple[bool, ...]:
        return (False,)

    @property
    def grid_shape(self) -> tuple[int, ...]:
        return (int(self.diagonal.shape[0]),)

    @property
    def dtype(self):
        return self.values.dtype

    def in_structure(self):
        return jax.ShapeDtypeStruct(self.grid_shape, self.dtype)

    def mv(self, vector):
        return _ell_apply(self.columns, self.values, vector)

    def diagonal_values(self):
        return self.diagonal

    def spectral_bound(self, diagonal: Array) -> Array:
        """The Gershgorin bound `max_i sum_j |a_ij| / a_ii` (at least 2) of `D^{-1} A`."""
        rows = jnp.sum(jnp.abs(self.values), axis=1) / jnp.abs(diagonal)
        return jnp.maximum(jnp.max(rows), 2.0)


def sparse_to_scipy(operator: SparseOperator):
    """A [`scimlx.linsolve.SparseOperator`][] as a `scipy.sparse.csr_matrix`."""
    import scipy.sparse as sp

    cols = np.asarray(operator.columns)
    vals = np.asarray(operator.values)
    n = cols.shape[0]
    rows = np.repeat(np.arange(n), cols.shape[1])
    A = sp.csr_matrix((vals.ravel(), (rows, cols.ravel())), shape=(n, n))
    A.eliminate_zeros()
    return A


class AggregationTransfer(AbstractTransfer):
    """The smoothed-aggregation prolongation `P` (fine grid -> coarse unknowns) and `R = P^T`,
    each stored by rows (ELLPACK), so both directions are gathers.

    **Fields:**

    - `prolong_columns`, `prolong_values`: the rows of `P`, one per fine unknown (the fine
        grid flattened in C order; solid cells have empty rows).
    - `restrict_columns`, `restrict_values`: the rows of `P^T`, one per coarse unknown.
    - `fine_shape`: the fine level's shape.
    """

    prolong_columns: Int[Array, "nf kp"]
    prolong_values: Float[Array, "nf kp"]
    restrict_columns: Int[Array, "nc kr"]
    restrict_values: Float[Array, "nc kr"]
    fine_shape: tuple[int, ...] = eqx.field(static=True)

    def restrict(self, r: Array) -> Array:
        """`P^T r`: fine grid -> coarse unknowns."""
        return _ell_apply(self.restrict_columns, self.restrict_values, r.reshape(-1))

    def prolong(self, e: Array) -> Array:
        """`P e`: coarse unknowns -> fine grid."""
        return _ell_apply(self.prolong_columns, self.prolong_values, e).reshape(self.fine_shape)


def _host_matrix(op: AbstractGridOperator):
    """`(A, points, fluid)`: the operator's SciPy matrix on its unknowns (solid cells removed),
    the grid cell of each unknown and the mask of unknowns among the level's cells."""
    from ._operators import to_scipy_sparse

    if isinstance(op, SparseOperator):
        return sparse_to_scipy(op).astype(np.float64), np.asarray(op.points), None
    if not isinstance(op, DiffusionOperator | StencilOperator):
        raise TypeError(
            "`Aggregation()` coarsens a DiffusionOperator, StencilOperator or SparseOperator; "
            f"got {type(op)}."
        )
    fluid = ~np.asarray(op.solid).ravel()
    A = to_scipy_sparse(op).tocsr().astype(np.float64)
    A = A[fluid][:, fluid]
    points = np.stack([c.ravel()[fluid] for c in np.indices(op.grid_shape)], axis=1)
    return A, points, fluid


def _spectral_radius(A, dinv, steps: int = 20) -> float:
    """Power iteration for the spectral radius of `D^{-1} A` (via the symmetric
    `D^{-1/2} A D^{-1/2}`), capped by the Gershgorin bound."""
    s = np.sqrt(dinv)
    v = np.random.default_rng(0).uniform(0.5, 1.5, A.shape[0])
    lam = 0.0
    for _ in range(steps):
        w = s * (A @ (s * v))
        nw = np.linalg.norm(w)
        if nw == 0:
            return 1.0
        lam = float(v @ w / (v @ v))
        v = w / nw
    gersh = float(np.max(abs(A).sum(axis=1).A1 * dinv))
    return min(lam * 1.05, gersh)


def aggregate(A, points, *, block: int, strength: float) -> tuple[np.ndarray, np.ndarray]:
    """`(labels, coarse_points)`: each unknown's aggregate (the connected components of the
    strong couplings inside each `block^d` block of cells) and each aggregate's block."""
    import scipy.sparse as sp
    from scipy.sparse.csgraph import connected_components

    n = A.shape[0]
    parent = points // block
    # one integer id per block
    span = parent.max(axis=0) + 1 if n else np.ones(points.shape[1], int)
    bid = np.ravel_multi_index(parent.T, span) if n else np.zeros(0, int)
    C = A.tocoo()
    d = np.abs(A.diagonal())
    strong = (C.row != C.col) & (np.abs(C.data) >= strength * np.sqrt(d[C.row] * d[C.col]))
    strong &= C.data != 0
    strong &= bid[C.row] == bid[C.col]
    G = sp.csr_matrix((np.ones(int(strong.sum())), (C.row[strong], C.col[strong])), shape=(n, n))
    nc, labels = connected_components(G, directed=False)
    cpoints = np.zeros((nc, points.shape[1]), points.dtype)
    cpoints[labels] = parent
    return labels, cpoints


class Aggregation(AbstractCoarsening):
    """Smoothed-aggregation coarse levels over grid blocks, split at walls and weak couplings.

    Each coarse unknown is one connected component (by strong couplings,
    `|a_ij| >= strength sqrt(a_ii a_jj)`) of the unknowns in a `block^d` block of cells; the
    prolongation is the tentative piecewise constant one smoothed by one damped-Jacobi step
    (`omega / rho(D^{-1} A)`), restriction its transpose and the coarse operator
    `P^T A P` ([`scimlx.linsolve.SparseOperator`][]). Aggregates never span a wall, so
    corridors of a maze keep their own coarse unknowns on every level; weak couplings are not
    aggregated across, which semi-coarsens anisotropic operators. Set up on the host
    (eager, concrete operators only); any grid size.

    **Arguments:**

    - `block`: cells per block side (default 2: `2^d`-cell aggregates in open regions).
    - `strength`: the strong-coupling threshold (default `0.08`).
    - `omega`: prolongation smoothing weight, relative to `1 / rho` (default `4/3`).
    """

    block: int = eqx.field(static=True, default=2)
    strength: float = eqx.field(static=True, default=0.08)
    omega: float = eqx.field(static=True, default=4.0 / 3.0)
    eager = True

    def __check_init__(self):
        if not isinstance(self.block, int) or self.block < 2:
            raise ValueError(f"`block` must be an integer >= 2; got {self.block!r}.")
        if not 0 <= self.strength < 1:
            raise ValueError(f"`strength` must be in [0, 1); got {self.strength}.")
        if not 0 < self.omega < 2:
            raise ValueError(f"`omega` must be in (0, 2); got {self.omega}.")

    def coarsen(
        self, operator: AbstractGridOperator
    ) -> tuple[AbstractGridOperator, AbstractTransfer] | None:
        import scipy.sparse as sp

        if any(isinstance(x, jax.core.Tracer) for x in jax.tree_util.tree_leaves(operator)):
            raise ValueError(
                "`Aggregation()` builds its levels on the host and needs a concrete operator; "
                "call `multigrid` outside `jit` (or use `BlackBox()` for a traced operator)."
            )
        A, points, fluid = _host_matrix(operator)
        n = A.shape[0]
        if n == 0:
            return None
        block, extent = self.block, int(points.max()) + 1
        while True:
            labels, cpoints = aggregate(A, points, block=block, strength=self.strength)
            nc = int(cpoints.shape[0])
            if nc < n:
                break
            if block >= extent:  # no strong coupling left to aggregate along
                return None
            block *= self.block
        # unnormalised, so the constant (the near-null space of a diffusion operator) is
        # interpolated exactly on every level
        T = sp.csr_matrix((np.ones(n), (np.arange(n), labels)), shape=(n, nc))
        dinv = 1.0 / A.diagonal()
        rho = _spectral_radius(A, dinv)
        P = (T - sp.diags(self.omega / rho * dinv) @ (A @ T)).tocsr()
        Ac = (P.T @ A @ P).tocsr()
        Ac = 0.5 * (Ac + Ac.T)
        dtype = np.dtype(operator.dtype)
        if fluid is not None:
            # rows of P on every cell of the fine grid (empty on solid cells)
            nf = fluid.size
            embed = sp.csr_matrix(
                (np.ones(n), (np.flatnonzero(fluid), np.arange(n))), shape=(nf, n)
            )
            P = (embed @ P).tocsr()
        pc, pv = _ell(P.astype(dtype))
        rc, rv = _ell(P.T.tocsr().astype(dtype))
        transfer = AggregationTransfer(
            jnp.asarray(pc),
            jnp.asarray(pv),
            jnp.asarray(rc),
            jnp.asarray(rv),
            tuple(operator.grid_shape),
        )
        return SparseOperator.from_scipy(Ac.astype(dtype), cpoints), transfer


def channel_score(solid, max_coarse: int = 256) -> float:
    """How poorly a coarse grid with one unknown per coarse cell represents the fluid region of
    `solid`: the fraction of fluid cells in `2^d`-cell blocks that are partly solid (walls and
    corridors about as thin as a coarse cell), plus the largest fraction, over the scales of a
    geometric hierarchy (blocks of `2^k` cells per side, `k = 1, 2, ...` until at most
    `max_coarse` blocks), of fluid cells in a block whose fluid cells are not connected inside
    it (one coarse unknown would join regions that only meet far away). Scattered obstacles
    score below about 0.25, mazes and thin channels above 0.3 (measured values on the
    linsolve page). Host-side (NumPy/SciPy), for a concrete mask."""
    from scipy import ndimage

    fluid = ~np.asarray(solid, bool)
    ndim = fluid.ndim
    total = int(fluid.sum())
    if total == 0 or ndim == 0:
        return 0.0
    structure = np.zeros((3,) * (ndim + 1), bool)
    centre = (1,) * (ndim + 1)
    structure[centre] = True
    for a in range(1, ndim + 1):
        for s in (0, 2):
            idx = list(centre)
            idx[a] = s
            structure[tuple(idx)] = True
    mixed, worst, B = 0.0, 0.0, 2
    while True:
        m = [-(-n // B) for n in fluid.shape]
        pad = [(0, mm * B - n) for mm, n in zip(m, fluid.shape)]
        f = np.pad(fluid, pad)
        # (blocks, B, ..., B): components never connect across blocks
        f = f.reshape(sum(((mm, B) for mm in m), ()))
        f = f.transpose(tuple(range(0, 2 * ndim, 2)) + tuple(range(1, 2 * ndim, 2)))
        f = f.reshape((-1,) + (B,) * ndim)
        cells = f.reshape(len(f), -1).sum(axis=1)
        if B == 2:
            mixed = float(cells[cells < B**ndim].sum()) / total
        lab, nlab = ndimage.label(f, structure)
        owner = np.zeros(nlab + 1, np.int64)
        owner[lab.reshape(len(f), -1)] = np.arange(len(f))[:, None]
        ncomp = np.bincount(owner[1:], minlength=len(f))
        worst = max(worst, float(cells[ncomp > 1].sum()) / total)
        if int(np.prod(m)) <= max_coarse or B >= max(fluid.shape):
            return mixed + worst
        B *= 2
