"""maskrcnn_edu: Mask R-CNN in small, readable PyTorch modules, one idea each.

The book in ``book/`` teaches one or two modules a chapter; composed, they are the full model.
"""
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("maskrcnn-edu")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0"

from .config import Config, coco_r50_fpn, shapes  # noqa: E402
from .model import MaskRCNN  # noqa: E402

__all__ = ["MaskRCNN", "Config", "coco_r50_fpn", "shapes", "__version__"]
