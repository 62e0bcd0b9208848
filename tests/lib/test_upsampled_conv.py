"""The heads' convolutions over upsampled maps, done at low resolution, are the
convolution the reference computes on the upsampled maps."""

import pytest
import torch
import torch.nn.functional as F

from glnet.model.upsampled_conv import Upsampled, conv_of_upsampled, conv_over_concat, materialize


@pytest.mark.parametrize(
    ("b", "c", "hw", "out_c", "k", "chain"),
    [
        (2, 16, (10, 12), 24, 3, ((33, 47),)),  # small: one GEMM pair per image
        (1, 32, (16, 16), 8, 1, ((32, 32), (127, 127))),  # a chain of resizes, 1x1 kernel
        # 9 x 512 mixed maps of 64^2 (72 MB): made for a slice of the output channels at a time
        (1, 64, (64, 64), 512, 3, ((127, 127),)),
    ],
)
def test_conv_of_upsampled_is_the_conv_of_the_upsampled_map(b, c, hw, out_c, k, chain):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(b, c, *hw, generator=g)
    weight = torch.randn(out_c, c, k, k, generator=g) / (c * k * k) ** 0.5
    expected = F.conv2d(materialize(Upsampled(x, chain)), weight, padding=k // 2)
    with torch.inference_mode():
        got = conv_of_upsampled(x, weight, chain)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


def test_conv_over_concat_trains_like_the_plain_conv():
    # training takes the out-of-place path: gradients reach the low-resolution input
    g = torch.Generator().manual_seed(1)
    native = torch.randn(2, 8, 20, 20, generator=g, requires_grad=True)
    low = torch.randn(2, 6, 7, 9, generator=g, requires_grad=True)
    weight = torch.randn(5, 14, 3, 3, generator=g)
    parts = [native, Upsampled(low, ((20, 20),))]
    got = conv_over_concat(weight, None, parts)
    expected = F.conv2d(torch.cat([native, materialize(parts[1])], 1), weight, padding=1)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
    (gn, gl) = torch.autograd.grad(got.square().sum(), [native, low])
    (en, el) = torch.autograd.grad(expected.square().sum(), [native, low])
    torch.testing.assert_close(gn, en, rtol=1e-4, atol=1e-3)
    torch.testing.assert_close(gl, el, rtol=1e-4, atol=1e-3)
