"""The GLNet model: two ResNet+FPN branches that exchange features both ways.

Submodule names (``resnet_global``, ``resnet_local``, ``fpn_global``,
``fpn_local``, ``ensemble_conv``) are the authors', so their checkpoints load
key for key.  Unlike the reference there is no hidden cache: the global
branch's features are a value (``GlobalContext``) computed once per image
and passed to every patch batch.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace

from torch import Tensor, nn

from glnet.model.fpn import Features, GlobalFPN, LocalFPN
from glnet.model.resnet import resnet
from glnet.model.upsampled_conv import Part, Upsampled, conv_over_concat

# the layers with one output channel per class (all others are class-agnostic)
CLASSIFIERS = ("fpn_global.classify", "fpn_local.classify", "ensemble_conv")


def _init_head_conv(conv: nn.Conv2d) -> nn.Conv2d:
    """The authors' initialisation of every FPN head conv: normal(std 0.01), zero bias."""
    if conv.weight.is_meta:  # a shell for loaded weights: nothing to initialise
        return conv
    nn.init.normal_(conv.weight, std=0.01)
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)
    return conv


def _ensemble_conv(width: int, num_classes: int) -> nn.Conv2d:
    """The authors' ensemble conv: normal(std 0.01) weights, PyTorch's default bias."""
    conv = nn.Conv2d(4 * width, num_classes, kernel_size=3, padding=1)
    if not conv.weight.is_meta:
        nn.init.normal_(conv.weight, std=0.01)
    return conv


@dataclass(frozen=True)
class GLNetConfig:
    num_classes: int
    backbone: str = "resnet50"
    fpn_width: int = 256
    backbone_width: int = 64  # the ResNet stem's channels: 64 is torchvision's and the authors'


@dataclass
class GlobalContext:
    """The global branch's output for one image (batch of 1)."""

    features: Features
    ps3: Tensor

    def maps(self) -> list[Tensor]:
        return [*self.features.maps(), self.ps3]


class GLNet(nn.Module):
    inference_only = False  # a Segmenter folded its BatchNorm: not for training or saving

    def __init__(self, config: GLNetConfig, global_only: bool = False):
        super().__init__()
        self.config = config
        c, width = config.num_classes, config.fpn_width
        self.resnet_global = resnet(config.backbone, config.backbone_width)
        channels = self.resnet_global.channels
        self.fpn_global = GlobalFPN(channels, c, width, with_ext=not global_only)
        self.global_only = global_only
        if not global_only:
            self.resnet_local = resnet(config.backbone, config.backbone_width)
            self.fpn_local = LocalFPN(channels, c, width)
            self.ensemble_conv = _ensemble_conv(width, c)
        heads = [self.fpn_global] + ([] if global_only else [self.fpn_local])
        for head in heads:
            for m in head.children():
                if isinstance(m, nn.Conv2d):  # every child of a head is
                    _init_head_conv(m)

    def reset_classifier(self, num_classes: int) -> None:
        """Fresh classifier layers (``CLASSIFIERS``) for ``num_classes``, with
        the authors' init; every other weight is kept.

        What training on another class set needs (e.g. a DeepGlobe model
        turned into buildings vs background): the features transfer, only the
        layers that output one channel per class cannot."""
        device = self.fpn_global.classify.weight.device
        width = self.config.fpn_width
        self.config = replace(self.config, num_classes=num_classes)
        self.fpn_global.classify = _init_head_conv(nn.Conv2d(2 * width, num_classes, 3, padding=1)).to(device)
        if not self.global_only:
            self.fpn_local.classify = _init_head_conv(nn.Conv2d(2 * width, num_classes, 3, padding=1)).to(device)
            self.ensemble_conv = _ensemble_conv(width, num_classes).to(device)

    # -- global branch -------------------------------------------------
    def global_context(self, image_g: Tensor) -> GlobalContext:
        features, ps3 = self.fpn_global(self.resnet_global(image_g))
        return GlobalContext(features, ps3)

    def global_logits(self, context: GlobalContext) -> Tensor:
        return self.fpn_global.classify(context.ps3)

    def refine_global(self, image_g: Tensor, merged: Features) -> GlobalContext:
        """local2global's second global pass, fed with the merged local maps."""
        features, ps3 = self.fpn_global.forward_ext(self.resnet_global(image_g), merged)
        return GlobalContext(features, ps3)

    # -- local branch --------------------------------------------------
    def local_stages(self, patches: Tensor, crops: Features) -> Iterator[tuple[Tensor, ...]]:
        """Inference: the local pyramid stage by stage (``LocalFPN.stages``)."""
        return self.fpn_local.stages(self.resnet_local(patches), crops)

    def local_train(self, patches: Tensor, crops: Features) -> tuple[Features, Tensor, Tensor]:
        """Training path of the local branch: its pyramid (what local2global
        merges), ps3 (what the ensemble and the feature-map regulariser need)
        and the local logits.  Inference uses ``local_stages`` instead, which
        never materialises the 512-channel ps3."""
        return self.fpn_local(self.resnet_local(patches), crops)

    def ensemble(self, ps3_local: Tensor, ps3_global_crop: Tensor) -> Tensor:
        """ensemble_conv(cat(local ps3, global ps3 crop resized to it))."""
        size = tuple(ps3_local.shape[-2:])
        parts: list[Part] = [ps3_local, Upsampled(ps3_global_crop, (size,))]
        return conv_over_concat(self.ensemble_conv.weight, self.ensemble_conv.bias, parts)


__all__ = ["CLASSIFIERS", "GLNet", "GLNetConfig", "GlobalContext"]
