"""export_coco and `maskrcnn-edu export-shapes`: the round trip Shapes -> COCO files ->
CocoDataset, standard tools reading the files, the shipped sample, atomic writes, and a user's
broken dataset stopped before anything is written."""
import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from torch.utils.data import Dataset

from maskrcnn_edu.cli import main
from maskrcnn_edu.data import CocoDataset, ShapesDataset, export_coco

SHIPPED = Path(__file__).resolve().parent.parent / "data" / "shapes_sample"


def assert_same_samples(dataset_a, dataset_b):
    assert len(dataset_a) == len(dataset_b)
    for i in range(len(dataset_a)):
        (image_a, target_a), (image_b, target_b) = dataset_a[i], dataset_b[i]
        assert torch.equal(image_a, image_b), i
        assert target_a["image_id"] == target_b["image_id"], i
        for key in ("boxes", "labels", "masks"):
            assert torch.equal(target_a[key], target_b[key]), (i, key)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    shapes = ShapesDataset(25, seed=5)
    out = tmp_path_factory.mktemp("shapes")
    path = export_coco(shapes, out, progress=False)
    return shapes, out, path


def test_round_trip_gives_the_same_images_masks_boxes_and_labels(exported):
    shapes, out, path = exported
    coco = CocoDataset(out / "images", path)
    assert coco.class_names == shapes.class_names
    assert coco.category_id_to_label == {1: 1, 2: 2, 3: 3}
    assert_same_samples(shapes, coco)


def test_exported_files_are_plain_coco(exported):
    shapes, out, path = exported
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(path))  # pycocotools reads it by itself
    assert sorted(p.name for p in (out / "images").iterdir()) == [f"{i:06d}.png" for i in range(25)]
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == ["square", "circle", "triangle"]
    for i in (0, 7, 24):
        _, target = shapes[i]
        anns = coco.loadAnns(coco.getAnnIds(imgIds=i))
        masks = np.stack([coco.annToMask(ann) for ann in anns])
        assert np.array_equal(masks, target["masks"].numpy())
        x, y, w, h = torch.tensor([ann["bbox"] for ann in anns]).unbind(1)
        assert torch.equal(torch.stack([x, y, x + w, y + h], dim=1), target["boxes"])
        assert [ann["area"] for ann in anns] == target["masks"].flatten(1).sum(1).tolist()
        assert all(ann["iscrowd"] == 0 and isinstance(ann["segmentation"]["counts"], str) for ann in anns)


def test_cocoeval_scores_the_ground_truth_as_perfect(exported):
    _, _, path = exported
    with contextlib.redirect_stdout(io.StringIO()):
        truth = COCO(str(path))
        detections = [{**ann, "score": 1.0} for ann in truth.dataset["annotations"]]
        evaluation = COCOeval(truth, truth.loadRes(detections), "segm")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    assert evaluation.stats[0] == pytest.approx(1.0)  # AP@[.5:.95]


def test_shipped_sample_is_what_its_command_makes():
    # data/README.md: maskrcnn-edu export-shapes --num-images 20 --seed 12345 --out data/shapes_sample
    shipped = CocoDataset(SHIPPED / "images", SHIPPED / "annotations.json")
    assert_same_samples(ShapesDataset(20, seed=12345), shipped)


def test_cli_export_shapes(tmp_path, capsys):
    out = tmp_path / "cli"
    arguments = ["--num-images", "3", "--seed", "4", "--out", str(out), "--image-size", "64", "--quiet"]
    code = main(["export-shapes", *arguments])
    assert code == 0
    assert "wrote 3 Shapes images" in capsys.readouterr().out
    exported = CocoDataset(out / "images", out / "annotations.json")
    assert_same_samples(ShapesDataset(3, image_size=64, seed=4), exported)


