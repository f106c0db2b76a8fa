"""The maskrcnn-edu command, end to end in a temporary folder, and its errors."""
import json
import os
import shutil
import subprocess
import sys

import pytest
import torch

from maskrcnn_edu.cli import SHAPES_NOTE, main
from maskrcnn_edu.model import load_model
from maskrcnn_edu.model import MaskRCNN

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLE_IMAGE = os.path.join(ROOT, "data/shapes_sample/images/000000.png")
ONE_SHAPE_IMAGE = os.path.join(ROOT, "data/shapes_sample/images/000002.png")  # one shape above 0.5
SAMPLE_SET = os.path.join(ROOT, "data/shapes_sample")
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
    out = capsys.readouterr().out
    assert "AP50" in out and "scored 4 Shapes images (edu variant, seed 3)" in out
    metrics = json.loads(metrics_path.read_text())
    assert set(metrics["segm"]) >= {"AP", "AP50", "AP75", "per_class"}


def test_detect_draws_and_writes_coco_results(trained, tmp_path, capsys):
    assert main(["detect", SAMPLE_IMAGE, "--checkpoint", str(trained / "last.pt"), "--out", str(tmp_path),
                 "--score-threshold", "0.0"]) == 0
    from PIL import Image

    assert Image.open(tmp_path / "000000_detections.png").size == (600, 600)  # a 128 px image, enlarged
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
        (["train", "--dataset", "coco", "--backbone-weights", "r50.pth"], "--dataset coco needs --data-dir"),
        (["train", "--dataset", "coco", "--backbone-weights", "r50.pth", "--data-dir", "/no/such/folder"],
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


def test_a_second_train_into_the_same_out_is_refused_unless_overwrite(trained, tmp_path, capsys):
    # `trained` went into a folder that existed already (mktemp), empty: that is fine.
    out = tmp_path / "run"
    shutil.copytree(trained, out)
    last = (out / "last.pt").read_bytes()
    capsys.readouterr()
    argv = ["train", "--steps", "1", "--batch-size", "2", "--out", str(out)]
    assert main(argv) == 1
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert len(err.splitlines()) == 1 and "--resume" in err and "--out" in err and "--overwrite" in err
    assert "training" not in captured.out
    assert (out / "last.pt").read_bytes() == last
    assert main([*argv, "--overwrite"]) == 0
    assert len(list((out / "tensorboard").iterdir())) == 1
    assert (out / "last.pt").read_bytes() != last


def test_resume_and_overwrite_exclude_each_other(tmp_path):
    with pytest.raises(SystemExit):
        main(["train", "--resume", "--overwrite", "--out", str(tmp_path)])


@pytest.mark.parametrize(
    "argv, option",
    [
        (["train", "--steps", "0"], "--steps"),
        (["train", "--steps", "-3"], "--steps"),
        (["train", "--lr", "0"], "--lr"),
        (["train", "--batch-size", "0"], "--batch-size"),
        (["evaluate", "--checkpoint", SHIPPED_MODEL, "--num-images", "0"], "--num-images"),
    ],
)
def test_non_positive_numbers_are_refused_not_replaced_by_defaults(argv, option, tmp_path, monkeypatch,
                                                                   capsys):
    def must_not_run(*args, **kwargs):
        raise AssertionError(f"{option} 0 ran the command")

    monkeypatch.setattr("maskrcnn_edu.training.fit", must_not_run)
    monkeypatch.setattr("maskrcnn_edu.evaluation.coco.coco_evaluate", must_not_run)
    extra = ["--out", str(tmp_path / "run")] if argv[0] == "train" else []
    with pytest.raises(SystemExit) as exited:
        main([*argv, *extra])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {option}: expected a positive" in err


def test_detect_checks_every_image_before_detecting_any(tmp_path, capsys):
    broken = tmp_path / "broken.png"
    broken.write_text("not an image")
    for bad in (broken, tmp_path / "missing.png"):
        out = tmp_path / "out"
        assert main(["detect", SAMPLE_IMAGE, str(bad), "--checkpoint", SHIPPED_MODEL, "--out", str(out)]) == 1
        captured = capsys.readouterr()
        err = captured.err.strip()
        assert str(bad) in err and len(err.splitlines()) == 1  # the error alone: no Shapes note before it
        assert captured.out == "" and not out.exists()


def test_detect_gives_inputs_with_one_stem_their_own_drawings(tmp_path, capsys):
    from PIL import Image

    shutil.copy(SAMPLE_IMAGE, tmp_path / "coffee.png")
    Image.open(SAMPLE_IMAGE).convert("RGB").save(tmp_path / "coffee.jpg")
    out = tmp_path / "out"
    assert main(["detect", str(tmp_path / "coffee.png"), str(tmp_path / "coffee.jpg"), "--checkpoint",
                 SHIPPED_MODEL, "--out", str(out)]) == 0
    drawings = sorted(path.name for path in out.glob("*_detections.png"))
    assert len(drawings) == 2
    printed = capsys.readouterr().out
    assert all(name in printed for name in drawings)


@pytest.mark.parametrize(
    "image, threshold, expected",
    [
        (ONE_SHAPE_IMAGE, "0.5", "1 instance above 0.5 ->"),
        (SAMPLE_IMAGE, "1.5", "0 instances above 1.5 (best score 1.00) ->"),
    ],
)
def test_detect_says_how_many_and_the_best_score_when_none(image, threshold, expected, tmp_path, capsys):
    assert main(["detect", image, "--checkpoint", SHIPPED_MODEL, "--out", str(tmp_path),
                 "--score-threshold", threshold]) == 0
    assert expected in capsys.readouterr().out


def test_evaluate_with_an_annotation_file_scores_that_set_and_says_so(capsys):
    ann_file = os.path.join(SAMPLE_SET, "annotations.json")
    assert main(["evaluate", "--checkpoint", SHIPPED_MODEL, "--ann-file", ann_file, "--image-dir",
                 os.path.join(SAMPLE_SET, "images")]) == 0
    assert f"scored 20 images of {ann_file}" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--ann-file", "/no/ann.json", "--image-dir", SAMPLE_SET], "--ann-file /no/ann.json does not exist"),
        (["--ann-file", os.path.join(SAMPLE_SET, "annotations.json"), "--image-dir", "/no/images"],
         "--image-dir /no/images does not exist"),
        (["--dataset", "shapes", "--ann-file", "/no/ann.json"], "--ann-file and --image-dir"),
    ],
)
def test_evaluate_names_a_missing_annotation_file_or_image_folder(argv, message, capsys):
    assert main(["evaluate", "--checkpoint", SHIPPED_MODEL, *argv]) == 1
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_train_help_states_the_recipes_defaults(capsys):
    """The numbers --help quotes are the recipe's (cli does not import it, to keep --help fast)."""
    from maskrcnn_edu.training import recipes, shapes_schedule

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    schedule = shapes_schedule()
    assert f"{recipes.SHAPES_STEPS} for Shapes" in text and f"{recipes.SHAPES_BATCH} for Shapes" in text
    assert f"{recipes.SHAPES_LR} for Shapes" in text and "(default: runs/shapes)" in text
    assert f"every {schedule.checkpoint_every} steps" in text and "--steps 20" in text


