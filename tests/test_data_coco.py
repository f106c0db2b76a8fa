"""CocoDataset: each edge case of the shipped data/coco_edge_cases loads as data/README.md says,
the options, and bad input failing at the boundary with the file, annotation or image id named."""
import json
import shutil
from pathlib import Path

import pytest
import torch
from torchvision.transforms import v2

from maskrcnn_edu.data import CocoDataset, check_sample

EDGE = Path(__file__).resolve().parent.parent / "data" / "coco_edge_cases"
IMAGES, ANNOTATIONS = EDGE / "images", EDGE / "annotations.json"


@pytest.fixture(scope="module")
def edge():
    return CocoDataset(IMAGES, ANNOTATIONS)


def rectangles(height, width, *blocks):
    """uint8 ``[H, W]`` mask with ones in each ``(rows, cols)`` block of slices."""
    mask = torch.zeros(height, width, dtype=torch.uint8)
    for rows, cols in blocks:
        mask[rows, cols] = 1
    return mask


def rgb(*values):
    return torch.tensor(values, dtype=torch.float32) / 255


# --- the shipped edge cases -------------------------------------------------------------------------


def test_non_contiguous_category_ids_become_labels_in_id_order(edge):
    # categories are listed 7 "disk", 3 "square": labels follow the ids, not the listing
    assert edge.class_names == ["background", "square", "disk"]
    assert edge.category_id_to_label == {3: 1, 7: 2}
    assert edge.label_to_category_id == {1: 3, 2: 7}


def test_every_sample_has_the_documented_format(edge):
    assert edge.image_ids == [1, 2, 3]
    for index in range(len(edge)):
        image, target = edge[index]
        check_sample(image, target, f"edge case {index}")
        assert target["boxes"].dtype == torch.float32
        assert isinstance(target["image_id"], int) and target["image_id"] == edge.image_ids[index]


def test_grayscale_image_becomes_rgb(edge):
    image, _ = edge[0]
    assert image.shape == (3, 12, 16)
    assert torch.equal(image[:, 0, 0], rgb(30, 30, 30))
    assert torch.equal(image[:, 1, 1], rgb(200, 200, 200))
    assert torch.equal(image[:, 2, 12], rgb(120, 120, 120))


def test_polygon_in_several_parts_is_one_instance(edge):
    _, target = edge[0]
    expected = rectangles(12, 16, (slice(1, 4), slice(1, 5)), (slice(6, 10), slice(8, 12)))
    assert target["labels"][0] == 1  # square
    assert torch.equal(target["masks"][0], expected)
    assert target["boxes"][0].tolist() == [1, 1, 12, 10]  # one box around both parts


def test_compressed_rle(edge):
    _, target = edge[0]
    assert target["labels"].tolist() == [1, 2]
    assert torch.equal(target["masks"][1], rectangles(12, 16, (slice(2, 5), slice(12, 15))))
    assert target["boxes"][1].tolist() == [12, 2, 15, 5]


def test_rgba_image_becomes_rgb_with_alpha_dropped(edge):
    image, _ = edge[1]
    assert image.shape == (3, 10, 10)
    assert torch.equal(image[:, 0, 0], rgb(20, 40, 60))
    assert torch.equal(image[:, 1, 1], rgb(200, 100, 50))  # alpha 128, colour kept as stored


def test_uncompressed_rle_that_is_not_crowd(edge):
    _, target = edge[1]
    assert target["labels"].tolist() == [2]  # the crowd annotation of this image is not here
    assert torch.equal(target["masks"][0], rectangles(10, 10, (slice(1, 4), slice(1, 3))))
    assert target["boxes"].tolist() == [[1, 1, 3, 4]]


def test_crowd_annotation_is_left_out_of_the_target_and_given_to_evaluation(edge):
    crowd = edge.crowd_target(1)
    assert crowd["image_id"] == 2
    assert crowd["labels"].tolist() == [1]
    assert torch.equal(crowd["masks"][0], rectangles(10, 10, (slice(5, 9), slice(4, 9))))
    assert crowd["boxes"].tolist() == [[4, 5, 9, 9]]
    assert edge.coco.anns[21]["iscrowd"] == 1  # and pycocotools has it, for COCOeval
    for index in (0, 2):
        assert len(edge.crowd_target(index)["labels"]) == 0


def test_image_without_annotations_is_kept_or_dropped(edge):
    image, target = edge[2]
    assert image.shape == (3, 8, 8) and torch.equal(image[:, 4, 4], rgb(10, 20, 30))
    assert target["boxes"].shape == (0, 4) and target["labels"].shape == (0,)
    assert target["masks"].shape == (0, 8, 8)
    assert CocoDataset(IMAGES, ANNOTATIONS, keep_empty=False).image_ids == [1, 2]


