"""The GLNet model: two ResNet+FPN branches that exchange features both ways.

Submodule names (``resnet_global``, ``resnet_local``, ``fpn_global``,
``fpn_local``, ``ensemble_conv``) are the authors', so their checkpoints load
key for key.  Unlike the reference there is no hidden cache: the global
branch's features are a value (``GlobalContext``) computed once per image
and passed to every patch batch.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from .fpn import Features, GlobalFPN, LocalFPN
from .resnet import resnet
from .upsampled_conv import Upsampled, conv_over_concat

MODES = ("global", "global2local", "local2global")


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


class GLNet(nn.Module):
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
            self.ensemble_conv = nn.Conv2d(4 * width, c, kernel_size=3, padding=1)
            nn.init.normal_(self.ensemble_conv.weight, std=0.01)
        heads = [self.fpn_global] + ([] if global_only else [self.fpn_local])
        for head in heads:  # the authors' initialisation of the FPN heads
            for m in head.children():
                nn.init.normal_(m.weight, std=0.01)
                nn.init.zeros_(m.bias)

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
    def local_pyramid(self, patches: Tensor, crops: Features) -> Features:
        return self.fpn_local.pyramid(self.resnet_local(patches), crops)

    def ensemble(self, ps3_local: Tensor, ps3_global_crop: Tensor) -> Tensor:
        """ensemble_conv(cat(local ps3, global ps3 crop resized to it))."""
        size = tuple(ps3_local.shape[-2:])
        parts = [ps3_local, Upsampled(ps3_global_crop, (size,))]
        return conv_over_concat(self.ensemble_conv.weight, self.ensemble_conv.bias, parts)


__all__ = ["GLNet", "GLNetConfig", "GlobalContext", "MODES"]
