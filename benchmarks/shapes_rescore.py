"""Rescoring the shipped Shapes model's detections by their masks: which rule, measured.

NMS compares the boxes of one class, so a detection on a fragment of a partly hidden shape, or
across two shapes, survives it. These rules lower such detections' scores after the masks are
pasted; the weights stay as they are. The model runs once per image with the rescoring off, and
each rule is applied to the same detections:

* ``none``: the model's scores (torchvision's inference);
* ``claimed``: ``masks.rescore_by_mask_overlap``, the Shapes preset's: a detection keeps the
  share of its score that equals the share of its mask no better detection has claimed (any class);
* ``claimed-gauss s``: the same coverage ``c``, a Gaussian decay ``exp(-c^2 / s)`` instead of ``1 - c``;
* ``matrix s``: SOLOv2's Matrix NMS (class-agnostic, Gaussian, sigma ``s``) on mask IoU;
* ``maskness p``: the score times the mean probability inside the mask, to the power ``p``. It lowers
  every score, the true detections' too, so its fewer "confident" misses say little.

Each rule is scored on 200 images of seed 4 (the images to choose on: neither training nor test),
on the 200 held-out test images of both variants (seed 3), and on the 20 sample images; a
confident miss is a detection scoring >= 0.7 that matches no object of its class (box IoU >= 0.5,
as ``shapes_recipes.py`` counts them; and by mask IoU, the measure segm AP uses).

    python benchmarks/shapes_rescore.py [--json data/shapes_model/rescore.json]
"""
from __future__ import annotations

import argparse

import torch

from maskrcnn_edu.training import recipes
from maskrcnn_edu.evaluation.coco import coco_ground_truth, detections_to_coco, evaluate_results
from maskrcnn_edu.data import CocoDataset, ShapesDataset
from maskrcnn_edu.model import MaskRCNN
from maskrcnn_edu.evaluation.matching import mask_ious, match_masks
from maskrcnn_edu.masks import claimed_share, rescore_by_mask_overlap

from report import write_report  # benchmarks/report.py
from shapes_recipes import CONFIDENT, ROOT, SAMPLE, confident_false_positives  # benchmarks/shapes_recipes.py

CHOOSE_SEED = 4  # images to choose a rule on: training uses seed 1, validation 2, the test 3


def _sorted(detection: dict, scores: torch.Tensor) -> dict:
    order = torch.argsort(scores, descending=True, stable=True)
    return {**{k: v[order] for k, v in detection.items()}, "scores": scores[order]}


def rescore(detection: dict, rule: str, value: float) -> dict:
    """One image's detections (best first, masks pasted) with ``rule``'s scores, re-sorted."""
    if rule == "none" or len(detection["scores"]) == 0:
        return detection
    if rule == "claimed":
        return rescore_by_mask_overlap(detection)[0]
    scores = detection["scores"]
    masks = detection["masks"][:, 0] > 0.5
    if rule == "claimed-gauss":
        return _sorted(detection, scores * torch.exp(-claimed_share(masks) ** 2 / value))
    if rule == "matrix":
        # [i, j]: the IoU of detection i with a lower-scored one j
        iou = torch.from_numpy(mask_ious(masks.numpy(), masks.numpy())).float().triu(1)
        own = iou.max(0).values  # each detection's largest IoU with a better one
        decay = torch.exp(-(iou**2 - own[:, None] ** 2) / value).min(0).values
        return _sorted(detection, scores * decay)
    if rule == "maskness":
        p = detection["masks"][:, 0].float()
        inside = (p * (p > 0.5)).flatten(1).sum(1) / (p > 0.5).flatten(1).sum(1).clamp(min=1)
        return _sorted(detection, scores * inside**value)
    raise ValueError(f"unknown rule {rule!r}")


def mask_false_positives(target: dict, detection: dict) -> int:
    """Detections scoring >= 0.7 that match no object of their class by mask IoU >= 0.5."""
    keep = detection["scores"] >= CONFIDENT
    matches = match_masks(target["masks"].numpy() > 0, target["labels"].numpy(),
                          (detection["masks"][keep, 0] > 0.5).numpy(),
                          detection["labels"][keep].numpy(), detection["scores"][keep].numpy())
    return len(matches.false_positives)


def detect_all(model, dataset) -> tuple[list[dict], list[dict]]:
    detections, targets = [], []
    with torch.no_grad():
        for i in range(len(dataset)):
            image, target = dataset[i]
            detections.append(model([image])[0])
            targets.append(target)
    return detections, targets


def score(detections, targets, coco_gt) -> dict:
    row = {"box_misses": sum(confident_false_positives(t, d["boxes"], d["labels"], d["scores"])
                             for d, t in zip(detections, targets)),
           "mask_misses": sum(mask_false_positives(t, d) for d, t in zip(detections, targets))}
    if coco_gt is not None:
        metrics = evaluate_results(coco_gt, detections_to_coco(detections, list(range(len(detections)))))
        row.update({f"{kind}_{name}": round(metrics[kind][name], 4)
                    for kind in ("segm", "bbox") for name in ("AP", "AP50")})
    return row


RULES = [("none", 0), ("claimed", 0), ("claimed-gauss", 0.5), ("claimed-gauss", 0.1), ("matrix", 2.0),
         ("matrix", 0.5), ("maskness", 1), ("maskness", 3)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default=str(ROOT / "data" / "shapes_model" / "model.pt"))
    parser.add_argument("--json", default=str(ROOT / "data" / "shapes_model" / "rescore.json"))
    args = parser.parse_args()
    model = MaskRCNN.from_checkpoint(args.checkpoint).eval()
    model.config = model.config.replace(mask_overlap_rescore=False)  # the rules below start from plain scores
    sets = {"choose": ShapesDataset(recipes.SHAPES_TEST_IMAGES, seed=CHOOSE_SEED),
            "test": ShapesDataset(recipes.SHAPES_TEST_IMAGES, seed=recipes.SHAPES_TEST_SEED),
            "keras": ShapesDataset(recipes.SHAPES_TEST_IMAGES, seed=recipes.SHAPES_TEST_SEED,
                                   variant="keras"),
            "sample": CocoDataset(SAMPLE / "images", SAMPLE / "annotations.json")}
    runs = {name: (*detect_all(model, dataset), None if name == "sample" else coco_ground_truth(dataset))
            for name, dataset in sets.items()}
    rows = []
    for rule, value in RULES:
        row = {"rule": rule if rule in ("none", "claimed") else f"{rule} {value}"}
        for name, (detections, targets, coco_gt) in runs.items():
            rescored = [rescore(d, rule, value) for d in detections]
            row.update({f"{name}_{k}": v for k, v in score(rescored, targets, coco_gt).items()})
        rows.append(row)
        print(f"{row['rule']:<18} choose: segm AP {row['choose_segm_AP']:.4f} "
              f"AP50 {row['choose_segm_AP50']:.4f} misses {row['choose_box_misses']:>2} "
              f"| test: segm AP {row['test_segm_AP']:.4f} AP50 {row['test_segm_AP50']:.4f} "
              f"bbox AP {row['test_bbox_AP']:.4f} misses {row['test_box_misses']:>2} "
              f"| keras AP50 {row['keras_segm_AP50']:.4f} "
              f"| sample misses {row['sample_box_misses']} (by mask IoU {row['sample_mask_misses']})",
              flush=True)
    write_report(args.json, rows, checkpoint=args.checkpoint, choose_seed=CHOOSE_SEED)


if __name__ == "__main__":
    main()
