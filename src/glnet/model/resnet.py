"""ResNet backbones with torchvision's key layout, returning the c2..c5 pyramid.

GLNet's checkpoints store their two ResNet-50s with torchvision's parameter
names (``conv1``, ``bn1``, ``layer1.0.conv1``, ``layer1.0.downsample.0`` ...),
so this module keeps those names exactly; torchvision itself is not a
dependency.  There is no ``fc``: GLNet only uses the feature pyramid.
"""

from __future__ import annotations

from torch import Tensor, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval


def _conv3x3(inp: int, out: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(inp, out, kernel_size=3, stride=stride, padding=1, bias=False)


def _conv1x1(inp: int, out: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(inp, out, kernel_size=1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = _conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += identity
        return self.relu(out)


class Bottleneck(nn.Module):
    """The original (v1.5) bottleneck: the stride sits on the 3x3 conv."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = _conv1x1(inplanes, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = _conv1x1(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        out += identity
        return self.relu(out)


class ResNet(nn.Module):
    """A ResNet trunk whose forward returns the outputs of layer1..layer4.

    ``width`` is the stem's channel count (torchvision's 64); the layers have
    width, 2x, 4x and 8x it.  A narrower trunk (e.g. 32) keeps the same keys
    and depth at a quarter of the weights: what a model shipped in the
    repository or trained on a CPU needs."""

    def __init__(self, block: type[BasicBlock] | type[Bottleneck], layers: list[int], width: int = 64):
        super().__init__()
        planes = (width, 2 * width, 4 * width, 8 * width)
        self.inplanes = width
        self.conv1 = nn.Conv2d(3, width, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, planes[0], layers[0])
        self.layer2 = self._make_layer(block, planes[1], layers[1], stride=2)
        self.layer3 = self._make_layer(block, planes[2], layers[2], stride=2)
        self.layer4 = self._make_layer(block, planes[3], layers[3], stride=2)
        self.channels = tuple(p * block.expansion for p in planes)
        if self.conv1.weight.is_meta:  # a shell for loaded weights (checkpoint.py): random init is wasted time
            return
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _make_layer(self, block, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                _conv1x1(self.inplanes, planes * block.expansion, stride),
                nn.BatchNorm2d(planes * block.expansion),
            )
        layers = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        c2 = self.layer1(x)
        c3 = self.layer2(c2)
        c4 = self.layer3(c3)
        c5 = self.layer4(c4)
        return c2, c3, c4, c5


_CONFIGS: dict[str, tuple[type[BasicBlock] | type[Bottleneck], list[int]]] = {
    "resnet18": (BasicBlock, [2, 2, 2, 2]),
    "resnet34": (BasicBlock, [3, 4, 6, 3]),
    "resnet50": (Bottleneck, [3, 4, 6, 3]),
    "resnet101": (Bottleneck, [3, 4, 23, 3]),
}

BACKBONES = tuple(_CONFIGS)


def fold_batchnorm(net: nn.Module) -> None:
    """Fold every eval-mode BatchNorm into the conv before it, in place.

    The same function with one op fewer per conv (about 10% of a ResNet's
    CPU time).  The module no longer has BatchNorm keys afterwards: use it
    for inference only."""
    for module in net.modules():
        pairs = [(n, n.replace("conv", "bn")) for n, _ in module.named_children() if n.startswith("conv")]
        if isinstance(module, nn.Sequential) and len(module) == 2 and isinstance(module[1], nn.BatchNorm2d):
            pairs = [("0", "1")]
        for conv_name, bn_name in pairs:
            conv, bn = getattr(module, conv_name, None), getattr(module, bn_name, None)
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                setattr(module, conv_name, fuse_conv_bn_eval(conv.eval(), bn.eval()))
                setattr(module, bn_name, nn.Identity())


def resnet(name: str, width: int = 64) -> ResNet:
    """Build a randomly initialised backbone by torchvision name (``resnet50``...)."""
    try:
        block, layers = _CONFIGS[name]
    except KeyError:
        raise ValueError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}") from None
    if width < 8 or width % 8:
        raise ValueError(f"backbone width must be a multiple of 8, got {width}")
    return ResNet(block, layers, width)


__all__ = ["BACKBONES", "BasicBlock", "Bottleneck", "ResNet", "fold_batchnorm", "resnet"]
