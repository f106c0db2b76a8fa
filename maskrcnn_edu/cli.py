"""The ``maskrcnn-edu`` command (also ``python -m maskrcnn_edu``).

Subcommands are added as the library grows; ``maskrcnn-edu --help`` lists the ones there are.
A subcommand's error (a bad value, a file it cannot write) exits with status 1 and one line on
stderr.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys

from . import __version__


def positive_int(text: str) -> int:
    """An argparse type: an integer of at least 1 (argparse names the option in its error)."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def positive_float(text: str) -> float:
    """An argparse type: a number above 0."""
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text}")
    return value


def export_shapes(args: argparse.Namespace) -> int:
    """``export-shapes``: write a Shapes set as COCO data (PNG images + annotations.json)."""
    from .data import ShapesDataset, export_coco  # imported here: `--help` stays fast

    if args.num_images < 1:
        raise ValueError(f"--num-images must be at least 1, got {args.num_images}")
    dataset = ShapesDataset(args.num_images, image_size=args.image_size, seed=args.seed, variant=args.variant)
    _clear_export_folder(args.out, args.overwrite)
    path = export_coco(dataset, args.out, progress=not args.quiet)
    print(f"wrote {len(dataset)} Shapes images ({args.variant} variant, seed {args.seed}) and {path}")
    return 0


def _clear_export_folder(out: str, overwrite: bool) -> None:
    """Refuse an ``--out`` that holds a COCO set already (a second set would mix with it), unless
    ``--overwrite``: then remove that set first."""
    from .data.export import exported_files, remove_export

    found = exported_files(out)
    if found and not overwrite:
        raise ValueError(f"--out {out} already holds a set ({', '.join(found)}); choose another --out, "
                         "or pass --overwrite to remove its images/ and annotations.json first")
    if found:
        remove_export(out)


def _device(name: str | None) -> str:
    import torch

    if name is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name not in ("cpu", "cuda"):
        raise ValueError(f"--device must be cpu or cuda, got {name!r}")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA device is available here")
    return name


def _check_dataset(name: str) -> str:
    if name not in ("shapes", "coco"):
        raise ValueError(f"--dataset must be shapes or coco, got {name!r}")
    return name


def train(args: argparse.Namespace) -> int:
    """``train``: the Shapes model by default; COCO with ``--dataset coco --data-dir D``; any COCO-format
    set with ``--dataset coco --ann-file A --image-dir D`` (class names from its categories)."""
    import torch

    from .config import coco_r50_fpn, shapes
    from .model import MaskRCNN
    from .training import fit
    from .training.command import check_run_folder, initial_weights, require_pretrained, training_data
    from .visualize import draw_detections

    dataset_name = _check_dataset(args.dataset)
    if dataset_name == "shapes" and (args.ann_file or args.image_dir or args.data_dir):
        raise ValueError("--data-dir, --ann-file and --image-dir name COCO-format data: add --dataset coco")
    device = _device(args.device)
    check_run_folder(args.out, args.resume, args.overwrite)
    config_name = args.config or ("shapes" if dataset_name == "shapes" else "coco_r50_fpn")
    if config_name not in ("shapes", "coco_r50_fpn"):
        raise ValueError(f"--config must be shapes or coco_r50_fpn, got {config_name!r}")
    recipe = "shapes" if config_name == "shapes" else "coco"  # the schedule follows the config
    require_pretrained(args, recipe)
    train_set, val_set, settings, group_ids = training_data(args, recipe)
    if args.layers is not None:
        settings = dataclasses.replace(settings, layers=args.layers)
    class_names = tuple(train_set.class_names)
    base = shapes() if config_name == "shapes" else coco_r50_fpn()
    config = base.replace(num_classes=len(class_names), class_names=class_names)
    torch.manual_seed(args.seed)  # the initial weights: the same command gives the same model
    model = MaskRCNN(config)
    initial_weights(model, args, train_set)
    print(f"training {config.backbone} Mask R-CNN ({recipe} recipe) on {len(train_set)} {dataset_name} "
          f"images for {settings.steps} steps of {settings.batch_size} images, on {device}; "
          f"writing {args.out}")
    summary = fit(model, train_set, args.out, settings, val_dataset=val_set, resume=args.resume,
                  device=device, group_ids=group_ids, draw_detections=draw_detections)
    best = "no validation set" if val_set is None else f"best validation mask AP {summary['best_ap']:.3f}"
    print(f"done: {summary['steps']} steps, {best}, last checkpoint {summary['last']}")
    return 0


SHAPES_NOTE = ("note: this model knows only circles, squares and triangles (the Shapes set); "
               "it will label anything it finds as one of those")


def labels_are_coco_ids(model) -> bool:
    """True for torchvision's COCO layout: 91 classes, label = COCO category id."""
    from .coco_names import COCO_CLASS_NAMES

    return tuple(model.config.class_names) == COCO_CLASS_NAMES


