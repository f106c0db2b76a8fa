"""The images the detection stepper offers by default (:func:`default_images`): Shapes images, the
shipped COCO-format sample and three of scikit-image's photographs."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["SAMPLE_DIR", "default_images"]

SAMPLE_DIR = Path(__file__).resolve().parents[2] / "data" / "shapes_sample"


def _photo(array: np.ndarray, longest_side: int) -> Tensor:
    """A uint8 ``[H, W, 3]`` photograph -> float ``[3, h, w]`` in 0..1, its longest side at most
    ``longest_side``."""
    image = torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1).float() / 255.0
    scale = longest_side / max(image.shape[-2:])
    if scale < 1.0:
        size = [max(1, round(side * scale)) for side in image.shape[-2:]]
        image = F.interpolate(image[None], size=size, mode="bilinear", antialias=True, align_corners=False)[0]
    return image.clamp(0.0, 1.0)


def default_images(num_shapes: int = 3, sample_dir=None, photo_size: int = 256) -> dict[str, Tensor]:
    """Images for the stepper, name -> float ``[3, H, W]`` in 0..1:

    * ``"shapes 0"`` .. : ``num_shapes`` Shapes images (``ShapesDataset(num_shapes, seed=3)``);
    * ``"sample <id>"``: the 20 images of the shipped COCO-format sample (``data/shapes_sample`` of the
      repository, or ``sample_dir``);
    * ``"astronaut"``, ``"coffee"``, ``"chelsea"``: scikit-image's photographs, their longest side
      shrunk to ``photo_size`` pixels (the Shapes model knows only squares, circles and triangles:
      see what it makes of a photograph).

    Raises ``FileNotFoundError`` naming the folder when the shipped sample is missing.
    """
    from skimage import data as skimage_data

    from ..data import CocoDataset, ShapesDataset

    sample_dir = SAMPLE_DIR if sample_dir is None else Path(sample_dir).expanduser()
    annotations = sample_dir / "annotations.json"
    if not annotations.is_file():
        raise FileNotFoundError(
            f"default_images: the shipped Shapes sample is not at {sample_dir} (no annotations.json). It "
            "lives in the repository's data/shapes_sample/ (an installed package without the repository "
            "does not have it): pass sample_dir=..., or give the stepper your own images."
        )
    shapes = ShapesDataset(num_shapes, seed=3)
    images = {f"shapes {i}": shapes[i][0] for i in range(num_shapes)}
    sample = CocoDataset(sample_dir / "images", annotations)
    for i in range(len(sample)):
        image, target = sample[i]
        images[f"sample {target['image_id']}"] = image
    for name in ("astronaut", "coffee", "chelsea"):
        images[name] = _photo(getattr(skimage_data, name)(), photo_size)
    return images
