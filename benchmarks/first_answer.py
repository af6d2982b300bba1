"""Benchmark: time to first answer (issue: compilation is part of every figure a user waits for).

Question: how long does a user wait, in a fresh Python process, for the first answer of each
capability's main entry point as the docs show it, and how does that compare with the tool
they would otherwise use? Each case runs in its own subprocess, twice with the same JAX
persistent-cache directory: cold (empty cache) and warm (cache filled by the cold run).
Inside the subprocess JAX's monitoring events attribute the first call's time to tracing
(jaxpr trace + lowering) and XLA compilation; a second call with new array values measures
the steady-state run time and counts retraces. Peers run in the same subprocess after ours,
threads pinned to the same count (OpenBLAS/OpenMP), timed for setup + solve.

Columns: `import_s` (Python start to the snippet's imports done), `first_s` (the first call),
`trace_s` and `compile_s` (tracing + lowering and XLA compilation since the process started,
so they include small programs compiled during imports and setup), `second_s` (the same entry
point on new array values), `retraces_second_call` / `recompiles_second_call` (what that
second call traced or compiled again; 0 is the goal), `first_over_peer` (our
`import_s + first_s` over the peer's setup + solve: the user's whole wait against the other
tool's, whose import is not counted).

Run from the repository root: `python -m benchmarks.first_answer [--quick]`.
"""

import json
import os
import subprocess
import sys
import tempfile
import time

from benchmarks._harness import load_avg, parse_args, print_table, usable_cores, write_results


# Each snippet defines `first()` and `again()` (new array values, same shapes) returning a
# dict of figures, and optionally `peer()` returning its own seconds; the runner below
# times them. Snippets import what a user's script imports.
_LINSOLVE = """
import jax, jax.numpy as jnp, numpy as np
jax.config.update("jax_enable_x64", True)
from scimlx import linsolve
SHAPE = {shape}

def problem(seed):
    solid = jnp.asarray(linsolve.obstacle_scene(SHAPE, seed=seed, split="test"))
    op = linsolve.poisson(SHAPE, solid=solid)
    return op, linsolve.random_rhs(solid, key=jax.random.key(seed))

def first():
    op, b = problem(0)
    prec = linsolve.multigrid(op)
    sol = linsolve.pcg_solve(op, b, preconditioner=prec, rtol=1e-8, throw=False)
    return {{"its": int(sol.stats["num_steps"])}}

def again():
    op, b = problem(1)
    prec = linsolve.multigrid(op)
    sol = linsolve.pcg_solve(op, b, preconditioner=prec, rtol=1e-8, throw=False)
    return {{"its": int(sol.stats["num_steps"])}}

def peer():
    import pyamg, time
    op, b = problem(0)
    A = linsolve.to_scipy_sparse(op).tocsr()
    bn = np.asarray(b).ravel()
    t0 = time.perf_counter()
    ml = pyamg.ruge_stuben_solver(A)
    res = []
    ml.solve(bn, tol=1e-8, maxiter=500, accel="cg", residuals=res)
    return {{"peer": "pyamg RS-PCG", "peer_s": time.perf_counter() - t0, "peer_its": len(res) - 1}}
"""

_DARCY = """
import jax, jax.numpy as jnp, numpy as np
jax.config.update("jax_enable_x64", True)
from scimlx import neuralop
N = {n}

def coeff(seed):
    mu = neuralop.grf(jax.random.key(seed), N)
    return neuralop.darcy_coefficient(mu, 12.0, 3.0)

def first():
    sol = neuralop.darcy_solve(coeff(0), rtol=1e-10, throw=False)
    return {{"its": int(sol.stats["num_steps"])}}

def again():
    sol = neuralop.darcy_solve(coeff(1), rtol=1e-10, throw=False)
    return {{"its": int(sol.stats["num_steps"])}}

def peer():
    import time, scipy.sparse.linalg as spla
    from scimlx import linsolve
    a = coeff(0)
    A = linsolve.to_scipy_sparse(neuralop.darcy_operator(a)).tocsc()
    t0 = time.perf_counter()
    spla.spsolve(A, np.ones(N * N))
    return {{"peer": "scipy spsolve", "peer_s": time.perf_counter() - t0}}
"""

_NDE = """
import jax, jax.numpy as jnp, jax.random as jr, diffrax as dfx
jax.config.update("jax_enable_x64", True)
from scimlx import nde
field = nde.MLPVectorField(2, 32, key=jr.key(0))
model = nde.NeuralODE(field, 2, t1=5.0, stepsize_controller=dfx.PIDController(rtol=1e-6, atol=1e-6))

def first():
    return {{"steps": int(model(jnp.array([1.0, 0.0])).stats["num_steps"])}}

def again():
    return {{"steps": int(model(jnp.array([0.5, -0.3])).stats["num_steps"])}}

def peer():
    import time
    t0 = time.perf_counter()
    sol = dfx.diffeqsolve(dfx.ODETerm(field), dfx.Tsit5(), 0.0, 5.0, None, jnp.array([1.0, 0.0]),
                          stepsize_controller=dfx.PIDController(rtol=1e-6, atol=1e-6))
    jax.block_until_ready(sol.ys)
    return {{"peer": "diffrax diffeqsolve (first call)", "peer_s": time.perf_counter() - t0}}
"""

