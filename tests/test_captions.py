"""Captions placed at drawing time: none hides another, none leaves the axes, none covers a box
when a free spot beside it exists."""
import matplotlib.pyplot as plt
import numpy as np
import torch

from maskrcnn_edu.visualize import draw_boxes, draw_detections


def _extents(fig, ax):
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    return [text.get_window_extent(renderer) for text in ax.texts]


def _pairs_overlapping(extents):
    return [(i, j) for i in range(len(extents)) for j in range(i + 1, len(extents))
            if extents[i].overlaps(extents[j])]


def test_captions_of_boxes_sharing_a_corner_do_not_hide_each_other():
    fig, ax = plt.subplots(figsize=(4, 4), dpi=100)
    ax.imshow(np.zeros((128, 128, 3)))
    # three boxes sharing a corner
    boxes = torch.tensor([[40.0, 40, 90, 90], [41, 41, 88, 92], [40, 42, 95, 80]])
    draw_boxes(ax, boxes, labels=torch.tensor([1, 2, 3]), scores=torch.tensor([0.9, 0.8, 0.7]),
               class_names=["bg", "square", "circle", "triangle"])
    extents = _extents(fig, ax)
    assert _pairs_overlapping(extents) == []
    plt.close(fig)


def test_without_a_placer_the_same_captions_would_overlap():
    """The test above could not pass by accident: written where asked, the captions overlap."""
    fig, ax = plt.subplots(figsize=(4, 4), dpi=100)
    ax.imshow(np.zeros((128, 128, 3)))
    for y in (40, 41, 42):
        ax.text(40, y, "square 0.90", fontsize=8, va="top")
    assert _pairs_overlapping(_extents(fig, ax)) != []
    plt.close(fig)


def test_a_caption_above_a_box_at_the_images_top_moves_below_or_inside_and_stays_in_the_axes():
    fig, ax = plt.subplots(figsize=(4, 4), dpi=100)
    image = torch.zeros(3, 128, 128)
    detections = {"boxes": torch.tensor([[10.0, 0, 60, 40], [70, 50, 120, 100]]),
                  "labels": torch.tensor([1, 2]), "scores": torch.tensor([0.9, 0.8])}
    draw_detections(ax, image, detections, ["bg", "a", "b"])
    extents = _extents(fig, ax)
    frame = ax.bbox
    for extent in extents:
        assert frame.x0 <= extent.x0 and extent.x1 <= frame.x1
        assert frame.y0 <= extent.y0 and extent.y1 <= frame.y1
    second = extents[1]  # room above its box: it stays there, outside the box, hiding nothing of the object
    box_top = ax.transData.transform([[70, 50]])[0, 1]
    assert second.y0 >= box_top - 3
    plt.close(fig)
