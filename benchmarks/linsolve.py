"""Benchmark: iterative solvers for SPD grid problems (scimlx.linsolve).

Question: how many iterations and how much time (setup + solve, compile apart) does our JAX
multigrid-preconditioned CG need on pressure-like problems, next to the strongest peers that run
here (pyamg RS/SA-PCG, PETSc CG + hypre BoomerAMG and CG + GAMG, IC(0)-PCG, scipy and lineax
CG), and (when the DCDM module is present) the learned solvers?

Run from the repository root: `python -m benchmarks.linsolve [--quick] [--compare PATH]
[--dcdm run|keep|skip] [--no-families]`.

Tables:
1. Obstacle scenes: `scimlx.linsolve.obstacle_scene(shape, seed=s, split="test")` (15-20 %
   solid, Dirichlet walls, enclosed pockets removed), `b ~ N(0, 1)` on fluid cells
   (`random_rhs`, key `s`), plus an MG-PCG row with the divergence of a smooth random velocity
   field. Stop: `|r|_2 / |b|_2 <= 1e-6` (x0 = 0); the second iteration column is the DCDM
   paper's `1e-4` relative to `r0` (= b here).
2. Problem families (`benchmarks/_linsolve_families.py`: obstacles at several densities,
   mazes of several corridor widths, two-phase inclusions of contrast 1e-6..1e6, log-normal
   coefficients, anisotropy to 1:1000; 2-D and 3-D; sizes including ones that are not powers
   of two) at `rtol = 1e-8`, with ours, pyamg RS/SA and PETSc hypre/GAMG.
3. What MG setup time is made of (`mg_setup_breakdown`): setup, its dense coarsest-grid
   pseudo-inverse (LAPACK through jaxlib, i.e. OpenBLAS) and pyamg, with the BLAS pool at the
   number of cores and at one thread.

Timing: every method of a problem is timed in the same process, in turns
(`benchmarks._harness.time_interleaved`: round-robin, the order rotating every round), setup
and solve as separate turns; the PETSc peer runs in a subprocess (`benchmarks/_petsc_peer.py`,
system Python) that times its own setup and solve, called in the same turns. Host thread pools
(OpenBLAS/OpenMP, the PETSc subprocess's too) are pinned to `peer_threads` = the number of
cores, which XLA's CPU backend uses. A row's `total_s` is the median over rounds of that
round's setup + solve, `ours_over_peer` the median over rounds of ours / the peer's total in
the same round (min and max beside it); `compile_s` is the first call of ours where its shapes
are new (later problems of the same shapes reuse the compiled code). The load average is
recorded at the start and end of each problem; `busy` flags a load above the core count.
"""

import argparse
import json
import os
import statistics
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np

import scimlx
import scimlx.linsolve as ls
from benchmarks import _linsolve_families as fam
from benchmarks._harness import (
    load_avg,
    machine,
    machine_is_busy,
    optional_import,
    parse_args,
    pinned_threads,
    print_table,
    RESULTS_DIR,
    time_interleaved,
    write_results,
)
from benchmarks._petsc_peer import PetscPeer


jax.config.update("jax_enable_x64", True)

TOL = 1e-6
TOL_R0 = 1e-4
FAMILY_TOL = 1e-8
MAX_STEPS = 1000  # ours, every table (one compiled solve per grid shape)
DENSE_COARSE_LIMIT = 2500  # cells: larger dense coarsest grids are not attempted
COLUMNS = [
    "method",
    "grid",
    "rhs",
    "unknowns",
    "its",
    "its_1e-4_r0",
    "setup_s",
    "solve_s",
    "total_s",
    "total_min_s",
    "total_max_s",
    "ours_over_peer",
    "compile_s",
    "true_rel_res",
    "note",
]
FAMILY_COLUMNS = [
    "member",
    "grid",
    "method",
    "its",
    "setup_s",
    "solve_s",
    "total_s",
    "ours_over_peer",
    "ours_over_peer_min",
    "ours_over_peer_max",
    "true_rel_res",
    "note",
]
OURS = "MG-PCG (ours)"
OURS_GALERKIN = "MG-PCG (ours, Galerkin)"


def _grid_name(shape):
    return "x".join(str(n) for n in shape) if len(set(shape)) > 1 else f"{shape[0]}^{len(shape)}"


