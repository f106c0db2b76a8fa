"""COCO evaluation through pycocotools: box and mask AP, AP50, AP75, by object size and by class.

This is the plumbing around the official numbers. ``evaluation.ap`` computes the same numbers
step by step, in numpy a reader can follow (``coco_stats`` equals ``COCOeval.stats``), and keeps
what COCOeval throws away (precision-recall curves; ``evaluation.analyses``: a confusion matrix);
this module runs pycocotools' ``COCOeval`` itself, the implementation every COCO paper reports.

``COCOeval`` compares two COCO objects: the ground truth and the detections in COCO's *results*
format. This module makes both and reads the numbers back::

    detections (the model's output) --detections_to_coco--> results: one dict per detection
    dataset                         --coco_ground_truth---> pycocotools COCO ground truth
    evaluate_results(ground truth, results)             --> metrics, one dict per IoU type

``coco_evaluate(model, dataset)`` does all three in one pass over the dataset, and on several
processes when ``torch.distributed`` is initialised.

Conventions of the returned ``metrics``:

* ``metrics["bbox"]`` and ``metrics["segm"]`` each hold COCO's twelve summary numbers under the
  names of ``SUMMARY_NAMES`` (``AP``, ``AP50``, ``AP75``, ``APs``, ``APm``, ``APl``, ``AR1``,
  ``AR10``, ``AR100``, ``ARs``, ``ARm``, ``ARl``), as Python floats in 0..1 (not percent), and
  ``per_class``: the AP of each category, keyed by its name.
* A number that is not defined, because the images hold no object of that size or class, is
  ``None`` (JSON ``null``), where pycocotools prints ``-1``: a ``-1`` would pass silently into an
  average, and ``None`` cannot; and unlike ``nan`` it is valid JSON (Python's ``json`` writes
  ``nan`` as a bare ``NaN``, which strict JSON readers reject). ``format_metrics`` prints it as
  ``n/a`` and says why.
* No detections at all is a valid input and scores 0 wherever there are objects to find.
"""
from __future__ import annotations

import contextlib
import io
import warnings
from dataclasses import dataclass, field

import torch
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from torch.utils.data import DataLoader, Subset
from tqdm.auto import tqdm

from ..data.export import annotations_of, encode_masks
from ..data.transforms import collate
from ..distributed import gather_objects, rank_and_world_size
from .ap import SUMMARY_NAMES
from .reading import IOU_TYPES

__all__ = ["SUMMARY_NAMES", "coco_evaluate", "coco_ground_truth", "detections_to_coco", "evaluate_results",
           "format_metrics"]


def _quietly():
    """pycocotools prints its progress ("Loading and preparing results...", the summary): keep it out."""
    return contextlib.redirect_stdout(io.StringIO())


def _coco_from_dict(dataset: dict) -> COCO:
    """An in-memory pycocotools ``COCO`` object with its index built, from a COCO-format dict."""
    coco = COCO()
    coco.dataset = dataset
    with _quietly():
        coco.createIndex()
    return coco


# ---------------------------------------------------------------------------------------------
# Ground truth
# ---------------------------------------------------------------------------------------------


@dataclass
class _ImageRecord:
    """What one evaluated image contributes: its results and, without ``dataset.coco``, its
    ground truth. Small and picklable, so that processes can exchange it."""

    index: int  # position in the dataset
    image_id: int
    height: int
    width: int
    results: list = field(default_factory=list)  # COCO results of its detections
    annotations: list = field(default_factory=list)  # COCO annotations of its target (ids unset)


def _image_id(dataset, index: int, target: dict) -> int:
    """The COCO image id of ``dataset[index]``: ``dataset.image_ids[index]`` (CocoDataset), else
    the target's ``image_id``, else the index itself."""
    if hasattr(dataset, "image_ids"):
        return int(dataset.image_ids[index])
    return int(target.get("image_id", index))


