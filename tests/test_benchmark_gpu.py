"""``benchmarks/gpu.py`` runs end to end without a GPU: ``--smoke --device cpu`` puts the CPU in the
GPU's place, so every section runs at tiny sizes and the CPU is compared with itself."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SECTIONS = ("cpu_vs_gpu", "train_amp", "pace", "torchrun")


def test_the_gpu_benchmark_smoke_runs_every_section_on_the_cpu(tmp_path):
    report = tmp_path / "gpu.json"
    # One thread: on a small shared CPU, two threads that wait for each other's core make a
    # training step ten times as slow; this run checks the script, not the pace.
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "benchmarks/gpu.py", "--smoke", "--device", "cpu", "--json", str(report)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600, env=environment)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results = json.loads(report.read_text())["results"]
    assert set(results) == set(SECTIONS)
    for name, result in results.items():
        assert "error" not in result, f"{name}: {result.get('traceback')}"

    comparisons = [c for c in results["cpu_vs_gpu"].values() if isinstance(c, dict) and "all" in c]
    assert len(comparisons) == 2  # the Shapes images and the photograph
    for comparison in comparisons:  # the CPU against itself: the very same detections
        for subset in (comparison["above_0.5"], comparison["all"]):
            assert subset["detections_cpu"] == subset["detections_gpu"] == subset["pairs"]
            assert subset["fraction_matched"] == 1.0
            assert subset["box_diff_px"]["max"] in (0.0, None) and subset["score_diff"]["max"] in (0.0, None)
        assert comparison["all"]["pairs"] > 0 and all(comparison["checks"].values())

    training = results["train_amp"]
    assert len(training["losses"]) == training["steps"] == 3 and training["all_finite"]
    assert training["seconds_per_step"] > 0
    for task in results["pace"]["timings"].values():
        assert task["torchvision"]["ratio_to_torchvision"] == 1.0 and len(task) == 2
    assert results["torchrun"]["returncode"] == 0 and results["torchrun"]["checkpoint_written"]
    # One process (WORLD_SIZE 1): the package starts no process group; with several, gloo on a CPU.
    assert results["torchrun"]["backend"] in ("none", "gloo")
