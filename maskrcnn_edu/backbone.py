"""The backbone: a ResNet body (torchvision's definitions) and a Feature Pyramid Network.

The ResNet's four stages give features at strides 4, 8, 16 and 32 (C2..C5), rich but of
different depths. The FPN turns them into five maps P2..P6 of the same width: a 1x1 *lateral*
conv brings each stage to ``fpn_channels``, a top-down path adds the (nearest-upsampled) coarser
map to the finer one, a 3x3 *output* conv smooths each sum, and P6 is P5 subsampled by 2 (only
the RPN uses it).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
import torchvision
from torch import Tensor, nn

from .config import Config

__all__ = [
    "FrozenBatchNorm2d", "ResNetBody", "FPN", "Backbone", "build_backbone", "body_parameter_trains",
    "RESNET_STAGES",
]

STAGE_CHANNELS = {
    "resnet18": (64, 128, 256, 512),
    "resnet34": (64, 128, 256, 512),
    "resnet50": (256, 512, 1024, 2048),
    "resnet101": (256, 512, 1024, 2048),
}


# The body's stages from the bottom up; the stem's BatchNorm ``bn1`` belongs to ``conv1``.
RESNET_STAGES = ("conv1", "layer1", "layer2", "layer3", "layer4")


def body_parameter_trains(name: str, trainable_layers: int) -> bool:
    """Whether the ResNet body's parameter ``name`` (e.g. ``"layer3.0.conv1.weight"``) trains.

    The top ``trainable_layers`` stages train: 3 (torchvision's recipe for pretrained weights) trains
    layer2..layer4 and keeps conv1 and layer1, the most generic filters, as ImageNet left them;
    5 trains everything, 0 nothing. This is the one rule behind ``Config.trainable_layers`` and the
    training stages (``maskrcnn_edu.train.LAYER_STAGES``).
    """
    stage = "conv1" if name.startswith("bn1.") else name.split(".")[0]
    return RESNET_STAGES.index(stage) >= len(RESNET_STAGES) - trainable_layers


class FrozenBatchNorm2d(nn.Module):
    """BatchNorm with fixed statistics and affine parameters: ``y = x * scale + shift``.

    Detection trains with 1 or 2 images per GPU, far too few for batch statistics, so pretrained
    backbones keep ImageNet's. Buffers, not parameters: nothing here trains.
    """

    def __init__(self, num_features: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        for name, init in (("weight", torch.ones), ("bias", torch.zeros),
                           ("running_mean", torch.zeros), ("running_var", torch.ones)):
            self.register_buffer(name, init(num_features))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        state_dict.pop(prefix + "num_batches_tracked", None)  # a BatchNorm2d's counter; not needed here
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, x: Tensor) -> Tensor:
        """``x [N, C, H, W]`` -> ``[N, C, H, W]``, each channel scaled and shifted."""
        scale = self.weight * (self.running_var + self.eps).rsqrt()
        shift = self.bias - self.running_mean * scale
        return x * scale[None, :, None, None] + shift[None, :, None, None]


class ResNetBody(nn.Module):
    """A torchvision ResNet without its classifier: ``[N, 3, H, W]`` -> C2..C5 at strides 4..32."""

    def __init__(self, name: str = "resnet50", norm: str = "frozen_bn"):
        super().__init__()
        norm_layer = FrozenBatchNorm2d if norm == "frozen_bn" else nn.BatchNorm2d
        resnet = getattr(torchvision.models, name)(weights=None, norm_layer=norm_layer)
        # Same attribute names as torchvision's ResNet, so its state dicts load as they are.
        self.conv1, self.bn1, self.relu, self.maxpool = resnet.conv1, resnet.bn1, resnet.relu, resnet.maxpool
        self.layer1, self.layer2 = resnet.layer1, resnet.layer2
        self.layer3, self.layer4 = resnet.layer3, resnet.layer4
        self.out_channels = STAGE_CHANNELS[name]

    def freeze(self, trainable_layers: int) -> None:
        """Train only the top ``trainable_layers`` stages (5 = everything, 0 = nothing).

        See ``body_parameter_trains``.
        """
        for name, parameter in self.named_parameters():
            parameter.requires_grad_(body_parameter_trains(name, trainable_layers))

    def train(self, mode: bool = True) -> "ResNetBody":
        """Training mode, except for the BatchNorm layers of stages that do not train: they keep the
        statistics they were given (a frozen stage is frozen whole, as in detectron2 and Keras)."""
        super().train(mode)
        for module in self.modules():
            if isinstance(module, nn.BatchNorm2d) and not any(p.requires_grad for p in module.parameters()):
                module.eval()
        return self

    def forward(self, x: Tensor) -> list[Tensor]:
        """Images ``x [N, 3, H, W]`` -> ``[C2, C3, C4, C5]``, each ``[N, out_channels[i], H_k, W_k]``
        at strides 4, 8, 16 and 32 (``H_k`` about ``H / stride``)."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))  # stride 4
        c2 = self.layer1(x)
        c3 = self.layer2(c2)
        c4 = self.layer3(c3)
        c5 = self.layer4(c4)
        return [c2, c3, c4, c5]


class FPN(nn.Module):
    """Feature Pyramid Network: C2..C5 -> P2..P6, each ``[N, out_channels, H_l, W_l]``."""

    def __init__(self, in_channels: tuple[int, ...], out_channels: int):
        super().__init__()
        self.lateral = nn.ModuleList(nn.Conv2d(c, out_channels, 1) for c in in_channels)
        self.output = nn.ModuleList(nn.Conv2d(out_channels, out_channels, 3, padding=1) for _ in in_channels)
        for conv in [*self.lateral, *self.output]:
            nn.init.kaiming_uniform_(conv.weight, a=1)
            nn.init.zeros_(conv.bias)
        self.out_channels = out_channels

    def forward(self, stages: list[Tensor]) -> list[Tensor]:
        """``stages``: C2..C5, ``[N, C_k, H_k, W_k]`` each -> P2..P6, ``[N, out_channels, H_l, W_l]`` each.

        P2..P5 have C2..C5's sizes; P6 has half of P5's (rounded up).
        """
        top_down = self.lateral[-1](stages[-1])
        pyramid = [self.output[-1](top_down)]
        for level in range(len(stages) - 2, -1, -1):  # from the coarsest but one down to the finest
            lateral = self.lateral[level](stages[level])
            top_down = lateral + F.interpolate(top_down, size=lateral.shape[-2:], mode="nearest")
            pyramid.insert(0, self.output[level](top_down))
        pyramid.append(F.max_pool2d(pyramid[-1], kernel_size=1, stride=2))  # P6
        return pyramid


class Backbone(nn.Module):
    """ResNet body + FPN: images ``[N, 3, H, W]`` -> five maps P2..P6 (strides 4..64)."""

    def __init__(self, body: ResNetBody, fpn: FPN):
        super().__init__()
        self.body, self.fpn = body, fpn
        self.out_channels = fpn.out_channels

    def forward(self, images: Tensor) -> list[Tensor]:
        """``images [N, 3, H, W]`` -> P2..P6, each ``[N, out_channels, H_l, W_l]`` (strides 4..64)."""
        return self.fpn(self.body(images))


def build_backbone(config: Config) -> Backbone:
    """The backbone that ``config`` names: its ResNet, norm and trainable stages, and an FPN."""
    body = ResNetBody(config.backbone, config.norm)
    body.freeze(config.trainable_layers)
    return Backbone(body, FPN(body.out_channels, config.fpn_channels))
