"""What every benchmark writes: its results, with the software and machine they were measured on."""
from __future__ import annotations

import json
import os
import platform
import tempfile

import torch
import torchvision


def write_report(path: str, results, **details) -> None:
    """Write ``{torch, torchvision, threads, machine, cpu_count, **details, results}`` to ``path`` atomically."""
    report = {
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "threads": torch.get_num_threads(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        **details,
        "results": results,
    }
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=directory, suffix=".tmp", delete=False) as tmp:
        json.dump(report, tmp, indent=2, default=str)
    os.replace(tmp.name, path)
    print(f"wrote {path}")