def _target_annotations(target: dict, image_id: int) -> list[dict]:
    """COCO annotations of one target's instances: RLE mask, ``bbox`` and ``area`` of the mask,
    ``category_id`` = label (mapped later). A target may mark crowd regions with ``iscrowd [N]``
    (torchvision's convention); COCOeval then treats them as regions to ignore."""
    annotations = annotations_of(target, image_id, first_id=0)  # ids are given when all images are in
    if "iscrowd" in target:
        for annotation, crowd in zip(annotations, torch.as_tensor(target["iscrowd"]).tolist()):
            annotation["iscrowd"] = int(crowd)
    return annotations


def _categories(class_names, labels: set, label_to_category_id: dict) -> list[dict]:
    """COCO categories for labels ``1..K``: K and the names from ``class_names`` (index = label),
    or, without names, the largest label seen, named ``"class k"``."""
    if class_names is None or len(class_names) < 2:
        class_names = ["background"] + [f"class {k}" for k in range(1, max(labels, default=0) + 1)]
    return [{"id": int(label_to_category_id.get(k, k)), "name": str(class_names[k])}
            for k in range(1, len(class_names))]


def _ground_truth_from_records(records: list[_ImageRecord], dataset, class_names) -> COCO:
    """One COCO object from the images' records: their sizes and annotations (ids numbered 1, 2,
    ...), labels mapped through ``dataset.label_to_category_id`` if it has one."""
    seen = {}
    for record in records:
        if record.image_id in seen:
            raise ValueError(
                f"image id {record.image_id} is used by dataset indices {seen[record.image_id]} and "
                f"{record.index}: COCO evaluation needs one id per image"
            )
        seen[record.image_id] = record.index
    mapping = getattr(dataset, "label_to_category_id", None) or {}
    annotations = []
    for record in records:
        for annotation in record.annotations:
            label = annotation["category_id"]  # annotations_of wrote the label there
            annotations.append({**annotation, "id": len(annotations) + 1,
                                "category_id": int(mapping.get(label, label))})
    images = [{"id": r.image_id, "height": r.height, "width": r.width} for r in records]
    labels = {annotation["category_id"] for record in records for annotation in record.annotations}
    categories = _categories(class_names, labels, mapping)
    return _coco_from_dict({"images": images, "annotations": annotations, "categories": categories})


def _with_fields_cocoeval_reads(coco: COCO) -> COCO:
    """``coco`` itself when every annotation has ``bbox``, ``area`` and ``iscrowd``; else a copy
    where the missing ones are computed from the mask (``iscrowd`` 0).

    COCOeval reads all three from every ground-truth annotation and fails with a bare
    ``KeyError`` where one is missing, which a COCO file from another tool may well be.
    """
    annotations = coco.dataset["annotations"]
    if all("bbox" in a and "area" in a and "iscrowd" in a for a in annotations):
        return coco
    completed = []
    for annotation in annotations:
        rle = coco.annToRLE(annotation)  # polygons and uncompressed RLE alike -> compressed RLE
        completed.append(
            {
                "iscrowd": 0,
                "area": float(mask_utils.area(rle)),
                "bbox": mask_utils.toBbox(rle).tolist(),
                **annotation,  # what the file has wins
            }
        )
    return _coco_from_dict({**coco.dataset, "annotations": completed})


def coco_ground_truth(dataset, class_names=None, indices=None) -> COCO:
    """The ground truth of ``dataset`` as a pycocotools ``COCO`` object.

    * A dataset with a ``coco`` attribute (``CocoDataset``): that object, crowd annotations
      included (COCOeval ignores detections on crowd regions and does not count the crowds as
      objects to find). Missing ``bbox``, ``area`` or ``iscrowd`` fields are filled in from the
      masks, in a copy. ``indices`` is not used: pick images with ``evaluate_results(image_ids=)``.
    * Any other dataset (``ShapesDataset``, your own): built from ``dataset[i]`` for ``i`` in
      ``indices`` (default: all): one image per sample (its id ``dataset.image_ids[i]``, else the
      target's ``image_id``, else ``i``; the same ids ``coco_evaluate`` gives the results), one annotation per
      instance with its RLE mask, ``bbox`` and ``area`` of the mask, ``iscrowd`` 0 (or the target's
      ``iscrowd``). Label ``k`` becomes category id ``k`` (or ``dataset.label_to_category_id[k]``)
      named ``class_names[k]`` (default ``dataset.class_names``).

    The targets are read through the dataset's ``transforms``, so an evaluation set should have
    none: random augmentation would give another ground truth at every call.
    """
    coco = getattr(dataset, "coco", None)
    if coco is not None:
        return _with_fields_cocoeval_reads(coco)
    indices = range(len(dataset)) if indices is None else indices
    records = []
    for index in indices:
        image, target = dataset[index]
        image_id = _image_id(dataset, index, target)
        height, width = image.shape[-2:]
        annotations = _target_annotations(target, image_id)
        records.append(_ImageRecord(index, image_id, height, width, annotations=annotations))
    class_names = class_names if class_names is not None else getattr(dataset, "class_names", None)
    return _ground_truth_from_records(records, dataset, class_names)


