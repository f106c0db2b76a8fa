"""The colour splash (the Keras Mask R-CNN's balloon demo): the photograph in grey, except inside the
detected instances one chooses, which keep their colour."""
from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["GREY_WEIGHTS", "grey", "colour_splash"]

# The luma of ITU-R BT.709 (scikit-image's rgb2gray, which the Keras demo called): grey = 0.2125 R +
# 0.7154 G + 0.0721 B.
GREY_WEIGHTS = (0.2125, 0.7154, 0.0721)


def grey(image: Tensor) -> Tensor:
    """``image [3, H, W]`` -> its grey version ``[3, H, W]``: each pixel's three channels set to its
    luma, ``GREY_WEIGHTS`` applied to R, G, B."""
    weights = torch.tensor(GREY_WEIGHTS, dtype=image.dtype, device=image.device)  # [3]
    luma = torch.einsum("c,chw->hw", weights, image)  # [H, W]
    return luma.expand_as(image)


def colour_splash(image: Tensor, masks: Tensor, keep: Tensor) -> Tensor:
    """The colour splash of ``image [3, H, W]`` (float, 0..1): a new ``[3, H, W]`` image that is
    ``image`` at the pixels of the kept instances and its grey (``grey``) everywhere else.

    ``masks [N, H, W]`` (bool, or 0/1): the instances; ``keep [N]`` (bool): which of them keep their
    colour. With no instance (``N = 0``) or none kept, the whole image is grey.
    """
    if image.dim() != 3 or image.shape[0] != 3:
        raise ValueError(f"image must be [3, H, W], got {list(image.shape)}")
    if masks.dim() != 3 or masks.shape[1:] != image.shape[1:] or keep.shape != masks.shape[:1]:
        raise ValueError(f"masks must be [N, H, W] and keep [N] for a {list(image.shape)} image, got "
                         f"{list(masks.shape)} and {list(keep.shape)}")
    coloured = (masks.bool() & keep.bool()[:, None, None]).any(dim=0)  # [H, W]
    return torch.where(coloured, image, grey(image))
