"""The measurements of the linsolve benchmark, one function per table: the obstacle scenes
(ours, pyamg, PETSc, then scipy/lineax CG and IC(0) in their own group), the problem families,
and what MG setup time is made of."""

import time

import jax
import jax.numpy as jnp
import numpy as np

import scimlx.linsolve as ls
from benchmarks._harness import load_avg, pinned_threads, time_interleaved, usable_cores

from . import families as fam
from .measure import compare, Method, mg_method, mg_setup
from .peers import krylov_methods, petsc_methods, pyamg_methods
from .problems import FAMILY_TOL, grid_name, make_problem, OURS, OURS_F32, OURS_GALERKIN, TOL


F32 = jnp.float32


def obstacle_rows(cfg, peer, seed, on_problem=None):
    """The obstacle table on `cfg["shapes"]`; `on_problem(rows)` is called after each grid."""
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
                    rows.append({"family": family, "member": label, "grid": grid_name(shape),
                                 "method": OURS, "note": f"not built: {e}"})  # fmt: skip
                    if into is not None:
                        into.append(rows[-1])
                    continue
                A = ls.to_scipy_sparse(op).tocsr()
                base = {
                    "table": "families",
                    "family": family,
                    "member": label,
                    "grid": grid_name(shape),
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
                # the same hierarchy held in float32 (CG stays in float64)
                methods[OURS_F32] = mg_method(op, A, b, FAMILY_TOL, name=OURS_F32, dtype=F32)
                methods.update(pyamg_methods(A, b, FAMILY_TOL))
                methods.update(petsc_methods(peer, A, b, FAMILY_TOL))
                for r in compare(methods, cfg["family_rounds"], alt=OURS_F32):
                    rows.append({**base, **r})
                    if into is not None:
                        into.append(rows[-1])
            print(f"  families {grid_name(shape)}: {time.perf_counter() - t0:.1f} s, "
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
    vc = mg_setup(op, None)
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
    for threads in sorted({usable_cores(), 1}, reverse=True):
        with pinned_threads(threads):
            res = time_interleaved(fns, rounds, warm=0.1)
        out[f"blas_threads_{threads}"] = {
            k: {q: v[q] for q in ("min_s", "median_s", "max_s", "times")} for k, v in res.items()
        }
    out["load_avg"] = load_avg()
    return out