# ---------------------------------------------------------------------------------------------
# Detections -> COCO results
# ---------------------------------------------------------------------------------------------


def _xywh(boxes: torch.Tensor) -> torch.Tensor:
    """``[D, 4]`` ``(x0, y0, x1, y1)`` -> COCO's ``(x, y, width, height)``."""
    return torch.cat([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], dim=1)


def _category_ids(labels: list[int], label_to_category_id, image_id) -> list[int]:
    """One image's labels -> COCO category ids (the labels themselves without a mapping)."""
    if label_to_category_id is None:
        return labels
    unknown = sorted(set(labels) - set(label_to_category_id))
    if unknown:
        raise ValueError(f"image id {image_id}: labels {unknown} have no category id in label_to_category_id "
                         f"(labels {sorted(label_to_category_id)})")
    return [label_to_category_id[label] for label in labels]


def detections_to_coco(detections, image_ids, label_to_category_id=None,
                       mask_threshold: float = 0.5) -> list[dict]:
    """The model's detections -> COCO results, one dict per detection.

    ``detections``: one dict per image, as the model returns them in eval mode (on any device):
    ``boxes [D, 4]`` xyxy in the image's pixels, ``labels [D]`` (1..K), ``scores [D]``, and
    optionally ``masks [D, 1, H, W]``: probabilities, kept where ``> mask_threshold``, or
    already binary (bool), kept as they are. ``image_ids``: the COCO image id of each image.
    ``label_to_category_id``: ``{label: COCO category id}`` (``CocoDataset`` has one); default:
    the label is the category id.

    Each result: ``{"image_id", "category_id", "bbox": [x, y, w, h], "score"}`` and, with masks,
    ``"segmentation"``: a compressed RLE whose ``counts`` is a str, so that the list can be
    written as JSON (``json.dump(results, file)``) and read back by any COCO tool.
    """
    if len(detections) != len(image_ids):
        raise ValueError(f"detections_to_coco: got {len(detections)} detection dicts for "
                         f"{len(image_ids)} image ids")
    results = []
    for detection, image_id in zip(detections, image_ids):
        labels = detection["labels"].tolist()
        if not labels:
            continue
        labels = _category_ids(labels, label_to_category_id, image_id)
        boxes = _xywh(detection["boxes"].detach().cpu().float()).tolist()  # [D, 4]
        scores = detection["scores"].detach().cpu().tolist()  # [D]
        entries = [
            {"image_id": int(image_id), "category_id": int(c), "bbox": box, "score": score}
            for c, box, score in zip(labels, boxes, scores)
        ]
        if "masks" in detection:
            masks = detection["masks"].detach()[:, 0]  # [D, H, W]
            binary = masks if masks.dtype == torch.bool else masks > mask_threshold
            # One pycocotools call encodes all D masks (it wants them as one [H, W, D] array).
            for entry, rle in zip(entries, encode_masks(binary.cpu().to(torch.uint8))):
                entry["segmentation"] = rle
        results += entries
    return results


# ---------------------------------------------------------------------------------------------
# Running COCOeval
# ---------------------------------------------------------------------------------------------