def make_problem(shape, seed, rhs="random"):
    solid = ls.obstacle_scene(shape, seed=seed, split="test")
    op = ls.poisson(shape, solid=jnp.asarray(solid))
    key = jax.random.key(seed)
    if rhs == "random":
        b = ls.random_rhs(jnp.asarray(solid), key=key)
    else:
        b = ls.divergence_rhs(jnp.asarray(solid), key=key)
    return {
        "shape": tuple(shape),
        "grid": _grid_name(shape),
        "seed": seed,
        "rhs": rhs,
        "solid": solid,
        "operator": op,
        "b": b,
        "fluid": int((~solid).sum()),
        "solid_fraction": float(solid.mean()),
    }


def _true_res(A, x, b):
    return float(np.linalg.norm(b - A @ x) / np.linalg.norm(b))


def _its_to(history, target):
    h = np.asarray(history)
    h = h[np.isfinite(h)]
    hits = np.nonzero(h <= target * h[0])[0]
    return int(hits[0]) if len(hits) else None


class Method:
    """One solver of a comparison: `setup` and `solve` as `time_interleaved` entries
    (`(fn, args)` or `(fn, args, seconds_of)`; `setup` may be `None`), and `finish(setup_out,
    solve_out) -> dict` giving the row's iterations, true residual, `converged` and notes."""

    def __init__(self, name, setup, solve, finish, *, compile_s=None, extra=None):
        self.name, self.setup, self.solve, self.finish = name, setup, solve, finish
        self.compile_s, self.extra = compile_s, dict(extra or {})


@eqx.filter_jit
def _mg_setup(op, coarse):
    return ls.multigrid(op) if coarse is None else ls.multigrid(op, coarse=coarse)


@eqx.filter_jit
def _mg_solve(op, vc, b, rtol):
    return ls.pcg_solve(op, b, preconditioner=vc, rtol=rtol, max_steps=MAX_STEPS, throw=False)


_COMPILED = set()
_COARSEST = {}


def _coarsest_cells(op, coarse=None):
    """Cells of the dense coarsest grid today's hierarchy would build (from its shapes alone,
    `jax.eval_shape`, nothing computed); `None` where the V-cycle holds no dense inverse."""
    key = (op.grid_shape, coarse)
    if key not in _COARSEST:
        try:
            vc = jax.eval_shape(lambda o: _mg_setup(o, coarse), op)
        except Exception:  # a hierarchy that needs concrete values: try it for real
            vc = None
        inv = getattr(vc, "coarse_inverse", None)
        _COARSEST[key] = int(inv.shape[0]) if getattr(inv, "ndim", 0) == 2 else None
    return _COARSEST[key]


def mg_method(op, A, b, rtol, *, coarse=None, name=OURS, rhs_b=None):
    """Ours: `multigrid(op)` (the library's default hierarchy, or `coarse=...`) and
    `pcg_solve`. The first setup and solve run here (compile + run, timed as `compile_s`
    where the shapes are new)."""
    cells = _coarsest_cells(op, coarse)
    if cells is not None and cells > DENSE_COARSE_LIMIT:
        return f"not run: the hierarchy stops at a {cells}-cell coarsest grid (dense {cells}^2)"
    b = b if rhs_b is None else rhs_b
    rtol = jnp.asarray(rtol, b.dtype)
    t0 = time.perf_counter()
    try:
        vc = jax.block_until_ready(_mg_setup(op, coarse))
    except Exception as e:  # e.g. an option today's library does not have
        return f"not run: {type(e).__name__}: {e}"[:160]
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    jax.block_until_ready(_mg_solve(op, vc, b, rtol))
    first += time.perf_counter() - t0
    key = (op.grid_shape, coarse)
    compile_s = None if key in _COMPILED else first
    _COMPILED.add(key)

    def finish(_, sol):
        ok = bool(scimlx.is_successful(sol.result))
        x = np.asarray(sol.value).ravel()
        its = int(sol.stats["num_steps"])
        return {
            "its": its,
            "converged": ok,
            "its_1e-4_r0": _its_to(sol.stats["residual_history"], TOL_R0),
            "true_rel_res": _true_res(A, x, np.asarray(b).ravel()),
            "note": f"{len(getattr(vc, 'operators', ()))} levels"
            + ("" if coarse is None else f", coarse={coarse}")
            + ("" if ok else f"; not converged ({scimlx.RESULTS[sol.result]!s:.50})"),
        }

    setup = (_mg_setup, (op, coarse)) if rhs_b is None else None
    return Method(name, setup, (_mg_solve, (op, vc, b, rtol)), finish, compile_s=compile_s)


