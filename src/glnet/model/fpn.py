"""GLNet's two FPN heads, with the authors' layer names.

Neither head has normalisation or activations.  Every resize is bilinear
with align_corners=False.  Level order inside a stage is the authors':
(p5, p4, p3, p2).  Convolutions whose input is a concatenation of upsampled
maps run through ``conv_over_concat`` (same function, low-resolution work).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from glnet.model.upsampled_conv import Part, Upsampled, conv_over_concat, materialize


def _up(x: Tensor, like: Part) -> Tensor:
    if not isinstance(like, Tensor):
        raise TypeError("a stage resizes to its branch's own map, not to an upsampled part")
    return F.interpolate(x, size=like.shape[-2:], mode="bilinear", align_corners=False)


def _conv(layer: nn.Conv2d, parts: list[Part]) -> Tensor:
    return conv_over_concat(layer.weight, layer.bias, parts)


@dataclass
class Features:
    """One branch's pyramid for a batch: c2..c5 and FPN stages ps0..ps2.

    These are the maps the other branch consumes (G->L crops them, L->G merges
    them), so they travel together as one explicit value."""

    c: tuple[Tensor, ...]  # c2, c3, c4, c5
    ps0: tuple[Tensor, ...]  # p5, p4, p3, p2
    ps1: tuple[Tensor, ...]
    ps2: tuple[Tensor, ...]

    def maps(self) -> list[Tensor]:
        return [*self.c, *self.ps0, *self.ps1, *self.ps2]

    @classmethod
    def from_maps(cls, maps: list[Tensor]) -> Features:
        it = iter(maps)
        return cls(*(tuple(next(it) for _ in range(4)) for _ in fields(cls)))

    def apply(self, fn) -> Features:
        return Features.from_maps([fn(m) for m in self.maps()])


def _convs(prefix: str, specs: dict[str, tuple[int, int, int]]) -> dict[str, nn.Conv2d]:
    return {name + prefix: nn.Conv2d(i, o, k, padding=k // 2) for name, (i, o, k) in specs.items()}


def _fpn_specs(c_channels: tuple[int, ...], width: int, fold: int) -> dict[str, tuple[int, int, int]]:
    c2, c3, c4, c5 = c_channels
    half = width // 2
    specs = {
        "toplayer": (c5 * fold, width, 1),
        "latlayer1": (c4 * fold, width, 1),
        "latlayer2": (c3 * fold, width, 1),
        "latlayer3": (c2 * fold, width, 1),
    }
    for k in range(1, 5):
        specs[f"smooth{k}_1"] = (width * fold, width, 3)
    for k in range(1, 5):
        specs[f"smooth{k}_2"] = (width * fold, half, 3)
    return specs


class _FPNBase(nn.Module):
    def _top_down(self, sfx: str, parts_c: list[list[Part]]) -> list[Tensor]:
        """parts_c: the conv inputs for c5, c4, c3, c2 (each a list of parts)."""
        p5 = _conv(getattr(self, "toplayer" + sfx), parts_c[0])
        p4 = _up(p5, parts_c[1][0]) + _conv(getattr(self, "latlayer1" + sfx), parts_c[1])
        p3 = _up(p4, parts_c[2][0]) + _conv(getattr(self, "latlayer2" + sfx), parts_c[2])
        p2 = _up(p3, parts_c[3][0]) + _conv(getattr(self, "latlayer3" + sfx), parts_c[3])
        return [p5, p4, p3, p2]

    def _smooth(self, stage: int, sfx: str, parts: list[list[Part]]) -> list[Tensor]:
        return [_conv(getattr(self, f"smooth{k + 1}_{stage}{sfx}"), parts[k]) for k in range(4)]


class GlobalFPN(_FPNBase):
    """The global branch's head: the plain path, and the ``_ext`` twins that
    take the merged local maps as extra input (mode local2global)."""

    def __init__(self, c_channels: tuple[int, ...], num_classes: int, width: int = 256, with_ext: bool = True):
        super().__init__()
        for name, conv in _convs("", _fpn_specs(c_channels, width, 1)).items():
            setattr(self, name, conv)
        self.classify = nn.Conv2d(2 * width, num_classes, 3, padding=1)
        self.with_ext = with_ext
        if with_ext:
            for name, conv in _convs("_ext", _fpn_specs(c_channels, width, 2)).items():
                setattr(self, name, conv)
            self.smooth = nn.Conv2d(4 * width, 2 * width, 3, padding=1)

    def ext_layers(self) -> list[nn.Conv2d]:
        """The layers only the local2global path uses: the ``_ext`` twins and ``smooth``."""
        if not self.with_ext:
            return []
        named = self.named_children()
        return [m for name, m in named if isinstance(m, nn.Conv2d) and (name.endswith("_ext") or name == "smooth")]

    def init_ext(self, generator: torch.Generator | None = None) -> None:
        """The authors' random init (normal std 0.01, zero bias) of the
        local2global layers, which start from scratch in that stage; a
        ``generator`` makes it repeatable."""
        with torch.no_grad():
            for m in self.ext_layers():
                m.weight.copy_(torch.randn(m.weight.shape, generator=generator) * 0.01)
                if m.bias is not None:
                    m.bias.zero_()

    def forward(self, c: tuple[Tensor, ...]) -> tuple[Features, Tensor]:
        """Plain path: the pyramid and ps3 (the upsampled concatenation)."""
        c2, c3, c4, c5 = c
        ps0 = self._top_down("", [[c5], [c4], [c3], [c2]])
        ps1 = self._smooth(1, "", [[p] for p in ps0])
        ps2 = self._smooth(2, "", [[p] for p in ps1])
        size = ps2[3].shape[-2:]
        ps3 = torch.cat([materialize(Upsampled(p, (size,))) for p in ps2[:3]] + [ps2[3]], dim=1)
        return Features(tuple(c), tuple(ps0), tuple(ps1), tuple(ps2)), ps3

    def forward_ext(self, c: tuple[Tensor, ...], merged: Features) -> tuple[Features, Tensor]:
        """local2global path: every stage sees concat(global, merged local)."""
        c2, c3, c4, c5 = c
        m = merged
        ps0 = self._top_down("_ext", [[c5, m.c[3]], [c4, m.c[2]], [c3, m.c[1]], [c2, m.c[0]]])
        ps1 = self._smooth(1, "_ext", [[p, q] for p, q in zip(ps0, m.ps0)])
        ps2 = self._smooth(2, "_ext", [[p, q] for p, q in zip(ps1, m.ps1)])
        size = ps2[3].shape[-2:]
        parts: list[Part] = []
        for k in range(4):
            chain = (size,) if k < 3 else ()
            parts += [Upsampled(ps2[k], chain), Upsampled(m.ps2[k], chain)]
        ps3 = _conv(self.smooth, parts)
        return Features(tuple(c), tuple(ps0), tuple(ps1), tuple(ps2)), ps3


class LocalFPN(_FPNBase):
    """The local branch's head: every stage concatenates (local, global crop
    resized to the local map), local first."""

    def __init__(self, c_channels: tuple[int, ...], num_classes: int, width: int = 256):
        super().__init__()
        for name, conv in _convs("", _fpn_specs(c_channels, width, 2)).items():
            setattr(self, name, conv)
        self.smooth = nn.Conv2d(4 * width, 2 * width, 3, padding=1)
        self.classify = nn.Conv2d(2 * width, num_classes, 3, padding=1)

    def pyramid(self, c: tuple[Tensor, ...], g: Features) -> Features:
        """ps0..ps2 of a batch of patches, given the matching global crops ``g``."""

        def pair(x: Tensor, crop: Tensor) -> list[Part]:
            return [x, Upsampled(crop, (tuple(x.shape[-2:]),))]

        c2, c3, c4, c5 = c
        gc2, gc3, gc4, gc5 = g.c
        # p_{k} needs its own shape before the conv: build the c-level pairs first
        ps0 = self._top_down("", [pair(c5, gc5), pair(c4, gc4), pair(c3, gc3), pair(c2, gc2)])
        ps1 = self._smooth(1, "", [pair(p, q) for p, q in zip(ps0, g.ps0)])
        ps2 = self._smooth(2, "", [pair(p, q) for p, q in zip(ps1, g.ps1)])
        return Features(tuple(c), tuple(ps0), tuple(ps1), tuple(ps2))

    def ps3_parts(self, local: Features, g: Features) -> list[Part]:
        """The 8 maps ``smooth`` concatenates, still at their own resolutions."""
        size = tuple(local.ps2[3].shape[-2:])
        parts: list[Part] = []
        for k in range(4):
            own = tuple(local.ps2[k].shape[-2:])
            if k < 3:
                parts += [Upsampled(local.ps2[k], (size,)), Upsampled(g.ps2[k], (own, size))]
            else:
                parts += [local.ps2[k], Upsampled(g.ps2[k], (size,))]
        return parts

    def forward(self, c: tuple[Tensor, ...], g: Features) -> tuple[Features, Tensor, Tensor]:
        """Training path: pyramid, ps3 and the local logits."""
        local = self.pyramid(c, g)
        ps3 = _conv(self.smooth, self.ps3_parts(local, g))
        return local, ps3, self.classify(ps3)