def _results_for(results: list[dict], iou_type: str) -> list[dict]:
    """Copies of the results with the fields that ``iou_type`` is scored on.

    Copies, because ``COCO.loadRes`` writes ``id``, ``area`` and ``iscrowd`` into the dicts it is
    given. For ``segm`` the box is left out: ``loadRes`` then takes each result's ``area`` from
    its mask, as COCOeval's small / medium / large split of masks wants, instead of from its box.
    """
    shape_key = "bbox" if iou_type == "bbox" else "segmentation"
    if results and not any(shape_key in r for r in results):
        raise ValueError(f"the results have no {shape_key!r}, so they cannot be scored as {iou_type!r}")
    return [{key: r[key] for key in ("image_id", "category_id", shape_key, "score")} for r in results]


def _load_results(coco_gt: COCO, results: list[dict]) -> COCO:
    """The results as a COCO object over the ground truth's images.

    ``COCO.loadRes`` fails on an empty list (it looks at the first result to tell the kind), but
    no detections is a valid outcome, scoring 0: it then gets a COCO object without annotations.
    """
    if not results:
        gt = coco_gt.dataset
        return _coco_from_dict({"images": gt["images"], "categories": gt["categories"], "annotations": []})
    known = set(coco_gt.getImgIds())
    unknown = sorted({r["image_id"] for r in results} - known)
    if unknown:
        raise ValueError(f"results name image ids {unknown[:10]} that are not in the ground truth")
    with _quietly():
        return coco_gt.loadRes(results)


def _run_cocoeval(coco_gt: COCO, coco_dt: COCO, iou_type: str, image_ids, category_ids) -> COCOeval:
    """COCOeval's evaluate, accumulate and summarize, without its printing."""
    coco_eval = COCOeval(coco_gt, coco_dt, iou_type)
    if image_ids is not None:
        coco_eval.params.imgIds = sorted(set(image_ids))
    if category_ids is not None:
        coco_eval.params.catIds = sorted(set(category_ids))
    with _quietly():
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
    return coco_eval


def _defined(value: float) -> float | None:
    """COCOeval's ``-1`` ("nothing to score"), or a ``nan``, -> ``None``; any other value as a
    Python float. Every number of the metrics passes through here, so that none of them is a
    ``nan``, which JSON cannot hold."""
    return None if value < 0 or value != value else float(value)  # value != value: nan


def _per_class_ap(coco_eval: COCOeval, coco_gt: COCO) -> dict[str, float | None]:
    """The AP (IoU 0.50:0.95, all sizes, 100 detections) of each category, keyed by name.

    ``eval["precision"]`` is ``[T iou thresholds, R recall levels, K categories, A areas, M max
    detections]``, ``-1`` where a category has no objects; a category's AP is the mean of its
    defined entries, as the summary's AP is the mean over all categories.
    """
    params = coco_eval.params
    precision = coco_eval.eval["precision"][:, :, :, params.areaRngLbl.index("all"), -1]  # [T, R, K]
    per_class = {}
    for k, category_id in enumerate(params.catIds):
        defined = precision[:, :, k][precision[:, :, k] > -1]
        name = coco_gt.cats[category_id]["name"]
        if name in per_class:  # two categories of one name: tell them apart by id
            name = f"{name} (id {category_id})"
        per_class[name] = _defined(defined.mean()) if defined.size else None
    return per_class


