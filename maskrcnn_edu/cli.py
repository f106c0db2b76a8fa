"""The ``maskrcnn-edu`` command (also ``python -m maskrcnn_edu``).

Subcommands are added as the library grows; ``maskrcnn-edu --help`` lists the ones there are.
A subcommand's error (a bad value, a file it cannot write) exits with status 1 and one line on
stderr.
"""
from __future__ import annotations

import argparse
import sys

from . import __version__


def export_shapes(args: argparse.Namespace) -> int:
    """``export-shapes``: write a Shapes set as COCO data (PNG images + annotations.json)."""
    from .data import ShapesDataset, export_coco  # imported here: `--help` stays fast

    if args.num_images < 1:
        raise ValueError(f"--num-images must be at least 1, got {args.num_images}")
    dataset = ShapesDataset(args.num_images, image_size=args.image_size, seed=args.seed)
    path = export_coco(dataset, args.out, progress=not args.quiet)
    print(f"wrote {len(dataset)} Shapes images (seed {args.seed}) and {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="maskrcnn-edu",
        description="Mask R-CNN, taught as a book of Jupyter chapters. Open the book with: jupyter lab book/",
    )
    parser.add_argument("--version", action="version", version=f"maskrcnn-edu {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    shapes = commands.add_parser(
        "export-shapes",
        help="write the synthetic Shapes set as COCO data",
        description="Write Shapes images as DIR/images/<id>.png and their instances as DIR/annotations.json "
        "(COCO format, RLE masks). Image i depends only on (seed, i).",
    )
    shapes.add_argument("--num-images", type=int, required=True, metavar="N", help="how many images")
    shapes.add_argument("--seed", type=int, default=0, metavar="S", help="the set's seed (default 0)")
    shapes.add_argument("--out", required=True, metavar="DIR", help="output folder (created if missing)")
    shapes.add_argument("--image-size", type=int, default=128, metavar="PX", help="image side in pixels (default 128)")
    shapes.add_argument("--quiet", action="store_true", help="no progress bar")
    shapes.set_defaults(run=export_shapes)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return args.run(args)
    except (ValueError, OSError) as err:
        print(f"maskrcnn-edu {args.command}: error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