def _with_dataset_labels(model, label_to_category_id: dict):
    """``model`` whose detections carry a ``CocoDataset``'s labels 1..K instead of COCO category ids.

    torchvision's COCO model labels a detection with its category id; a ``CocoDataset`` numbers
    its categories 1..K. Detections of categories the dataset lacks are dropped (COCOeval would
    not score them either); the rest are the model's detections unchanged.
    """
    import torch

    # to_label[category id] = the dataset's label, or -1 for a category the dataset lacks.
    to_label = torch.full((model.config.num_classes,), -1, dtype=torch.long)  # [91]
    for label, category_id in label_to_category_id.items():
        if category_id < len(to_label):  # larger ids are not COCO's: the model never predicts them
            to_label[category_id] = label

    def relabel(detection: dict) -> dict:
        labels = to_label.to(detection["labels"].device)[detection["labels"]]  # [D]
        keep = labels >= 0  # [D]
        return {**{key: value[keep] for key, value in detection.items()}, "labels": labels[keep]}

    class DatasetLabels(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model
            self.config = model.config

        def forward(self, images, targets=None):
            return [relabel(detection) for detection in self.model(images, targets)]

    return DatasetLabels()


def _evaluation_dataset(args: argparse.Namespace) -> str:
    """``--dataset``, or by default coco when COCO-format paths are given and shapes otherwise."""
    coco_paths = args.data_dir or args.ann_file or args.image_dir
    if args.dataset is None:
        return "coco" if coco_paths else "shapes"
    if _check_dataset(args.dataset) == "shapes" and coco_paths:
        raise ValueError("--data-dir, --ann-file and --image-dir name COCO-format data: "
                         "drop --dataset shapes (or the paths)")
    return args.dataset


def evaluate(args: argparse.Namespace) -> int:
    """``evaluate``: COCO metrics of a checkpoint on Shapes (held-out seed) or COCO-format data."""
    from .data import ShapesDataset
    from .evaluation.coco import coco_evaluate, format_metrics
    from .files import write_json
    from .model import load_model
    from .training.recipes import SHAPES_TEST_IMAGES, SHAPES_TEST_SEED

    dataset_name = _evaluation_dataset(args)
    model = load_model(args.checkpoint, args.min_size, args.max_size).to(_device(args.device))
    if dataset_name == "shapes":
        seed = SHAPES_TEST_SEED if args.seed is None else args.seed
        dataset = ShapesDataset(SHAPES_TEST_IMAGES if args.num_images is None else args.num_images,
                                seed=seed, variant=args.variant)
        scored = f"{len(dataset)} Shapes images ({args.variant} variant, seed {seed})"
    else:
        from .training.command import coco_split

        dataset = coco_split(args.data_dir, "val", args.ann_file, args.image_dir)
        ann_file = args.ann_file or f"{args.data_dir}/annotations/instances_val2017.json"
        scored = f"{len(dataset)} images of {ann_file}"
        if labels_are_coco_ids(model):
            model = _with_dataset_labels(model, dataset.label_to_category_id)
    metrics, _ = coco_evaluate(model, dataset)
    print(format_metrics(metrics))
    print(f"scored {scored}")
    if args.json:
        write_json(args.json, {"checkpoint": str(args.checkpoint), "dataset": repr(dataset), **metrics})
        print(f"wrote {args.json}")
    return 0


def _count_above(scores, threshold: float) -> str:
    """``"2 instances above 0.5"``; with none, the best score there was (a short run scores low)."""
    kept = int((scores >= threshold).sum())
    said = f"{kept} instance{'' if kept == 1 else 's'} above {threshold}"
    if kept == 0:
        said += f" (best score {scores.max().item():.2f})" if len(scores) else " (no detections at all)"
    return said


def _pasted_a_few_at_a_time(detections: dict, image_id: int, image_size, aligned: bool,
                            score_threshold: float) -> tuple[list[dict], dict]:
    """One image's detections, masks unpasted ``[D, 1, M, M]`` -> its COCO results (every
    detection, RLE masks) and the detections to draw (score >= ``score_threshold``, bool masks
    ``[K, 1, H, W]``). Masks are pasted a few at a time and kept as booleans, so a 4000 x 3000
    photograph never holds its 100 float masks (4.8 GB) at once."""
    import torch

    from .evaluation.coco import detections_to_coco
    from .masks import binary_masks_in_chunks

    results, shown, start = [], [], 0
    for chunk in binary_masks_in_chunks(detections["masks"], detections["boxes"], image_size, aligned):
        part = slice(start, start + len(chunk))
        start += len(chunk)
        piece = {key: detections[key][part] for key in ("boxes", "labels", "scores")}
        results += detections_to_coco([{**piece, "masks": chunk[:, None]}], [image_id])
        shown.append(chunk[piece["scores"] >= score_threshold])
    keep = detections["scores"] >= score_threshold  # best first: a prefix
    masks = torch.cat(shown) if shown else torch.zeros(0, *image_size, dtype=torch.bool)
    return results, {**{key: detections[key][keep] for key in ("boxes", "labels", "scores")},
                     "masks": masks[:, None]}


def detect(args: argparse.Namespace) -> int:
    """``detect``: draw each image's instances into OUT/, and write OUT/detections.json (COCO results)."""
    from pathlib import Path

    import torch

    from .config import SHAPES_CLASSES
    from .data.images import read_image  # 16-bit images scaled by their depth, EXIF orientation applied
    from .files import write_json
    from .model import load_model
    from .visualize.files import drawing_names, save_drawing

    model = load_model(args.checkpoint, args.min_size, args.max_size).eval()
    for path in args.images:  # every input readable before any is detected: all or nothing is written
        read_image(path)
    if tuple(model.config.class_names) == SHAPES_CLASSES:
        print(SHAPES_NOTE, file=sys.stderr)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = []
    for image_id, (path, name) in enumerate(zip(args.images, drawing_names(args.images))):
        image = read_image(path)
        with torch.no_grad():
            detections = model.detect([image], paste_masks=False)[0]  # masks still [D, 1, 28, 28]
        found, shown = _pasted_a_few_at_a_time(detections, image_id, image.shape[-2:], model.config.aligned,
                                               args.score_threshold)
        results += [{**result, "file_name": str(path)} for result in found]
        save_drawing(out / name, image, shown, model.config.class_names or None, args.score_threshold)
        print(f"{path}: {_count_above(detections['scores'], args.score_threshold)} -> {out / name}")
    write_json(out / "detections.json", results, indent=None)
    print(f"wrote {out / 'detections.json'}")
    return 0


def export_model(args: argparse.Namespace) -> int:
    """``export-model``: a training checkpoint -> a small file with the config and float16 weights only."""
    from .model import MaskRCNN
    from .weights import save_checkpoint

    model = MaskRCNN.from_checkpoint(args.checkpoint)
    path = save_checkpoint(args.out, model, half=True)
    print(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MB)")
    return 0


CHECKPOINT_HELP = ("one of our checkpoints (.pt from train or export-model) or torchvision's Mask R-CNN "
                   "weights (e.g. maskrcnn_resnet50_fpn_coco-bf2d0c1e.pth)")


def _size_options(command: argparse.ArgumentParser) -> None:
    command.add_argument("--min-size", type=int, metavar="PX",
                         help="resize images so the short side is PX "
                         "(default: the checkpoint's; 800 for COCO)")
    command.add_argument("--max-size", type=int, metavar="PX",
                         help="... unless the long side would exceed PX "
                         "(default: the checkpoint's; 1333 for COCO)")


def _add_export_shapes(commands) -> None:
    shapes = commands.add_parser(
        "export-shapes",
        help="write the synthetic Shapes set as COCO data",
        description="Write Shapes images as DIR/images/<id>.png and their instances as DIR/annotations.json "
        "(COCO format, RLE masks). Image i depends only on (seed, i).",
    )
    shapes.add_argument("--num-images", type=int, required=True, metavar="N", help="how many images")
    shapes.add_argument("--seed", type=int, default=0, metavar="S", help="the set's seed (default 0)")
    shapes.add_argument("--variant", choices=("edu", "keras"), default="edu",
                        help="edu: this book's Shapes (default); keras: the Keras Mask R-CNN notebook's "
                        "train_shapes")
    shapes.add_argument("--out", required=True, metavar="DIR", help="output folder (created if missing)")
    shapes.add_argument("--image-size", type=int, default=128, metavar="PX",
                        help="image side in pixels (default 128)")
    shapes.add_argument("--quiet", action="store_true", help="no progress bar")
    shapes.add_argument("--overwrite", action="store_true",
                        help="if DIR holds a set already, remove its images/ and annotations.json first")
    shapes.set_defaults(run=export_shapes)


def _train_data_options(fit: argparse.ArgumentParser) -> None:
    fit.add_argument("--dataset", default="shapes", help="shapes (built in) or coco (COCO-format data)")
    fit.add_argument("--data-dir", help="COCO root with annotations/ and train2017/, val2017/")
    fit.add_argument("--ann-file", help="any COCO-format annotation file to train on (with --image-dir)")
    fit.add_argument("--image-dir", help="the images of --ann-file")
    fit.add_argument("--val-ann-file", help="validation annotations (with --val-image-dir; default: none)")
    fit.add_argument("--val-image-dir", help="the images of --val-ann-file")


def _add_train(commands) -> None:
    fit = commands.add_parser("train", help="train Mask R-CNN (no arguments: the Shapes model)",
                              description="Train Mask R-CNN. With no arguments, the Shapes model of "
                              "data/shapes_model/.")
    _train_data_options(fit)
    fit.add_argument("--config", help="shapes or coco_r50_fpn (default: the dataset's)")
    # The recipes' numbers, as tests/test_cli.py checks them against training/recipes.py (importing
    # that here would load torch for --help).
    fit.add_argument("--out", default="runs/shapes",
                     help="folder for checkpoints and TensorBoard logs (default: runs/shapes); the Shapes "
                     "recipe writes last.pt there every 100 steps, about 150 MB")
    fit.add_argument("--steps", type=positive_int,
                     help="optimizer steps (default: the recipe's, 850 for Shapes, 26 epochs for COCO; "
                     "a short first run: --steps 20 --out runs/try)")
    fit.add_argument("--batch-size", type=positive_int,
                     help="images per step over all processes (default: 8 for Shapes, 16 for COCO)")
    fit.add_argument("--lr", type=positive_float,
                     help="base learning rate (default: 0.003 for Shapes (AdamW), 0.02 x batch / 16 for "
                     "COCO)")
    fit.add_argument("--seed", type=int, default=0,
                     help="seeds the initial weights and the data order (default 0)")
    again = fit.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true", help="continue exactly from OUT/last.pt")
    again.add_argument("--overwrite", action="store_true",
                       help="remove another run's files from OUT (last.pt, best.pt, best_metrics.json, "
                       "tensorboard/) first; without it, train refuses an OUT that holds them")
    fit.add_argument("--init",
                     help="start from torchvision's maskrcnn_resnet50_fpn weights or one of our checkpoints")
    fit.add_argument("--backbone-weights", metavar="FILE",
                     help="start the ResNet body from torchvision's ImageNet weights "
                     "(resnet50-0676ba61.pth); the COCO recipe needs these or --init")
    fit.add_argument("--layers", choices=("heads", "5+", "4+", "3+", "all"),
                     help="which layers train: the heads only, the top ResNet stages and the heads, or all "
                     "(default: the config's)")
    fit.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    fit.set_defaults(run=train)


def _add_evaluate(commands) -> None:
    score = commands.add_parser("evaluate", help="COCO bbox and mask AP of a checkpoint")
    score.add_argument("--checkpoint", required=True, help=CHECKPOINT_HELP)
    score.add_argument("--dataset", help="shapes (200 held-out images) or coco (default: coco when "
                       "--data-dir or --ann-file and --image-dir are given, else shapes)")
    score.add_argument("--data-dir", help="COCO root (reads annotations/instances_val2017.json and val2017/)")
    score.add_argument("--ann-file", help="any COCO-format annotation file (with --image-dir)")
    score.add_argument("--image-dir", help="the images of --ann-file")
    score.add_argument("--num-images", type=positive_int, help="Shapes images to score (default 200)")
    score.add_argument("--seed", type=int, help="Shapes seed (default: the held-out test seed)")
    score.add_argument("--variant", choices=("edu", "keras"), default="edu",
                       help="which Shapes (default edu; keras: the seed project's)")
    score.add_argument("--json", help="write the metrics here")
    score.add_argument("--device", help="cpu or cuda")
    _size_options(score)
    score.set_defaults(run=evaluate)


def _add_detect_and_export_model(commands) -> None:
    find = commands.add_parser("detect", help="draw a checkpoint's detections on images")
    find.add_argument("images", nargs="+", metavar="IMAGE")
    find.add_argument("--checkpoint", required=True, help=CHECKPOINT_HELP)
    find.add_argument("--out", default="detections", metavar="DIR",
                      help="folder for the drawings and detections.json (default: detections/)")
    find.add_argument("--score-threshold", type=float, default=0.5)
    _size_options(find)
    find.set_defaults(run=detect)

    ship = commands.add_parser("export-model", help="strip a checkpoint to its config and float16 weights")
    ship.add_argument("--checkpoint", required=True)
    ship.add_argument("--out", required=True)
    ship.set_defaults(run=export_model)


def build_parser() -> argparse.ArgumentParser:
    """The ``maskrcnn-edu`` command and its subcommands, each with the function that runs it (``run``)."""
    parser = argparse.ArgumentParser(
        prog="maskrcnn-edu",
        description="Mask R-CNN, taught as a book of Jupyter chapters. Open the book with: jupyter lab book/",
    )
    parser.add_argument("--version", action="version", version=f"maskrcnn-edu {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in (_add_export_shapes, _add_train, _add_evaluate, _add_detect_and_export_model):
        add(commands)
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
    except KeyboardInterrupt:  # train has saved its checkpoint and said so
        return 130


if __name__ == "__main__":
    sys.exit(main())
