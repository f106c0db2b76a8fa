"""Evaluation: COCO's AP, readable (``ap``), and pycocotools' official numbers (``coco``)."""
from .ap import *  # noqa: F401,F403
from .ap import __all__ as _ap_all
from .coco import *  # noqa: F401,F403
from .coco import __all__ as _coco_all

__all__ = [*_ap_all, *[name for name in _coco_all if name not in _ap_all]]
