"""The learned solvers of the linsolve benchmark: their training and their rows.

Question: how many iterations (and network evaluations) does the deep conjugate-direction
method need on obstacle Poisson problems it never saw, at its training size and at twice it,
next to CG and IC(0)-PCG, and does a direction network built from multigrid parts (a learned
BPX preconditioner) keep the count flat as the grid grows?

Training (time reported as `train_seconds`): scenes `obstacle_scene(shape, seed=s,
split="train")`, s = 0..S-1; Ritz vectors from `ritz_pairs` (Lanczos, full
reorthogonalisation, m steps, start A g with g Gaussian on fluid); right-hand sides sampled
as in the paper (x9 on the lowest m/2 + m/20); Adam; the loss of the paper. Test problems are
the caller's (`split="test"` layouts). Rows: DCDM k = 0, 1, 2, 4 (paper CNN, float32 network,
float64 outer loop), the learned-BPX direction (k = 2), the learned V-cycle (k = 2; our
multigrid cycle with a learned shared smoothing stencil and coarse-correction weight, initialised
at the classical Jacobi cycle, whose untrained row is shown too), and the CNN wrongly used as a
preconditioner inside `lineax.CG`.

Every setting is an option of `python -m benchmarks.linsolve` (`add_options`: `--dcdm-*`,
applied by `configs`). Run alone: `python -m benchmarks.linsolve --dcdm only [--quick]` (the
rows with scipy CG, IC(0) and pyamg for reference and the DCDM summary keys; writes
`benchmarks/results/linsolve_dcdm.json`, or with `--dcdm-merge` merges them into
`linsolve.json`); `--dcdm train` trains (and with `--dcdm-models-out` saves) without test
problems.
"""

import argparse
import json
import os
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np
import optax

import scimlx
import scimlx.linsolve as ls

from .measure import compare
from .peers import krylov_methods, pyamg_methods
from .problems import its_to, TOL, TOL_R0


def time_compiled(fn, *args, repeats=1):
    """Compile `fn` (an `eqx.filter_jit` function) apart, then time `repeats` runs.

    Unlike the harness's version this does not run the (long) solve once to compile it.
    """
    t0 = time.perf_counter()
    compiled = fn.lower(*args).compile()
    compile_s = time.perf_counter() - t0
    times, out = [], None
    for _ in range(repeats):
        t1 = time.perf_counter()
        out = jax.block_until_ready(compiled(*args))
        times.append(time.perf_counter() - t1)
    return {"compile_s": compile_s, "median_s": float(np.median(times)), "output": out}


def _config(quick: bool) -> dict:
    """Training/solve budgets. Sized for a 2-core CPU: the paper trains ~10^6 steps on a GPU.

    `grids` lists the test grids that get rows at all (quick mode is a smoke run: every row
    on the smallest grid of each dimension, tiny training budgets); `cnn_grids` the test
    grids that get the k = 0, 1, 4 CNN rows and the lx.CG row (k = 2 and the
    multigrid-built networks run on every grid of `grids`); `max_steps_big` caps the CNN
    rows on the largest grids, where one network evaluation costs seconds on this CPU.
    `mask_input` feeds the fluid mask to the CNN as a second channel (beyond the paper).
    """
    if quick:
        return {
            2: {
                "train_n": 32,
                "scenes": 2,
                "ritz": 100,
                "steps": 30,
                "mg_steps": 20,
                "vc_steps": 5,
                "max_steps": 60,
                "max_steps_big": 60,
                "grids": ("128^2",),
                "cnn_grids": ("128^2",),
                "mask_input": True,
            },
            3: {
                "train_n": 16,
                "scenes": 1,
                "ritz": 60,
                "steps": 10,
                "mg_steps": 10,
                "vc_steps": 3,
                "max_steps": 40,
                "max_steps_big": 40,
                "grids": ("32^3",),
                "cnn_grids": (),  # quick: k = 0, 1, 4 and lx.CG rows run in 2-D only
                "mask_input": True,
            },
        }
    return {
        2: {
            "train_n": 128,
            "scenes": 4,
            "ritz": 400,
            "steps": 400,
            "mg_steps": 200,
            "vc_steps": 20,
            "max_steps": 400,
            "max_steps_big": 200,
            "grids": ("128^2", "256^2", "512^2"),
            "cnn_grids": ("128^2", "256^2"),
            "mask_input": True,
        },
        3: {
            "train_n": 32,
            "scenes": 2,
            "ritz": 200,
            "steps": 20,
            "mg_steps": 40,
            "vc_steps": 80,
            "max_steps": 100,
            "max_steps_big": 30,
            "grids": ("32^3", "64^3"),
            "cnn_grids": ("32^3",),
            "mask_input": True,
        },
    }