def pyamg_methods(A, b, rtol):
    pyamg = optional_import("pyamg")
    names = ("pyamg RS-PCG", "pyamg SA-PCG")
    if pyamg is None:
        return {n: "not installed" for n in names}
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
            rel = _true_res(A, x, b)
            return {
                "its": len(res) - 1,
                "converged": bool(res[-1] <= rtol * res[0]),
                "its_1e-4_r0": _its_to(res, TOL_R0),
                "true_rel_res": rel,
                "note": f"{len(ml.levels)} levels, symmetric GS smoother (pyamg's default)",
            }

        out[name] = Method(name, (build, (A,)), (solve, (ml,)), finish)
    return out


def petsc_methods(peer, A, b, rtol):
    names = {"hypre": "PETSc CG + hypre BoomerAMG", "gamg": "PETSc CG + GAMG"}
    if peer is None or not peer.available:
        why = "not installed" if peer is None else peer.why
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
                "its_1e-4_r0": _its_to(res, TOL_R0),
                "true_rel_res": _true_res(A, x, bn),
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
            "true_rel_res": _true_res(A, x, bn),
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


def compare(methods, rounds, *, warm=0.1):
    """Time `methods` (`{name: Method or a reason string}`, ours first) interleaved; one
    row per method with medians, min/max and its total's ratio to ours per round."""
    fns = {}
    for name, m in methods.items():
        if isinstance(m, Method):
            if m.setup is not None:
                fns[name + " | setup"] = m.setup
            fns[name + " | solve"] = m.solve
    load0 = load_avg()
    res = time_interleaved(fns, rounds, warm=warm)
    load1 = load_avg()
    rows, ours_total, ref = [], None, next(iter(methods))
    for name, m in methods.items():
        if not isinstance(m, Method):
            rows.append({"method": name, "note": m})
            continue
        solve = res[name + " | solve"]
        setup = res.get(name + " | setup")
        s_times = setup["times"] if setup else [0.0] * len(solve["times"])
        totals = [a + c for a, c in zip(s_times, solve["times"], strict=True)]
        row = {
            "method": name,
            "setup_s": setup["median_s"] if setup else 0.0,
            "setup_min_s": setup["min_s"] if setup else 0.0,
            "setup_max_s": setup["max_s"] if setup else 0.0,
            "solve_s": solve["median_s"],
            "solve_min_s": solve["min_s"],
            "solve_max_s": solve["max_s"],
            "total_s": statistics.median(totals),
            "total_min_s": min(totals),
            "total_max_s": max(totals),
            "rounds": rounds,
            "compile_s": m.compile_s,
            "load_avg": [load0, load1],
            **m.extra,
        }
        row.update(m.finish(setup["output"] if setup else None, solve["output"]))
        if name == ref:
            ours_total = totals
        elif ours_total is not None:
            ratios = [a / c for a, c in zip(ours_total, totals, strict=True)]
            row["ours_over_peer"] = statistics.median(ratios)
            row["ours_over_peer_min"] = min(ratios)
            row["ours_over_peer_max"] = max(ratios)
        rows.append(row)
    return rows


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


def _config(quick):
    """Sizes and rounds. `family_sizes`: per dimension, the sizes of a doubling (the growth)
    first, then sizes that are not powers of two; `family_subset`: sizes at which only
    the members listed run (the rest of the sizes run every member of the dimension)."""
    subset = ("obstacles f=0.3", "maze w=3", "inclusions k=1000", "log-normal s=1.3")
    if quick:
        return {
            "shapes": [(128, 128), (256, 256), (32, 32, 32)],
            "rounds": 3,
            "krylov_rounds": 2,
            "breakdown_shape": (256, 256),
            "family_sizes": {2: [64, 128, 96, 63], 3: [16, 32, 24]},
            "family_subset": {(96, 2): subset, (63, 2): subset, (24, 3): subset},
            "family_rounds": 2,
        }
    subset3 = ("obstacles f=0.3", "inclusions k=1000", "log-normal s=1.3")
    return {
        "shapes": [(128, 128), (256, 256), (512, 512), (32, 32, 32), (64, 64, 64)],
        # the Galerkin, CG and IC(0) rows (a compile each, minutes of CG) on these only
        "small_shapes": [(128, 128), (256, 256), (32, 32, 32)],
        "rounds": 5,
        "krylov_rounds": 2,
        "breakdown_shape": (256, 256),
        "family_sizes": {2: [128, 256, 192, 255], 3: [32, 64, 63]},
        "family_subset": {(192, 2): subset, (255, 2): subset, (64, 3): subset3, (63, 3): subset3},
        "family_rounds": 3,
    }


