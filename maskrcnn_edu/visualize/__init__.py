"""Matplotlib drawings (never ipywidgets): primitives, one drawer per Trace stage, weights, evaluation."""
from .drawing import *  # noqa: F401,F403
from .drawing import __all__  # noqa: F401