def _make_operator(shape):
    def make(mask):
        return ls.poisson(shape, solid=mask < 0.5)

    return make


PARTS = ("cnn", "bpx", "vc")


def _training_data(shape, scenes, ritz, seed):
    """Fluid masks and Ritz vectors (float32) of the training scenes on `shape`."""
    masks, vecs = [], []
    for s in range(scenes):
        solid = ls.obstacle_scene(shape, seed=s, split="train")
        m = jnp.asarray(~solid).astype(jnp.float64)
        _, V = ls.ritz_pairs(
            ls.poisson(shape, solid=jnp.asarray(solid)),
            steps=ritz,
            key=jax.random.key(seed + s),
            mask=m,
        )
        masks.append(m)
        vecs.append(V.astype(jnp.float32))
    return jnp.stack(masks), jnp.stack(vecs)


def _stages(cfg) -> list[tuple[bool, int, int, int, float, float | None]]:
    """The CNN's training stages `(base, n, steps, ritz, lr, seconds)`: the mode's base grid
    (unless `steps` is 0), then each `--dcdm-cnn-finetune` stage "n:steps:ritz:lr[:seconds]"."""
    stages = []
    if cfg["steps"] > 0:
        secs = cfg.get("cnn_seconds")
        lr = cfg.get("cnn_lr", 1e-3)
        stages.append((True, cfg["train_n"], cfg["steps"], cfg["ritz"], lr, secs))
    spec = cfg.get("cnn_finetune")
    for stage in spec.split(",") if spec else ():
        n, steps, ritz, lr, *secs = stage.split(":")
        secs = float(secs[0]) if secs else None
        stages.append((False, int(n), int(steps), int(ritz), float(lr), secs))
    return stages


def _loss_ends(fit, n=20):
    """Mean training loss over the first and the last `n` steps."""
    return float(np.mean(fit.losses[:n])), float(np.mean(fit.losses[-n:]))


def _model_path(folder, dim):
    return os.path.join(folder, f"dcdm_cnn_{dim}d.eqx") if folder else None


