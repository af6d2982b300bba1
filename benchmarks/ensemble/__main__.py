"""Ensemble benchmark: a Lotka-Volterra parameter sweep and an SDE Monte Carlo.

Question answered: how many members per second does `scimlx.ensemble.run_ensemble` get
through, against a scipy `solve_ivp` loop and a plain `jax.vmap(diffeqsolve)`, how much
memory does it need as the study grows, does cost-aware ordering pay, and what do
auto-sharded `vmap` and `shard_map` cost on 8 (simulated) devices?

    python -m benchmarks.ensemble [--quick] [--chunk N]

Rows labelled "extrapolated" time a sample of members and scale to the whole study.
Times are the best of several runs (compile excluded), since the machine may be shared.
On simulated host devices (one CPU shared by 8 "devices") only correctness and overhead
are meaningful; speed-ups from sharding need real devices.
"""

import os
import tempfile

import jax

from .._harness import parse_args, write_results
from ..report.ensemble import print_results
from . import children, studies
from .problems import lv_params


def _options(parser) -> None:
    parser.add_argument(
        "--chunk",
        type=int,
        default=None,
        help="members per chunk of the runner rows (default: the runner's own choice)",
    )
    # The child processes' entry points (run by the benchmark itself).
    parser.add_argument("--devices-child", type=int, default=None, metavar="N")
    parser.add_argument("--memory-child", type=int, nargs=2, default=None, metavar=("N", "CHUNK"))


def main(argv=None) -> None:
    args = parse_args(__doc__.splitlines()[0], argv, add=_options)
    if args.devices_child is not None:
        return children.devices_child(args.devices_child)
    if args.memory_child is not None:
        return children.memory_child(*args.memory_child)
    quick, seed = args.quick, 0
    n = n_paths = 10_000 if quick else 100_000
    repeats = 2 if quick else 4
    print(
        f"ensemble benchmark ({'quick' if quick else 'full'}): {n} LV members, {n_paths} SDE "
        f"paths, seed {seed}, jax {jax.__version__}, {os.cpu_count()} cores",
        flush=True,
    )
    lv, named = studies.lv_rows(
        lv_params(n, seed), seed=seed, scipy_sample=40 if quick else 200, repeats=repeats,
        chunk=args.chunk,
    )  # fmt: skip
    sde = studies.sde_rows(n_paths, seed=seed, quick=quick, repeats=repeats, chunk=args.chunk)
    devices = studies.device_rows(2048 if quick else 8192)
    sizes = [10_000, 100_000, 1_000_000]
    memory, mem_reports = studies.memory_rows(sizes)
    rows = lv + sde + devices + memory
    summary = studies.summary(named, mem_reports, sizes)
    print_results(rows, summary)
    write_results("ensemble", "quick" if quick else "full", rows, summary, out=args.out)


if __name__ == "__main__":
    with tempfile.TemporaryDirectory():
        main()
