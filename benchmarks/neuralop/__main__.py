"""Neural operators: MgNO against parameter-matched and standard FNOs on Darcy flow.

Question answered: on FNO-style Darcy data generated here, with the same optimiser budget,
how does MgNO's test error, resolution transfer and cost compare with FNO's, and how fast is
our multigrid-preconditioned data generator against scipy's sparse direct solve?

    python -m benchmarks.neuralop [--quick] [--seeds N] [--out PATH] [--size cpu|cpu64]
        [--epochs N] [--lr LR] [--rows IDS] [--step-only] [--datagen-cpu]

Data are generated in float64 (so solutions match scipy to 1e-8), models train in float32.
`--size cpu` selects a size a 2-core CPU finishes in about 40 minutes (32 x 32 training grid,
2x = 64 x 64, 1000 training / 200 test pairs, 14 epochs); `--size cpu64` the issue's 64 x 64
grid with 1000 / 200 pairs but only 3 epochs at peak learning rate 2e-3 and no
data-generation timing; the issue's full size (the default: 64 x 64, 30 epochs) needs a GPU.
`--epochs` and `--lr` replace the size's epochs and peak learning rate. `--rows
mgno_quarter,fno_12_32` trains a subset of the rows (ids: mgno, fno_matched, fno_12_32,
mgno_quarter). `--step-only` times only the training steps (models interleaved), at the
configured size and at 64 x 64 / batch 8. `--datagen-cpu` times the data generator on the CPU
when JAX's default device is an accelerator. The Darcy data are cached under `SCIMLX_CACHE`
(default: the temporary directory's `scimlx_data`).
"""

import os
import tempfile

import jax

from .._harness import parse_args, write_results
from ..report import neuralop as report
from . import measurements, peers
from .problems import configs, darcy_data, ROW_IDS


def _options(parser):
    parser.add_argument(
        "--size",
        choices=("cpu", "cpu64"),
        default=None,
        help="cpu: 32 x 32, 14 epochs; cpu64: 64 x 64, 3 epochs; default: the full size "
        "(64 x 64, 30 epochs, for a GPU)",
    )
    parser.add_argument("--epochs", type=int, default=None, help="epochs (default: the size's)")
    parser.add_argument(
        "--lr", type=float, default=None, help="peak learning rate (default: the size's)"
    )
    parser.add_argument(
        "--rows",
        default=None,
        help=f"comma-separated subset of the models to train: {','.join(ROW_IDS)}",
    )
    parser.add_argument(
        "--step-only",
        action="store_true",
        help="time only the training steps, at the configured size and at 64 x 64 / batch 8",
    )
    parser.add_argument(
        "--datagen-cpu",
        action="store_true",
        help="time the data generator on the CPU when the default device is an accelerator",
    )


def main(argv=None):
    args = parse_args(__doc__, argv, add=_options)
    rows_kept = [r.strip() for r in args.rows.split(",")] if args.rows else None
    if rows_kept and not set(rows_kept) <= set(ROW_IDS):
        raise SystemExit(f"--rows: expected ids among {','.join(ROW_IDS)}, got {args.rows!r}")
    mode = "quick" if args.quick else "full"
    cfg = configs(args.quick, args.size, args.epochs, args.lr)
    seeds = list(range(args.seeds if args.seeds else 2))
    res = cfg["res"]
    cache = os.environ.get("SCIMLX_CACHE", os.path.join(tempfile.gettempdir(), "scimlx_data"))
    print(f"mode {mode}; resolution {res} (2x: {2 * res}); seeds {seeds}; cache {cache}")
    data, truth_gap = darcy_data(cfg, cache)
    steps = cfg["epochs"] * cfg["n_train"] // cfg["batch"]

    if args.step_only:
        st = measurements.fresh_step_times(cfg, data, 0, rows_kept, rounds=25)
        summary = {f"{k} step_ms": 1e3 * v["median_s"] for k, v in st.items()}
        summary["mgno_step_time_ratio_vs_fno"] = (
            st["MgNO"]["median_s"] / st["FNO matched"]["median_s"]
        )
        summary.update(measurements.step_64(rounds=25))
        report.print_summary(summary)
        write_results("neuralop", mode, [], summary, out=args.out, extra={"config": cfg})
        return

    per = measurements.train_and_evaluate(cfg, data, seeds, rows_kept)
    # train-step times, the models interleaved (fresh models, the first seed)
    for name, t in measurements.fresh_step_times(cfg, data, seeds[0], rows_kept).items():
        per[name]["step_s"] = t["median_s"]
        per[name]["step_compile_s"] = t["compile_s"]
    rows = measurements.model_rows(per) + peers.reference_rows()
    report.print_models(rows, cfg, steps, seeds)

    if cfg.get("size") == "cpu64":
        dg = None  # measured by the 32 x 32 CPU run
    elif args.datagen_cpu and jax.default_backend() != "cpu":
        with jax.default_device(jax.devices("cpu")[0]):
            dg = measurements.datagen(cfg)
        dg["device"] = "cpu"
    else:
        dg = measurements.datagen(cfg)
        dg["device"] = jax.default_backend()
    dg_rows = measurements.datagen_rows(dg)
    report.print_datagen(dg_rows)

    step64 = measurements.step_64() if cfg.get("size") == "cpu" else {}
    summary = measurements.summarise(rows, dg_rows, truth_gap, step64)
    report.print_summary(summary)
    write_results(
        "neuralop",
        mode,
        rows + dg_rows,
        summary,
        out=args.out,
        extra={
            "config": {k: v for k, v in cfg.items()},
            "steps": steps,
            "seeds": seeds,
            "step_batch": cfg["batch"],
        },
    )


if __name__ == "__main__":
    main()