def _train_cnn(dim, cfg, seed, progress, base_data):
    """The paper CNN through its stages (a curriculum over grids when several).

    Starts fresh, or from `{models_in}/dcdm_cnn_{dim}d.eqx` (whose training record is
    carried on); saves after every stage to `{models_out}/dcdm_cnn_{dim}d.eqx`, so a run
    killed mid-way keeps its finished stages. Returns the model and its training record."""
    path_in = _model_path(cfg.get("models_in"), dim)
    path_out = _model_path(cfg.get("models_out"), dim)
    record = {"grids": [], "seconds": 0.0, "notes": []}
    loaded = 0  # stages the model had before this run
    if path_in and os.path.exists(path_in):
        net = scimlx.load(path_in)
        meta = scimlx.read_header(path_in).get("metadata", {})
        grid = meta.get("train_grid")
        record = {
            "grids": grid.split(" + ") if grid else [],
            "seconds": float(meta.get("train_s", 0.0)),
            "notes": [f"CNN loaded from {os.path.basename(path_in)}: {meta.get('note', '')}"],
        }
        loaded = max(1, len(record["grids"]))
    else:
        # cnn_pairs "pre,mid,post": residual pairs per stage ("2,5,3": the paper's N=128
        # model; default "1,3,2", its N=64 model)
        pre, mid, post = map(int, cfg.get("cnn_pairs", "1,3,2").split(","))
        # cnn_levels: pooling levels (1: the paper; "none": as many as the grid allows)
        levels = cfg.get("cnn_levels", "1")
        net = ls.DCDMNet(
            dim,
            pre_pairs=pre,
            mid_pairs=mid,
            post_pairs=post,
            levels=None if levels == "none" else int(levels),
            mask_input=cfg.get("mask_input", False),
            key=jax.random.key(seed),
        )
    device = jax.devices()[0].device_kind
    batch = cfg.get("batch", 10)
    for first, n, steps, ritz, lr, secs in _stages(cfg):
        shape = (n,) * dim
        t0 = time.perf_counter()
        masks, vecs = base_data() if first else _training_data(shape, cfg["scenes"], ritz, seed)
        ckpt = cfg.get("cnn_checkpoint") if first else None
        stage_key = jax.random.key(seed + (1 if first else 7))
        if loaded:
            # a continued model draws new samples, not its earlier stages' again
            stage_key = jax.random.fold_in(stage_key, loaded)
        if ckpt and os.path.exists(ckpt):
            # a resumed run: this process's training time covers only the remaining steps
            record["notes"].append(f"CNN resumed from a checkpoint ({ckpt})")
        fit = ls.train_dcdm(
            net,
            _make_operator(shape),
            masks,
            vecs,
            steps=steps,
            optimiser=optax.adam(lr),
            key=stage_key,
            batch_size=batch,
            progress=progress,
            checkpoint=ckpt,
            checkpoint_every=100,
            max_seconds=secs,
        )
        net, sec = fit.model, time.perf_counter() - t0
        a, b = _loss_ends(fit)
        grid = "x".join([str(n)] * dim)
        record["grids"].append(grid)
        record["seconds"] += sec
        note = f"CNN {fit.step} steps at {grid} (Ritz m={ritz} x {cfg['scenes']} scenes, lr {lr:g}"
        note += f", batch {batch}) {sec:.0f} s incl. Ritz on {device}, loss {a:.3f}->{b:.3f}"
        record["notes"].append(note)
        if progress:
            print(note, flush=True)
        if path_out:
            meta = {
                "train_grid": " + ".join(record["grids"]),
                "train_s": round(record["seconds"], 1),
                "note": "; ".join(record["notes"]),
                "device": device,
            }
            scimlx.save(path_out, net, metadata=meta)
    return net, record


def train_models(
    dim: int, cfg: dict, *, seed: int = 0, progress: bool = False, parts=PARTS
) -> dict:
    """Train the networks named in `parts` ("cnn": the paper CNN, "bpx": the learned-BPX
    network, "vc": the learned V-cycle) on `dim`-D training scenes."""
    shape = (cfg["train_n"],) * dim
    data = {}

    def base_data():
        # the base grid's Ritz vectors, computed once, only when a part trains on them
        if not data:
            t0 = time.perf_counter()
            data["v"] = _training_data(shape, cfg["scenes"], cfg["ritz"], seed)
            data["s"] = time.perf_counter() - t0
        return data["v"]

    make = _make_operator(shape)

    def train(net, steps, key_offset, learning_rate):
        masks, vecs = base_data()
        t = time.perf_counter()
        out = ls.train_dcdm(
            net,
            make,
            masks,
            vecs,
            steps=steps,
            optimiser=optax.adam(learning_rate),
            key=jax.random.key(seed + key_offset),
            progress=progress,
        )
        return out, time.perf_counter() - t

    info = {"train_grid": "x".join(map(str, shape)), "train_s": 0.0}
    notes = []
    if "cnn" in parts:
        info["cnn"], record = _train_cnn(dim, cfg, seed, progress, base_data)
        info["train_grid"] = " + ".join(record["grids"])
        info["train_s"] += record["seconds"]
        notes += record["notes"]
    # part -> (label, untrained network, steps key, key offset, learning rate, loss window)
    builders = {
        "bpx": (
            "BPX",
            lambda: ls.LearnedMGNet(dim, key=jax.random.key(seed + 2)),
            "mg_steps",
            3,
            1e-3,
            20,
        ),
        "vc": (
            "V-cycle",
            lambda: ls.LearnedVCycleNet(dim),
            "vc_steps",
            5,
            3e-3,
            5,
        ),
    }
    for part, name in (("bpx", "mg"), ("vc", "vc")):
        if part not in parts:
            continue
        label, build, steps_key, offset, lr, window = builders[part]
        net = build()
        fit, sec = train(net, cfg[steps_key], offset, lr)
        info[name] = fit.model
        if name == "vc":
            info["vc0"] = net
        a, b = _loss_ends(fit, window)
        notes.append(f"{label} {cfg[steps_key]} steps {sec:.0f} s loss {a:.3f}->{b:.3f}")
        info["train_s"] += sec
    if data and not ("cnn" in parts and cfg["steps"] > 0):
        # the Ritz vectors were computed for the multigrid parts alone (a CNN base stage
        # counts them in its own seconds)
        grid = "x".join(map(str, shape))
        notes.insert(
            0, f"Ritz m={cfg['ritz']} x {cfg['scenes']} scenes at {grid} {data['s']:.0f} s"
        )
        info["train_s"] += data["s"]
    info["note"] = "; ".join(notes)
    return info


