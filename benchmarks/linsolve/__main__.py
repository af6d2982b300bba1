"""`python -m benchmarks.linsolve [--quick] [options]`: parse the options, run the tables (or
only the learned solvers), write `benchmarks/results/linsolve.json` (see the package's
docstring; `--help` lists the options)."""

import argparse
import json
import os
import shlex
import sys
import time

from benchmarks import linsolve
from benchmarks._harness import (
    load_avg,
    machine,
    machine_is_busy,
    parse_args,
    pinned_threads,
    RESULTS_DIR,
    run_on_cores,
    usable_cores,
    write_results,
)
from benchmarks.report import linsolve as report

from . import dcdm
from .petsc_peer import PetscPeer
from .problems import (
    config,
    family_sizes,
    FAMILY_TOL,
    grid_name,
    make_problem,
    parse_grids,
    SEED,
    TOL,
)
from .summary import (
    DCDM_PREFIXES,
    family_summary,
    growth,
    kept_dcdm_rows,
    reproducibility,
    summary,
)
from .tables import family_rows, obstacle_rows, setup_breakdown


COMMITTED = os.path.join(RESULTS_DIR, "linsolve.json")


def add_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--cores",
        type=int,
        default=1,
        help="run every solver (ours, the host peers, the PETSc subprocess) on the machine's "
        "first N cores, thread pools sized to N (default 1: every solver gets the same single "
        "core, and same-run ratios move much less between runs on a shared machine than with "
        "two cores); 0: every core",
    )
    parser.add_argument(
        "--dcdm",
        choices=("run", "keep", "skip", "only", "train"),
        default=None,
        help="the learned solvers' rows: train and run them (default in --quick), keep those of "
        "the committed full results (default in full mode: the learned solvers are not "
        "retrained), or skip them; 'only': no tables, the learned solvers alone with reference "
        "rows (writes linsolve_dcdm.json, or merges with --dcdm-merge); 'train': train (and "
        "save, with --dcdm-models-out) without test problems",
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
    dcdm.add_options(parser)


def given(args) -> dict:
    """The options given on the command line (those that are not `None` or `False`)."""
    return {k: v for k, v in vars(args).items() if v not in (None, False)}


def main(argv=None):
    args = parse_args(linsolve.__doc__.splitlines()[0], argv, add=add_options)
    if argv is None:  # run from the command line: restart on the chosen cores
        run_on_cores(args.cores, "benchmarks.linsolve")
    if args.recheck:
        return recheck(args)
    quick = bool(args.quick)
    mode = "quick" if quick else "full"
    learned = args.dcdm or ("run" if quick else "keep")
    if args.finalise:
        return finalise(args, mode, "skip" if learned in ("run", "only", "train") else learned)
    if learned in ("only", "train"):
        return learned_alone(args, mode, argv)
    cfg = config(quick)
    if args.grids:
        cfg["shapes"] = parse_grids(args.grids)
    if args.family_sizes:
        cfg = family_sizes(cfg, args.family_sizes)
    t_start = time.perf_counter()
    print(f"machine: {machine()}")
    print(f"problems: seed {SEED}; mode {mode}; DCDM rows: {learned}", flush=True)
    rows, problems = [], []
    extra = {"options": given(args)}

    def partial(more=()):
        # a run stopped part-way leaves what it measured, marked as such
        write_results(
            "linsolve", mode, rows + list(more), {"partial": True},
            out=(args.out or COMMITTED) + ".partial", extra=extra,
        )  # fmt: skip

    with pinned_threads() as threads:
        if not args.no_obstacles:
            extra["mg_setup_breakdown"] = setup_breakdown(cfg["breakdown_shape"], SEED, 3)
        peer = PetscPeer(threads)
        try:
            if not args.no_obstacles:
                rows += obstacle_rows(cfg, peer, SEED, on_problem=partial)
                problems = [make_problem(s, SEED) for s in cfg["shapes"]]
            if not args.no_families:
                family_rows(cfg, peer, SEED, on_size=partial, into=rows)
        finally:
            peer.close()
    finish(rows, extra, args, mode=mode, learned=learned, problems=problems, threads=threads,
           petsc=peer.version or peer.why, t_start=t_start)  # fmt: skip


def recheck(args):
    """`--recheck`: the reproducibility of a results file against `--compare`'s, recorded in it."""
    if not args.compare:
        raise SystemExit("--recheck needs --compare")
    with open(args.recheck) as f:
        payload = json.load(f)
    payload["reproducibility"] = reproducibility(payload["rows"], args.compare)
    report.print_reproducibility(payload["reproducibility"])
    with open(args.recheck + ".tmp", "w") as f:
        json.dump(payload, f, indent=2)
    os.replace(args.recheck + ".tmp", args.recheck)


def finalise(args, mode, learned):
    """`--finalise`: the rows of results files (e.g. a run stopped part-way, its `.partial`
    file), summarised as they are."""
    rows, extra = [], {"sources": []}
    for path in args.finalise:
        with open(path) as f:
            payload = json.load(f)
        rows += [r for r in payload["rows"] if not str(r.get("method")).startswith(DCDM_PREFIXES)]
        for k in ("mg_setup_breakdown",):
            if k in payload and k not in extra:
                extra[k] = payload[k]
        extra["sources"].append({"file": path, "date": payload.get("date"),
                                 "partial": bool(payload.get("summary", {}).get("partial")),
                                 "options": payload.get("options"),
                                 "machine": payload.get("machine")})  # fmt: skip
    petsc = next((r["note"].split(",")[0] for r in rows
                  if str(r.get("method")).startswith("PETSc") and r.get("its")), None)  # fmt: skip
    finish(rows, extra, args, mode=mode, learned=learned, problems=[],
           threads=usable_cores(), petsc=petsc, t_start=None)  # fmt: skip


def finish(rows, extra, args, *, mode, learned, problems, threads, petsc, t_start):
    """Summary, the learned solvers' rows, reproducibility, tables and the results file."""
    kept, kept_from = kept_dcdm_rows(COMMITTED) if learned == "keep" else ([], None)
    growth(rows)
    s = summary(rows)
    if any(r.get("table") == "families" for r in rows):
        s.update(family_summary(rows))
    s["peer_threads"] = threads
    s["petsc"] = petsc
    if learned == "run" and problems:
        rows += dcdm.rows_or_note(problems, dcdm.configs(mode == "quick", args))
    elif learned == "keep":
        rows += kept
        extra["dcdm_rows_from"] = kept_from
    if learned != "skip":
        s.update(dcdm.dcdm_summary([r for r in rows if r.get("table", "obstacles") == "obstacles"]))
    s["load_avg_end"] = load_avg()
    s["busy_rows"] = sum(
        1 for r in rows if any(machine_is_busy(x) for x in r.get("load_avg", []) if x)
    )
    s["wall_s"] = None if t_start is None else round(time.perf_counter() - t_start, 1)
    if args.compare:
        extra["reproducibility"] = reproducibility(rows, args.compare)
    report.print_run(rows, s, extra, mode=mode, tol=TOL, family_tol=FAMILY_TOL)
    write_results("linsolve", mode, rows, s, out=args.out, extra=extra)


def learned_alone(args, mode, argv):
    """`--dcdm train`: train the learned solvers (and save them with `--dcdm-models-out`).
    `--dcdm only`: their rows on the test grids, with reference rows (unless
    `--dcdm-no-peers`), written to `linsolve_dcdm.json` or merged into `linsolve.json`."""
    quick = mode == "quick"
    dims, parts = dcdm.dims_and_parts(args)
    shapes = dcdm.alone_shapes(quick, args)
    cfgs = dcdm.configs(quick, args)
    print(f"machine: {machine()}; parts {parts}; grids {[grid_name(s) for s in shapes]}")
    if args.dcdm == "train":
        for dim in dims:
            info = dcdm.train_models(dim, cfgs[dim], progress=True, parts=parts)
            print(f"{dim}-D trained ({info['train_s']:.0f} s): {info['note']}", flush=True)
        return
    kinds = (args.dcdm_rhs or "random").split(",")
    problems = [make_problem(s, SEED, rhs=kind) for kind in kinds for s in shapes]
    rows = []
    if not args.dcdm_no_peers:
        for p in problems:
            rows += dcdm.reference_rows(p)
    t0 = time.perf_counter()
    rows += dcdm.dcdm_rows(problems, cfgs, progress=True, parts=parts)
    dcdm.pair_growth(rows)
    s = dcdm.dcdm_summary(rows)
    report.print_learned(rows, s, mode=mode)
    if args.dcdm_merge and not quick:
        argv = sys.argv[1:] if argv is None else list(argv)
        provenance = {
            "date": time.strftime("%Y-%m-%d %H:%M:%S"),
            "command": shlex.join(["python", "-m", "benchmarks.linsolve", *argv]),
            "options": given(args),
            "rows": sorted({f"{r.get('method')} @ {r.get('grid')} ({r.get('rhs')})" for r in rows}),
            "wall_s": round(time.perf_counter() - t0, 1),
            "machine": machine(),
        }
        # the reference rows computed here (e.g. for divergence right-hand sides) are merged too
        dcdm.merge_into(COMMITTED, rows, provenance)
        return
    write_results("linsolve_dcdm", mode, rows, s, out=args.out)


if __name__ == "__main__":
    main()
