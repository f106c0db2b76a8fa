"""The run's folder: what a run writes there, checked before the first step."""
from __future__ import annotations

import tempfile
from pathlib import Path

__all__ = ["RUN_FILES", "check_writable"]

# What a run writes into its folder, besides tensorboard/.
RUN_FILES = ("last.pt", "best.pt", "best_metrics.json")


def check_writable(out_dir: Path) -> None:
    """Before the first step: ``out_dir`` takes new files, and none of the run's files is in the way.

    Checkpoints are written as a temporary file in the folder, then renamed over the old one: a
    folder that refuses new files, or a folder where a checkpoint's name is taken by a directory,
    would otherwise fail at the first checkpoint, after minutes of training.
    """
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=out_dir).close()
    except OSError as error:
        raise OSError(f"cannot write the run's files into {out_dir}: {error}") from error
    for name in RUN_FILES:
        if (out_dir / name).exists() and not (out_dir / name).is_file():
            raise OSError(f"cannot write {out_dir / name}: something other than a file has that name")
