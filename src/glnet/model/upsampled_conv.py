"""Convolutions over concatenations of bilinearly upsampled maps, done at low resolution.

GLNet's heads repeatedly concatenate maps that were bilinearly resized up to
a common size (coarser FPN levels, crops of the global branch) and run a
convolution over the result; the largest, ``fpn_local.smooth``, is a 3x3
conv with 1024 inputs at 127x127 and costs more than the whole ResNet.

Bilinear resizing is linear and acts on the spatial axes only, so it
commutes with a convolution's channel mixing.  For a k x k conv (padding
k//2) over ``up(x)``::

    conv(up(x)) = sum over offsets (dy, dx) of  Ah_dy @ (W_dy,dx . x) @ Aw_dx^T

where ``A`` is the resize as a matrix (a chain of resizes is the product of
their matrices) and ``A_d`` is ``A`` with its rows shifted by the offset and
zero-filled, which reproduces the conv's zero padding exactly.  The channel
mixing runs at the input's low resolution and only the two thin matrix
products touch the output resolution: the same function, up to float
rounding, for a fraction of the work.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import Tensor

Size = tuple[int, ...]  # (H, W); torch.Size is one


@dataclass(frozen=True)
class Upsampled:
    """A map that the reference resizes (bilinear, align_corners=False) through
    ``chain`` (a sequence of (H, W) sizes, the last one the conv's size)."""

    x: Tensor
    chain: tuple[Size, ...]


Part = Tensor | Upsampled


@lru_cache(maxsize=512)
def _resize_matrix_f64(sizes: tuple[int, ...]) -> Tensor:
    """(sizes[-1], sizes[0]) matrix of 1-D bilinear resizes through ``sizes``.

    Built by resizing the identity with F.interpolate itself, so the weights
    are the ones PyTorch uses."""
    a = torch.eye(sizes[0], dtype=torch.float64)
    for n_in, n_out in itertools.pairwise(sizes):
        basis = torch.eye(n_in, dtype=torch.float64).view(1, n_in, n_in, 1)
        step = F.interpolate(basis, size=(n_out, 1), mode="bilinear", align_corners=False)[0, :, :, 0].T
        a = step @ a
    return a


@lru_cache(maxsize=512)
def _shifted_f64(sizes: tuple[int, ...], k: int) -> Tensor:
    """(k, n_out, n_in): the resize matrix with rows shifted for each kernel offset."""
    a = _resize_matrix_f64(sizes)
    n_out, n_in = a.shape
    pad = k // 2
    padded = torch.cat([torch.zeros(pad, n_in, dtype=a.dtype), a, torch.zeros(pad, n_in, dtype=a.dtype)])
    return torch.stack([padded[d : d + n_out] for d in range(k)])


def resize_matrix(sizes: tuple[int, ...], like: Tensor) -> Tensor:
    return _resize_matrix_f64(sizes).to(device=like.device, dtype=like.dtype)


@lru_cache(maxsize=512)
def _width_operator_f64(sizes: tuple[int, ...], k: int) -> Tensor:
    """(W, w*k): column x*k + dx holds the row-shifted resize for offset dx."""
    shifted = _shifted_f64(sizes, k)  # (k, W, w)
    return shifted.permute(1, 2, 0).reshape(shifted.shape[1], -1)


def _axis_chains(x: Tensor, chain: tuple[Size, ...]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    h, w = x.shape[-2:]
    return (h, *(s[0] for s in chain)), (w, *(s[1] for s in chain))


def conv_of_upsampled(x: Tensor, weight: Tensor, chain: tuple[Size, ...], out: Tensor | None = None) -> Tensor:
    """conv2d(resize_chain(x), weight, padding=k//2) without bias, at x's resolution.

    Works channels-last throughout so no step copies a large map: the 1x1
    channel mixing yields (b, h, w, k*O), the width resize is one batched
    matmul to (b, h, W, O), and the height resize accumulates in place into
    ``out`` (created if None; a channels-last (b, O, H, W) tensor)."""
    out_c, in_c, k, _ = weight.shape
    hs, ws = _axis_chains(x, chain)
    b, _, h, w = x.shape
    big_h, big_w = hs[-1], ws[-1]
    x = x.contiguous(memory_format=torch.channels_last)
    for dy in range(k):
        wk = weight[:, :, dy].permute(2, 0, 1).reshape(k * out_c, in_c, 1, 1)
        z = F.conv2d(x, wk).permute(0, 2, 3, 1).reshape(b * h, w * k, out_c)
        if out is None:
            out = torch.zeros(b, out_c, big_h, big_w, dtype=z.dtype, device=z.device)
            out = out.contiguous(memory_format=torch.channels_last)
        aw = _width_operator_f64(ws, k).to(device=z.device, dtype=z.dtype)
        t = torch.matmul(aw, z).view(b, h, big_w * out_c)
        ah = _shifted_f64(hs, k)[dy].to(device=z.device, dtype=z.dtype)
        flat = out.permute(0, 2, 3, 1).view(b, big_h, big_w * out_c)
        if torch.is_grad_enabled() and (flat.requires_grad or t.requires_grad):
            # training: out of place, since autograd would copy the whole
            # output for every in-place slice update below (2/3 of a step's time)
            flat = flat + torch.matmul(ah, t)
            out = flat.view(b, big_h, big_w, out_c).permute(0, 3, 1, 2)
            continue
        for i in range(b):
            flat[i].addmm_(ah, t[i])
    if out is None:
        raise ValueError(f"a kernel of size {k}: nothing to convolve")
    return out


def conv_over_concat(weight: Tensor, bias: Tensor | None, parts: list[Part], padding: int | None = None) -> Tensor:
    """conv2d(cat(parts, dim=1)) where some parts are lazily upsampled maps.

    Native parts (plain tensors) go through an ordinary convolution with their
    slice of the weight; upsampled parts through ``conv_of_upsampled``, all
    accumulated into one channels-last output."""
    k = weight.shape[-1]
    padding = k // 2 if padding is None else padding
    slices, start = [], 0
    for part in parts:
        n = (part.x if isinstance(part, Upsampled) else part).shape[1]
        slices.append(weight[:, start : start + n])
        start += n
    if start != weight.shape[1]:
        raise ValueError(f"parts have {start} channels, the conv expects {weight.shape[1]}")
    native = [(p.x if isinstance(p, Upsampled) else p, w) for p, w in zip(parts, slices) if not _is_upsampled(p)]
    folded = [(p, w) for p, w in zip(parts, slices) if isinstance(p, Upsampled) and _is_upsampled(p)]
    out: Tensor | None = None
    for x, w in native:
        y = F.conv2d(x, w, padding=padding)
        out = y.contiguous(memory_format=torch.channels_last) if out is None else out.add_(y)
    for p, w in folded:
        out = conv_of_upsampled(p.x, w, p.chain, out)
    if out is None:
        raise ValueError("no parts to convolve")
    if bias is not None:
        out = out.add_(bias.to(out.dtype).view(1, -1, 1, 1))
    return out


def _is_upsampled(part: Part) -> bool:
    return isinstance(part, Upsampled) and bool(part.chain)


def materialize(part: Part) -> Tensor:
    """The upsampled map itself, as the reference computes it (F.interpolate chain)."""
    if not isinstance(part, Upsampled):
        return part
    x = part.x
    for size in part.chain:
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
    return x


def border_lines(part: Part) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Rows 0 and H-1 (B,C,W) and columns 0 and W-1 (B,C,H) of the (upsampled) map."""
    if not isinstance(part, Upsampled) or not part.chain:
        x = part.x if isinstance(part, Upsampled) else part
        return x[:, :, 0], x[:, :, -1], x[:, :, :, 0], x[:, :, :, -1]
    hs, ws = _axis_chains(part.x, part.chain)
    ah = resize_matrix(hs, part.x)
    aw = resize_matrix(ws, part.x)
    rows = torch.einsum("ry,bcyx,jx->bcrj", ah[[0, -1]], part.x, aw)
    cols = torch.einsum("iy,bcyx,rx->bcri", ah, part.x, aw[[0, -1]])
    return rows[:, :, 0], rows[:, :, 1], cols[:, :, 0], cols[:, :, 1]
