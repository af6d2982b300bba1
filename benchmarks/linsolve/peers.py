"""Peers of the linsolve benchmark, as `measure.Method`s: pyamg RS/SA-PCG, PETSc CG + hypre
BoomerAMG and CG + GAMG (through the subprocess of `petsc_peer.py`), scipy CG, lineax CG and
IC(0)-PCG. A peer that is not installed gives a reason string instead of a `Method`; its row
says so."""

import equinox as eqx
import lineax as lx
import numpy as np

from benchmarks._harness import NOT_INSTALLED, optional_import

from .measure import Method
from .problems import its_to, MAX_STEPS, TOL_R0, true_res


def pyamg_methods(A, b, rtol):
    pyamg = optional_import("pyamg")
    names = ("pyamg RS-PCG", "pyamg SA-PCG")
    if pyamg is None:
        return {n: NOT_INSTALLED for n in names}
    b = np.asarray(b).ravel()
    out = {}
    for name, build in zip(
        names, (pyamg.ruge_stuben_solver, pyamg.smoothed_aggregation_solver), strict=True
    ):
        ml = build(A)

        def solve(ml):
            return ml.solve(b, tol=rtol, maxiter=MAX_STEPS, accel="cg")

        def finish(_, x, ml=ml):
            res = []
            ml.solve(b, tol=rtol, maxiter=MAX_STEPS, accel="cg", residuals=res)
            rel = true_res(A, x, b)
            return {
                "its": len(res) - 1,
                "converged": bool(res[-1] <= rtol * res[0]),
                "its_1e-4_r0": its_to(res, TOL_R0),
                "true_rel_res": rel,
                "note": f"{len(ml.levels)} levels, symmetric GS smoother (pyamg's default)",
            }

        out[name] = Method(name, (build, (A,)), (solve, (ml,)), finish)
    return out


def petsc_methods(peer, A, b, rtol):
    names = {"hypre": "PETSc CG + hypre BoomerAMG", "gamg": "PETSc CG + GAMG"}
    if peer is None or not peer.available:
        why = NOT_INSTALLED if peer is None else peer.why
        return {n: why for n in names.values()}
    peer.load(A, np.asarray(b).ravel(), rtol)
    out = {}
    for pc, name in names.items():

        def finish(_, r, pc=pc):
            return {
                "its": r["its"],
                "converged": r["reason"] > 0,
                "true_rel_res": r["true_rel_res"],
                "note": f"PETSc {peer.version}, default {pc} options, unpreconditioned norm",
            }

        sec = lambda o: o["seconds"]  # noqa: E731 (timed inside the subprocess)
        out[name] = Method(name, (peer.setup, (pc,), sec), (peer.solve, (pc,), sec), finish)
    return out


def krylov_methods(p, A, b, rtol):
    """scipy CG, lineax CG (no preconditioner) and IC(0)-PCG (ilupp's IChol0 if installed,
    else ours below)."""
    import scipy.sparse.linalg as spla

    bn = np.asarray(b).ravel()
    out = {}

    def count(M=None):
        res = [np.linalg.norm(bn)]
        spla.cg(
            A, bn, rtol=rtol, atol=0.0, maxiter=20_000, M=M,
            callback=lambda xk: res.append(np.linalg.norm(bn - A @ xk)),
        )  # fmt: skip
        return res

    def scipy_finish(M):
        def finish(_, out):
            x, info = out
            res = count(M)
            return {
                "its": len(res) - 1,
                "converged": info == 0,
                "its_1e-4_r0": its_to(res, TOL_R0),
                "true_rel_res": true_res(A, x, bn),
            }

        return finish

    def cg(M=None):
        return spla.cg(A, bn, rtol=rtol, atol=0.0, maxiter=20_000, M=M)

    out["scipy CG"] = Method("scipy CG", None, (cg, ()), scipy_finish(None))
    solver = lx.CG(
        rtol=0.0, atol=rtol * float(np.linalg.norm(bn)), norm=lx.internal.two_norm,
        max_steps=20_000,
    )  # fmt: skip

    @eqx.filter_jit
    def lx_solve(op, b):
        return lx.linear_solve(op, b, solver, throw=False)

    def lx_finish(_, sol):
        x = np.asarray(sol.value).ravel()
        return {
            "its": int(sol.stats["num_steps"]),
            "converged": bool(sol.result == lx.RESULTS.successful),
            "true_rel_res": true_res(A, x, bn),
            "note": "elementwise test: rtol=0, atol=rtol|b|, two_norm",
        }

    out["lineax CG"] = Method("lineax CG", None, (lx_solve, (p["operator"], b)), lx_finish)
    ilupp = optional_import("ilupp")
    if ilupp is not None:
        build, note = (lambda: ilupp.IChol0Preconditioner(A)), "ilupp IChol0"
    else:
        build = lambda: ic0_factor(A, p["shape"])  # noqa: E731
        note = "IC(0) ours (NumPy wavefronts + SuperLU triangular solves; ilupp not installed)"
    M0 = build()
    fin = scipy_finish(M0)
    out["IC(0)-PCG"] = Method(
        "IC(0)-PCG",
        (build, ()),
        (cg, (M0,)),
        lambda s, o: {**fin(s, o), "note": note},
    )
    return out


def ic0_factor(A, shape):
    """IC(0) of a (2d+1)-point grid matrix (natural order), ours, in NumPy/SciPy.

    `M = (D + L) D^{-1} (D + L)^T` with `L` the strict lower triangle of `A` (no fill for a
    grid graph, which has no triangles) and `d_i = a_ii - sum_{j<i} a_ij^2 / d_j`, computed by
    wavefronts (cells with equal index sum are independent for non-periodic grids). Checked on
    the way: `diag(M) == diag(A)`, the IC(0) condition on the diagonal (off the diagonal it
    holds because no two neighbours share a lower neighbour). The triangular factors are
    applied with SuperLU (natural order, no pivoting: no fill for a triangular matrix).
    """
    import scipy.sparse as sp
    import scipy.sparse.linalg as spla

    n = A.shape[0]
    diag = A.diagonal().copy()
    lo = sp.tril(A, -1, format="csr")
    lo2 = lo.multiply(lo).tocsr()
    level = np.indices(shape).sum(0).ravel()
    order = np.argsort(level, kind="stable")
    bounds = np.searchsorted(level[order], np.arange(level.max() + 2))
    d, invd = np.zeros(n), np.zeros(n)
    for lev in range(level.max() + 1):
        cells = order[bounds[lev] : bounds[lev + 1]]
        d[cells] = diag[cells] - lo2[cells] @ invd
        invd[cells] = 1.0 / d[cells]
    if not np.all(d > 0):
        raise RuntimeError("IC(0) breakdown: non-positive pivot")
    L = (lo + sp.diags(d)).tocsc()
    M_diag = d + lo2 @ invd
    if not np.allclose(M_diag, diag, rtol=1e-10, atol=0):
        raise RuntimeError("IC(0) check failed: the matrix is not a grid (triangle-free) matrix")
    luL = spla.splu(L, permc_spec="NATURAL", diag_pivot_thresh=0.0)
    luU = spla.splu(L.T.tocsc(), permc_spec="NATURAL", diag_pivot_thresh=0.0)
    return spla.LinearOperator(A.shape, lambda r: luU.solve(d * luL.solve(np.ravel(r))))
