"""The `scimlx` command line."""

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="scimlx", description="Differentiable scientific computing in JAX."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    tour_p = sub.add_parser(
        "tour", help="a short end-to-end run of every capability on built-in defaults"
    )
    tour_p.add_argument("stages", nargs="*", help="run only these stages (default: all)")
    tour_p.add_argument("--list", action="store_true", help="list the stages and exit")
    args = parser.parse_args(argv)

    import jax

    jax.config.update("jax_enable_x64", True)
    from ._tour import available_stages, tour

    if args.list:
        for stage in available_stages():
            print(f"{stage.name:12s} {stage.capability}")
        return 0
    try:
        rows = tour(args.stages or None)
    except ValueError as e:
        print(f"scimlx tour: {e}", file=sys.stderr)
        return 2
    return 1 if any(r["status"] == "FAILED" for r in rows) else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
