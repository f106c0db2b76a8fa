"""`maskrcnn-edu detect` and `evaluate` with torchvision's Mask R-CNN weights file (a plain state dict).

The file here is a randomly initialised torchvision ``maskrcnn_resnet50_fpn`` with COCO's 91
classes, saved with ``torch.save(model.state_dict(), path)`` as torchvision's COCO checkpoint is.
Its detections are nonsense, but they exist and the command must give exactly what the Python
API gives. Images are kept small (``--min-size``/``--max-size``) so that ResNet-50 runs in moments.
"""
import json
import os

import numpy as np
import pytest
import skimage.data
import torch
import torchvision
from PIL import Image

from maskrcnn_edu.cli import SHAPES_NOTE, _with_dataset_labels, main
from maskrcnn_edu.model import load_model, weights_kind
from maskrcnn_edu.evaluation.coco import detections_to_coco
from maskrcnn_edu.config import coco_r50_fpn, shapes
from maskrcnn_edu.coco_names import COCO_CLASS_NAMES
from maskrcnn_edu.model import MaskRCNN
from maskrcnn_edu.weights import save_checkpoint

SAMPLE_IMAGE = os.path.join(os.path.dirname(__file__), "..", "data", "shapes_sample", "images", "000000.png")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EDGE_CASES = os.path.join(ROOT, "data", "coco_edge_cases")
SIZE = ["--min-size", "64", "--max-size", "96"]


@pytest.fixture(scope="module")
def torchvision_pth(tmp_path_factory):
    """torchvision's model, COCO layout, random weights, saved as its COCO checkpoint is saved."""
    torch.manual_seed(0)
    model = torchvision.models.detection.maskrcnn_resnet50_fpn(weights=None, weights_backbone=None,
                                                               num_classes=91)
    path = tmp_path_factory.mktemp("tv") / "maskrcnn_resnet50_fpn_random.pth"
    torch.save(model.state_dict(), path)
    return path


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    """scikit-image's coffee cup, shrunk to 128 x 96."""
    path = tmp_path_factory.mktemp("photo") / "coffee.jpg"
    Image.fromarray(skimage.data.coffee()).resize((128, 96)).save(path)
    return path


def test_coco_class_names_are_torchvision_coco_categories():
    categories = torchvision.models.detection.MaskRCNN_ResNet50_FPN_Weights.COCO_V1.meta["categories"]
    assert len(COCO_CLASS_NAMES) == len(categories) == 91
    assert list(COCO_CLASS_NAMES[1:]) == categories[1:]  # index = label = COCO category id
    assert COCO_CLASS_NAMES[1] == "person" and COCO_CLASS_NAMES[12] == "N/A"
    assert COCO_CLASS_NAMES[90] == "toothbrush"


def test_the_kind_of_weights_is_read_from_the_content(torchvision_pth, tmp_path):
    state = torch.load(torchvision_pth, weights_only=True)
    assert weights_kind(state) == "torchvision"
    assert weights_kind({"config": shapes().to_dict(), "model": {}}) == "maskrcnn-edu"
    assert weights_kind({"conv1.weight": torch.zeros(1)}) == ""
    assert weights_kind([torch.zeros(1)]) == ""
    # The name does not decide: our checkpoint as .pth, torchvision's as .pt.
    ours = save_checkpoint(tmp_path / "ours.pth", MaskRCNN(shapes()))
    assert load_model(ours).config == shapes()
    theirs = tmp_path / "theirs.pt"
    os.symlink(torchvision_pth, theirs)
    model = load_model(theirs)
    assert model.config.num_classes == 91 and model.config.class_names == COCO_CLASS_NAMES


def test_a_bare_state_dict_of_our_model_is_named_as_such(tmp_path, capsys):
    """Without its config our model's state dict cannot be loaded; it is not torchvision's either."""
    path = tmp_path / "bare.pt"
    torch.save(MaskRCNN(shapes()).state_dict(), path)
    assert weights_kind(torch.load(path, weights_only=True)) == "maskrcnn-edu state dict"
    for command in (["detect", SAMPLE_IMAGE], ["export-model", "--out", str(tmp_path / "small.pt")]):
        assert main([*command, "--checkpoint", str(path)]) == 1
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "bare state dict" in err and "size mismatch" not in err
    assert not (tmp_path / "small.pt").exists()