def test_cli_export_shapes_refuses_a_folder_holding_a_set_unless_overwrite(tmp_path, capsys):
    out = tmp_path / "set"
    out.mkdir()
    (out / "notes.txt").write_text("a folder that exists, with other files, is fine")
    quiet = ["--out", str(out), "--image-size", "64", "--quiet"]
    assert main(["export-shapes", "--num-images", "3", "--seed", "4", *quiet]) == 0
    annotations = (out / "annotations.json").read_bytes()
    capsys.readouterr()
    assert main(["export-shapes", "--num-images", "2", "--seed", "5", *quiet]) == 1
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and str(out) in error and "--overwrite" in error
    assert (out / "annotations.json").read_bytes() == annotations
    assert len(list((out / "images").iterdir())) == 3
    (out / "annotations.json").unlink()  # images alone are a set too
    assert main(["export-shapes", "--num-images", "2", "--seed", "5", *quiet]) == 1
    assert main(["export-shapes", "--num-images", "2", "--seed", "5", *quiet, "--overwrite"]) == 0
    assert sorted(path.name for path in (out / "images").iterdir()) == ["000000.png", "000001.png"]
    assert_same_samples(ShapesDataset(2, image_size=64, seed=5), CocoDataset(out / "images",
                                                                              out / "annotations.json"))
    assert (out / "notes.txt").exists()


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--num-images", "0"], "--num-images must be at least 1"),
        (["--num-images", "2", "--seed", "-1"], "seed"),
    ],
)
def test_cli_errors_are_one_line_and_exit_non_zero(tmp_path, capsys, arguments, message):
    code = main(["export-shapes", *arguments, "--out", str(tmp_path / "x"), "--quiet"])
    error = capsys.readouterr().err
    assert code == 1
    assert error.count("\n") == 1 and error.startswith("maskrcnn-edu export-shapes: error:")
    assert message in error


def test_no_temporary_files_are_left(exported):
    _, out, _ = exported
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]


# --- a user's own dataset --------------------------------------------------------------------------


class UserDataset(Dataset):
    """Three images; sample ``broken`` has one mask too few (or another fault)."""

    class_names = ["background", "thing"]

    def __init__(self, broken=None, fault="count"):
        self.broken, self.fault = broken, fault

    def __len__(self):
        return 3

    def __getitem__(self, index):
        masks = torch.zeros(2, 8, 8, dtype=torch.uint8)
        masks[0, 1:3, 1:3] = masks[1, 4:7, 2:8] = 1
        target = {
            "boxes": torch.tensor([[1.0, 1, 3, 3], [2, 4, 8, 7]]),
            "labels": torch.tensor([1, 1]),
            "masks": masks,
            "image_id": 40 + index,
        }
        if index == self.broken:
            if self.fault == "count":
                target["masks"] = masks[:1]
            elif self.fault == "label":
                target["labels"] = torch.tensor([1, 2])
            elif self.fault == "id":
                target["image_id"] = 40
        return torch.rand(3, 8, 8, generator=torch.Generator().manual_seed(index)), target


def test_user_dataset_exports_and_loads_back(tmp_path):
    path = export_coco(UserDataset(), tmp_path, progress=False)
    loaded = CocoDataset(tmp_path / "images", path)
    assert loaded.image_ids == [40, 41, 42] and loaded.class_names == ["background", "thing"]
    image, target = loaded[1]
    original_image, original_target = UserDataset()[1]
    assert torch.equal(target["masks"], original_target["masks"])
    assert torch.equal(target["boxes"], original_target["boxes"])
    # 8-bit PNG: the image comes back rounded to steps of 1/255
    assert (image - original_image).abs().max() <= 0.5 / 255 + 1e-6


@pytest.mark.parametrize(
    "fault, message",
    [
        ("count", r"dataset index 1 \(image id 41\): 2 boxes, 2 labels and 1 masks"),
        ("label", r"dataset index 1 \(image id 41\): label 2 has no name"),
        ("id", r"dataset index 1 \(image id 40\): image id 40 is used by dataset index 0 too"),
    ],
)
def test_broken_user_dataset_fails_before_the_json_is_written(tmp_path, fault, message):
    with pytest.raises(ValueError, match=message):
        export_coco(UserDataset(broken=1, fault=fault), tmp_path, progress=False)
    assert not (tmp_path / "annotations.json").exists()
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]


def test_dataset_without_class_names_needs_them_given(tmp_path):
    class Nameless(UserDataset):
        class_names = None

    with pytest.raises(ValueError, match="class_names"):
        export_coco(Nameless(), tmp_path, progress=False)
    path = export_coco(Nameless(), tmp_path, class_names=["background", "blob"], progress=False)
    assert json.loads(Path(path).read_text())["categories"] == [{"id": 1, "name": "blob"}]
