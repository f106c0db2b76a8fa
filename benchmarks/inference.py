"""Our Mask R-CNN (readable ops, and torchvision's compiled ops) against torchvision's, same weights.

Inference on one 800 x 1066 image (a real photograph resized), and one training step (forward +
backward) on two images, ResNet-50-FPN, seeded random weights, alternating runs, medians.

    python benchmarks/inference.py [--repeats 3] [--json benchmarks/results/inference.json]
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
import torchvision
from skimage import data as skimage_data

from maskrcnn_edu.config import Config
from maskrcnn_edu.matching import BalancedSampler
from maskrcnn_edu.model import MaskRCNN
from maskrcnn_edu.weights import load_torchvision

from report import write_report  # benchmarks/report.py


def photo(name: str, height: int, width: int) -> torch.Tensor:
    image = torch.from_numpy(getattr(skimage_data, name)()).permute(2, 0, 1).float()[None] / 255
    return F.interpolate(image, size=(height, width), mode="bilinear", align_corners=False)[0].clamp(0, 1)


def build_models():
    torch.manual_seed(0)
    theirs = torchvision.models.detection.maskrcnn_resnet50_fpn(weights=None, weights_backbone=None,
                                                                num_classes=91)
    theirs.roi_heads.score_thresh = 0.0  # random weights: keep the full 100 detections so masks are pasted
    models = {"torchvision": theirs}
    for ops in ("readable", "torchvision"):
        config = Config(norm="bn", trainable_layers=5, box_score_thresh=0.0, ops=ops)
        ours = MaskRCNN(config)
        load_torchvision(ours, theirs.state_dict())
        models[f"ours ({ops} ops)"] = ours
    return models


def time_ms(fn) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1000


def training_targets(images):
    targets = []
    for image in images:
        h, w = image.shape[-2:]
        boxes = torch.tensor([[0.1 * w, 0.1 * h, 0.5 * w, 0.6 * h], [0.4 * w, 0.3 * h, 0.9 * w, 0.9 * h]])
        masks = torch.zeros(2, h, w, dtype=torch.uint8)
        for m, (x0, y0, x1, y1) in zip(masks, boxes.int().tolist()):
            m[y0:y1, x0:x1] = 1
        targets.append({"boxes": boxes, "labels": torch.tensor([1, 2]), "masks": masks})
    return targets


def infer(model, image) -> None:
    """``image [3, H, W]`` through ``model`` in eval mode, without gradients."""
    model.eval()
    with torch.no_grad():
        model([image])


def train_step(model, images, targets) -> None:
    """One training step's forward and backward; both models sample with the same seeded generator."""
    model.train()
    if isinstance(model, MaskRCNN):  # the same sampling for everyone
        model.rpn.sampler.generator = model.roi_heads.sampler.generator = torch.Generator().manual_seed(0)
    else:
        generator = torch.Generator().manual_seed(0)
        model.rpn.fg_bg_sampler = BalancedSampler(256, 0.5, generator)
        model.roi_heads.fg_bg_sampler = BalancedSampler(512, 0.25, generator)
    losses = model(images, targets)
    sum(losses.values()).backward()
    model.zero_grad(set_to_none=True)


def time_tasks(models: dict, tasks: dict, repeats: int) -> dict:
    """``{task: {model: {"ms", "ratio_to_torchvision"}}}``: the median of ``repeats`` rounds, the
    models alternating within every round, after one warm-up each; printed as it goes."""
    results = {}
    for task, fn in tasks.items():
        for model in models.values():
            fn(model)  # warm-up
        times = {name: [] for name in models}
        for _ in range(repeats):  # alternate the models within every round
            for name, model in models.items():
                times[name].append(time_ms(lambda: fn(model)))
        medians = {name: statistics.median(t) for name, t in times.items()}
        results[task] = {
            name: {"ms": round(ms, 1), "ratio_to_torchvision": round(ms / medians["torchvision"], 3)}
            for name, ms in medians.items()
        }
        print(f"\n{task}")
        print(f"{'model':<28} {'ms':>10} {'ratio':>8}")
        for name, row in results[task].items():
            print(f"{name:<28} {row['ms']:>10.1f} {row['ratio_to_torchvision']:>8.3f}")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", default="benchmarks/results/inference.json")
    args = parser.parse_args()

    models = build_models()
    image = photo("coffee", 800, 1066)
    train_images = [photo("astronaut", 800, 800), photo("chelsea", 600, 800)]
    targets = training_targets(train_images)
    tasks = {"inference, 1 image 800x1066": lambda model: infer(model, image),
             "training step, 2 images": lambda model: train_step(model, train_images, targets)}
    write_report(args.json, time_tasks(models, tasks, args.repeats), repeats=args.repeats)


if __name__ == "__main__":
    main()
