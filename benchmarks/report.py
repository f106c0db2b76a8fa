"""What every benchmark writes: its results, with the software and machine they were measured on."""
from __future__ import annotations

import os
import platform

import torch
import torchvision

from maskrcnn_edu.files import write_json


def write_report(path: str, results, **details) -> None:
    """Write ``{torch, torchvision, threads, machine, cpu_count, **details, results}`` to ``path``,
    atomically."""
    report = {
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "threads": torch.get_num_threads(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        **details,
        "results": results,
    }
    write_json(path, report, default=str)
    print(f"wrote {path}")