_ENSEMBLE = """
import jax, jax.numpy as jnp, numpy as np, diffrax as dfx
jax.config.update("jax_enable_x64", True)
from scimlx import ensemble
N = {n}

# The tour's Lotka-Volterra sweep, written as a user would (docs/ensemble.md).
def field(t, y, p):
    return jnp.stack([p[0] * y[0] - 0.1 * y[0] * y[1], 0.075 * y[0] * y[1] - p[1] * y[1]])

def problem(p):
    y0 = jnp.asarray([10.0, 10.0], dtype=p.dtype)
    return ensemble.DiffEqProblem(dfx.ODETerm(field), y0, args=p, t0=0.0, t1=20.0, dt0=0.01)

controller = dfx.PIDController(rtol=1e-6, atol=1e-8)
_MEMBER = ensemble.DiffEqMember(problem, dfx.Tsit5(), controller, max_steps=16384)

def _final(sol):
    return sol.ys[-1]

def _solve(p):
    y0 = jnp.asarray([10.0, 10.0], dtype=p.dtype)
    return dfx.diffeqsolve(dfx.ODETerm(field), dfx.Tsit5(), 0.0, 20.0, 0.01, y0, args=p,
                           stepsize_controller=controller, saveat=dfx.SaveAt(t1=True),
                           max_steps=16384, throw=False)

def params(seed):
    rng = np.random.default_rng(seed)
    return np.exp(rng.uniform(np.log(0.3), np.log(3.0), (N, 2)))

def run(seed):
    reducers = {{"mean": ensemble.Mean(of=_final)}}
    res = ensemble.run_ensemble(
        _MEMBER,
        params(seed),
        reducers=reducers,
        chunk_size=N,
        schedule=ensemble.RefillSchedule(lanes=128),
        progress=False,
    )
    return {{"ok": int(res.n_successful)}}

def first():
    return run(0)

def again():
    return run(1)

def peer():
    import time
    t0 = time.perf_counter()
    jax.block_until_ready(jax.jit(jax.vmap(lambda p: _solve(p).ys[-1]))(params(0)))
    return {{"peer": "jax.vmap(diffeqsolve) (first call)", "peer_s": time.perf_counter() - t0}}
"""

_RUNNER = r"""
import json, os, sys, time
t_start = time.perf_counter()
from jax import monitoring
spans = {"trace": 0.0, "compile": 0.0, "n_trace": 0, "n_compile": 0}
def on_duration(event, duration, **kw):
    if event in ("/jax/core/compile/jaxpr_trace_duration",
                 "/jax/core/compile/jaxpr_to_mlir_module_duration"):
        spans["trace"] += duration
        spans["n_trace"] += event.endswith("jaxpr_trace_duration")
    elif event == "/jax/core/compile/backend_compile_duration":
        spans["compile"] += duration
        spans["n_compile"] += 1
monitoring.register_event_duration_secs_listener(on_duration)
import scimlx
scimlx.enable_compilation_cache(sys.argv[1], min_compile_seconds=0.0)
SNIPPET
t_import = time.perf_counter() - t_start
out = {"import_s": t_import}
t0 = time.perf_counter()
out.update(first())
out["first_s"] = time.perf_counter() - t0
out["trace_s"], out["compile_s"] = spans["trace"], spans["compile"]
out["n_compiles"] = spans["n_compile"]
before = dict(spans)
t0 = time.perf_counter()
again_out = again()
out["second_s"] = time.perf_counter() - t0
out["retraces_second_call"] = spans["n_trace"] - before["n_trace"]
out["recompiles_second_call"] = spans["n_compile"] - before["n_compile"]
out["wall_s"] = time.perf_counter() - t_start
if sys.argv[2] == "peer" and "peer" in globals():
    try:
        from threadpoolctl import threadpool_limits
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        with threadpool_limits(limits=cores):
            out.update(peer())
    except ImportError as e:
        out["peer_note"] = f"not installed ({e.name})"
print("RESULT " + json.dumps(out))
"""


def _cases(quick: bool) -> list[tuple[str, str]]:
    lin = [(64, 64), (128, 128)] if quick else [(128, 128), (512, 512), (64, 64, 64)]
    out = [(f"linsolve MG-PCG {'x'.join(map(str, s))}", _LINSOLVE.format(shape=s)) for s in lin]
    out.append((f"darcy_solve {64 if quick else 128}^2", _DARCY.format(n=64 if quick else 128)))
    out.append(("nde NeuralODE forward", _NDE.format()))
    out.append(
        (f"ensemble {256 if quick else 2000} members", _ENSEMBLE.format(n=256 if quick else 2000))
    )
    return out