def obstacle_rows(cfg, peer, seed, on_problem=None):
    rows = []
    for shape in cfg["shapes"]:
        t0 = time.perf_counter()
        p = make_problem(shape, seed)
        pd = make_problem(shape, seed, rhs="divergence")
        A = ls.to_scipy_sparse(p["operator"]).tocsr()
        b = p["b"]
        base = {
            "table": "obstacles",
            "grid": p["grid"],
            "rhs": "random",
            "unknowns": p["fluid"],
            "seed": seed,
            "solid_fraction": round(p["solid_fraction"], 3),
        }
        small = shape in cfg.get("small_shapes", cfg["shapes"])
        methods = {OURS: mg_method(p["operator"], A, b, TOL)}
        methods[OURS_GALERKIN] = (
            mg_method(p["operator"], A, b, TOL, coarse=ls.Galerkin())
            if small
            else "not run: CPU budget (full mode runs it up to 256^2 and 32^3)"
        )
        methods[OURS + ", divergence rhs"] = mg_method(
            p["operator"], A, b, TOL, rhs_b=pd["b"], name=OURS
        )
        methods.update(pyamg_methods(A, b, TOL))
        methods.update(petsc_methods(peer, A, b, TOL))
        for r in compare(methods, cfg["rounds"]):
            if r["method"].endswith("divergence rhs"):
                r = {**r, "method": OURS, "rhs": "divergence"}
                r.pop("ours_over_peer", None)  # a different right-hand side
                r.pop("ours_over_peer_min", None)
                r.pop("ours_over_peer_max", None)
            rows.append({**base, **r})
        # the unpreconditioned and IC(0) rows, in their own (slower) interleaved group
        if not small:
            for name in ("scipy CG", "lineax CG", "IC(0)-PCG"):
                rows.append({**base, "method": name, "note": "not run: CPU budget"})
            print(f"  {p['grid']}: {time.perf_counter() - t0:.1f} s, load {load_avg()}")
            if on_problem is not None:
                on_problem(rows)
            continue
        kry = {OURS: mg_method(p["operator"], A, b, TOL)}
        kry.update(krylov_methods(p, A, b, TOL))
        for r in compare(kry, cfg["krylov_rounds"], warm=False)[1:]:
            rows.append({**base, **r})
        print(f"  {p['grid']}: {time.perf_counter() - t0:.1f} s, load {load_avg()}", flush=True)
        if on_problem is not None:
            on_problem(rows)
    return rows


def family_rows(cfg, peer, seed, on_size=None, into=None):
    """The family table; rows also go to the list `into` as they come (for `on_size`, called
    after each grid size)."""
    rows = []
    for dim, sizes in cfg["family_sizes"].items():
        for n in sizes:
            shape = (n,) * dim
            t0 = time.perf_counter()
            only = cfg["family_subset"].get((n, dim))
            for family, label, build in fam.members(dim):
                if only is not None and label not in only:
                    continue
                try:
                    op, solid, b = build(shape, seed)
                except ValueError as e:
                    rows.append({"family": family, "member": label, "grid": _grid_name(shape),
                                 "method": OURS, "note": f"not built: {e}"})  # fmt: skip
                    if into is not None:
                        into.append(rows[-1])
                    continue
                A = ls.to_scipy_sparse(op).tocsr()
                base = {
                    "table": "families",
                    "family": family,
                    "member": label,
                    "grid": _grid_name(shape),
                    "unknowns": int((~solid).sum()),
                    "seed": seed,
                    "solid_fraction": round(float(solid.mean()), 3),
                    "contrast": fam.coefficient_contrast(op),
                }
                methods = {OURS: mg_method(op, A, b, FAMILY_TOL)}
                if not isinstance(methods[OURS], Method):
                    rows.append({**base, "method": OURS, "note": methods[OURS]})
                    if into is not None:
                        into.append(rows[-1])
                    continue  # ours cannot run: the peers' rows would compare nothing
                methods.update(pyamg_methods(A, b, FAMILY_TOL))
                methods.update(petsc_methods(peer, A, b, FAMILY_TOL))
                for r in compare(methods, cfg["family_rounds"]):
                    rows.append({**base, **r})
                    if into is not None:
                        into.append(rows[-1])
            print(f"  families {_grid_name(shape)}: {time.perf_counter() - t0:.1f} s, "
                  f"load {load_avg()}", flush=True)  # fmt: skip
            if on_size is not None:
                on_size()
    return rows


