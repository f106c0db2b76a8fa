"""The MLP mask head, the alternative to the FCN that the Mask R-CNN paper measures in Table 2(e).

The paper's mask branch is a small FCN (``roi_heads.MaskHead`` and ``MaskPredictor``): every layer
keeps the RoI's ``14 x 14`` spatial layout, and one 3x3 filter is shared by all positions. The
alternative before it (DeepMask, MNC) flattens the RoI's features and predicts the mask with fully
connected layers: every output pixel has its own weights to every input cell, so the layer must
learn from data what the convolution knows by construction, that a pixel's mask depends mostly on
the features beside it. The paper's MLP row: fc 1024 -> fc 1024 -> fc ``80 * 28 * 28`` (ResNet-50-FPN,
mask AP 31.5 against the FCN's 33.6). ``Config(mask_head="mlp")`` selects it, with the hidden
widths of ``Config.mask_mlp_layers``; ``roi_heads.build_mask_branch`` builds either head.

Split as the box head is: ``MLPMaskHead`` (features -> a vector per RoI) and ``MLPMaskPredictor``
(the vector -> every class's mask logits), so ``RoIHeads`` runs ``predictor(head(features))``
whichever head it holds.
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["MLPMaskHead", "MLPMaskPredictor"]


class MLPMaskHead(nn.Module):
    """``[R, C, S, S]`` RoI features -> ``[R, layers[-1]]``: flattened, then one fully connected layer
    and ReLU per width in ``layers`` (the paper's MLP: ``(1024, 1024)``)."""

    def __init__(self, in_channels: int, roi_size: int, layers: tuple[int, ...]):
        super().__init__()
        widths = (in_channels * roi_size * roi_size, *layers)
        self.fcs = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:]))

    def forward(self, x: Tensor) -> Tensor:
        """``x [R, C, S, S]`` -> ``[R, layers[-1]]``."""
        x = x.flatten(start_dim=1)  # [R, C*S*S]: the spatial layout is given up here
        for fc in self.fcs:
            x = F.relu(fc(x))
        return x


class MLPMaskPredictor(nn.Module):
    """``[R, D]`` -> mask logits ``[R, K, M, M]``: one fully connected layer to ``K * M * M`` outputs,
    each class's ``M x M`` mask (``M = 28``: the FCN's output size, twice the RoI's 14)."""

    def __init__(self, in_features: int, num_classes: int, mask_size: int):
        super().__init__()
        self.num_classes, self.mask_size = num_classes, mask_size
        self.mask_fc_logits = nn.Linear(in_features, num_classes * mask_size * mask_size)

    def forward(self, x: Tensor) -> Tensor:
        """``x [R, D]`` -> every class's mask logits ``[R, K, M, M]``."""
        return self.mask_fc_logits(x).reshape(len(x), self.num_classes, self.mask_size, self.mask_size)