def _cd_row(method, p, model, *, k, max_steps, note):
    op, b = p["operator"], p["b"]
    mask = jnp.asarray(~np.asarray(p["solid"])).astype(b.dtype)

    @eqx.filter_jit
    def solve(op, b, model, mask):
        return ls.dcdm_solve(
            op, b, model, mask=mask, k=k, rtol=TOL, max_steps=max_steps, throw=False
        )

    t = time_compiled(solve, op, b, model, mask, repeats=1)
    sol = t["output"]
    ok = bool(scimlx.is_successful(sol.result))
    fb = int(sol.stats["num_fallbacks"])
    return {
        "method": method,
        "its": int(sol.stats["num_steps"]) if ok else None,
        "its_1e-4_r0": its_to(sol.stats["residual_history"], TOL_R0),
        "A_products": int(sol.stats["num_mv"]),
        "net_evals": int(sol.stats["num_direction_evals"]),
        "setup_s": 0.0,
        "solve_s": t["median_s"],
        "total_s": t["median_s"],
        "compile_s": t["compile_s"],
        "true_rel_res": float(sol.stats["true_residual_norm"] / sol.stats["b_norm"]),
        "note": (
            note
            + ("" if ok else f"; not converged in {max_steps}")
            + (f"; {fb} residual fallbacks" if fb else "")
        ).strip("; "),
    }


def _cg_with_net_row(p, model, *, max_steps):
    """The network used (wrongly) as a fixed preconditioner inside lineax CG."""
    op, b = p["operator"], p["b"]
    mask = jnp.asarray(~np.asarray(p["solid"])).astype(b.dtype)
    bn = float(jnp.linalg.norm(b))
    solver = lx.CG(rtol=0.0, atol=TOL * bn, norm=lx.internal.two_norm, max_steps=max_steps)

    @eqx.filter_jit
    def solve(op, b, model, mask):
        direction = ls.DCDMDirection(model, mask)
        pre = lx.FunctionLinearOperator(
            direction, op.in_structure(), tags=(lx.symmetric_tag, lx.positive_semidefinite_tag)
        )
        sol = lx.linear_solve(op, b, solver, options={"preconditioner": pre}, throw=False)
        r = b - op.mv(sol.value)
        # lineax CG stops before its first step, reporting success, if b.Mb <= 0
        return sol, jnp.linalg.norm(r) / jnp.linalg.norm(b), jnp.vdot(b, pre.mv(b))

    t = time_compiled(solve, op, b, model, mask, repeats=1)
    sol, rel, bmb = t["output"]
    ok = bool(sol.result == lx.RESULTS.successful) and float(rel) <= TOL * 1.01
    its = int(sol.stats["num_steps"])
    return {
        "method": "CNN as lx.CG preconditioner",
        "its": its if ok else None,
        "A_products": its + 1,
        "net_evals": its + 1,
        "setup_s": 0.0,
        "solve_s": t["median_s"],
        "total_s": t["median_s"],
        "compile_s": t["compile_s"],
        "true_rel_res": float(rel),
        "note": "" if ok else _cg_failure(sol, its, float(bmb)),
    }


