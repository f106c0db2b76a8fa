"""Evaluation, as a map: how detections are matched to objects (``matching``), COCO's ground truth
and results read as the evaluation needs them (``reading``), COCO's AP computed step by step
(``ap``), what the AP does not say (``analyses``: the confusion matrix), and pycocotools' official
numbers for a model and a dataset (``coco``)."""
from .analyses import ConfusionMatrix, confusion_matrix
from .ap import (AREA_RANGES, IOU_THRESHOLDS, MAX_DETECTIONS, RECALL_LEVELS, SUMMARY_NAMES, Curve, Evaluation,
                 coco_stats, evaluate_detections, interpolated_precision, match_detections, precision_recall,
                 precision_recall_curve)
from .coco import coco_evaluate, coco_ground_truth, detections_to_coco, evaluate_results, format_metrics
from .matching import (Matches, box_ious, coco_ious, coco_shape, mask_ious, match_boxes, match_by_iou,
                       match_masks)

__all__ = [
    # matching
    "Matches", "match_by_iou", "match_boxes", "match_masks", "box_ious", "mask_ious", "coco_shape",
    "coco_ious",
    # ap
    "AREA_RANGES", "IOU_THRESHOLDS", "MAX_DETECTIONS", "RECALL_LEVELS", "SUMMARY_NAMES", "Curve",
    "Evaluation", "coco_stats", "evaluate_detections", "interpolated_precision", "match_detections",
    "precision_recall", "precision_recall_curve",
    # analyses
    "ConfusionMatrix", "confusion_matrix",
    # coco
    "coco_evaluate", "coco_ground_truth", "detections_to_coco", "evaluate_results", "format_metrics",
]