def run_case(name: str, snippet: str, cache: str, peer: bool) -> dict:
    script = _RUNNER.replace("SNIPPET", snippet)
    env = {**os.environ, "SCIMLX_PROGRESS": "0", "SCIMLX_COMPILATION_CACHE": "0"}
    argv = [sys.executable, "-c", script, cache, "peer" if peer else "no-peer"]
    t0 = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        return {"case": name, "note": "failed: " + proc.stderr.strip().splitlines()[-1][:200]}
    row = json.loads(lines[-1][len("RESULT ") :])
    row["process_s"] = wall
    row["case"] = name
    return row


def _darcy_batches(quick: bool) -> dict:
    """`darcy_dataset`'s first batch against its steady-state batches, one process: `n / bs`
    calls of one batch each (seeds 0, 1, ...), the first of which compiles."""
    n, res, bs = (64, 32, 16) if quick else (256, 128, 32)
    code = f"""
import time, jax
jax.config.update("jax_enable_x64", True)
from scimlx.neuralop import darcy_dataset
times = []
for seed in range({n // bs}):
    t0 = time.perf_counter()
    jax.block_until_ready(darcy_dataset({bs}, {res}, seed=seed, batch_size={bs}))
    times.append(time.perf_counter() - t0)
print("RESULT", times)
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT")]
    if not line:
        return {"case": "darcy_dataset batches", "note": "failed: " + proc.stderr[-200:]}
    times = json.loads(line[-1].split(" ", 1)[1])
    steady = sorted(times[1:])[len(times[1:]) // 2] if len(times) > 1 else float("nan")
    return {
        "case": f"darcy_dataset {n} x {res}^2, batch {bs}",
        "first_s": times[0],
        "second_s": steady,
        "first_over_steady": times[0] / steady,
        "batches": len(times),
    }


def _tour_cold(quick: bool) -> dict:
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "SCIMLX_PROGRESS": "0", "SCIMLX_COMPILATION_CACHE": cache}
        cmd = [sys.executable, "-m", "scimlx._cli", "tour"] + (["--quick"] if quick else [])
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        wall = time.perf_counter() - t0
    return {
        "case": "scimlx tour" + (" --quick" if quick else "") + " (cold cache)",
        "wall_s": wall,
        "note": "ok" if proc.returncode == 0 else f"exit {proc.returncode}",
    }


COLUMNS = [
    "case",
    "cache",
    "import_s",
    "trace_s",
    "compile_s",
    "first_s",
    "second_s",
    "wall_s",
    "retraces_second_call",
    "recompiles_second_call",
    "peer",
    "peer_s",
    "first_over_peer",
    "note",
]


def main(argv=None):
    args = parse_args(__doc__.splitlines()[0], argv)
    load_start = load_avg()
    rows = []
    for name, snippet in _cases(args.quick):
        with tempfile.TemporaryDirectory() as cache:
            for label in ("cold", "warm"):
                row = run_case(name, snippet, cache, peer=label == "cold")
                row["cache"] = label
                rows.append(row)
                print(
                    f"  {name} [{label}]: first {row.get('first_s', float('nan')):.1f} s",
                    flush=True,
                )
    # the peer figures come from the cold run; copy them to the warm row for the ratios
    for cold, warm in zip(rows[::2], rows[1::2]):
        for k in ("peer", "peer_s", "peer_its"):
            if k in cold:
                warm[k] = cold[k]
        for r in (cold, warm):
            if r.get("peer_s") and r.get("first_s"):
                # the user's wait: everything after `python` started, peer: setup + solve
                r["first_over_peer"] = (r["import_s"] + r["first_s"]) / r["peer_s"]
                r["steady_over_peer"] = r["second_s"] / r["peer_s"]
    rows.append(_darcy_batches(args.quick))
    rows.append(_tour_cold(args.quick))
    print_table(rows, COLUMNS, title="time to first answer (seconds)")

    def get(case_prefix, cache, key):
        for r in rows:
            if r["case"].startswith(case_prefix) and r.get("cache") == cache and key in r:
                return r[key]
        return None

    summary = {
        "linsolve_cold_over_pyamg_512": get("linsolve MG-PCG 512x512", "cold", "first_over_peer"),
        "linsolve_cold_over_pyamg_64cube": get(
            "linsolve MG-PCG 64x64x64", "cold", "first_over_peer"
        ),
        "linsolve_warm_over_pyamg_512": get("linsolve MG-PCG 512x512", "warm", "first_over_peer"),
        "linsolve_steady_over_pyamg_512": get(
            "linsolve MG-PCG 512x512", "cold", "steady_over_peer"
        ),
        "darcy_first_batch_over_steady": next(
            (r["first_over_steady"] for r in rows if "first_over_steady" in r), None
        ),
        "tour_cold_seconds": rows[-1].get("wall_s"),
    }
    print(json.dumps(summary, indent=2))
    write_results(
        "first_answer",
        "quick" if args.quick else "full",
        rows,
        summary,
        out=args.out,
        extra={"load_avg_start": load_start, "peer_threads": usable_cores()},
    )


if __name__ == "__main__":
    main()
