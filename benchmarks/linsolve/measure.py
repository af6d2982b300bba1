"""How the linsolve benchmark measures: ours (multigrid-preconditioned CG) as a `Method`, and
`compare`, which times methods side by side and turns them into rows.

A `Method` is one solver of a comparison; peers (`peers.py`) are built the same way.
`compare` times every method's setup and solve as separate turns of
`benchmarks._harness.time_interleaved` (round-robin, the order rotating every round), so the
machine's load hits them alike.
"""

import statistics
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

import scimlx
import scimlx.linsolve as ls
from benchmarks._harness import load_avg, time_interleaved

from .problems import DENSE_COARSE_LIMIT, its_to, MAX_STEPS, OURS, TOL_R0, true_res


class Method:
    """One solver of a comparison: `setup` and `solve` as `time_interleaved` entries
    (`(fn, args)` or `(fn, args, seconds_of)`; `setup` may be `None`), and `finish(setup_out,
    solve_out) -> dict` giving the row's iterations, true residual, `converged` and notes."""

    def __init__(self, name, setup, solve, finish, *, compile_s=None, extra=None):
        self.name, self.setup, self.solve, self.finish = name, setup, solve, finish
        self.compile_s, self.extra = compile_s, dict(extra or {})


def mg_setup(op, coarse, dtype=None):
    """`multigrid` as a user calls it (outside `jit`: host-side and eager hierarchies stay
    available to the default choice; the jitted ones compile inside); `dtype`: the
    hierarchy's precision (`None`: the operator's)."""
    return ls.multigrid(op, coarse=coarse, dtype=dtype)


def hierarchy_kind(vc) -> str:
    """Which coarse levels a V-cycle holds, from its first transfer."""
    kinds = {
        "AggregationTransfer": "aggregation",
        "BoxTransfer": "black-box",
        "GeometricTransfer": "geometric",
    }
    tr = getattr(vc, "transfers", ())
    return kinds.get(type(tr[0]).__name__, type(tr[0]).__name__) if tr else "one level"


@eqx.filter_jit
def mg_solve(op, vc, b, rtol):
    return ls.pcg_solve(op, b, preconditioner=vc, rtol=rtol, max_steps=MAX_STEPS, throw=False)


_COMPILED = set()
_COARSEST = {}


def _coarsest_cells(op, coarse=None):
    """Cells of the dense coarsest grid today's hierarchy would build (from its shapes alone,
    `jax.eval_shape`, nothing computed); `None` where the V-cycle holds no dense inverse."""
    key = (op.grid_shape, coarse)
    if key not in _COARSEST:
        try:
            vc = jax.eval_shape(lambda o: mg_setup(o, coarse), op)
        except Exception:  # a hierarchy that needs concrete values: try it for real
            vc = None
        inv = getattr(vc, "coarse_inverse", None)
        _COARSEST[key] = int(inv.shape[0]) if getattr(inv, "ndim", 0) == 2 else None
    return _COARSEST[key]


def mg_method(op, A, b, rtol, *, coarse=None, name=OURS, rhs_b=None, dtype=None):
    """Ours: `multigrid(op)` (the library's default hierarchy, or `coarse=...`; `dtype=...`
    for a lower-precision cycle) and `pcg_solve`. The first setup and solve run here
    (compile + run, timed as `compile_s` where the shapes are new)."""
    cells = _coarsest_cells(op, coarse)
    if cells is not None and cells > DENSE_COARSE_LIMIT:
        return f"not run: the hierarchy stops at a {cells}-cell coarsest grid (dense {cells}^2)"
    b = b if rhs_b is None else rhs_b
    rtol = jnp.asarray(rtol, b.dtype)
    t0 = time.perf_counter()
    try:
        vc = jax.block_until_ready(mg_setup(op, coarse, dtype))
    except Exception as e:  # e.g. an option today's library does not have
        return f"not run: {type(e).__name__}: {e}"[:160]
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    jax.block_until_ready(mg_solve(op, vc, b, rtol))
    first += time.perf_counter() - t0
    key = (op.grid_shape, coarse, dtype)
    compile_s = None if key in _COMPILED else first
    _COMPILED.add(key)

    def finish(_, sol):
        ok = bool(scimlx.is_successful(sol.result))
        x = np.asarray(sol.value).ravel()
        its = int(sol.stats["num_steps"])
        return {
            "its": its,
            "converged": ok,
            "its_1e-4_r0": its_to(sol.stats["residual_history"], TOL_R0),
            "true_rel_res": true_res(A, x, np.asarray(b).ravel()),
            "note": f"{len(getattr(vc, 'operators', ()))} levels ({hierarchy_kind(vc)})"
            + ("" if coarse is None else f", coarse={coarse}")
            + ("" if dtype is None else f", {jnp.dtype(dtype).name} cycle")
            + ("" if ok else f"; not converged ({scimlx.RESULTS[sol.result]!s:.50})"),
        }

    setup = (mg_setup, (op, coarse, dtype)) if rhs_b is None else None
    return Method(name, setup, (mg_solve, (op, vc, b, rtol)), finish, compile_s=compile_s)


def compare(methods, rounds, *, warm=0.1, alt=None):
    """Time `methods` (`{name: Method or a reason string}`, ours first) interleaved; one
    row per method with medians, min/max and its total's ratio to ours per round
    (`ours_over_peer`), and, if `alt` names another of the methods (a variant of ours), the
    peers' ratios to it as well (`alt_over_peer`)."""
    fns = {}
    for name, m in methods.items():
        if isinstance(m, Method):
            if m.setup is not None:
                fns[name + " | setup"] = m.setup
            fns[name + " | solve"] = m.solve
    load0 = load_avg()
    res = time_interleaved(fns, rounds, warm=warm)
    load1 = load_avg()
    totals = {}
    for name, m in methods.items():
        if isinstance(m, Method):
            solve, setup = res[name + " | solve"], res.get(name + " | setup")
            s_times = setup["times"] if setup else [0.0] * len(solve["times"])
            totals[name] = [a + c for a, c in zip(s_times, solve["times"], strict=True)]
    rows, ref = [], next(iter(methods))
    for name, m in methods.items():
        if not isinstance(m, Method):
            rows.append({"method": name, "note": m})
            continue
        solve = res[name + " | solve"]
        setup = res.get(name + " | setup")
        row = {
            "method": name,
            "setup_s": setup["median_s"] if setup else 0.0,
            "setup_min_s": setup["min_s"] if setup else 0.0,
            "setup_max_s": setup["max_s"] if setup else 0.0,
            "solve_s": solve["median_s"],
            "solve_min_s": solve["min_s"],
            "solve_max_s": solve["max_s"],
            "total_s": statistics.median(totals[name]),
            "total_min_s": min(totals[name]),
            "total_max_s": max(totals[name]),
            "rounds": rounds,
            "compile_s": m.compile_s,
            "load_avg": [load0, load1],
            **m.extra,
        }
        row.update(m.finish(setup["output"] if setup else None, solve["output"]))
        # every row but ours against ours; the peers also against the variant `alt`
        bases = [("ours", ref)] + ([("alt", alt)] if alt in totals and name != alt else [])
        for key, base in bases:
            if name == ref or base not in totals:
                continue
            ratios = [a / c for a, c in zip(totals[base], totals[name], strict=True)]
            row[f"{key}_over_peer"] = statistics.median(ratios)
            row[f"{key}_over_peer_min"] = min(ratios)
            row[f"{key}_over_peer_max"] = max(ratios)
        if alt in totals and name != ref and name != alt:
            row["alt"] = alt
        rows.append(row)
    return rows
