"""The maskrcnn-edu command, end to end in a temporary folder, and its errors."""
import json
import os
import subprocess
import sys

import pytest
import torch

from maskrcnn_edu.cli import SHAPES_NOTE, main
from maskrcnn_edu.model import load_model
from maskrcnn_edu.model import MaskRCNN

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLE_IMAGE = os.path.join(ROOT, "data/shapes_sample/images/000000.png")
SHIPPED_MODEL = os.path.join(ROOT, "data/shapes_model/model.pt")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    assert main(["train", "--steps", "2", "--batch-size", "2", "--out", str(out)]) == 0
    return out


def test_train_writes_checkpoints_and_logs(trained):
    assert (trained / "last.pt").exists()
    assert not (trained / "best.pt").exists()  # the only validation ended the run: best would copy last
    assert any((trained / "tensorboard").iterdir())
    assert MaskRCNN.from_checkpoint(trained / "last.pt").config.class_names == ("background", "square",
                                                                                "circle", "triangle")


def test_evaluate_prints_a_table_and_writes_json(trained, capsys):
    metrics_path = trained / "metrics.json"
    assert main(["evaluate", "--checkpoint", str(trained / "last.pt"), "--num-images", "4", "--json",
                 str(metrics_path)]) == 0
    assert "AP50" in capsys.readouterr().out
    metrics = json.loads(metrics_path.read_text())
    assert set(metrics["segm"]) >= {"AP", "AP50", "AP75", "per_class"}


def test_detect_draws_and_writes_coco_results(trained, tmp_path, capsys):
    assert main(["detect", SAMPLE_IMAGE, "--checkpoint", str(trained / "last.pt"), "--out", str(tmp_path),
                 "--score-threshold", "0.0"]) == 0
    assert (tmp_path / "000000_detections.png").stat().st_size > 0
    results = json.loads((tmp_path / "detections.json").read_text())
    assert all({"image_id", "category_id", "bbox", "score", "segmentation"} <= set(r) for r in results)
    # A Shapes model says, in one line, that it knows nothing but the three shapes.
    err = capsys.readouterr().err
    assert SHAPES_NOTE in err and len([line for line in err.splitlines() if "note:" in line]) == 1
    assert "circles, squares and triangles" in SHAPES_NOTE


def test_detect_writes_to_detections_by_default_and_notes_the_shipped_model_knows_three_shapes(tmp_path,
                                                                                               monkeypatch,
                                                                                               capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["detect", SAMPLE_IMAGE, "--checkpoint", SHIPPED_MODEL]) == 0
    assert (tmp_path / "detections" / "000000_detections.png").stat().st_size > 0
    assert (tmp_path / "detections" / "detections.json").exists()
    assert SHAPES_NOTE in capsys.readouterr().err


def test_min_size_and_max_size_replace_the_checkpoints_input_size():
    saved = MaskRCNN.from_checkpoint(SHIPPED_MODEL)
    resized = load_model(SHIPPED_MODEL, min_size=64, max_size=80)
    assert (resized.config.min_size, resized.config.max_size) == (64, 80)
    assert resized.config == saved.config.replace(min_size=64, max_size=80)
    assert all(torch.equal(value, saved.state_dict()[key]) for key, value in resized.state_dict().items())


def test_export_model_halves_the_file(trained, tmp_path):
    assert main(["export-model", "--checkpoint", str(trained / "last.pt"), "--out",
                 str(tmp_path / "small.pt")]) == 0
    assert (tmp_path / "small.pt").stat().st_size < 0.3 * (trained / "last.pt").stat().st_size
    model = MaskRCNN.from_checkpoint(tmp_path / "small.pt")
    assert model.roi_heads.box_head.fc6.weight.dtype == torch.float32


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "--dataset", "coco"], "--dataset coco needs --data-dir"),
        (["train", "--dataset", "coco", "--data-dir", "/no/such/folder"],
         "--data-dir /no/such/folder is not a folder"),
        (["train", "--dataset", "imagenet"], "--dataset must be shapes or coco, got 'imagenet'"),
        (["evaluate", "--checkpoint", "/no/such.pt"], "no checkpoint at /no/such.pt"),
        (["evaluate", "--checkpoint", SAMPLE_IMAGE], "is not a readable checkpoint"),
        (["detect", "/no/image.png", "--checkpoint", "/no/such.pt", "--out", "/tmp/x"],
         "no checkpoint at /no/such.pt"),
        (["detect", SAMPLE_IMAGE, "--checkpoint", "/no/such.pt", "--out", "/tmp/x", "--min-size", "0"],
         "--min-size must be at least 1"),
        (["evaluate", "--checkpoint", os.path.join(ROOT, "README.md")],
         "README.md is not a readable checkpoint"),
    ],
)
def test_bad_arguments_exit_non_zero_with_one_line(argv, message, capsys):
    assert main(argv) != 0
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_the_console_entry_point_runs():
    done = subprocess.run([sys.executable, "-m", "maskrcnn_edu", "--help"], capture_output=True, text=True)
    assert done.returncode == 0 and "export-shapes" in done.stdout and "train" in done.stdout


def test_the_keras_shapes_variant_from_the_shell(tmp_path, capsys):
    """``--variant keras``: export-shapes writes the seed project's Shapes, and evaluate scores on them."""
    from maskrcnn_edu.data import CocoDataset, ShapesDataset

    assert main(["export-shapes", "--num-images", "3", "--seed", "4", "--variant", "keras", "--out",
                 str(tmp_path), "--quiet"]) == 0
    exported = CocoDataset(str(tmp_path / "images"), str(tmp_path / "annotations.json"))
    expected = ShapesDataset(3, seed=4, variant="keras")
    for i in range(3):
        assert torch.equal(exported[i][1]["masks"], expected[i][1]["masks"])
    metrics_path = tmp_path / "metrics.json"
    assert main(["evaluate", "--checkpoint", SHIPPED_MODEL, "--variant", "keras", "--num-images", "3",
                 "--json", str(metrics_path)]) == 0
    assert json.loads(metrics_path.read_text())["segm"]["AP50"] is not None