def _cg_failure(sol, its, bmb):
    if its == 0 and sol.result == lx.RESULTS.successful:
        return f"lineax reported success at step 0 with x = 0: b.Mb = {bmb:.2g} <= 0 (not SPD)"
    return f"failed after {its} its ({lx.RESULTS[sol.result]!s:.40})"


def add_options(parser: argparse.ArgumentParser) -> None:
    """The learned solvers' options (`--dcdm-*`), for `benchmarks._harness.parse_args`."""
    g = parser.add_argument_group(
        "learned solvers", "training and rows of the DCDM networks (defaults: the mode's)"
    )
    g.add_argument("--dcdm-dims", default=None, help="with --dcdm only/train: '2,3' (default)")
    g.add_argument(
        "--dcdm-parts",
        default=None,
        help="with --dcdm only/train: networks to train, from 'cnn,bpx,vc' (default all)",
    )
    g.add_argument(
        "--dcdm-grids",
        default=None,
        help="test grids named explicitly get every row, e.g. '64^2' (the growth from a 32^2 "
        "training grid); with --dcdm only they are the test grids (default: the mode's)",
    )
    g.add_argument(
        "--dcdm-rhs",
        default=None,
        help="with --dcdm only: right-hand sides, 'random' (default), 'divergence' or both",
    )
    g.add_argument(
        "--dcdm-rows",
        default=None,
        help="the CNN rows to run, from '0,1,2,4,cg' (k values and the lx.CG misuse); default "
        "all, k=2 alone on the grids beyond the mode's CNN grids; 'none': peers only",
    )
    g.add_argument(
        "--dcdm-no-peers",
        action="store_true",
        help="with --dcdm only: skip the scipy CG, IC(0) and pyamg reference rows",
    )
    g.add_argument(
        "--dcdm-merge",
        action="store_true",
        help="with --dcdm only, full mode: merge the rows into benchmarks/results/linsolve.json "
        "(with provenance) instead of writing linsolve_dcdm.json",
    )
    for name, what in (
        ("cnn-steps", "training steps of the paper CNN's base stage (0: none)"),
        ("vc-steps", "training steps of the learned V-cycle"),
        ("train-n", "training grid side"),
        ("ritz", "Ritz vectors per training scene"),
        ("scenes", "training scenes"),
    ):
        g.add_argument(f"--dcdm-{name}", type=int, default=None, help=what)
    g.add_argument(
        "--dcdm-cnn-finetune",
        default=None,
        help="'n:steps:ritz:lr[:seconds],...': the CNN trained at finer n^d grids in turn (a "
        "curriculum); the optional fifth field is a wall-clock budget for the stage",
    )
    g.add_argument(
        "--dcdm-cnn-seconds",
        type=float,
        default=None,
        help="wall-clock budget of the CNN's base stage",
    )
    g.add_argument(
        "--dcdm-batch", type=int, default=None, help="the CNN's batch (default 10, the paper's)"
    )
    g.add_argument(
        "--dcdm-cnn-pairs",
        default=None,
        help="residual pairs 'pre,mid,post' ('2,5,3': the paper's N=128 CNN; default '1,3,2', "
        "its N=64 one)",
    )
    g.add_argument(
        "--dcdm-cnn-levels",
        default=None,
        help="pooling levels (default 1, the paper's; 'none': as many as the grid allows)",
    )
    g.add_argument(
        "--dcdm-cnn-checkpoint",
        default=None,
        help="a file where the CNN's base stage checkpoints every 100 steps and resumes from",
    )
    g.add_argument(
        "--dcdm-models-out",
        default=None,
        help="a folder: save the CNN after every stage as dcdm_cnn_{dim}d.eqx with its "
        "training record",
    )
    g.add_argument(
        "--dcdm-models-in",
        default=None,
        help="a folder: start from its dcdm_cnn_{dim}d.eqx (e.g. trained on a GPU; with "
        "--dcdm-cnn-steps 0 and no fine-tuning it is only evaluated)",
    )