def test_random_bytes_are_not_a_checkpoint_and_no_unsafe_advice_is_given(tmp_path, capsys):
    path = tmp_path / "noise.pt"
    path.write_bytes(bytes(range(256)) * 20)
    for command in (["detect", SAMPLE_IMAGE], ["export-model", "--out", str(tmp_path / "small.pt")],
                    ["evaluate", "--num-images", "1"]):
        assert main([*command, "--checkpoint", str(path)]) == 1
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and f"{path} is not a readable checkpoint" in err
        assert "weights_only" not in err, err


def test_a_file_of_neither_kind_is_one_line_naming_it(tmp_path, capsys):
    path = tmp_path / "resnet.pth"
    torch.save({"conv1.weight": torch.zeros(1)}, path)
    assert main(["detect", "x.png", "--checkpoint", str(path), "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert f"{path} is neither a maskrcnn-edu checkpoint" in err
    assert "torchvision Mask R-CNN state dict" in err


def test_detect_with_a_torchvision_checkpoint_gives_what_from_torchvision_gives(torchvision_pth, photo,
                                                                                tmp_path, capsys):
    out = tmp_path / "detections"
    argv = ["detect", str(photo), "--checkpoint", str(torchvision_pth), "--out", str(out),
            "--score-threshold", "0"]
    assert main(argv + SIZE) == 0
    assert SHAPES_NOTE not in capsys.readouterr().err  # COCO's classes: no Shapes warning
    assert (out / "coffee_detections.png").stat().st_size > 0
    written = json.loads((out / "detections.json").read_text())

    model = MaskRCNN.from_torchvision(torchvision_pth, coco_r50_fpn(91, min_size=64, max_size=96)).eval()
    image = torch.from_numpy(np.asarray(Image.open(photo).convert("RGB")).copy()).permute(2, 0,
                                                                                          1).float() / 255
    with torch.no_grad():
        detections = model([image])[0]
    expected = detections_to_coco([detections], [0])
    assert len(expected) > 0  # the comparison below is not between two empty lists
    assert len(written) == len(expected)
    for got, want in zip(written, expected):
        assert got["file_name"] == str(photo)
        assert got["category_id"] == want["category_id"]  # the label is the COCO category id
        assert got["bbox"] == pytest.approx(want["bbox"], abs=1e-4)
        assert got["score"] == pytest.approx(want["score"], abs=1e-6)
        assert got["segmentation"] == want["segmentation"]


def test_evaluate_with_a_torchvision_checkpoint_on_a_coco_format_set(torchvision_pth, tmp_path):
    metrics_path = tmp_path / "metrics.json"
    argv = ["evaluate", "--checkpoint", str(torchvision_pth), "--dataset", "coco",
            "--ann-file", os.path.join(EDGE_CASES, "annotations.json"), "--image-dir",
            os.path.join(EDGE_CASES, "images"),
            "--json", str(metrics_path)]
    assert main(argv + SIZE) == 0
    metrics = json.loads(metrics_path.read_text())
    assert metrics["checkpoint"] == str(torchvision_pth)
    for iou_type in ("bbox", "segm"):
        # the dataset's classes, not COCO's 80
        assert set(metrics[iou_type]["per_class"]) == {"square", "disk"}


def test_coco_category_ids_become_the_dataset_labels():
    """A CocoDataset numbers its categories 1..K; torchvision's model labels by category id."""

    class FixedDetections(torch.nn.Module):
        config = coco_r50_fpn()

        def forward(self, images, targets=None):
            labels = torch.tensor([1, 3, 7, 3, 90])  # person, car, train, car, toothbrush
            return [{"boxes": torch.arange(20.0).reshape(5, 4), "labels": labels,
                     "scores": torch.tensor([0.9, 0.8, 0.7, 0.6, 0.5]),
                     "masks": torch.arange(80.0).reshape(5, 1, 4, 4) / 80}]

    fixed = FixedDetections()
    original = fixed([])[0]
    # The edge-case set: category 3 is label 1, category 7 is label 2; ids 1 and 90 are not in it.
    relabelled = _with_dataset_labels(fixed, {1: 3, 2: 7})([])[0]
    assert relabelled["labels"].tolist() == [1, 2, 1]
    assert torch.equal(relabelled["boxes"], original["boxes"][[1, 2, 3]])
    assert torch.equal(relabelled["scores"], original["scores"][[1, 2, 3]])
    assert torch.equal(relabelled["masks"], original["masks"][[1, 2, 3]])
