"""The command line of `python -m benchmarks.stable_sde`."""

import argparse

from .. import _harness as H
from ..report import stable_sde as report
from . import __doc__ as DESCRIPTION
from ._peer import port as peer_port
from ._studies import combine, from_logs, run_study


def _options(parser: argparse.ArgumentParser) -> None:
    """The benchmark's options beside the harness's `--quick`, `--seeds`, `--out`."""
    parser.add_argument(
        "--seed-list", default=None, help="comma-separated seeds (instead of range(--seeds))"
    )
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--datasets", default=None, help="comma-separated names")
    parser.add_argument("--no-torch", action="store_true")
    parser.add_argument(
        "--raw-paths",
        action="store_true",
        help="build the control paths from raw values, as the reference code does (default: "
        "values standardised with the training split's mean and std)",
    )
    parser.add_argument(
        "--peer-only",
        action="store_true",
        help="only the PyTorch peer checks per data set (copied-weights logits agreement and "
        "interleaved step times against the port through torchsde and as a plain loop); "
        "writes stable_sde.peer.json",
    )
    parser.add_argument(
        "--rates",
        default=None,
        help="comma-separated missing rates, a subset of 0,0.3,0.5,0.7 (a focused study: "
        "writes a per-cell table, default file stable_sde.subset.json)",
    )
    parser.add_argument(
        "--tune-lr",
        action="store_true",
        help="choose each model's learning rate per data set from a grid, as the paper's "
        "tuning step does (10 epochs, 0 %% missing, seed 0, validation loss)",
    )
    parser.add_argument(
        "--tune",
        action="store_true",
        help="the paper's full tuning step per model and data set: random search of 20 "
        "settings (learning rate log-uniform in [1e-4, 1e-2], width 16/32/64/128, 1-4 layers) "
        "with successive halving at 1 / 4 / 10 epochs (as Ray Tune's ASHA), 0 %% missing, "
        "seed 0, validation loss",
    )
    parser.add_argument(
        "--tuned-from",
        default=None,
        help="reuse the settings that --tune chose, from a results JSON (summary 'tuned')",
    )
    parser.add_argument(
        "--models", default=None, help="comma-separated model names (a focused study, as --rates)"
    )
    parser.add_argument(
        "--combine", nargs="+", default=None, help="merge per-data-set JSON results and exit"
    )
    parser.add_argument(
        "--from-logs", nargs="+", default=None, help="rebuild results from run logs and exit"
    )
    parser.add_argument(
        "--markdown", default=None, help="print a results JSON as the docs' markdown table"
    )


def main(argv=None) -> int:
    args = H.parse_args(DESCRIPTION.splitlines()[0], argv, add=_options)
    mode = "quick" if args.quick else "full"
    if args.markdown:
        print(report.markdown(args.markdown))
        return 0
    if args.from_logs:
        return from_logs(args.from_logs, mode, args.epochs or 100, args.out)
    if args.combine:
        return combine(args.combine, mode, args.out)
    port = None if args.no_torch else peer_port()
    if port is None:
        print("PyTorch peer (torch, torchsde, torchcde) not installed: reference rows skipped.")
    return run_study(args, port)