def evaluate_results(coco_gt: COCO, results: list[dict], iou_types=IOU_TYPES, image_ids=None,
                     category_ids=None) -> dict:
    """Score COCO ``results`` against ``coco_gt`` with COCOeval -> ``{iou_type: metrics}``.

    ``results``: from ``detections_to_coco`` (or read from a COCO results JSON); may be empty.
    ``iou_types``: ``"bbox"`` (box IoU) and/or ``"segm"`` (mask IoU). ``image_ids``: score only
    these images (default: every image of ``coco_gt``), e.g. the ones a model was run on: an
    image left out would otherwise count all its objects as missed. ``category_ids``: score only
    these categories (default: all of ``coco_gt``).

    Each ``metrics[iou_type]``: the twelve numbers of ``SUMMARY_NAMES`` and ``per_class`` (AP by
    category name), floats in 0..1, ``None`` where undefined (see the module's docstring).

    For ``"segm"``, ``loadRes`` gets the results without their ``bbox`` (``_results_for``): each is
    sized by its mask, as in torchvision's references and detectron2's evaluation, and in
    ``ap.evaluate_detections``. (``ap.coco_stats`` reads them as they are, one with a box sized by it.)
    """
    unknown = [t for t in iou_types if t not in IOU_TYPES]
    if unknown:
        raise ValueError(f"iou_types must be among {IOU_TYPES}, got {list(iou_types)}")
    metrics = {}
    for iou_type in iou_types:
        coco_dt = _load_results(coco_gt, _results_for(results, iou_type))
        coco_eval = _run_cocoeval(coco_gt, coco_dt, iou_type, image_ids, category_ids)
        summary = {name: _defined(value) for name, value in zip(SUMMARY_NAMES, coco_eval.stats)}
        metrics[iou_type] = {**summary, "per_class": _per_class_ap(coco_eval, coco_gt)}
    return metrics


NOT_DEFINED = "n/a"
NOT_DEFINED_NOTE = (f"{NOT_DEFINED}: no ground-truth object of that size or class in these images "
                    "(an empty range)")


def _cell(value: float | None) -> str:
    return NOT_DEFINED if value is None else f"{value:.3f}"


def format_metrics(metrics: dict) -> str:
    """A readable table of ``metrics`` (from ``evaluate_results``): one column per IoU type, the
    twelve summary numbers, then the per-class AP. ``n/a`` marks an undefined number (no object
    of that size or class), and a last line says so."""
    iou_types = list(metrics)
    class_names = list(dict.fromkeys(name for t in iou_types for name in metrics[t]["per_class"]))
    width = max([len("per-class AP"), *map(len, SUMMARY_NAMES), *map(len, class_names)])

    def row(name: str, values) -> str:
        return f"{name:<{width}}" + "".join(f"{_cell(value):>8}" for value in values)

    summary = {name: [metrics[t][name] for t in iou_types] for name in SUMMARY_NAMES}
    per_class = {name: [metrics[t]["per_class"].get(name) for t in iou_types] for name in class_names}
    lines = [f"{'':<{width}}" + "".join(f"{t:>8}" for t in iou_types)]
    lines += [row(name, values) for name, values in summary.items()]
    if class_names:
        lines.append("per-class AP")
        lines += [row(name, values) for name, values in per_class.items()]
    if any(value is None for values in [*summary.values(), *per_class.values()] for value in values):
        lines.append(NOT_DEFINED_NOTE)
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# The whole evaluation: run the model, gather, score
# ---------------------------------------------------------------------------------------------


def _model_device(model) -> torch.device:
    return next((parameter.device for parameter in model.parameters()), torch.device("cpu"))


def _to_cpu(detection: dict, mask_threshold: float) -> dict:
    """One image's detections to the CPU; masks binarised first, on the model's device, so that
    a quarter of the bytes (bool, not float) cross to the host."""
    detection = dict(detection)
    if "masks" in detection:
        detection["masks"] = detection["masks"] > mask_threshold
    return {key: value.cpu() for key, value in detection.items()}


def _detect(model, dataset, indices, batch_size, device, num_workers, mask_threshold, with_targets, progress):
    """Run ``model`` on ``dataset[i]`` for ``i`` in ``indices`` -> one ``_ImageRecord`` per image."""
    label_to_category_id = getattr(dataset, "label_to_category_id", None)
    loader = DataLoader(Subset(dataset, indices), batch_size=batch_size, collate_fn=collate,
                        num_workers=num_workers)
    positions = iter(indices)  # the loader keeps the order: batch after batch, index after index
    records = []
    bar = tqdm(total=len(indices), desc="evaluate", unit="image", disable=not progress)
    with torch.no_grad(), bar:
        for images, targets in loader:
            detections = model([image.to(device) for image in images])
            for image, target, detection in zip(images, targets, detections):
                index = next(positions)
                image_id = _image_id(dataset, index, target)
                record = _ImageRecord(index, image_id, *image.shape[-2:])
                record.results = detections_to_coco([_to_cpu(detection, mask_threshold)], [image_id],
                                                    label_to_category_id)
                if with_targets:
                    record.annotations = _target_annotations(target, image_id)
                records.append(record)
            bar.update(len(images))
    return records


