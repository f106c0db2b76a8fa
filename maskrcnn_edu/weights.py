"""Weights in and out: torchvision's Mask R-CNN state dicts, and our own checkpoints.

Our module names are chosen to be read (``fpn.lateral``, ``rpn.head.objectness``); torchvision's
are kept where they already say what they are (the ResNet body, ``fc6``/``fc7``, the predictors).
``load_torchvision`` translates the rest, from both the current and the older key layout (the
COCO checkpoint on download.pytorch.org uses the older one).

Checkpoints carry the model's ``Config`` as JSON, so ``MaskRCNN.from_checkpoint(path)`` rebuilds
the model without being told its shape. Files are written atomically: a temporary file in the
same folder, then ``os.replace``, so an interrupted write never leaves a broken checkpoint.
"""
from __future__ import annotations

import pickle
import re
import warnings
from pathlib import Path
from typing import Any

import torch

from .files import atomic_write

__all__ = [
    "torchvision_key", "load_file", "read_state_dict", "load_torchvision", "load_imagenet_body",
    "load_weights", "select_classes", "save_checkpoint", "read_checkpoint", "is_bare_state_dict",
    "bare_state_dict_message",
]

# (torchvision pattern, our replacement): current layout with ".0." wrappers, older one without.
_RENAMES = [
    (r"^backbone\.fpn\.inner_blocks\.(\d+)\.(?:0\.)?(weight|bias)$", r"backbone.fpn.lateral.\1.\2"),
    (r"^backbone\.fpn\.layer_blocks\.(\d+)\.(?:0\.)?(weight|bias)$", r"backbone.fpn.output.\1.\2"),
    (r"^rpn\.head\.conv\.(?:0\.0\.)?(weight|bias)$", r"rpn.head.conv.\1"),
    (r"^rpn\.head\.cls_logits\.(weight|bias)$", r"rpn.head.objectness.\1"),
    (r"^rpn\.head\.bbox_pred\.(weight|bias)$", r"rpn.head.deltas.\1"),
    (r"^roi_heads\.mask_head\.(\d+)\.0\.(weight|bias)$", r"roi_heads.mask_head.convs.\1.\2"),
]
_OLD_MASK_HEAD = re.compile(r"^roi_heads\.mask_head\.mask_fcn(\d+)\.(weight|bias)$")

# Tensors whose shape depends on the number of classes: re-initialised when the count differs.
CLASS_DEPENDENT = (
    "roi_heads.box_predictor.cls_score.weight",
    "roi_heads.box_predictor.cls_score.bias",
    "roi_heads.box_predictor.bbox_pred.weight",
    "roi_heads.box_predictor.bbox_pred.bias",
    "roi_heads.mask_predictor.mask_fcn_logits.weight",
    "roi_heads.mask_predictor.mask_fcn_logits.bias",
)


def torchvision_key(key: str) -> str:
    """Our name for one of torchvision's state-dict keys."""
    for pattern, replacement in _RENAMES:
        if re.match(pattern, key):
            return re.sub(pattern, replacement, key)
    old = _OLD_MASK_HEAD.match(key)
    if old:  # mask_fcn1..4 -> convs.0..3
        return f"roi_heads.mask_head.convs.{int(old.group(1)) - 1}.{old.group(2)}"
    return key


def _first_line(error: Exception) -> str:
    """torch.load's errors run over many lines; the first says what went wrong."""
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def load_file(path: str | Path, what: str = "checkpoint", map_location: str | torch.device = "cpu") -> object:
    """What ``torch.load`` finds in ``path``, tensors, numbers, strings, lists and dicts only
    (``weights_only``), or a ``ValueError`` that says what is wrong with the file.

    torch's own message for a file it cannot unpickle advises loading it with ``weights_only=False``:
    that would run whatever code the file holds, and for a file that is not a checkpoint at all
    (random bytes, another format) it would not work either. The message here says what the file is not.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"no {what} at {path}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        raise ValueError(f"{path} is not a readable {what}: not written by torch.save, or it holds more than "
                         "tensors, numbers, strings, lists and dicts") from error
    except Exception as error:  # a truncated file, another format, ...
        raise ValueError(f"{path} is not a readable {what} ({_first_line(error)})") from error


def is_bare_state_dict(saved: object) -> bool:
    """True for a state dict of one of our models saved without its config
    (``torch.save(model.state_dict())``): our key names (``rpn.head.objectness``), where
    torchvision's say ``rpn.head.cls_logits``."""
    return isinstance(saved, dict) and "rpn.head.objectness.weight" in saved


def bare_state_dict_message(path: str | Path) -> str:
    """What to say of a file that holds a bare state dict of our model (``is_bare_state_dict``)."""
    return (f"{path} holds a maskrcnn-edu model's bare state dict, without the config the model was built "
            "with: build that model and call load_state_dict on it, or save it with weights.save_checkpoint "
            "(what `maskrcnn-edu train` writes), which stores the config too")


def read_state_dict(path_or_state_dict: dict | str | Path) -> dict:
    """A state dict from a dict, or from a file holding one (or a checkpoint with a "model" entry)."""
    if isinstance(path_or_state_dict, dict):
        state = path_or_state_dict
    else:
        state = load_file(path_or_state_dict, what="weights file")
        if not isinstance(state, dict):
            raise ValueError(f"{path_or_state_dict} holds a {type(state).__name__}, not a state dict")
    if "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    return state


