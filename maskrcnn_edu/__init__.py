"""maskrcnn_edu: Mask R-CNN in small, readable PyTorch modules, one idea each.

The book in ``book/`` teaches one or two modules a chapter; composed, they are the full model.
"""
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("maskrcnn-edu")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0"