def _warn_if_transformed(dataset) -> None:
    if getattr(dataset, "coco", None) is not None and getattr(dataset, "transforms", None) is not None:
        warnings.warn(
            "coco_evaluate: the dataset has transforms, but dataset.coco describes the untransformed "
            "images; a geometric transform makes the detections disagree with the ground truth",
            stacklevel=3,
        )


def _score_records(records: list[_ImageRecord], dataset, model, iou_types) -> tuple[dict, list[dict]]:
    """Every image's record (all ranks') -> ``(metrics, results)``, against ``dataset.coco`` or the
    ground truth the records carry."""
    records = sorted(records, key=lambda r: r.index)
    results = [result for record in records for result in record.results]
    image_ids = [record.image_id for record in records]
    category_ids = None
    if getattr(dataset, "coco", None) is None:
        class_names = (getattr(dataset, "class_names", None)
                       or getattr(getattr(model, "config", None), "class_names", None))
        coco_gt = _ground_truth_from_records(records, dataset, class_names)
    else:
        coco_gt = coco_ground_truth(dataset)
        mapping = getattr(dataset, "label_to_category_id", None)
        category_ids = list(mapping.values()) if mapping else None  # it may keep some categories only
    metrics = evaluate_results(coco_gt, results, iou_types, image_ids=image_ids, category_ids=category_ids)
    return metrics, results


def coco_evaluate(model, dataset, batch_size: int = 4, device=None, progress: bool = True,
                  num_images: int | None = None, num_workers: int = 0, iou_types=IOU_TYPES,
                  mask_threshold: float = 0.5) -> tuple[dict, list[dict]]:
    """Run ``model`` over ``dataset`` and score it with COCOeval -> ``(metrics, results)``.

    ``metrics``: as ``evaluate_results`` returns it (no ``segm`` for a box-only model); ``results``:
    every detection in COCO's results format (``detections_to_coco``) by dataset index, for ``json.dump``.

    * The model runs in eval mode under ``torch.no_grad``, ``batch_size`` images at a time
      (``maskrcnn_edu.data.collate``), on ``device`` (default: where its parameters are; if given,
      the model is moved there, in place, as ``model.to`` does). Its train/eval mode is restored.
    * ``num_images``: only the first ``num_images`` images, only those scored (a quick look in training).
    * Ground truth (``coco_ground_truth``): ``dataset.coco`` when the dataset has one; otherwise
      the targets that come with the images in this same pass, so the dataset is read once.
      The evaluation set should have no augmentation (a ``CocoDataset`` with ``transforms``
      gives a warning: its ``coco`` describes the untransformed images).
    * Distributed (``torch.distributed`` initialised, e.g. under ``torchrun``): call it on every
      rank. Each rank runs the images ``rank, rank + world_size, ...``; the results (and built
      ground truth) are gathered with ``all_gather_object``, and **every rank** scores them and
      returns the same ``(metrics, results)``, so that no rank waits for a broadcast and a
      training loop can use the metrics wherever it runs. Only rank 0 shows a progress bar. With
      NCCL, set each rank's CUDA device first (``torch.cuda.set_device``), as NCCL requires.
    """
    _warn_if_transformed(dataset)
    rank, world_size = rank_and_world_size()
    count = len(dataset) if num_images is None else min(int(num_images), len(dataset))
    indices = list(range(rank, count, world_size))
    device = _model_device(model) if device is None else torch.device(device)
    was_training = model.training
    model.to(device).eval()
    try:
        records = _detect(model, dataset, indices, batch_size, device, num_workers, mask_threshold,
                          getattr(dataset, "coco", None) is None, progress and rank == 0)
    finally:
        model.train(was_training)
    masks = getattr(getattr(model, "config", None), "train_mask_branch", True)  # False: boxes only
    iou_types = [t for t in iou_types if masks or t != "segm"]
    return _score_records(gather_objects(records, world_size), dataset, model, iou_types)
