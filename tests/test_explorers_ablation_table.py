"""The reader of ``data/ablations/shipped_recipe.json`` on a small hand-made report: every number below
is worked out by hand from the runs, so nothing depends on the sweep's output."""
from __future__ import annotations

import json

import pytest

from maskrcnn_edu.explorers.ablation_table import (agreement_counts, compare_with_paper, format_comparisons,
                                                   format_variant_table, load_shipped_report)


def stats(*values):
    return {"mean": sum(values) / len(values), "min": min(values), "max": max(values)}


@pytest.fixture
def report() -> dict:
    """Two seeds each of the baseline and RoIPool, one of box-only; softmax not run yet.

    mask AP: baseline 0.60, 0.62; RoIPool 0.50, 0.58 -> means 0.61, 0.54: +7.0 points, seeds +10.0 and
    +4.0, ranges 0.60-0.62 and 0.50-0.58 apart. mask AP50: baseline 0.90, 0.92; RoIPool 0.93, 0.95:
    -3.0 points, against the paper's +2.4. box AP: baseline 0.70, 0.72, box-only 0.74 (one seed).
    """
    runs = [
        {"variant": "baseline", "seed": 0, "segm_AP": 0.60, "segm_AP50": 0.90, "bbox_AP": 0.70},
        {"variant": "baseline", "seed": 1, "segm_AP": 0.62, "segm_AP50": 0.92, "bbox_AP": 0.72},
        {"variant": "roipool", "seed": 0, "segm_AP": 0.50, "segm_AP50": 0.93, "bbox_AP": 0.69},
        {"variant": "roipool", "seed": 1, "segm_AP": 0.58, "segm_AP50": 0.95, "bbox_AP": 0.71},
        {"variant": "box_only", "seed": 0, "bbox_AP": 0.74},
    ]
    table = {
        "baseline": {"seeds": [0, 1], "segm_AP": stats(0.60, 0.62), "segm_AP50": stats(0.90, 0.92),
                     "bbox_AP": stats(0.70, 0.72)},
        "roipool": {"seeds": [0, 1], "segm_AP": stats(0.50, 0.58), "segm_AP50": stats(0.93, 0.95),
                    "bbox_AP": stats(0.69, 0.71)},
        "box_only": {"seeds": [0], "bbox_AP": stats(0.74)},
    }
    paper = {"tables": {
        "2c": {"title": "Table 2(c) RoIAlign", "rows": {"RoIPool": {"segm_AP": 26.9, "segm_AP50": 48.8},
                                                        "RoIAlign": {"segm_AP": 30.3, "segm_AP50": 51.2}}},
        "3": {"title": "Table 3 Object detection", "rows": {"Faster R-CNN": {"bbox_AP": 37.3},
                                                            "Mask R-CNN": {"bbox_AP": 38.2}}}},
        "text": {"4.2 with FPN": {"segm_AP": 1.5}}}
    comparisons = [
        {"name": "RoIAlign - RoIPool", "task": "segm", "ours": ["baseline", "roipool"],
         "paper": {"table": "2c", "better": "RoIAlign", "worse": "RoIPool"}},
        {"name": "RoIAlign - RoIPool, FPN", "task": "segm", "ours": ["baseline", "roipool"],
         "paper": {"text": "4.2 with FPN"}},
        {"name": "sigmoid - softmax", "task": "segm", "ours": ["baseline", "softmax"], "paper": None},
        {"name": "with - without masks", "task": "bbox", "ours": ["baseline", "box_only"],
         "paper": {"table": "3", "better": "Mask R-CNN", "worse": "Faster R-CNN"}},
    ]
    variants = {"baseline": {}, "roipool": {"roi_op": "pool"}, "softmax": {"mask_loss": "softmax"},
                "box_only": {"train_mask_branch": False}}
    return {"results": {"runs": runs, "table": table}, "paper": paper, "comparisons": comparisons,
            "variants": variants}


def by_name(comparisons, name, metric):
    return next(c for c in comparisons if c.name == name and c.metric == metric)


def test_the_comparisons_worked_out_by_hand(report):
    comparisons = compare_with_paper(report, metrics=("AP", "AP50"))
    assert len(comparisons) == 4 * 2
    ap = by_name(comparisons, "RoIAlign - RoIPool", "AP")
    assert (ap.ours, ap.paper, ap.same_direction, ap.beyond_spread) == (7.0, 3.4, True, True)
    assert ap.seeds == [10.0, 4.0] and ap.source == "Table 2(c): RoIAlign vs RoIPool"
    ap50 = by_name(comparisons, "RoIAlign - RoIPool", "AP50")
    assert (ap50.ours, ap50.paper, ap50.same_direction, ap50.beyond_spread) == (-3.0, 2.4, False, True)
    text = by_name(comparisons, "RoIAlign - RoIPool, FPN", "AP")
    assert (text.ours, text.paper, text.same_direction) == (7.0, 1.5, True)
    assert by_name(comparisons, "RoIAlign - RoIPool, FPN", "AP50").paper is None  # the text gives AP only


def test_a_missing_variant_or_paper_number_is_reported_never_guessed(report):
    comparisons = compare_with_paper(report, metrics=("AP",))
    softmax = by_name(comparisons, "sigmoid - softmax", "AP")
    assert (softmax.ours, softmax.paper, softmax.same_direction) == (None, None, None)
    assert "not measured yet" in softmax.sentence() and "no number" in softmax.sentence()
    boxes = by_name(comparisons, "with - without masks", "AP")  # box AP: one seed of box-only
    assert (boxes.ours, boxes.paper, boxes.same_direction, boxes.beyond_spread) == (-3.0, 0.9, False, None)
    assert "box AP" in boxes.sentence() and "OPPOSITE" in boxes.sentence()


def test_agreement_counts(report):
    counts = agreement_counts(compare_with_paper(report, metrics=("AP", "AP50")))
    # agree: RoIAlign-RoIPool AP, FPN text AP; disagree: RoIAlign-RoIPool AP50, masks AP; the other four
    # lack a side (softmax twice, the FPN text's AP50, the box AP50 nobody has); beyond the spread: the
    # three RoIAlign - RoIPool ones (the box-only model has one seed)
    assert counts == {"agree": 2, "disagree": 2, "undecided": 4, "beyond_spread": 3}


def test_the_variant_table_prints_means_and_ranges_in_points(report):
    text = format_variant_table(report)
    lines = text.splitlines()
    assert lines[1].startswith("shipped recipe") and "61.0 (60.0-62.0)" in lines[1]
    assert "54.0 (50.0-58.0)" in lines[2] and "2(c), 2(d)" in lines[2]
    assert "74.0" in lines[3] and " - " in lines[3]  # box-only: one seed, no mask AP
    assert lines[-1] == "(not run yet: softmax over classes)"
    assert "RoIAlign - RoIPool, mask AP: +7.0 points here" in format_comparisons(compare_with_paper(report))


def test_load_shipped_report_refuses_another_file(tmp_path, report):
    path = tmp_path / "report.json"
    path.write_text(json.dumps(report))
    assert load_shipped_report(path)["comparisons"] == report["comparisons"]
    path.write_text(json.dumps({"results": {"runs": [], "table": {}}}))
    with pytest.raises(ValueError, match="paper"):
        load_shipped_report(path)
    with pytest.raises(ValueError, match="no ablation report"):
        load_shipped_report(tmp_path / "missing.json")
