"""Ctrl-C during training: the run stops at the end of the step it is in, never in the middle.

``fit`` trains inside ``ctrl_c_between_steps()`` and asks it after every step whether Ctrl-C was
pressed; under DDP ``any_rank_asks`` makes every process stop at the same step.
"""
from __future__ import annotations

import contextlib
import signal
import sys
import threading
from typing import Callable, Iterator

import torch
import torch.distributed as dist

__all__ = ["ctrl_c_between_steps", "any_rank_asks"]


@contextlib.contextmanager
def ctrl_c_between_steps() -> Iterator[Callable[[], bool]]:
    """While training, Ctrl-C (SIGINT) asks the run to stop at the end of the current step.

    A KeyboardInterrupt raised inside a step would leave it half done (BatchNorm statistics moved,
    random numbers drawn, the weights not yet updated): a checkpoint saved then would not resume to
    the run that was never interrupted. So the first Ctrl-C only sets a flag, which ``fit`` reads
    after each whole step, then saves and stops. A second Ctrl-C, while the checkpoint is written,
    only says to wait, so the save always completes. Outside the main thread, where no signal
    handler can be set, Ctrl-C acts as usual.
    """
    if threading.current_thread() is not threading.main_thread():
        yield lambda: False
        return
    requested = []

    def on_ctrl_c(signum, frame) -> None:
        message = ("saving the checkpoint, please wait" if requested
                   else "stopping after this step, then saving")
        print(f"\nCtrl-C: {message}", file=sys.stderr, flush=True)
        requested.append(signum)

    previous = signal.signal(signal.SIGINT, on_ctrl_c)
    try:
        yield lambda: bool(requested)
    finally:
        signal.signal(signal.SIGINT, previous)


def any_rank_asks(stop: bool, world_size: int) -> bool:
    """Whether any process asks to stop: under DDP every rank must stop at the same step."""
    if world_size == 1:
        return stop
    flag = torch.tensor([float(stop)], device="cuda" if dist.get_backend() == "nccl" else "cpu")
    dist.all_reduce(flag)
    return bool(flag.item() > 0)