def setup_breakdown(shape, seed, rounds):
    """What MG setup time is made of, with the BLAS pool at the core count and at 1: ours
    (setup, solve), the dense pseudo-inverse of our coarsest grid alone (jaxlib's LAPACK,
    i.e. OpenBLAS, as in the setup), and pyamg RS (setup, solve)."""
    p = make_problem(shape, seed)
    op, b = p["operator"], p["b"]
    A = ls.to_scipy_sparse(op).tocsr()
    out = {"grid": p["grid"]}
    vc = _mg_setup(op, None)
    coarse_ops = getattr(vc, "operators", None)
    fns = {}
    if coarse_ops:
        c = coarse_ops[-1]
        n = int(np.prod(c.grid_shape))
        eye = jnp.eye(n, dtype=c.dtype).reshape((n,) + c.grid_shape)
        dense = jax.vmap(c.mv)(eye).reshape(n, n).T
        out["coarsest_cells"] = n
        fns["coarse pinv"] = (jax.jit(lambda a: jnp.linalg.pinv(a, hermitian=True)), (dense,))
    m = mg_method(op, A, b, TOL)
    fns["ours setup"], fns["ours solve"] = m.setup, m.solve
    pm = pyamg_methods(A, b, TOL).get("pyamg RS-PCG")
    if isinstance(pm, Method):
        fns["pyamg RS setup"], fns["pyamg RS solve"] = pm.setup, pm.solve
    for threads in sorted({os.cpu_count() or 1, 1}, reverse=True):
        with pinned_threads(threads):
            res = time_interleaved(fns, rounds, warm=0.1)
        out[f"blas_threads_{threads}"] = {
            k: {q: v[q] for q in ("min_s", "median_s", "max_s", "times")} for k, v in res.items()
        }
    out["load_avg"] = load_avg()
    return out


def dcdm_rows(problems, quick):
    """Rows of the DCDM helper's module `benchmarks/_linsolve_dcdm.py`, if present.

    Interface: `_linsolve_dcdm.dcdm_rows(problems, *, quick) -> list[dict]`, where each problem
    is a dict with keys `shape`, `grid` (e.g. "256^2"), `seed`, `rhs`, `solid` (numpy bool mask),
    `operator` (a `DiffusionOperator`), `b`, `fluid` (unknowns), `solid_fraction`; the rows use
    the columns of `COLUMNS` (`method` starting with "DCDM" or "learned MG", `grid`, `its`, ...).
    """
    try:
        from benchmarks import _linsolve_dcdm
    except ImportError:
        note = "not run: benchmarks/_linsolve_dcdm.py absent"
        return [{"method": "DCDM (all rows)", "note": note}]
    try:
        return list(_linsolve_dcdm.dcdm_rows(problems, quick=quick))
    except Exception as e:  # the peer module's failure must not hide ours
        return [{"method": "DCDM (all rows)", "note": f"not run: {type(e).__name__}: {e}"[:200]}]


DCDM_PREFIXES = ("DCDM", "learned", "V-cycle net", "CNN as")


def kept_dcdm_rows(path):
    """The DCDM module's rows of an earlier full results file (`--dcdm keep`), each marked
    with the file's date: the learned solvers are not retrained in every run."""
    try:
        with open(path) as f:
            old = json.load(f)
    except (OSError, ValueError):
        return [], None
    if old.get("mode") != "full":
        return [], None
    rows = [dict(r) for r in old.get("rows", []) if str(r.get("method")).startswith(DCDM_PREFIXES)]
    for r in rows:
        r.setdefault("measured", r.get("measured") or old.get("date"))
    prov = {"file": os.path.basename(path), "date": old.get("date")}
    if old.get("provenance"):
        prov["provenance"] = old["provenance"]
    if old.get("dcdm_rows_from"):
        prov = old["dcdm_rows_from"]
    return rows, prov


def _get(rows, method, grid, key="its", rhs="random", table="obstacles"):
    for r in rows:
        if (
            r.get("table", "obstacles") == table
            and r.get("method", "") == method
            and r.get("grid") == grid
            and r.get("rhs", "random") == rhs
        ):
            return r.get(key)
    return None


def _growth(rows):
    """`growth` = its(2N) / its(N) for obstacle rows (same method and rhs) and family rows
    (same member and method)."""
    by = {}
    for r in rows:
        key = (r.get("table"), r.get("member"), r.get("method"), r.get("rhs"), r.get("grid"))
        by[key] = r
    for r in rows:
        g = r.get("grid")
        if not g or "^" not in g or r.get("its") is None:
            continue
        n, d = g.split("^")
        if int(n) % 2:
            continue
        lo = by.get((r.get("table"), r.get("member"), r.get("method"), r.get("rhs"),
                     f"{int(n) // 2}^{d}"))  # fmt: skip
        # a pair where either solve stopped unconverged says nothing about growth
        if lo and lo.get("its") and r.get("converged", True) and lo.get("converged", True):
            r["growth"] = round(r["its"] / lo["its"], 3)


