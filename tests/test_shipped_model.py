"""The Shapes model shipped in data/shapes_model/ loads and still scores what its metrics file says."""
import json
import os

import pytest

from maskrcnn_edu import MaskRCNN
from maskrcnn_edu.training.recipes import SHAPES_TEST_SEED
from maskrcnn_edu.config import shapes
from maskrcnn_edu.data import ShapesDataset
from maskrcnn_edu.evaluation.coco import coco_evaluate

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL = os.path.join(ROOT, "data", "shapes_model", "model.pt")
METRICS_50 = os.path.join(ROOT, "data", "shapes_model", "metrics_50.json")  # `evaluate --num-images 50`
# ... `--variant keras`
METRICS_KERAS_50 = os.path.join(ROOT, "data", "shapes_model", "metrics_keras_50.json")


def test_shipped_model_is_small_and_loads():
    assert os.path.getsize(MODEL) <= 25 * 2**20
    model = MaskRCNN.from_checkpoint(MODEL)
    assert model.config.class_names == ("background", "square", "circle", "triangle")


def test_shipped_model_reaches_its_recorded_mask_ap50_on_50_held_out_images():
    recorded = json.load(open(METRICS_50))
    model = MaskRCNN.from_checkpoint(MODEL)
    metrics, _ = coco_evaluate(model, ShapesDataset(50, seed=SHAPES_TEST_SEED), progress=False)
    assert metrics["segm"]["AP50"] == pytest.approx(recorded["segm"]["AP50"], abs=0.02)
    assert metrics["bbox"]["AP50"] == pytest.approx(recorded["bbox"]["AP50"], abs=0.02)


def test_shipped_model_is_the_shapes_preset_so_train_reproduces_it():
    # `maskrcnn-edu train` builds shapes() (with the data set's class names, the same ones): the
    # shipped file must be that model, not a config the command no longer makes.
    assert MaskRCNN.from_checkpoint(MODEL).config == shapes()


def test_shipped_model_reaches_its_recorded_numbers_on_the_seed_projects_shapes():
    recorded = json.load(open(METRICS_KERAS_50))
    assert "variant='keras'" in recorded["dataset"]
    model = MaskRCNN.from_checkpoint(MODEL)
    test_set = ShapesDataset(50, seed=SHAPES_TEST_SEED, variant="keras")
    metrics, _ = coco_evaluate(model, test_set, progress=False)
    assert metrics["segm"]["AP50"] == pytest.approx(recorded["segm"]["AP50"], abs=0.02)
    assert metrics["segm"]["AP"] == pytest.approx(recorded["segm"]["AP"], abs=0.02)