@pytest.mark.parametrize("argument", ["steps", "batch_size", "lr"])
@pytest.mark.parametrize("value", [0, -1])
def test_the_recipes_refuse_a_non_positive_value_instead_of_taking_the_default(argument, value):
    """``steps or default`` once turned ``steps=0`` into the full 850-step recipe."""
    from maskrcnn_edu.training import coco_schedule, shapes_schedule

    with pytest.raises(ValueError, match=f"{argument} must be positive"):
        shapes_schedule(**{argument: value})
    with pytest.raises(ValueError, match=f"{argument} must be positive"):
        coco_schedule(**{"num_images": 1000, "batch_size": 16, argument: value})
    assert shapes_schedule(steps=None).steps == shapes_schedule().steps


def _detect_peak_megabytes(tmp_path, detections_per_image: int, size=(1200, 1600)) -> float:
    """Peak memory of ``maskrcnn-edu detect`` on one random ``size`` photo, in a fresh process, with an
    untrained model that keeps ``detections_per_image`` detections (scores near 0.25: none drawn)."""
    import numpy as np
    from PIL import Image

    from maskrcnn_edu.config import shapes
    from maskrcnn_edu.weights import save_checkpoint

    torch.manual_seed(0)
    model = MaskRCNN(shapes().replace(box_score_thresh=0.0, detections_per_img=detections_per_image))
    save_checkpoint(tmp_path / "model.pt", model)
    pixels = np.random.default_rng(0).integers(0, 256, (*size, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "photo.png")
    script = ("import resource, sys; from maskrcnn_edu.cli import main; code = main(sys.argv[1:]); "
              "print('peak', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss); sys.exit(code)")
    run = subprocess.run([sys.executable, "-c", script, "detect", str(tmp_path / "photo.png"), "--checkpoint",
                          str(tmp_path / "model.pt"), "--out", str(tmp_path / "out")],
                         capture_output=True, text=True, check=True)
    results = json.loads((tmp_path / "out" / "detections.json").read_text())
    assert len(results) == detections_per_image and all("segmentation" in r for r in results)
    assert Image.open(tmp_path / "out" / "photo_detections.png").size == size[::-1]  # the photo's own size
    return int(run.stdout.split("peak")[-1]) / 1024  # ru_maxrss is in KB on Linux


@pytest.mark.skipif(sys.platform != "linux", reason="ru_maxrss is in kilobytes on Linux only")
def test_detect_on_a_photograph_never_holds_all_its_full_size_masks(tmp_path):
    """100 float masks of a 1200 x 1600 photo are 768 MB: detect pastes them a few at a time."""
    one = _detect_peak_megabytes(tmp_path / "one", 1)
    hundred = _detect_peak_megabytes(tmp_path / "hundred", 100)
    assert hundred - one < 768 / 4, (one, hundred)


def test_detect_writes_the_same_results_as_the_models_pasted_masks(tmp_path):
    from maskrcnn_edu.data.images import read_image
    from maskrcnn_edu.evaluation.coco import detections_to_coco

    assert main(["detect", SAMPLE_IMAGE, "--checkpoint", SHIPPED_MODEL, "--out", str(tmp_path)]) == 0
    written = json.loads((tmp_path / "detections.json").read_text())
    model = load_model(SHIPPED_MODEL).eval()
    with torch.no_grad():
        expected = detections_to_coco(model([read_image(SAMPLE_IMAGE)]), [0])
    assert len(expected) == 3  # the sample's three shapes
    assert written == [{**result, "file_name": SAMPLE_IMAGE} for result in expected]