# options -> configuration keys (integers: the mode's budgets; the rest: the CNN's training)
_OVERRIDES = {
    "dcdm_vc_steps": "vc_steps",
    "dcdm_cnn_steps": "steps",
    "dcdm_train_n": "train_n",
    "dcdm_ritz": "ritz",
    "dcdm_scenes": "scenes",
    "dcdm_cnn_seconds": "cnn_seconds",
    "dcdm_cnn_finetune": "cnn_finetune",
    "dcdm_batch": "batch",
    "dcdm_cnn_pairs": "cnn_pairs",
    "dcdm_cnn_levels": "cnn_levels",
    "dcdm_cnn_checkpoint": "cnn_checkpoint",
    "dcdm_models_in": "models_in",
    "dcdm_models_out": "models_out",
    "dcdm_rows": "rows",
}


def configs(quick: bool, options: argparse.Namespace | None = None) -> dict:
    """The mode's configurations per dimension, with the overrides of `options` (the parsed
    `--dcdm-*` options of `add_options`; `None`: none)."""
    cfgs = _config(quick)
    given = {k: v for k, v in vars(options or argparse.Namespace()).items() if v is not None}
    for option, key in _OVERRIDES.items():
        if option in given:
            for c in cfgs.values():
                c[key] = given[option]
    if given.get("dcdm_grids"):
        named = tuple(given["dcdm_grids"].split(","))
        for c in cfgs.values():
            c["grids"] = tuple(dict.fromkeys(c["grids"] + named))
            c["cnn_grids"] = tuple(dict.fromkeys(c["cnn_grids"] + named))
    return cfgs


def dcdm_rows(problems, cfgs: dict, progress: bool = False, parts=PARTS):
    """Rows for every problem in `problems` (dicts from `problems.make_problem`).

    Trains the networks named in `parts` (see `train_models`) once per dimension present
    (sizes from `cfgs`, see `configs`), then solves each problem. The first row carries the
    training record (`train_seconds` etc.).
    """
    # which CNN rows to run, from "0,1,2,4,cg" (the k values and the lx.CG misuse)
    wanted = next(iter(cfgs.values())).get("rows")
    wanted = None if not wanted else set(wanted.split(","))
    rows = []
    dims = sorted({len(p["shape"]) for p in problems})
    total_train = 0.0
    models = {}
    for dim in dims:
        cfg = cfgs[dim]
        info = train_models(dim, cfg, progress=progress, parts=parts)
        models[dim] = info
        total_train += info["train_s"]
        rows.append(
            {
                "method": f"DCDM training {dim}-D"
                + ("" if tuple(parts) == PARTS else " (" + ", ".join(parts) + ")"),
                "grid": info["train_grid"],
                "setup_s": round(info["train_s"], 1),
                "note": info["note"],
            }
        )
        if progress:
            print(rows[-1], flush=True)
    for p in problems:
        dim = len(p["shape"])
        info, cfg = models[dim], cfgs[dim]
        if p["grid"] not in cfg["grids"]:
            continue
        base = {
            "grid": p["grid"],
            "rhs": p.get("rhs", "random"),
            "unknowns": p["fluid"],
            "seed": p["seed"],
        }
        trained_at = f"trained {info['train_grid']}"
        big = p["grid"] not in cfg["cnn_grids"]
        cap = cfg["max_steps_big"] if big else cfg["max_steps"]
        n0 = len(rows)
        if "cnn" in parts:
            for k in (0, 1, 2, 4):
                if wanted is not None and str(k) not in wanted:
                    continue
                if big and k != 2 and wanted is None:
                    note = "not run: CPU budget (k=2 only here)"
                    rows.append({**base, "method": f"DCDM k={k}", "note": note})
                    continue
                r = _cd_row(f"DCDM k={k}", p, info["cnn"], k=k, max_steps=cap, note=trained_at)
                rows.append({**base, **r})
            if wanted is not None and "cg" not in wanted:
                pass
            elif big and wanted is None:
                note = "not run: CPU budget"
                rows.append({**base, "method": "CNN as lx.CG preconditioner", "note": note})
            else:
                rows.append({**base, **_cg_with_net_row(p, info["cnn"], max_steps=cap)})
        if "bpx" in parts:
            r = _cd_row(
                "learned-BPX k=2", p, info["mg"], k=2, max_steps=cfg["max_steps"], note=trained_at
            )
            rows.append({**base, **r})
        if "vc" in parts:
            r = _cd_row(
                "learned V-cycle k=2",
                p,
                info["vc"],
                k=2,
                max_steps=cfg["max_steps"],
                note=trained_at + f", {cfg['vc_steps']} steps",
            )
            rows.append({**base, **r})
            r = _cd_row(
                "V-cycle net untrained k=2",
                p,
                info["vc0"],
                k=2,
                max_steps=cfg["max_steps"],
                note="the learned V-cycle's initialisation (classical Jacobi V(1,1), float32)",
            )
            rows.append({**base, **r})
        if progress:
            for r in rows[n0:]:
                keys = ("method", "grid", "its", "net_evals", "solve_s", "true_rel_res", "note")
                print({k: r.get(k) for k in keys}, flush=True)
    rows[0]["train_seconds"] = round(total_train, 1)
    return rows


