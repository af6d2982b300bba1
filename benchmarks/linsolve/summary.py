"""Summary keys of the linsolve results: the obstacle table's, the family table's, the growth
column, the DCDM rows kept from an earlier full run, and the reproducibility check against an
earlier results file."""

import json
import os

from .problems import FAMILY_TOL, OURS, OURS_F32, OURS_GALERKIN


DCDM_PREFIXES = ("DCDM", "learned", "V-cycle net", "CNN as")


def kept_dcdm_rows(path):
    """The learned solvers' rows of an earlier full results file (`--dcdm keep`), each marked
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


def growth(rows):
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
    f32_ratio = []  # the float32-cycle variant of ours against hypre
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
        alt = find(r["member"], r["grid"], OURS_F32)
        if hy and alt and hy.get("alt_over_peer") is not None:
            alt_bound = not alt.get("converged")
            f32_ratio.append((hy["alt_over_peer"], alt_bound, f"{r['member']} {r['grid']}"))
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
        ("worst_family_time_over_hypre_f32_cycle", f32_ratio),
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