def family_summary(rows):
    fr = [r for r in rows if r.get("table") == "families"]
    members = sorted({(r["family"], r["member"]) for r in fr})

    def find(member, grid, method):
        for r in fr:
            if r["member"] == member and r["grid"] == grid and r["method"] == method:
                return r
        return None

    its_ratio, time_ratio, growth, failures, false_ok, not_run = [], [], [], [], [], []
    for r in fr:
        if r.get("converged") and r.get("true_rel_res") is not None:
            if r["true_rel_res"] > 2 * FAMILY_TOL:
                false_ok.append(f"{r['method']} @ {r['member']} {r['grid']}")
        if r["method"] != OURS:
            continue
        if str(r.get("note", "")).startswith("not run"):
            not_run.append(f"{r['member']} {r['grid']}: {r['note']}")
            continue
        if r.get("its") is None:
            continue
        bound = not r.get("converged")
        if bound:
            failures.append(f"{r['member']} {r['grid']}")
        rs = find(r["member"], r["grid"], "pyamg RS-PCG")
        if rs and rs.get("its"):
            its_ratio.append((r["its"] / rs["its"], bound, f"{r['member']} {r['grid']}"))
        hy = find(r["member"], r["grid"], "PETSc CG + hypre BoomerAMG")
        if hy and hy.get("ours_over_peer") is not None:
            time_ratio.append((hy["ours_over_peer"], bound, f"{r['member']} {r['grid']}"))
        if r.get("growth") is not None:
            growth.append((r["growth"], bound, f"{r['member']} {r['grid']}"))

    def worst(xs):
        if not xs:
            return None, None, False
        v, bound, where = max(xs)
        return round(v, 3), where, bound

    out = {"families": sorted({f for f, _ in members})}
    for key, xs in (
        ("worst_family_its_over_pyamg_rs", its_ratio),
        ("worst_family_time_over_hypre", time_ratio),
        ("worst_family_growth", growth),
    ):
        v, where, bound = worst(xs)
        out[key] = v
        out[key + "_at"] = where
        if bound:
            out[key + "_is_lower_bound"] = True  # ours stopped at max_steps there
    out["family_members"] = [m for _, m in members]
    out["family_not_converged_ours"] = failures
    out["family_not_run_ours"] = not_run
    out["family_false_successes"] = false_ok
    out["learned_beats_classical_family"] = None
    out["learned_beats_classical_note"] = (
        "no learned preconditioner was trained on a family in this run; the DCDM rows are "
        "trained on obstacle scenes only"
    )
    return out


def summary(rows):
    g = lambda *a, **k: _get(rows, *a, **k)  # noqa: E731

    def ratio(grid, peer="pyamg RS-PCG", key="ours_over_peer"):
        return g(peer, grid, key)

    def best(grid, peer="pyamg RS-PCG"):
        a, c = g(OURS, grid, "total_min_s"), g(peer, grid, "total_min_s")
        return None if (a is None or not c) else a / c

    out = {
        "cg_its_256": g("scipy CG", "256^2"),
        "ic0_its_256": g("IC(0)-PCG", "256^2"),
        "amg_pcg_its_256": g("pyamg RS-PCG", "256^2"),
        "mg_pcg_its_256": g(OURS, "256^2"),
        "mg_pcg_its_64cube": g(OURS, "64^3"),
        "mg_pcg_growth_128_to_256": g(OURS, "256^2", "growth"),
        "mg_galerkin_its_256": g(OURS_GALERKIN, "256^2"),
        "mg_galerkin_its_64cube": g(OURS_GALERKIN, "64^3"),
        "ic0_its_64cube": g("IC(0)-PCG", "64^3"),
        "amg_pcg_its_64cube": g("pyamg RS-PCG", "64^3"),
        "hypre_its_256": g("PETSc CG + hypre BoomerAMG", "256^2"),
        "gamg_its_256": g("PETSc CG + GAMG", "256^2"),
    }
    for grid, tag in (("256^2", "256"), ("512^2", "512"), ("32^3", "32cube"), ("64^3", "64cube")):
        out[f"mg_pcg_time_ratio_vs_pyamg_{tag}"] = ratio(grid)
        out[f"mg_pcg_time_ratio_vs_pyamg_{tag}_min"] = ratio(grid, key="ours_over_peer_min")
        out[f"mg_pcg_time_ratio_vs_pyamg_{tag}_max"] = ratio(grid, key="ours_over_peer_max")
        out[f"mg_pcg_time_ratio_vs_pyamg_{tag}_best"] = best(grid)
        out[f"mg_pcg_time_ratio_vs_hypre_{tag}"] = ratio(grid, "PETSc CG + hypre BoomerAMG")
        out[f"mg_pcg_time_ratio_vs_gamg_{tag}"] = ratio(grid, "PETSc CG + GAMG")
        out[f"mg_pcg_compile_s_{tag}"] = g(OURS, grid, "compile_s")
    return {k: v for k, v in out.items() if v is not None or not k.endswith(("_min", "_max"))}


