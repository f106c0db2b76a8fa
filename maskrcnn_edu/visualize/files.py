"""Drawings saved as files, for ``maskrcnn-edu detect``: one PNG per input image, at the photo's size."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

from matplotlib.figure import Figure

from .primitives import draw_detections

__all__ = ["save_drawing", "drawing_names"]


def save_drawing(path, image, detections: dict, names, score_threshold: float) -> None:
    """``image [3, H, W]`` with its detections drawn (``draw_detections``), saved as a PNG at ``path``."""
    height, width = image.shape[-2:]
    # The photo's own size, within 600..2000 pixels on its long side (a Shapes image is 128).
    scale = min(max(max(height, width), 600), 2000) / max(height, width) / 100  # inches per pixel
    fig = Figure(figsize=(width * scale, height * scale))  # pyplot keeps no reference to it
    ax = fig.add_axes((0, 0, 1, 1))
    draw_detections(ax, image, detections, names, score_threshold=score_threshold)
    ax.set_axis_off()
    fig.savefig(path, dpi=100)


def drawing_names(paths: list[str]) -> list[str]:
    """``<stem>_detections.png`` per input; inputs that share a stem (coffee.png, coffee.jpg) add
    their index (``coffee_0_detections.png``), so that no drawing replaces another."""
    stems = [Path(path).stem for path in paths]
    count, names = Counter(stems), []
    for index, stem in enumerate(stems):
        name = f"{stem}_detections.png" if count[stem] == 1 else f"{stem}_{index}_detections.png"
        suffix = index
        while name in names:  # an input named coffee_0.png beside those two: still kept apart
            suffix += len(paths)
            name = f"{stem}_{suffix}_detections.png"
        names.append(name)
    return names