def load_weights(model: torch.nn.Module, state_dict: dict, source: str = "the state dict") -> None:
    """Load ``state_dict`` (our key names) into ``model``.

    Predictors made for another class count are re-initialised (with a warning). Raises
    ``ValueError`` naming the keys when the state dict is of another architecture.
    """
    own = model.state_dict()
    # BatchNorm's step counter means nothing to a frozen BatchNorm: drop it where the model has none.
    state_dict = {k: v for k, v in state_dict.items()
                  if k in own or not k.endswith("num_batches_tracked")}
    unexpected = sorted(set(state_dict) - set(own))
    if unexpected:
        raise ValueError(
            f"{source} does not fit this model ({len(unexpected)} unexpected keys, e.g. {unexpected[:3]}): "
            "is it from another architecture or backbone?"
        )
    skipped = [k for k in CLASS_DEPENDENT if k in state_dict and state_dict[k].shape != own[k].shape]
    if skipped:
        # bbox_pred has 4 rows per class, the other predictor tensors 1.
        their_classes = state_dict[skipped[0]].shape[0] // (4 if "bbox_pred" in skipped[0] else 1)
        for key in skipped:
            del state_dict[key]
        warnings.warn(
            f"{source} was made for {their_classes} classes, this model has "
            f"{model.config.num_classes}: the box and mask predictors are re-initialised",
            stacklevel=2,
        )
    mismatched = [k for k, v in state_dict.items() if v.shape != own[k].shape]
    if mismatched:
        k = mismatched[0]
        raise ValueError(
            f"{source}: {k} has shape {tuple(state_dict[k].shape)}, the model expects {tuple(own[k].shape)}"
        )
    # BatchNorm's step counter is absent from frozen-BN checkpoints; anything else missing is an error.
    missing = [k for k in own
               if k not in state_dict and k not in skipped and not k.endswith("num_batches_tracked")]
    if missing:
        raise ValueError(f"{source} lacks {len(missing)} of the model's tensors, e.g. {missing[:3]}")
    model.load_state_dict(state_dict, strict=False)


def select_classes(state_dict: dict, rows: list[int]) -> dict:
    """Keep the predictors' outputs for the classes ``rows`` (new label ``i`` <- old class ``rows[i]``).

    torchvision's COCO model predicts the 91 COCO category ids (ids 1..90, some unused); a dataset
    with contiguous labels 1..80 fine-tunes from it with ``rows = [0, *category ids]``, keeping
    every class's trained weights instead of re-initialising the predictors.
    """
    index = torch.as_tensor(rows)
    box_index = (index[:, None] * 4 + torch.arange(4)).reshape(-1)  # 4 deltas per class
    selected = dict(state_dict)
    for key, value in state_dict.items():
        if not key.startswith(("roi_heads.box_predictor.", "roi_heads.mask_predictor.mask_fcn_logits.")):
            continue
        selected[key] = value[box_index] if ".bbox_pred." in key else value[index]
    return selected


def load_torchvision(model: torch.nn.Module, state_dict: dict) -> None:
    """Load a torchvision ``maskrcnn_resnet50_fpn`` state dict (any class count) into our ``model``."""
    renamed = {torchvision_key(k): v for k, v in state_dict.items()}
    load_weights(model, renamed, source="the torchvision state dict")


def load_imagenet_body(model: torch.nn.Module, path: str | Path) -> None:
    """Load a torchvision ImageNet ResNet file (``torch.save(resnet50(...).state_dict())``, as
    torchvision's ``ResNet50_Weights`` saves in its hub cache) into ``model.backbone.body``, the way
    torchvision's ``resnet_fpn_backbone`` places it: every stage's weights and BatchNorm statistics
    as they are, the ImageNet classifier (``fc``) left out. The FPN and the heads keep their own
    initialisation."""
    state = load_file(path, what="ImageNet ResNet weights file")
    if not isinstance(state, dict) or "conv1.weight" not in state:
        found = list(state)[:3] if isinstance(state, dict) else type(state).__name__
        raise ValueError(f"--backbone-weights {path} is not a torchvision ResNet state dict "
                         f"(no conv1.weight; found {found})")
    body = model.backbone.body
    own = body.state_dict()
    state = {k: v for k, v in state.items()
             if not k.startswith("fc.") and (k in own or not k.endswith("num_batches_tracked"))}
    wrong = sorted(set(state) ^ set(own)) or [k for k in own if state[k].shape != own[k].shape]
    if wrong:
        raise ValueError(f"--backbone-weights {path} does not fit this model's {model.config.backbone} body "
                         f"(e.g. {wrong[0]}): is it the weights of another ResNet depth?")
    body.load_state_dict(state)


def save_checkpoint(path: str | Path, model: torch.nn.Module, half: bool = False, **extra: Any) -> Path:
    """Write ``{"config", "model", **extra}`` to ``path`` atomically; returns the path.

    ``model`` is a ``MaskRCNN``: its ``config`` is stored with its state dict.

    ``half=True`` stores floating-point weights as float16 (half the file; they load back into a
    float32 model), for shipping a trained model rather than resuming its training.
    """
    path = Path(path)
    state = model.state_dict()
    if half:
        state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    return atomic_write(
        path, lambda file: torch.save({"config": model.config.to_dict(), "model": state, **extra}, file)
    )


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """Read one of our checkpoints -> its dict (``config``, ``model`` and what training added).

    ``MaskRCNN.from_checkpoint`` (or ``model.load_checkpoint``) builds the model from it.
    """
    checkpoint = load_file(path, map_location=map_location)
    if is_bare_state_dict(checkpoint):
        raise ValueError(bare_state_dict_message(path))
    if not isinstance(checkpoint, dict) or "config" not in checkpoint or "model" not in checkpoint:
        raise ValueError(f"{path} is not a maskrcnn-edu checkpoint (it needs 'config' and 'model' entries)")
    return checkpoint
