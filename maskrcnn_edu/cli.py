"""The ``maskrcnn-edu`` command (also ``python -m maskrcnn_edu``).

Subcommands are added as the library grows; ``maskrcnn-edu --help`` lists the ones there are.
"""
from __future__ import annotations

import argparse
import sys

from . import __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="maskrcnn-edu",
        description="Mask R-CNN, taught as a book of Jupyter chapters. Open the book with: jupyter lab book/",
    )
    parser.add_argument("--version", action="version", version=f"maskrcnn-edu {__version__}")
    parser.add_subparsers(dest="command", metavar="COMMAND")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
