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


@lru_cache(maxsize=1024)
def _operator(sizes: tuple[int, ...], k: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """(n_out, n_in * k) in ``dtype``: column x * k + d holds the resize through
    ``sizes`` with rows shifted for kernel offset d (k = 1: the resize itself)."""
    with torch.inference_mode(False):  # a cached tensor may be used later in training
        shifted = _shifted_f64(sizes, k)  # (k, n_out, n_in)
        return shifted.permute(1, 2, 0).reshape(shifted.shape[1], -1).to(device=device, dtype=dtype)


def resize_matrix(sizes: tuple[int, ...], like: Tensor) -> Tensor:
    return _operator(sizes, 1, like.dtype, like.device)


def _axis_chains(x: Tensor, chain: tuple[Size, ...]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    h, w = x.shape[-2:]
    return (h, *(s[0] for s in chain)), (w, *(s[1] for s in chain))


def conv_of_upsampled(x: Tensor, weight: Tensor, chain: tuple[Size, ...], out: Tensor | None = None) -> Tensor:
    """conv2d(resize_chain(x), weight, padding=k//2) without bias, at x's resolution.

    One 1x1 convolution mixes the channels for all k x k kernel offsets at
    x's resolution; then per image one GEMM resizes the width (all rows and
    offsets at once) and one GEMM resizes the height and sums the offsets,
    accumulating in place into ``out`` (created if None; a channels-last
    (b, O, H, W) tensor).  Large GEMMs instead of many small ones: a
    broadcast batched matmul per offset ran several times slower."""
    out_c, in_c, k, _ = weight.shape
    hs, ws = _axis_chains(x, chain)
    b, _, h, w = x.shape
    big_h, big_w = hs[-1], ws[-1]
    x = x.contiguous(memory_format=torch.channels_last)
    mix = weight.permute(3, 2, 0, 1)  # (dx, dy, o, i): z's channels in that order
    if torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad or (out is not None and out.requires_grad)):
        return _conv_of_upsampled_train(x, mix, hs, ws, out)
    step = _channel_step(b * k * k * h * w * x.element_size(), out_c)
    for o0 in range(0, out_c, step):
        oc = min(step, out_c - o0)
        # z[b, y, x, (dx, dy, o)]: channels-last, so the permute is a free view
        z = F.conv2d(x, mix[:, :, o0 : o0 + oc].reshape(k * k * oc, in_c, 1, 1)).permute(0, 2, 3, 1)
        aw = _operator(ws, k, z.dtype, z.device)  # (W, w*k), column x*k + dx
        ah = _operator(hs, k, z.dtype, z.device)  # (H, h*k), column y*k + dy
        if out is None:
            out = torch.zeros(b, out_c, big_h, big_w, dtype=z.dtype, device=z.device)
            out = out.contiguous(memory_format=torch.channels_last)
        for i in range(b):
            t = _width_pass(z[i], aw, k, big_w)
            if oc == out_c:  # one GEMM accumulates into the channels-last output
                out[i].permute(1, 2, 0).reshape(big_h, big_w * out_c).addmm_(ah, t)
            else:
                out[i, o0 : o0 + oc].permute(1, 2, 0).add_((ah @ t).view(big_h, big_w, oc))
            del t
        del z
    assert out is not None
    return out


# the channel mixing's output (k*k maps per output channel at x's resolution)
# and the width pass's two copies of it are the largest transients of the
# heads; past this size they are made for a slice of the output channels at a time
_MIX_BUDGET = 32 << 20


def _channel_step(bytes_per_channel: int, out_c: int) -> int:
    """Output channels per slice, so that one slice's mixed maps stay within the budget
    (a multiple of 16, or all of them)."""
    if bytes_per_channel * out_c <= _MIX_BUDGET:
        return out_c
    return min(out_c, max(16, _MIX_BUDGET // bytes_per_channel // 16 * 16))


def _width_pass(zi: Tensor, aw: Tensor, k: int, big_w: int) -> Tensor:
    """(h*k, W*oc): one image's mixed maps (h, w, k*k*oc) resized along the width,
    the dx offsets summed by the GEMM, rows y*k + dy."""
    h, w, kko = zi.shape
    oc = kko // (k * k)
    zi = zi.reshape(h, w * k, k * oc).transpose(0, 1).reshape(w * k, h * k * oc)
    return (aw @ zi).view(big_w, h * k, oc).transpose(0, 1).reshape(h * k, big_w * oc)


def _conv_of_upsampled_train(x: Tensor, mix: Tensor, hs, ws, out: Tensor | None) -> Tensor:
    """The same function out of place, for autograd (which would copy the whole
    output for every in-place update)."""
    k, _, out_c, in_c = mix.shape
    b = x.shape[0]
    big_h, big_w = hs[-1], ws[-1]
    z = F.conv2d(x, mix.reshape(k * k * out_c, in_c, 1, 1)).permute(0, 2, 3, 1)
    aw = _operator(ws, k, z.dtype, z.device)
    ah = _operator(hs, k, z.dtype, z.device)
    summed = torch.stack([ah @ _width_pass(z[i], aw, k, big_w) for i in range(b)])
    if out is not None:
        summed = out.permute(0, 2, 3, 1).reshape(b, big_h, big_w * out_c) + summed
    return summed.view(b, big_h, big_w, out_c).permute(0, 3, 1, 2)


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
    rows = torch.matmul(ah[[0, -1]], part.x) @ aw.T  # the first and last rows first: (b, c, 2, W)
    cols = ah @ torch.matmul(part.x, aw[[0, -1]].T)  # (b, c, H, 2)
    return rows[:, :, 0], rows[:, :, 1], cols[..., 0], cols[..., 1]