# --- options -------------------------------------------------------------------------------------


@pytest.mark.parametrize("categories", [["disk"], [7], "disk", 7])
def test_category_subset_by_name_or_id(categories):
    subset = CocoDataset(IMAGES, ANNOTATIONS, categories=categories)
    assert subset.class_names == ["background", "disk"]
    assert subset.label_to_category_id == {1: 7}
    assert [subset[i][1]["labels"].tolist() for i in range(3)] == [[1], [1], []]
    assert torch.equal(subset[0][1]["masks"][0], rectangles(12, 16, (slice(2, 5), slice(12, 15))))
    assert len(subset.crowd_target(1)["labels"]) == 0  # the crowd is a square


def test_subset_order_does_not_change_labels():
    a = CocoDataset(IMAGES, ANNOTATIONS, categories=["disk", "square"])
    b = CocoDataset(IMAGES, ANNOTATIONS, categories=[3, "disk"])
    assert a.class_names == b.class_names == ["background", "square", "disk"]


def test_an_image_with_only_a_crowd_counts_as_empty():
    squares = CocoDataset(IMAGES, ANNOTATIONS, categories=["square"], keep_empty=False)
    assert squares.image_ids == [1]  # image 2 has only a crowd square, image 3 nothing


def test_unknown_category_in_the_subset_is_an_error():
    with pytest.raises(ValueError, match=r"annotations\.json.*unknown category 'cat'.*'disk' \(id 7\)"):
        CocoDataset(IMAGES, ANNOTATIONS, categories=["cat"])


def test_transforms_option_takes_a_v2_transform(edge):
    flipped = CocoDataset(IMAGES, ANNOTATIONS, transforms=v2.RandomHorizontalFlip(p=1.0))
    image, target = flipped[0]
    original_image, original_target = edge[0]
    assert torch.equal(image, original_image.flip(-1))
    assert torch.equal(target["masks"], original_target["masks"].flip(-1))
    assert target["boxes"].tolist() == [[4, 1, 15, 10], [1, 2, 4, 5]]  # x -> 16 - x


# --- annotation files written for one test --------------------------------------------------------


def edge_json():
    return json.loads(ANNOTATIONS.read_text())


def write_dataset(tmp_path, data, images=("gray.png", "rgba.png", "empty.png")):
    """A copy of the edge cases with ``data`` as the annotation file -> (image_dir, json path)."""
    image_dir = tmp_path / "images"
    image_dir.mkdir()
    for name in images:
        shutil.copy(IMAGES / name, image_dir / name)
    path = tmp_path / "annotations.json"
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return image_dir, path


def test_degenerate_polygon_is_left_out(tmp_path):
    data = edge_json()
    data["annotations"].append(
        {"id": 30, "image_id": 3, "category_id": 3, "iscrowd": 0, "segmentation": [[1, 1, 4, 4, 7, 7]]}
    )  # three points on a line: covers no pixel centre
    _, target = CocoDataset(*write_dataset(tmp_path, data))[2]
    assert target["boxes"].shape == (0, 4) and target["masks"].shape == (0, 8, 8)


def test_missing_image_file_names_the_file_and_id(tmp_path):
    data = edge_json()
    data["images"][1]["file_name"] = "missing.png"
    dataset = CocoDataset(*write_dataset(tmp_path, data))
    with pytest.raises(FileNotFoundError, match=r"missing\.png \(image id 2\) not found"):
        dataset[1]
    dataset[0]  # the others still load


