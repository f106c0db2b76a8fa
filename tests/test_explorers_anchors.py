"""The chapter 02 explorer: its view matches anchors as the RPN does, and its controls drive it.

Widget tests set a control's ``.value``, as a reader's mouse would, and check ``explorer.state``.
"""
from pathlib import Path

import pytest
import torch

from maskrcnn_edu import MaskRCNN
from maskrcnn_edu.boxes import box_iou
from maskrcnn_edu.data import ShapesDataset
from maskrcnn_edu.explorers.anchors import anchor_explorer, anchor_labels_view, shapes_anchors, shapes_scene
from maskrcnn_edu.matching import BACKGROUND, IGNORE, Matcher

MODEL = Path(__file__).resolve().parents[1] / "data" / "shapes_model" / "model.pt"


@pytest.fixture(scope="module")
def explorer():
    return anchor_explorer(draw=False)  # state recomputed on every change, no picture rendered


def test_anchors_are_the_rpns_own():
    # The shipped Shapes model's training pass on image 7: same anchors, same labels as the view.
    model = MaskRCNN.from_checkpoint(MODEL)
    image, target = ShapesDataset(10, seed=3)[7]
    assert torch.equal(shapes_scene(7)[1], target["boxes"])
    trace = model.trace(image, target)
    anchors, levels, ratios = shapes_anchors()
    assert torch.equal(anchors, torch.cat(trace.rpn.anchors))
    assert torch.bincount(levels).tolist() == [len(a) for a in trace.rpn.anchors]
    view = anchor_labels_view(image=7)  # the RPN's 0.7 / 0.3 and low-quality rule
    rpn_labels = trace.rpn.anchor_labels[0]
    assert torch.equal(view.matches >= 0, rpn_labels == 1)
    assert torch.equal(view.matches == IGNORE, rpn_labels == IGNORE)
    assert torch.equal(view.matches == BACKGROUND, rpn_labels == 0)


def test_ratios_follow_the_cell_order():
    anchors, levels, ratios = shapes_anchors()
    widths, heights = anchors[:, 2] - anchors[:, 0], anchors[:, 3] - anchors[:, 1]
    assert torch.all((heights > widths) == (ratios == 2.0))  # ratio = h / w
    assert torch.all((heights < widths) == (ratios == 0.5))
    # One cell of P2: ratio-major, every size of a ratio before the next ratio (two sizes per level).
    assert levels[:6].tolist() == [0] * 6 and ratios[:6].tolist() == [0.5, 0.5, 1.0, 1.0, 2.0, 2.0]
    assert (widths[2:4] - torch.tensor([8.0, 12.0])).abs().max() < 1e-4  # ratio 1: 8 and 12 px


def test_default_view_counts():
    view = anchor_labels_view()  # image 7, P4, ratio 1, 0.7 / 0.3, low-quality rule on
    _, boxes = shapes_scene(7)
    anchors, levels, ratios = shapes_anchors()
    expected = Matcher(0.7, 0.3, allow_low_quality_matches=True)(box_iou(boxes, anchors))
    assert torch.equal(view.matches, expected)
    assert int(view.shown.sum()) == 8 * 8 * 2  # P4 of a 128 px image: 8 x 8 cells, two ratio-1 anchors each
    assert sum(view.counts.values()) == 128 and sum(view.total_counts.values()) == len(anchors)
    assert view.counts["positive"] == int((expected[view.shown] >= 0).sum())
    assert view.unmatched_objects == []
    assert f"{view.counts['positive']} positive" in view.caption


def test_without_the_low_quality_rule_objects_go_unmatched():
    _, boxes = shapes_scene(7)
    anchors, _, _ = shapes_anchors()
    best_per_object = box_iou(boxes, anchors).max(dim=1).values
    view = anchor_labels_view(image=7, low_quality=False)
    assert view.unmatched_objects == torch.where(best_per_object < 0.7)[0].tolist()
    assert len(view.unmatched_objects) >= 1  # on Shapes most objects never reach 0.7
    assert "without a positive anchor" in view.caption


def test_setting_controls_recomputes(explorer):
    explorer.controls["level"].value = 0  # P2
    explorer.controls["ratio"].value = 2.0
    assert int(explorer.state.shown.sum()) == 32 * 32 * 2  # two sizes per level
    assert "P2, ratio 2 (6 x 12 and 8 x 16 px anchors" in explorer.state.caption
    before = explorer.state.total_counts["positive"]
    explorer.controls["high"].value = 0.5  # a lower bar: more positives
    _, boxes = shapes_scene(7)
    expected = Matcher(0.5, 0.3, allow_low_quality_matches=True)(box_iou(boxes, shapes_anchors()[0]))
    assert explorer.state.total_counts["positive"] == int((expected >= 0).sum()) > before
    explorer.controls["image"].value = 0
    _, boxes0 = shapes_scene(0)
    expected0 = Matcher(0.5, 0.3, allow_low_quality_matches=True)(box_iou(boxes0, shapes_anchors()[0]))
    assert torch.equal(explorer.state.matches, expected0)


def test_thresholds_out_of_order_explain_themselves(explorer):
    explorer.controls["high"].value = 0.4
    explorer.controls["low"].value = 0.6
    assert not explorer.state.valid
    assert "above the high one" in explorer.state.caption
    explorer.controls["low"].value = 0.3
    assert explorer.state.valid


def test_drawn_explorer_has_a_picture():
    explorer = anchor_explorer(draw=True, level=4)
    assert explorer.image.value[:8] == b"\x89PNG\r\n\x1a\n"
    assert "P6" in explorer.state.caption


def test_bad_arguments():
    with pytest.raises(ValueError, match="level"):
        anchor_labels_view(level=5)
    with pytest.raises(ValueError, match="ratio"):
        anchor_labels_view(ratio=3.0)
    with pytest.raises(ValueError, match="image index"):
        anchor_labels_view(image=10)


def test_draw_anchor_verdicts_draws_what_it_is_asked():
    from matplotlib.figure import Figure

    from maskrcnn_edu.explorers.anchors import draw_anchor_verdicts

    anchors = torch.tensor([[0.0, 0.0, 10.0, 10.0], [5.0, 5.0, 30.0, 20.0], [-4.0, 2.0, 4.0, 6.0]])
    matches = torch.tensor([0, IGNORE, BACKGROUND])
    ax = Figure().subplots()
    extent = draw_anchor_verdicts(ax, anchors, matches, kinds=("ignored", "positive"))
    assert len(ax.patches) == 2  # the positive's and the ignored anchor's boxes; no negatives
    assert extent == (0.0, 0.0, 30.0, 20.0)
    assert sorted(t.get_text() for t in ax.legend().get_texts()) == ["ignored (1)", "positive (1)"]
    with pytest.raises(ValueError, match="kinds"):
        draw_anchor_verdicts(ax, anchors, matches, kinds=("neutral",))
