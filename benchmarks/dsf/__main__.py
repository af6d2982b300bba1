"""`python -m benchmarks.dsf`: parse the options, run the sections, write the results."""

import json
import time

from .._harness import load_avg, parse_args, write_results
from ..report.dsf import print_mqar_only, print_report
from . import __doc__ as DESCRIPTION
from ._accuracy import grad_accuracy_section
from ._cost import chunk_sweep_section, cost_section, growth_section
from ._mqar import MQAR_MIXERS, mqar_section, PAPER_ORDER, read_runs
from ._peers import peer_rows
from ._summary import (
    auto_rows,
    measured_auto_table,
    mqar_accuracies,
    mqar_only_summary,
    mqar_summary,
    summarise,
)


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",")]


def _names(text: str) -> list[str]:
    return text.split(",")


def add_options(parser):
    parser.add_argument(
        "--parts",
        type=_names,
        default=["cost", "mqar"],
        help="parts to run, comma-separated: cost (sections 1-1d) and mqar (section 2); "
        "`--parts mqar` runs MQAR alone (its results go to --out, default /tmp/dsf_mqar.json)",
    )
    parser.add_argument(
        "--lengths-fwd", type=_ints, default=None, help="forward lengths of the cost section"
    )
    parser.add_argument(
        "--lengths-bwd", type=_ints, default=None, help="training lengths of the cost section"
    )
    parser.add_argument(
        "--sections-from",
        default=None,
        help="re-make tables, summary and results from a sections file or results JSON",
    )
    parser.add_argument("--mqar-steps", type=int, default=None, help="MQAR optimiser steps")
    parser.add_argument(
        "--mqar-seeds",
        type=_ints,
        default=None,
        help="MQAR seeds (e.g. 1: one seed of a split run)",
    )
    parser.add_argument(
        "--mqar-mixers", type=_names, default=list(MQAR_MIXERS), help="MQAR mixers (e.g. s6)"
    )
    parser.add_argument(
        "--mqar-budget-s", type=float, default=None, help="MQAR training time cap per run"
    )
    parser.add_argument(
        "--mqar-results",
        type=_names,
        default=None,
        help="reuse the rows of earlier MQAR-only runs (comma-separated JSON files)",
    )


def run_mqar(args, quick: bool, seeds: int) -> list[dict]:
    if args.mqar_results:
        print("== 2. MQAR ==", flush=True)
        return read_runs(args.mqar_results)
    return mqar_section(
        quick,
        args.mqar_seeds or list(range(seeds)),
        mixers=args.mqar_mixers,
        steps=args.mqar_steps,
        budget_s=args.mqar_budget_s,
    )


def saved_sections(path: str) -> dict:
    """The sections of an earlier run, from its sections file or its results JSON (whose
    record of date and machine is kept as it was); the gradient section measured now if the
    run had none."""
    with open(path) as f:
        saved = json.load(f)
    if "chunk_sweep" in saved:  # a results JSON (e.g. the committed one), not a sections file
        run = saved
        saved = dict(
            cost=[r for r in run["rows"] if "method" in r],
            sweep=run["chunk_sweep"],
            growth=run["growth"],
            mq=run["mqar_runs"],
            grad=run.get("grad_accuracy"),
            date=run["date"],
            machine=run["machine"],
            mqar_source=run.get("mqar_source"),
            lengths_override=run.get("lengths_override", {}),
            total_s_of_run=run["summary"].get("total_s"),
            sections_from=path,
        )
    if not saved.get("grad"):  # runs from before the gradient section: measured now
        saved["grad"] = grad_accuracy_section()
        saved["grad_measured"] = dict(date=time.strftime("%Y-%m-%d %H:%M:%S"), load_avg=load_avg())
    return saved


def measure(args, quick: bool, seeds: int) -> dict:
    print("== 1. cost vs L (float32, d=64, n=16; softmax m=16) ==", flush=True)
    cost = cost_section(quick, 5 if quick else 7, args.lengths_fwd, args.lengths_bwd)
    sweep = chunk_sweep_section(quick, repeats=5 if quick else 7)
    growth = growth_section(quick, repeats=3 if quick else 5)
    grad = grad_accuracy_section()
    # saved before MQAR too (with no MQAR rows), so that a run stopped during MQAR keeps them
    path = (args.out or "/tmp/dsf") + ".sections.json"
    sections = dict(cost=cost, sweep=sweep, growth=growth, grad=grad, mq=[])
    with open(path, "w") as f:
        json.dump(sections, f, default=str)
    sections["mq"] = run_mqar(args, quick, seeds)
    with open(path, "w") as f:
        json.dump(sections, f, default=str)
    print(f"measured sections saved to {path}", flush=True)
    return sections


def report(args, quick, t_start, cost, sweep, growth, mq, grad, **provenance):
    total_s = provenance.pop("total_s_of_run", None) or time.perf_counter() - t_start
    summary = summarise(cost, sweep, growth, grad, mq, total_s)
    auto_table = measured_auto_table(cost)
    mq_rows = mqar_summary(mq)
    print_report(
        cost=cost,
        auto_rows=auto_rows(cost),
        auto_table=auto_table,
        sweep=sweep,
        growth=growth,
        mq=mq,
        mq_summary=mq_rows,
        accs=mqar_accuracies(mq),
        paper_order=PAPER_ORDER,
        grad=grad,
        summary=summary,
    )
    lengths = {"lengths_fwd": args.lengths_fwd, "lengths_bwd": args.lengths_bwd}
    write_results(
        "dsf",
        "quick" if quick else "full",
        cost + peer_rows() + mq_rows,
        summary,
        out=args.out,
        extra={
            "mqar_runs": mq,
            "paper_ordering": PAPER_ORDER,
            "chunk_sweep": sweep,
            "growth": growth,
            "grad_accuracy": grad,
            "auto_table_measured": auto_table,
            "mqar_source": ",".join(args.mqar_results) if args.mqar_results else "this run",
            "lengths_override": {k: v for k, v in lengths.items() if v},
            **provenance,
        },
    )


def main():
    args = parse_args(DESCRIPTION, add=add_options)
    quick = args.quick
    seeds = args.seeds or (1 if quick else 2)
    t_start = time.perf_counter()
    if "cost" not in args.parts:
        mq = run_mqar(args, quick, seeds)
        summary = mqar_only_summary(mq)
        print_mqar_only(mq, summary)
        out = args.out or "/tmp/dsf_mqar.json"
        write_results("dsf", "quick" if quick else "full", mq, summary, out=out)
        return
    if args.sections_from:
        sections = saved_sections(args.sections_from)
    else:
        sections = measure(args, quick, seeds)
    report(args, quick, t_start, **sections)


if __name__ == "__main__":
    main()