TIME_RATIO_KEYS = ("ours_over_peer",)


def reproducibility(rows, path):
    """Each time ratio of this run against the same row of an earlier run's file `path`."""
    with open(path) as f:
        old = json.load(f)

    def key(r):
        return (r.get("table"), r.get("member"), r.get("grid"), r.get("method"), r.get("rhs"))

    before = {key(r): r for r in old.get("rows", [])}
    pairs = []
    for r in rows:
        o = before.get(key(r))
        if o and r.get("ours_over_peer") and o.get("ours_over_peer"):
            a, c = o["ours_over_peer"], r["ours_over_peer"]
            pairs.append((abs(c / a - 1.0), key(r), a, c))
    pairs.sort(reverse=True)
    within = [p for p in pairs if p[0] <= 0.2]
    return {
        "compared_with": {"file": path, "date": old.get("date"), "load": old.get("machine", {})},
        "ratios_compared": len(pairs),
        "within_20_percent": len(within),
        "max_rel_change": round(pairs[0][0], 3) if pairs else None,
        "largest_changes": [
            {"row": " / ".join(str(x) for x in k if x), "before": a, "now": c}
            for _, k, a, c in pairs[:10]
        ],
    }


def _add_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dcdm",
        choices=("run", "keep", "skip"),
        default=None,
        help="DCDM rows: run the DCDM module (default in --quick), keep those of the committed "
        "full results (default in full mode: the learned solvers are not retrained), or skip",
    )
    parser.add_argument(
        "--compare", default=None, help="an earlier results file: record how far each time "
        "ratio moved (the reproducibility check)"
    )  # fmt: skip
    parser.add_argument(
        "--recheck",
        default=None,
        help="no run: compare this results file's time ratios with those of --compare's file "
        "and record the comparison in it (for two runs made at the same time)",
    )
    parser.add_argument(
        "--finalise",
        default=None,
        nargs="+",
        help="no run: summarise the rows of results files (e.g. a run stopped part-way, its "
        ".partial file, or the obstacle and family tables run apart)",
    )
    parser.add_argument(
        "--grids",
        default=None,
        help="obstacle-table grids, e.g. '256^2,32^3' (default: the mode's)",
    )
    parser.add_argument(
        "--family-sizes",
        default=None,
        help="family grid sides per dimension, e.g. '2:64,128,96;3:16,32': the first two of a "
        "dimension run every member (the growth), later ones the non-power-of-two subset",
    )
    parser.add_argument("--no-families", action="store_true", help="skip the family table")
    parser.add_argument("--no-obstacles", action="store_true", help="skip the obstacle table")


