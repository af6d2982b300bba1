"""Benchmark: iterative solvers for obstacle Poisson problems (scimlx.linsolve).

Question: how many iterations and how much time does our JAX multigrid-preconditioned CG need on
pressure-like Poisson problems with obstacles, next to scipy CG, lineax CG, IC(0)-PCG and
pyamg's algebraic multigrid, and (when the DCDM module is present) the learned solver?

Run from the repository root: `python -m benchmarks.linsolve [--quick]`.
Problems: `scimlx.linsolve.obstacle_scene(shape, seed=s, split="test")` (15-20 % solid, Dirichlet
walls, enclosed pockets removed), `b ~ N(0, 1)` on fluid cells (`random_rhs`, key `s`); one extra
MG-PCG row per grid with the divergence of a smooth random velocity field. One stopping rule:
`|r|_2 / |b|_2 <= 1e-6` (x0 = 0); the second iteration column is the paper's `1e-4` relative to
`r0` (= b here). Timings are medians of compiled runs (compile time apart) on this machine.
"""

import os
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np

import scimlx.linsolve as ls
from benchmarks._harness import (
    machine,
    optional_import,
    parse_args,
    print_table,
    time_compiled,
    time_host,
    write_results,
)


jax.config.update("jax_enable_x64", True)

TOL = 1e-6
TOL_R0 = 1e-4
COLUMNS = [
    "method",
    "grid",
    "rhs",
    "unknowns",
    "its",
    "its_1e-4_r0",
    "A_products",
    "net_evals",
    "setup_s",
    "solve_s",
    "total_s",
    "compile_s",
    "true_rel_res",
    "note",
]


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


def scipy_cg_row(p, A, quick=False):
    import scipy.sparse.linalg as spla

    b = np.asarray(p["b"]).ravel()
    bn = np.linalg.norm(b)
    res = [bn]

    def cb(xk):
        res.append(np.linalg.norm(b - A @ xk))

    t0 = time.perf_counter()
    x, info = spla.cg(A, b, rtol=TOL, atol=0.0, maxiter=20_000, callback=cb)
    t = {"median_s": time.perf_counter() - t0}
    its = len(res) - 1
    hist = np.asarray(res)
    note = "quick: time includes a residual norm per iteration" if quick else None
    if not quick:
        t = time_host(lambda: spla.cg(A, b, rtol=TOL, atol=0.0, maxiter=20_000), repeats=1)
    return {
        "method": "scipy CG",
        "its": its,
        "its_1e-4_r0": _its_to(hist, TOL_R0),
        "A_products": its + 1,
        "setup_s": 0.0,
        "solve_s": t["median_s"],
        "total_s": t["median_s"],
        "true_rel_res": _true_res(A, x, b),
        "note": note,
    }


def lineax_cg_row(p, A):
    op, b = p["operator"], p["b"]
    bn = float(jnp.linalg.norm(b))
    solver = lx.CG(rtol=0.0, atol=TOL * bn, norm=lx.internal.two_norm, max_steps=20_000)

    @eqx.filter_jit
    def solve(op, b):
        return lx.linear_solve(op, b, solver, throw=False)

    t = time_compiled(solve, op, b, repeats=3)
    sol = t["output"]
    x = np.asarray(sol.value).ravel()
    its = int(sol.stats["num_steps"])
    return {
        "method": "lineax CG",
        "its": its,
        "A_products": its + its // 10 + 1,
        "setup_s": 0.0,
        "solve_s": t["median_s"],
        "total_s": t["median_s"],
        "compile_s": t["compile_s"],
        "true_rel_res": _true_res(A, x, np.asarray(b).ravel()),
        "note": "elementwise test: rtol=0, atol=1e-6|b|, two_norm",
    }


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


def ic0_row(p, A):
    import scipy.sparse.linalg as spla

    b = np.asarray(p["b"]).ravel()
    ilupp = optional_import("ilupp")
    if ilupp is not None:
        build, note = (lambda: ilupp.IChol0Preconditioner(A.tocsr())), "ilupp IChol0"
    else:
        build = lambda: ic0_factor(A, p["shape"])  # noqa: E731
        note = "IC(0) ours (NumPy wavefronts + SuperLU triangular solves; ilupp not installed)"
    t_setup = time_host(build, repeats=1)
    M = t_setup["output"]
    bn = np.linalg.norm(b)
    res = [bn]
    t0 = time.perf_counter()
    x, info = spla.cg(
        A,
        b,
        rtol=TOL,
        atol=0.0,
        maxiter=20_000,
        M=M,
        callback=lambda xk: res.append(np.linalg.norm(b - A @ xk)),
    )
    solve_s = time.perf_counter() - t0
    its = len(res) - 1
    return {
        "method": "IC(0)-PCG",
        "its": its,
        "its_1e-4_r0": _its_to(res, TOL_R0),
        "A_products": its + 1,
        "setup_s": t_setup["median_s"],
        "solve_s": solve_s,
        "total_s": t_setup["median_s"] + solve_s,
        "true_rel_res": _true_res(A, x, b),
        "note": note + "; solve time includes a residual norm per iteration",
    }


