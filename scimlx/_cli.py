"""The `scimlx` command line."""

import argparse
import sys


def _parser() -> argparse.ArgumentParser:
    from ._tour import STAGES

    parser = argparse.ArgumentParser(
        prog="scimlx", description="Differentiable scientific computing in JAX."
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command")
    stage_list = "\n".join(f"  {s.name:10s} {s.capability}" for s in STAGES)
    tour_p = sub.add_parser(
        "tour",
        help="a short end-to-end run of every capability on built-in defaults",
        description=(
            "A short end-to-end run of every capability on built-in defaults, ending with a "
            "summary of one figure per stage. JAX compiles each stage's programs on first "
            "use; they are kept in a persistent compilation cache (see --no-cache), so a "
            "second tour starts faster."
        ),
        epilog="stages:\n" + stage_list,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    tour_p.add_argument("stages", nargs="*", help="run only these stages (default: all)")
    tour_p.add_argument("--list", action="store_true", help="list the stages and exit")
    tour_p.add_argument(
        "--quick", action="store_true", help="a smoke run of each stage (smaller problems)"
    )
    tour_p.add_argument(
        "-v", "--verbose", action="store_true", help="describe each stage in the summary"
    )
    tour_p.add_argument("--report", metavar="PATH", help="also write the summary as JSON")
    tour_p.add_argument(
        "--no-cache",
        action="store_true",
        help="do not use the persistent compilation cache",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.version:
        from . import __version__

        print(f"scimlx {__version__}")
        return 0
    if args.command is None:
        parser.print_help()
        return 2

    from ._tour import available_stages, tour

    if args.list:
        for stage in available_stages():
            print(f"{stage.name:12s} {stage.capability}")
        return 0

    import jax

    jax.config.update("jax_enable_x64", True)
    if not args.no_cache:
        from ._core import enable_compilation_cache

        enable_compilation_cache()
    try:
        rows = tour(args.stages or None, quick=args.quick, verbose=args.verbose, report=args.report)
    except ValueError as e:
        print(f"scimlx tour: {e}", file=sys.stderr)
        return 2
    return 1 if any(r["status"] == "FAILED" for r in rows) else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
