"""Test configuration shared by the unit tests and the notebooks run through nbval.

Chapters read ``MASKRCNN_EDU_SMOKE``: when it is set they keep long computations short.
nbval starts each notebook's kernel as a child of this process, so setting the variable here
reaches every chapter.
"""
import os

os.environ.setdefault("MASKRCNN_EDU_SMOKE", "1")