def pyamg_rows(p, A, repeats=5):
    pyamg = optional_import("pyamg")
    if pyamg is None:
        return [
            {"method": "pyamg RS-PCG", "note": "not installed"},
            {"method": "pyamg SA-PCG", "note": "not installed"},
        ]
    b = np.asarray(p["b"]).ravel()
    rows = []
    Acsr = A.tocsr()
    for name, build in (
        ("pyamg RS-PCG", pyamg.ruge_stuben_solver),
        ("pyamg SA-PCG", pyamg.smoothed_aggregation_solver),
    ):
        t_setup = time_host(lambda: build(Acsr), repeats=repeats)
        ml = t_setup["output"]
        res = []
        x = ml.solve(b, tol=TOL, maxiter=500, accel="cg", residuals=res)
        t = time_host(lambda: ml.solve(b, tol=TOL, maxiter=500, accel="cg"), repeats=repeats)
        its = len(res) - 1
        rows.append(
            {
                "method": name,
                "its": its,
                "its_1e-4_r0": _its_to(res, TOL_R0),
                "A_products": its + 1,
                "setup_s": t_setup["median_s"],
                "solve_s": t["median_s"],
                "total_s": t_setup["median_s"] + t["median_s"],
                "total_min_s": t_setup["min_s"] + t["min_s"],
                "true_rel_res": _true_res(A, x, b),
                "note": f"symmetric GS smoother (default); median of {repeats} (setup, solve)",
            }
        )
    return rows


@eqx.filter_jit
def _mg_setup(op, smoother, coarse):
    return ls.multigrid(op, smoother=smoother, coarse=coarse)


@eqx.filter_jit
def _mg_solve(op, vc, b):
    return ls.pcg_solve(op, b, preconditioner=vc, rtol=TOL, max_steps=200, throw=False)


def mg_pcg_rows(p, A, smoother="chebyshev", coarse="rediscretise", repeats=7):
    # Module-level jitted functions: rows with the same shapes (the divergence right-hand
    # side) reuse the compiled setup and solve; "compile_s" is then just a first call.
    op, b = p["operator"], p["b"]
    ts = time_compiled(_mg_setup, op, smoother, coarse, repeats=repeats)
    vc = ts["output"]
    tv = time_compiled(_mg_solve, op, vc, b, repeats=repeats)
    sol = tv["output"]
    x = np.asarray(sol.value).ravel()
    its = int(sol.stats["num_steps"])
    name = "MG-PCG (ours, " + smoother + ("" if coarse == "rediscretise" else ", Galerkin") + ")"
    return {
        "method": name,
        "its": its,
        "its_1e-4_r0": _its_to(sol.stats["residual_history"], TOL_R0),
        "A_products": int(sol.stats["num_mv"]),
        "setup_s": ts["median_s"],
        "solve_s": tv["median_s"],
        "total_s": ts["median_s"] + tv["median_s"],
        "total_min_s": ts["min_s"] + tv["min_s"],
        "compile_s": ts["compile_s"] + tv["compile_s"],
        "true_rel_res": _true_res(A, x, np.asarray(b).ravel()),
        "note": f"{len(vc.operators)} levels, V(1,1), {coarse} coarse operators; "
        f"median of {repeats} (setup, solve)",
    }


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


