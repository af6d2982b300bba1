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


def scipy_cg_row(p, A):
    import scipy.sparse.linalg as spla

    b = np.asarray(p["b"]).ravel()
    bn = np.linalg.norm(b)
    res = [bn]

    def cb(xk):
        res.append(np.linalg.norm(b - A @ xk))

    x, info = spla.cg(A, b, rtol=TOL, atol=0.0, maxiter=20_000, callback=cb)
    its = len(res) - 1
    hist = np.asarray(res)
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


def ic0_row(p, A):
    ilupp = optional_import("ilupp")
    if ilupp is None:
        return {"method": "IC(0)-PCG", "note": "not installed (pip install ilupp)"}
    import scipy.sparse.linalg as spla

    b = np.asarray(p["b"]).ravel()
    # identity rows of solid cells are kept: IC(0) of the full-grid SPD matrix
    t_setup = time_host(lambda: ilupp.IChol0Preconditioner(A.tocsr()), repeats=1)
    M = ilupp.IChol0Preconditioner(A.tocsr())
    res = [np.linalg.norm(b)]
    x, info = spla.cg(
        A, b, rtol=TOL, atol=0.0, maxiter=20_000, M=M, callback=lambda xk: res.append(1.0)
    )
    its = len(res) - 1
    t = time_host(lambda: spla.cg(A, b, rtol=TOL, atol=0.0, maxiter=20_000, M=M), repeats=1)
    res2 = [1.0]
    spla.cg(A, b, rtol=TOL_R0, atol=0.0, maxiter=20_000, M=M, callback=lambda xk: res2.append(1))
    return {
        "method": "IC(0)-PCG",
        "its": its,
        "its_1e-4_r0": len(res2) - 1,
        "A_products": its + 1,
        "setup_s": t_setup["median_s"],
        "solve_s": t["median_s"],
        "total_s": t_setup["median_s"] + t["median_s"],
        "true_rel_res": _true_res(A, x, b),
        "note": "ilupp IChol0",
    }


def pyamg_rows(p, A):
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
        t_setup = time_host(lambda: build(Acsr), repeats=3)
        ml = build(Acsr)
        res = []
        x = ml.solve(b, tol=TOL, maxiter=500, accel="cg", residuals=res)
        t = time_host(lambda: ml.solve(b, tol=TOL, maxiter=500, accel="cg"), repeats=3)
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
                "true_rel_res": _true_res(A, x, b),
                "note": "setup+solve, symmetric GS smoother (default)",
            }
        )
    return rows


def mg_pcg_rows(p, A, smoother="chebyshev"):
    op, b = p["operator"], p["b"]

    @eqx.filter_jit
    def setup(op):
        return ls.multigrid(op, smoother=smoother)

    @eqx.filter_jit
    def solve(op, vc, b):
        return ls.pcg_solve(op, b, preconditioner=vc, rtol=TOL, max_steps=200, throw=False)

    ts = time_compiled(setup, op, repeats=3)
    vc = ts["output"]
    tv = time_compiled(solve, op, vc, b, repeats=3)
    sol = tv["output"]
    x = np.asarray(sol.value).ravel()
    its = int(sol.stats["num_steps"])
    return {
        "method": f"MG-PCG (ours, {smoother})",
        "its": its,
        "its_1e-4_r0": _its_to(sol.stats["residual_history"], TOL_R0),
        "A_products": int(sol.stats["num_mv"]),
        "setup_s": ts["median_s"],
        "solve_s": tv["median_s"],
        "total_s": ts["median_s"] + tv["median_s"],
        "compile_s": ts["compile_s"] + tv["compile_s"],
        "true_rel_res": _true_res(A, x, np.asarray(b).ravel()),
        "note": f"{len(vc.operators)} levels, V(1,1)",
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
        prow = [scipy_cg_row(p, A), lineax_cg_row(p, A), ic0_row(p, A)]
        prow += pyamg_rows(p, A)
        prow.append(mg_pcg_rows(p, A))
        pd = make_problem(shape, seed, rhs="divergence")
        r = mg_pcg_rows(pd, ls.to_scipy_sparse(pd["operator"]).tocsr())
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

    def ratio(grid):
        mg = get("MG-PCG", grid, "total_s")
        rs = get("pyamg RS-PCG", grid, "total_s")
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
    }


if __name__ == "__main__":
    main()
