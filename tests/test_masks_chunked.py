"""Masks pasted a few at a time (``maskrcnn-edu detect`` on photographs) equal masks pasted all at once."""
import pytest
import torch

from maskrcnn_edu import MaskRCNN
from maskrcnn_edu.config import shapes
from maskrcnn_edu.masks import binary_masks_in_chunks, paste_masks, rescore_by_mask_overlap


def _random_detections(count: int, seed: int, size=(60, 80)):
    g = torch.Generator().manual_seed(seed)
    height, width = size
    corner = torch.rand(count, 2, generator=g) * torch.tensor([width * 0.7, height * 0.7])
    extent = 4 + torch.rand(count, 2, generator=g) * torch.tensor([width * 0.5, height * 0.5])
    boxes = torch.cat([corner, corner + extent], 1)
    masks = torch.rand(count, 1, 28, 28, generator=g)
    scores = torch.sort(torch.rand(count, generator=g), descending=True).values
    return {"boxes": boxes, "labels": torch.randint(1, 4, (count,), generator=g), "scores": scores,
            "masks": masks}


@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("max_values", [1, 60 * 80 * 3, 10 ** 9])  # one mask, three, all at once
def test_the_chunks_concatenated_equal_the_masks_pasted_at_once(aligned, max_values):
    d = _random_detections(7, seed=0)
    chunks = list(binary_masks_in_chunks(d["masks"], d["boxes"], (60, 80), aligned, max_values=max_values))
    expected_sizes = {1: [1] * 7, 60 * 80 * 3: [3, 3, 1], 10 ** 9: [7]}[max_values]
    assert [len(chunk) for chunk in chunks] == expected_sizes
    assert all(chunk.dtype == torch.bool for chunk in chunks)
    whole = paste_masks(d["masks"], d["boxes"], (60, 80), aligned=aligned)[:, 0] > 0.5
    assert torch.equal(torch.cat(chunks), whole)


@pytest.mark.parametrize("seed", range(4))
def test_rescoring_from_chunks_equals_rescoring_the_pasted_masks(seed):
    d = _random_detections(9, seed=seed)
    pasted = {**d, "masks": paste_masks(d["masks"], d["boxes"], (60, 80))}
    expected, expected_order = rescore_by_mask_overlap(pasted)
    chunks = binary_masks_in_chunks(d["masks"], d["boxes"], (60, 80), max_values=60 * 80 * 2)
    got, order = rescore_by_mask_overlap(d, binary_chunks=chunks)
    assert torch.equal(order, expected_order)
    assert torch.equal(got["scores"], expected["scores"]) and torch.equal(got["boxes"], expected["boxes"])
    assert expected["scores"].lt(pasted["scores"]).any()  # some mask overlap: the test rescored something


@pytest.mark.parametrize("rescore", [False, True])
def test_detect_without_pasting_gives_the_models_detections_and_the_same_masks(rescore, monkeypatch):
    torch.manual_seed(0)
    config = shapes().replace(box_score_thresh=0.0, mask_overlap_rescore=rescore)
    model = MaskRCNN(config).eval()
    image = torch.rand(3, 90, 120)
    with torch.no_grad():
        pasted = model([image])[0]
    monkeypatch.setattr("maskrcnn_edu.masks.PASTE_CHUNK_VALUES", 90 * 120 * 2)
    unpasted = model.detect([image], paste_masks=False)[0]
    assert len(pasted["scores"]) == config.detections_per_img  # a full image of detections
    assert unpasted["masks"].shape[-2:] == (2 * config.mask_roi_size,) * 2  # the head's 28 x 28
    for key in ("boxes", "labels", "scores"):
        assert torch.equal(unpasted[key], pasted[key]), key
    chunks = list(binary_masks_in_chunks(unpasted["masks"], unpasted["boxes"], (90, 120), config.aligned))
    assert len(chunks) == config.detections_per_img // 2  # two at a time (the rescoring too)
    assert torch.equal(torch.cat(chunks), pasted["masks"][:, 0] > 0.5)


def test_detect_refuses_a_model_in_training_mode():
    with pytest.raises(ValueError, match="eval mode"):
        MaskRCNN(shapes()).detect([torch.rand(3, 64, 64)])
