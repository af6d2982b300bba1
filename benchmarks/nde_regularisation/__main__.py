"""Neural ODEs/SDEs that stay cheap to solve: regularising the adaptive solver's own
heuristics (global error / stiffness, local error) against vanilla, STEER, RNODE and
TayNODE, all through `scimlx.nde`, in one run.

Question answered: how many fewer vector-field evaluations (and how much faster
prediction) does a model trained with a solver-heuristic regulariser need, at what
accuracy and training cost?

    python -m benchmarks.nde_regularisation [--quick] [--seeds N] [--tasks b2,b3]

`--tasks` runs a subset of b1,b2,b3,b3loose; outside `--quick` the rows of the tasks that
were not run are then kept from the existing results JSON (the file records which tasks
were re-run and when the kept rows were measured).

B1 neural-ODE classifier on scikit-learn's 8x8 digits, B2 neural-SDE classifier on the
same split, B3 the spiral ODE y' = A y^3 (Pal et al. 2021, Fig. 2: 1083.0 +- 57.55 NFE
unregularised vs 676.2 +- 68.20 with error+stiffness regularisation).
"""

import json
import os
import resource
import time

from .._harness import parse_args, RESULTS_DIR, write_results
from ..report import nde_regularisation as report
from .arms import arms_b1, arms_b1_loose, arms_b3, arms_b3_loose
from .problems import LOOSE, PAPER, spiral_perturbations, spiral_true_nfe, TIGHT
from .summary import kept_rows, summarise, TASK_LABELS
from .tasks import run_b1, run_b2, run_b3


def _options(parser):
    parser.add_argument(
        "--tasks",
        default="b1,b2,b3,b3loose",
        help="subset of b1,b2,b3,b3loose to run (b3loose: the spiral at rtol=atol=1e-5)",
    )
    parser.add_argument(
        "--only-arms",
        default=None,
        help="B3 only: comma-separated arm names to re-run; the other arms' rows are kept "
        "from the results file",
    )


def _cpu_s():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main(argv=None):
    args = parse_args(__doc__.splitlines()[0], argv, add=_options)
    only_arms = args.only_arms.split(",") if args.only_arms else None
    if only_arms and args.tasks != "b3":
        raise SystemExit("--only-arms needs --tasks b3")
    tasks = [t for t in args.tasks.split(",") if t]
    if not set(tasks) <= set(TASK_LABELS):
        raise SystemExit(
            f"--tasks: expected a subset of {','.join(TASK_LABELS)}, got {args.tasks!r}"
        )
    quick = args.quick
    mode = "quick" if quick else "full"
    n_seeds = args.seeds or (1 if quick else 3)
    seeds = list(range(n_seeds))
    print(f"seeds {seeds}; tasks {tasks}; float64; Tsit5 + PID rtol=atol={TIGHT} (B1 also {LOOSE})")
    t_start, cpu_start = time.perf_counter(), _cpu_s()
    out = args.out or os.path.join(
        RESULTS_DIR, f"nde_regularisation{'.quick' if quick else ''}.json"
    )
    rows = []
    done = []
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")

    def write(final):
        # Partial results after each task, so a stopped run still leaves its figures.
        kept, when = (
            ([], None)
            if quick or (set(tasks) == set(TASK_LABELS) and not only_arms)
            else kept_rows(out, tasks, only_arms)
        )
        all_rows = kept + rows
        present = [t for t in TASK_LABELS if any(r["task"] in TASK_LABELS[t] for r in all_rows)]
        agg, summary, flags = summarise(all_rows, present)
        if final:
            report.print_means(agg)
        extra = dict(
            selection=flags,
            paper=PAPER,
            seeds=seeds,
            provenance=dict(
                run_here=list(done),
                measured={**(when or {}), **{t: stamp for t in done}},
                note="rows of tasks not in `run_here` were kept from the results file "
                "(measured at the time in `measured`)",
            ),
            wall_s=time.perf_counter() - t_start,
            cpu_s=_cpu_s() - cpu_start,
        )
        if not quick and os.path.exists(out):
            # deterministic no-training figures of tasks not re-run are carried over
            with open(out) as f:
                previous = json.load(f)
            for key, value in previous.items():
                if "true_system" in key:
                    extra[key] = value
        if "b3" in done:
            extra["b3_true_system_nfe"] = spiral_true_nfe(TIGHT)
            extra["b3_true_system_perturbations"] = spiral_perturbations(TIGHT)
        if "b3loose" in done:
            extra["b3_loose_true_system_nfe"] = spiral_true_nfe(LOOSE)
            extra["b3_loose_true_system_perturbations"] = spiral_perturbations(LOOSE)
        if not final:
            extra["partial"] = True
        write_results("nde_regularisation", mode, all_rows + agg, summary, out=out, extra=extra)
        return summary, flags, extra

    if "b1" in tasks:
        rows += run_b1(seeds, quick, TIGHT, arms_b1(quick), "B1 NODE digits")
        rows += run_b1(seeds, quick, LOOSE, arms_b1_loose(quick), "B1 NODE digits loose")
        done.append("b1")
        write(final=False)
    if "b2" in tasks:
        rows += run_b2(seeds, quick)
        done.append("b2")
        write(final=False)
    if "b3" in tasks:
        arms = [a for a in arms_b3(quick) if only_arms is None or a[0] in only_arms]
        rows += run_b3(seeds, quick, arms=arms)
        done.append("b3")
    if "b3loose" in tasks:
        rows += run_b3(seeds, quick, LOOSE, arms_b3_loose(quick), "B3 spiral loose")
        done.append("b3loose")
    summary, flags, extra = write(final=True)
    report.print_summary(summary, flags, PAPER, extra)


if __name__ == "__main__":
    main()
