"""Several processes, one training or evaluation: the few ``torch.distributed`` calls the package makes.

Under ``torchrun`` every process runs the same script; ``WORLD_SIZE`` and ``RANK`` come from the
environment. Outside it (a notebook, a plain ``python`` call) everything here answers "one
process, rank 0" and does nothing, so the same code runs in both.
"""
from __future__ import annotations

import os

import torch
import torch.distributed as dist

__all__ = ["rank_and_world_size", "gather_objects"]


def rank_and_world_size(start: bool = False) -> tuple[int, int]:
    """``(rank, world_size)`` of this process: ``(0, 1)`` without a process group.

    ``start=True`` also starts the process group when launched by ``torchrun`` (``WORLD_SIZE > 1``)
    and none is running yet: NCCL on GPUs, gloo on CPUs. Training starts it; evaluation only asks.
    """
    if not dist.is_available():
        return 0, 1
    if start and not dist.is_initialized() and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def gather_objects(items: list, world_size: int) -> list:
    """Every process's ``items``, concatenated in rank order, on every process (pickled by
    ``all_gather_object``). With one process, ``items`` itself."""
    if world_size == 1:
        return items
    gathered = [None] * world_size
    dist.all_gather_object(gathered, items)
    return [item for part in gathered for item in part]