@pytest.mark.parametrize("content", [b"not an image at all", "truncated"])
def test_corrupt_image_file_names_the_file_and_id(tmp_path, content):
    image_dir, path = write_dataset(tmp_path, edge_json())
    png = (IMAGES / "rgba.png").read_bytes()
    (image_dir / "rgba.png").write_bytes(png[: len(png) // 2] if content == "truncated" else content)
    with pytest.raises(ValueError, match=r"cannot read image file .*rgba\.png \(image id 2\)"):
        CocoDataset(image_dir, path)[1]


def test_image_of_the_wrong_size_is_an_error(tmp_path):
    data = edge_json()
    data["images"][2]["height"] = 9
    with pytest.raises(ValueError, match=r"empty\.png \(image id 3\) is 8 x 8 pixels but .*says 9 x 8"):
        CocoDataset(*write_dataset(tmp_path, data))[2]


def test_annotation_naming_an_unknown_image(tmp_path):
    data = edge_json()
    data["annotations"][0]["image_id"] = 99
    with pytest.raises(ValueError, match=r"annotations\.json: annotation 10 names image id 99"):
        CocoDataset(*write_dataset(tmp_path, data))


def test_annotation_naming_an_unknown_category(tmp_path):
    data = edge_json()
    data["annotations"][1]["category_id"] = 5
    with pytest.raises(ValueError, match=r"annotations\.json: annotation 11 names category id 5.*\[3, 7\]"):
        CocoDataset(*write_dataset(tmp_path, data))


@pytest.mark.parametrize(
    "content, message",
    [
        ("this is not json {", "not a COCO annotation file: it is not JSON"),
        ("[1, 2, 3]", "the JSON is a list"),
        (json.dumps({"images": [], "annotations": []}), "it lacks 'categories'"),
        (json.dumps({"images": {}, "annotations": [], "categories": []}), "'images' must be a list"),
    ],
)
def test_annotation_file_that_is_not_coco_json(tmp_path, content, message):
    with pytest.raises(ValueError, match=rf"annotations\.json: .*{message}"):
        CocoDataset(*write_dataset(tmp_path, content))


def test_entries_without_the_keys_we_read(tmp_path):
    data = edge_json()
    del data["annotations"][2]["segmentation"]
    with pytest.raises(ValueError, match=r"annotations\[2\] \(id 20\) lacks segmentation"):
        CocoDataset(*write_dataset(tmp_path, data))


def test_duplicate_image_ids(tmp_path):
    data = edge_json()
    data["images"][2]["id"] = 1
    with pytest.raises(ValueError, match="images id 1 appears more than once"):
        CocoDataset(*write_dataset(tmp_path, data))


def test_rle_of_the_wrong_size(tmp_path):
    data = edge_json()
    data["annotations"][1]["segmentation"]["size"] = [16, 12]
    with pytest.raises(ValueError, match=r"annotation 11: RLE size \[16, 12\] is not its image's"):
        CocoDataset(*write_dataset(tmp_path, data))


def test_missing_annotation_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.json"):
        CocoDataset(IMAGES, tmp_path / "nothing.json")


def test_16_bit_grayscale_image_is_not_white(tmp_path):
    import numpy as np
    from PIL import Image

    image_dir = tmp_path / "images"
    image_dir.mkdir()
    pixels = np.arange(0, 60001, 1000, dtype=np.uint16)[None].repeat(4, axis=0)  # [4, 61]
    Image.fromarray(pixels).save(image_dir / "deep.png")
    data = {"images": [{"id": 1, "file_name": "deep.png", "height": 4, "width": 61}],
            "annotations": [], "categories": [{"id": 1, "name": "thing"}]}
    (tmp_path / "annotations.json").write_text(json.dumps(data))
    image, _ = CocoDataset(image_dir, tmp_path / "annotations.json")[0]
    assert image.shape == (3, 4, 61)
    torch.testing.assert_close(image[:, 2, 30], torch.full((3,), 30000 / 65535), atol=1e-6, rtol=0)
    assert image.max() < 0.92 and image.min() == 0


@pytest.mark.parametrize(
    "change, message",
    [
        ({"bbox": [1, 1, -3, 2]}, r"annotation 10: bbox \[1, 1, -3, 2\] has a negative width or height"),
        ({"bbox": [1, 1, 3]}, r"annotation 10: bbox must be 4 numbers \[x, y, width, height\]"),
        ({"segmentation": []}, r"annotation 10: the segmentation is empty"),
        ({"segmentation": [[1, 1, 4, 4]]}, r"annotation 10: polygon 0 has 4 numbers.*at least 6"),
        ({"segmentation": [[1, 1, 4, 4, 7, 1], [2, 2]]}, r"annotation 10: polygon 1 has 2 numbers"),
        ({"segmentation": [[1, 1, 4, 4, 7, 1, 3]]}, r"annotation 10: polygon 0 has 7 numbers.*x, y pairs"),
        ({"segmentation": [[]]}, r"annotation 10: polygon 0 has 0 numbers"),
        ({"segmentation": "a polygon"}, r"annotation 10: segmentation must be a list of polygons or an RLE"),
    ],
)
def test_malformed_bbox_or_polygon_names_the_file_and_annotation(tmp_path, change, message):
    data = edge_json()
    assert data["annotations"][0]["id"] == 10
    data["annotations"][0].update(change)
    with pytest.raises(ValueError, match=rf"annotations\.json: {message}"):
        CocoDataset(*write_dataset(tmp_path, data))