def main():
    args = parse_args(__doc__.splitlines()[0], add=_add_options)
    if args.recheck:
        if not args.compare:
            raise SystemExit("--recheck needs --compare")
        with open(args.recheck) as f:
            payload = json.load(f)
        payload["reproducibility"] = reproducibility(payload["rows"], args.compare)
        print("reproducibility:", json.dumps(payload["reproducibility"], indent=1))
        with open(args.recheck + ".tmp", "w") as f:
            json.dump(payload, f, indent=2)
        os.replace(args.recheck + ".tmp", args.recheck)
        return
    quick = bool(args.quick)
    mode = "quick" if quick else "full"
    dcdm = args.dcdm or ("run" if quick else "keep")
    if args.finalise:
        # the rows of a run stopped part-way (its `.partial` file), summarised as they are
        rows, extra = [], {"sources": []}
        for path in args.finalise:
            with open(path) as f:
                payload = json.load(f)
            rows += [
                r for r in payload["rows"] if not str(r.get("method")).startswith(DCDM_PREFIXES)
            ]
            for k in ("mg_setup_breakdown",):
                if k in payload and k not in extra:
                    extra[k] = payload[k]
            extra["sources"].append({"file": path, "date": payload.get("date"),
                                     "partial": bool(payload.get("summary", {}).get("partial")),
                                     "options": payload.get("options"),
                                     "machine": payload.get("machine")})  # fmt: skip
        peer_threads = os.cpu_count() or 1
        _finish(rows, extra, args, mode=mode, dcdm="skip" if dcdm == "run" else dcdm,
                problems=[], quick=quick, threads=peer_threads,
                petsc=next((r["note"].split(",")[0] for r in rows
                            if str(r.get("method")).startswith("PETSc") and r.get("its")), None),
                t_start=None)  # fmt: skip
        return
    cfg = _config(quick)
    if args.grids:
        cfg["shapes"] = [
            (int(g.split("^")[0]),) * int(g.split("^")[1]) for g in args.grids.split(",")
        ]
    if args.family_sizes:
        subset = cfg["family_subset"].get((cfg["family_sizes"][2][2], 2), ())
        cfg["family_sizes"], cfg["family_subset"] = {}, {}
        for part in args.family_sizes.split(";"):
            dim, sizes = part.split(":")
            sizes = [int(n) for n in sizes.split(",")]
            cfg["family_sizes"][int(dim)] = sizes
            for n in sizes[2:]:
                cfg["family_subset"][(n, int(dim))] = subset
    seed = 1000
    committed = os.path.join(RESULTS_DIR, "linsolve.json")
    t_start = time.perf_counter()
    print(f"machine: {machine()}")
    print(f"problems: seed {seed}; mode {mode}; DCDM rows: {dcdm}", flush=True)
    rows, problems = [], []
    extra = {"options": {k: v for k, v in vars(args).items() if v not in (None, False)}}

    def partial(more=()):
        # a run stopped part-way leaves what it measured, marked as such
        write_results(
            "linsolve", mode, rows + list(more), {"partial": True},
            out=(args.out or committed) + ".partial", extra=extra,
        )  # fmt: skip

    with pinned_threads() as threads:
        if not args.no_obstacles:
            extra["mg_setup_breakdown"] = setup_breakdown(cfg["breakdown_shape"], seed, 3)
        peer = PetscPeer(threads)
        try:
            if not args.no_obstacles:
                rows += obstacle_rows(cfg, peer, seed, on_problem=partial)
                problems = [make_problem(s, seed) for s in cfg["shapes"]]
            if not args.no_families:
                family_rows(cfg, peer, seed, on_size=partial, into=rows)
        finally:
            peer.close()
    _finish(rows, extra, args, mode=mode, dcdm=dcdm, problems=problems, quick=quick,
            threads=threads, petsc=peer.version or peer.why, t_start=t_start)  # fmt: skip


def _finish(rows, extra, args, *, mode, dcdm, problems, quick, threads, petsc, t_start):
    """Summary, DCDM rows, reproducibility, tables and the results file."""
    committed = os.path.join(RESULTS_DIR, "linsolve.json")
    kept, kept_from = kept_dcdm_rows(committed) if dcdm == "keep" else ([], None)
    _growth(rows)
    s = summary(rows)
    if any(r.get("table") == "families" for r in rows):
        s.update(family_summary(rows))
    s["peer_threads"] = threads
    s["petsc"] = petsc
    if dcdm == "run" and problems:
        rows += dcdm_rows(problems, quick)
    elif dcdm == "keep":
        rows += kept
        extra["dcdm_rows_from"] = kept_from
    if dcdm != "skip":
        try:
            from benchmarks import _linsolve_dcdm

            dcdm_rows_all = [r for r in rows if r.get("table", "obstacles") == "obstacles"]
            s.update(_linsolve_dcdm.dcdm_summary(dcdm_rows_all))
        except Exception as e:  # pragma: no cover - peer module absent or failing
            print(f"DCDM summary not available: {type(e).__name__}: {e}")
    s["load_avg_end"] = load_avg()
    s["busy_rows"] = sum(
        1 for r in rows if any(machine_is_busy(x) for x in r.get("load_avg", []) if x)
    )
    s["wall_s"] = None if t_start is None else round(time.perf_counter() - t_start, 1)
    if args.compare:
        extra["reproducibility"] = reproducibility(rows, args.compare)
    print_table(
        [r for r in rows if r.get("table", "obstacles") == "obstacles"],
        COLUMNS + ["growth"],
        title=f"linsolve ({mode}): obstacle scenes, stop |r|/|b| <= {TOL}",
    )
    if any(r.get("table") == "families" for r in rows):
        print_table(
            [r for r in rows if r.get("table") == "families"],
            FAMILY_COLUMNS + ["growth"],
            title=f"linsolve ({mode}): problem families, stop |r|/|b| <= {FAMILY_TOL}",
        )
    print("setup breakdown:", json.dumps(extra.get("mg_setup_breakdown"))[:2000])
    print("summary:", json.dumps(s, indent=1))
    if "reproducibility" in extra:
        print("reproducibility:", json.dumps(extra["reproducibility"], indent=1))
    write_results("linsolve", mode, rows, s, out=args.out, extra=extra)


if __name__ == "__main__":
    main()