def dcdm_summary(rows) -> dict:
    """The DCDM summary keys from all rows (DCDM rows plus the caller's CG rows)."""

    def get(method, grid, key="its"):
        for r in rows:
            if (
                r.get("method") == method
                and r.get("grid") == grid
                and r.get("rhs", "random") == "random"
            ):
                return r.get(key)
        return None

    def ratio(a, b):
        return None if (a is None or not b) else a / b

    d256, d128 = get("DCDM k=2", "256^2"), get("DCDM k=2", "128^2")
    d64c, d32c = get("DCDM k=2", "64^3"), get("DCDM k=2", "32^3")

    def train_s(part):
        # the training records of the rows' networks (one per dimension; "(cnn, ...)" or all)
        found = [
            r["setup_s"]
            for r in rows
            if str(r.get("method")).startswith("DCDM training")
            and ("(" not in r["method"] or part in r["method"])
        ]
        return round(sum(found), 1) if found else None

    return {
        "dcdm_its_256": d256,
        "dcdm_its_64cube": d64c,
        "dcdm_vs_cg_its_ratio_256": ratio(d256, get("scipy CG", "256^2")),
        "dcdm_vs_cg_its_ratio_64cube": ratio(d64c, get("scipy CG", "64^3")),
        "ic0_over_dcdm_its_256": ratio(get("IC(0)-PCG", "256^2"), d256),
        "ic0_over_dcdm_its_64cube": ratio(get("IC(0)-PCG", "64^3"), d64c),
        "dcdm_growth_128_to_256": ratio(d256, d128),
        "dcdm_growth_32cube_to_64cube": ratio(d64c, d32c),
        "learned_mg_its_256": get("learned V-cycle k=2", "256^2"),
        "learned_mg_its_64cube": get("learned V-cycle k=2", "64^3"),
        "learned_vcycle_untrained_its_256": get("V-cycle net untrained k=2", "256^2"),
        "learned_bpx_its_256": get("learned-BPX k=2", "256^2"),
        "dcdm_its_128": d128,
        "dcdm_its_32cube": d32c,
        "train_seconds": train_s("cnn"),
        "learned_vcycle_train_seconds": train_s("vc"),
    }


