"""``benchmarks/ablations.py --smoke`` runs the whole sweep end to end (2 steps, 8 held-out images, one
seed, every default variant) and writes the report the chapter reads: the baseline checked against
the shipped model, every run, the table, the paper's numbers, and the detections for the explorer."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from maskrcnn_edu.config import shapes
from maskrcnn_edu.training import recipes

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_VARIANTS = ["baseline", "resnet50", "softmax", "roipool", "roiwarp", "unaligned", "mlp_mask_head",
                    "box_only"]


def sweep(out: Path, *extra: str) -> subprocess.CompletedProcess:
    # One thread: on a small shared CPU two threads that wait for each other's core are much slower.
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "benchmarks/ablations.py", "--smoke", "--out", str(out), *extra]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600, env=environment)


@pytest.fixture(scope="module")
def smoke(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ablations")
    done = sweep(out)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return out


def test_the_smoke_sweep_runs_every_variant_once_and_tables_them(smoke):
    report = json.loads((smoke / "shipped_recipe.json").read_text())
    runs = report["results"]["runs"]
    assert [r["variant"] for r in runs] == DEFAULT_VARIANTS  # ResNet-34 only when asked for
    assert all(r["seed"] == 0 and r["steps"] == 2 and r["images"] == 8 for r in runs)
    for run in runs:
        assert ("segm_AP" in run) is (run["variant"] != "box_only")  # the box-only model: box AP only
        assert 0.0 <= run["bbox_AP50"] <= 1.0
    table = report["results"]["table"]
    assert list(table) == DEFAULT_VARIANTS and table["baseline"]["seeds"] == [0]
    softmax = next(r for r in runs if r["variant"] == "softmax")
    assert table["softmax"]["segm_AP50"]["mean"] == softmax["segm_AP50"]  # one seed: its own value
    assert report["variants"]["roiwarp"] == {"roi_op": "warp"}
    assert report["test_set"] == {"images": 8, "seed": recipes.SHAPES_TEST_SEED}


def test_the_report_checks_the_baseline_against_the_shipped_model_and_the_recipe(smoke):
    report = json.loads((smoke / "shipped_recipe.json").read_text())
    expected = json.loads(json.dumps(shapes().to_dict()))  # as JSON writes it: lists for tuples
    assert report["baseline_config"] == expected
    checks = report["checks"]
    assert checks["config_equals_shipped_model"] and checks["config_differences"] == {}
    # --smoke trains 2 steps, not the recipe's 850: the check sees it, and nothing else
    assert not checks["settings_equal_recipe"]
    assert checks["settings_differences"] == {"steps": [2, recipes.SHAPES_STEPS]}
    assert report["train_settings"]["steps"] == 2 and report["train_settings"]["lr"] == recipes.SHAPES_LR


def test_every_comparison_names_measured_variants_and_rows_the_paper_has(smoke):
    report = json.loads((smoke / "shipped_recipe.json").read_text())
    tables, text = report["paper"]["tables"], report["paper"]["text"]
    assert tables["2c"]["rows"]["RoIWarp (bilinear, ave)"]["segm_AP"] == 27.1
    assert tables["3"]["rows"]["Mask R-CNN"]["bbox_AP"] == 38.2
    for comparison in report["comparisons"]:
        assert set(comparison["ours"]) <= set(report["variants"]), comparison["name"]
        paper = comparison["paper"]
        if paper is None:
            continue
        metric = f"{comparison['task']}_AP"
        if "text" in paper:
            assert metric in text[paper["text"]]
        else:
            rows = tables[paper["table"]]["rows"]
            assert metric in rows[paper["better"]] and metric in rows[paper["worse"]], comparison["name"]


def test_the_explorer_gets_each_variants_detections_on_the_first_held_out_images(smoke):
    detections = json.loads((smoke / "shipped_recipe_detections.json").read_text())
    assert list(detections) == DEFAULT_VARIANTS
    for variant, results in detections.items():
        assert all(0 <= r["image_id"] < 8 for r in results)
        assert all(("segmentation" in r) is (variant != "box_only") for r in results)


def test_resume_skips_the_recorded_runs_and_a_fresh_start_will_not_overwrite_them(smoke):
    path = smoke / "shipped_recipe.json"
    before = path.read_text()
    refused = sweep(smoke)
    assert refused.returncode != 0 and "--resume" in refused.stderr
    resumed = sweep(smoke, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "---" not in resumed.stdout  # no run started
    assert path.read_text() == before
    other_recipe = sweep(smoke, "--resume", "--steps", "3")
    assert other_recipe.returncode != 0 and "cannot be resumed" in other_recipe.stderr