def main():
    args = parse_args(__doc__.splitlines()[0])
    quick = bool(args.quick)
    mode = "quick" if quick else "full"
    shapes = (
        [(128, 128), (256, 256), (32, 32, 32)]
        if quick
        else [(128, 128), (256, 256), (512, 512), (32, 32, 32), (64, 64, 64)]
    )
    seed = 1000
    print(f"machine: {machine()}")
    print(f"problems: obstacle_scene(shape, seed={seed}, split='test'), random_rhs key {seed}")
    rows = []
    problems = []
    for shape in shapes:
        t0 = time.perf_counter()
        p = make_problem(shape, seed)
        problems.append(p)
        A = ls.to_scipy_sparse(p["operator"]).tocsr()
        base = {
            "grid": p["grid"],
            "rhs": "random",
            "unknowns": p["fluid"],
            "seed": seed,
            "solid_fraction": round(p["solid_fraction"], 3),
        }
        reps = 2 if quick else 7
        prow = [scipy_cg_row(p, A, quick=quick), lineax_cg_row(p, A), ic0_row(p, A)]
        prow += pyamg_rows(p, A, repeats=1 if quick else 5)
        prow.append(mg_pcg_rows(p, A, repeats=reps))
        if quick and p["grid"] == "256^2":  # quick: the Galerkin row runs at 128^2 and 32^3
            prow.append({"method": "MG-PCG (ours, chebyshev, Galerkin)", "note": "quick: skipped"})
        else:
            prow.append(mg_pcg_rows(p, A, coarse="galerkin", repeats=1 if quick else 3))
        pd = make_problem(shape, seed, rhs="divergence")
        r = mg_pcg_rows(pd, ls.to_scipy_sparse(pd["operator"]).tocsr(), repeats=reps)
        r["rhs"] = "divergence"
        prow.append(r)
        for r in prow:
            rows.append({**base, **r})
        print(f"  {p['grid']}: {time.perf_counter() - t0:.1f} s", flush=True)

    summary = _summary(rows)
    cols = COLUMNS + ["growth"]
    print_table(rows, cols, title=f"linsolve ({mode}, classical rows); stop |r|/|b| <= {TOL}")
    print("summary:", summary, flush=True)
    path = write_results("linsolve", mode, rows, summary, out=args.out)
    print("wrote", path, flush=True)
    if os.environ.get("SCIMLX_BENCH_SKIP_DCDM") == "1":
        print("DCDM rows skipped (SCIMLX_BENCH_SKIP_DCDM=1)")
        return
    rows += dcdm_rows(problems, quick)
    summary = _summary(rows)
    try:
        from benchmarks import _linsolve_dcdm

        summary.update(_linsolve_dcdm.dcdm_summary(rows))
    except Exception as e:  # pragma: no cover - peer module absent or failing
        print(f"DCDM summary not available: {type(e).__name__}: {e}")
    print_table(rows, cols, title=f"linsolve ({mode}); stop |r|/|b| <= {TOL}")
    print("summary:", summary)
    path = write_results("linsolve", mode, rows, summary, out=args.out)
    print("wrote", path)


def _summary(rows):
    def get(method, grid, key="its", rhs="random"):
        for r in rows:
            if (
                r.get("method", "").startswith(method)
                and r.get("grid") == grid
                and r.get("rhs", "random") == rhs
            ):
                return r.get(key)
        return None

    # growth its(2N)/its(N)
    pairs = [("128^2", "256^2"), ("256^2", "512^2"), ("32^3", "64^3")]
    for r in rows:
        for lo, hi in pairs:
            if r.get("grid") == hi and r.get("its") is not None:
                prev = get(r["method"], lo, rhs=r.get("rhs", "random"))
                if prev:
                    r["growth"] = round(r["its"] / prev, 3)

    def ratio(grid, key="total_s"):
        mg = get("MG-PCG (ours, chebyshev)", grid, key)
        rs = get("pyamg RS-PCG", grid, key)
        return None if (mg is None or rs is None) else mg / rs

    return {
        "cg_its_256": get("scipy CG", "256^2"),
        "ic0_its_256": get("IC(0)-PCG", "256^2"),
        "amg_pcg_its_256": get("pyamg RS-PCG", "256^2"),
        "mg_pcg_its_256": get("MG-PCG", "256^2"),
        "mg_pcg_its_64cube": get("MG-PCG", "64^3"),
        "mg_pcg_growth_128_to_256": get("MG-PCG", "256^2", "growth"),
        "mg_pcg_time_ratio_vs_pyamg_256": ratio("256^2"),
        "mg_pcg_time_ratio_vs_pyamg_512": ratio("512^2"),
        "mg_pcg_time_ratio_vs_pyamg_32cube": ratio("32^3"),
        "mg_pcg_time_ratio_vs_pyamg_64cube": ratio("64^3"),
        "mg_pcg_time_ratio_vs_pyamg_512_best": ratio("512^2", "total_min_s"),
        "mg_pcg_time_ratio_vs_pyamg_64cube_best": ratio("64^3", "total_min_s"),
        "mg_pcg_compile_s_512": get("MG-PCG (ours, chebyshev)", "512^2", "compile_s"),
        "mg_pcg_compile_s_64cube": get("MG-PCG (ours, chebyshev)", "64^3", "compile_s"),
        "mg_galerkin_its_256": get("MG-PCG (ours, chebyshev, Galerkin)", "256^2"),
        "mg_galerkin_its_64cube": get("MG-PCG (ours, chebyshev, Galerkin)", "64^3"),
        "ic0_its_64cube": get("IC(0)-PCG", "64^3"),
        "amg_pcg_its_64cube": get("pyamg RS-PCG", "64^3"),
    }


if __name__ == "__main__":
    main()