def pair_growth(rows):
    pairs = {"256^2": "128^2", "128^2": "64^2", "512^2": "256^2", "32^3": "16^3", "64^3": "32^3"}
    for r in rows:
        lo = pairs.get(r.get("grid"))
        if lo and r.get("its"):
            prev = next(
                (
                    q.get("its")
                    for q in rows
                    if q.get("method") == r["method"]
                    and q.get("grid") == lo
                    and q.get("rhs", "random") == r.get("rhs", "random")
                ),
                None,
            )
            if prev:
                r["growth"] = round(r["its"] / prev, 3)


def merge_into(path, new_rows, provenance):
    """Merge `new_rows` into the results file `path` (rows with the same method, grid and
    right-hand side are replaced, the "DCDM (all rows)" placeholder dropped), recompute the
    growth column and the DCDM summary keys, and append `provenance` to its record."""
    with open(path) as f:
        payload = json.load(f)

    def key(r):
        if str(r.get("method")).startswith("DCDM training"):
            return (r.get("method"),)  # one training record per dimension and parts
        return (r.get("method"), r.get("grid"), r.get("rhs", "random"))

    new_keys = {key(r) for r in new_rows}
    rows = [
        r
        for r in payload["rows"]
        if key(r) not in new_keys and r.get("method") != "DCDM (all rows)"
    ]
    rows += new_rows
    pair_growth(rows)
    summary = dict(payload.get("summary", {}))
    for k, v in dcdm_summary(rows).items():
        if v is not None or k not in summary:
            summary[k] = v
    payload["rows"], payload["summary"] = rows, summary
    payload.setdefault("provenance", []).append(provenance)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(payload, f, indent=2)
    os.replace(tmp, path)
    print("merged", len(new_rows), "rows into", path)


def rows_or_note(problems, cfgs: dict) -> list[dict]:
    """`dcdm_rows`, or one row saying why they were not run: a failure of the learned solvers
    must not hide the rest of the benchmark's rows."""
    try:
        return list(dcdm_rows(problems, cfgs))
    except Exception as e:
        return [{"method": "DCDM (all rows)", "note": f"not run: {type(e).__name__}: {e}"[:200]}]


def dims_and_parts(options) -> tuple[list[int], tuple[str, ...]]:
    """The dimensions (`--dcdm-dims`, default 2 and 3) and networks (`--dcdm-parts`, default
    all of `PARTS`) of a run of the learned solvers alone."""
    dims = sorted({int(d) for d in (options.dcdm_dims or "2,3").split(",")})
    parts = tuple(p for p in PARTS if p in (options.dcdm_parts or ",".join(PARTS)))
    return dims, parts


def alone_shapes(quick: bool, options) -> list[tuple[int, ...]]:
    """The test grids of a run of the learned solvers alone: the mode's, or `--dcdm-grids`
    (within the mode's or not), in the dimensions of `--dcdm-dims`."""
    dims, _ = dims_and_parts(options)
    shapes = [(64, 64), (128, 128), (256, 256), (16, 16, 16), (32, 32, 32)]
    if not quick:
        shapes = [(128, 128), (256, 256), (512, 512), (32, 32, 32), (64, 64, 64)]
    if options.dcdm_grids:
        shapes = [
            (int(g.split("^")[0]),) * int(g.split("^")[1]) for g in options.dcdm_grids.split(",")
        ]
    return [s for s in shapes if len(s) in dims]


def reference_rows(p, rounds: int = 1) -> list[dict]:
    """scipy CG, IC(0)-PCG and pyamg RS/SA-PCG on the problem `p`, timed in turns (no ratio
    between them: none of them is ours)."""
    A = ls.to_scipy_sparse(p["operator"]).tocsr()
    kry = krylov_methods(p, A, p["b"], TOL)
    methods = {name: kry[name] for name in ("scipy CG", "IC(0)-PCG")}
    methods.update(pyamg_methods(A, p["b"], TOL))
    base = {"grid": p["grid"], "rhs": p["rhs"], "unknowns": p["fluid"], "seed": p["seed"]}
    rows = []
    for r in compare(methods, rounds, warm=False):
        for key in ("ours_over_peer", "ours_over_peer_min", "ours_over_peer_max"):
            r.pop(key, None)
        rows.append({**base, **r})
    return rows
