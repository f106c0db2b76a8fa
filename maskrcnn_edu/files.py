"""Files the package writes (checkpoints, exports, metrics) are written atomically.

The bytes go to a temporary file in the destination's folder, which is flushed to disk and then
renamed over the destination with ``os.replace``: a reader, or a run killed mid-write, sees the
old file or the new one, never half of one.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import IO, Callable

__all__ = ["atomic_write", "write_json"]


def atomic_write(path: str | Path, write: Callable[[IO], object], mode: str = "wb") -> Path:
    """Call ``write(file)`` on a temporary file next to ``path``, then rename it to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, mode) as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, 0o644)  # mkstemp makes it private (0600); these files are for sharing
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise
    return path


def write_json(path: str | Path, value: object, **dump_options: object) -> Path:
    """``json.dump(value)`` to ``path``, atomically (indented unless told otherwise).

    Strict JSON: a NaN or infinity raises ``ValueError`` instead of writing a bare ``NaN`` that
    strict parsers reject (metrics write ``None``, i.e. ``null``, for an undefined number).
    """
    dump_options.setdefault("indent", 2)
    dump_options.setdefault("allow_nan", False)
    return atomic_write(path, lambda file: json.dump(value, file, **dump_options), mode="w")
