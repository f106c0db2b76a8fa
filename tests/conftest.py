"""Unit-test fixtures. Plots are drawn off screen.

``model``: the shipped Shapes model (``data/shapes_model/model.pt``) in eval mode, loaded once per
test module; a module that needs another model defines its own ``model`` fixture, which wins.
"""
from pathlib import Path

import matplotlib
import pytest

matplotlib.use("Agg")

SHIPPED_MODEL = Path(__file__).resolve().parents[1] / "data" / "shapes_model" / "model.pt"


@pytest.fixture(scope="module")
def model():
    from maskrcnn_edu import MaskRCNN

    return MaskRCNN.from_checkpoint(SHIPPED_MODEL).eval()
