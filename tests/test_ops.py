"""The eight primitives: order, shapes at strides 1 and 2, `none` is zero, BN affine flag, parameter counts."""

import pytest
import torch
from torch import nn

from rarts.ops import OPS, PRIMITIVES, FactorizedReduce, make_op

C = 4


def test_primitives_in_the_darts_order():
    assert PRIMITIVES == (
        "none",
        "max_pool_3x3",
        "avg_pool_3x3",
        "skip_connect",
        "sep_conv_3x3",
        "sep_conv_5x5",
        "dil_conv_3x3",
        "dil_conv_5x5",
    )
    assert set(OPS) == set(PRIMITIVES)


@pytest.mark.parametrize("size", [8, 7])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("name", PRIMITIVES)
def test_op_shape_and_backward(name, stride, size):
    torch.manual_seed(0)
    op = make_op(name, C, stride, affine=False)
    x = torch.randn(2, C, size, size, requires_grad=True)
    y = op(x)
    out = (size + stride - 1) // stride
    assert y.shape == (2, C, out, out)
    y.square().sum().backward()
    assert torch.isfinite(x.grad).all()


@pytest.mark.parametrize("stride", [1, 2])
def test_none_is_zero(stride):
    x = torch.randn(2, C, 8, 8)
    y = make_op("none", C, stride, affine=False)(x)
    assert y.shape == (2, C, 8 // stride, 8 // stride)
    assert torch.count_nonzero(y) == 0


def test_skip_connect_is_identity_at_stride_1_and_factorized_reduce_at_stride_2():
    x = torch.randn(2, C, 8, 8)
    assert torch.equal(make_op("skip_connect", C, 1, affine=True)(x), x)
    assert isinstance(make_op("skip_connect", C, 2, affine=True), FactorizedReduce)


@pytest.mark.parametrize("stride", [1, 2])
def test_avg_pool_does_not_count_padding(stride):
    x = torch.ones(1, C, 6, 6)
    y = make_op("avg_pool_3x3", C, stride, affine=False)(x)
    assert torch.allclose(y, torch.ones_like(y))  # corners would be 4/9 if padding counted


@pytest.mark.parametrize("affine", [False, True])
@pytest.mark.parametrize("name", PRIMITIVES)
def test_batchnorm_affine_follows_the_flag(name, affine):
    for stride in (1, 2):
        for m in make_op(name, C, stride, affine).modules():
            if isinstance(m, nn.BatchNorm2d):
                assert m.affine == affine


# Weights without BatchNorm, by formula: depthwise k x k is C * k^2, pointwise 1x1 is C^2.
EXPECTED_CONV_WEIGHTS = {
    "none": 0,
    "max_pool_3x3": 0,
    "avg_pool_3x3": 0,
    "sep_conv_3x3": 2 * (C * 9 + C * C),
    "sep_conv_5x5": 2 * (C * 25 + C * C),
    "dil_conv_3x3": C * 9 + C * C,
    "dil_conv_5x5": C * 25 + C * C,
}


@pytest.mark.parametrize("name", [n for n in PRIMITIVES if n != "skip_connect"])
def test_parameter_counts(name):
    op = make_op(name, C, 1, affine=False)
    assert sum(p.numel() for p in op.parameters()) == EXPECTED_CONV_WEIGHTS[name]
    op = make_op(name, C, 2, affine=True)
    n_bn = sum(1 for m in op.modules() if isinstance(m, nn.BatchNorm2d))
    assert sum(p.numel() for p in op.parameters()) == EXPECTED_CONV_WEIGHTS[name] + 2 * C * n_bn


def test_convolution_geometry():
    """SepConv: two depthwise convs, only the first strided; DilConv: dilation 2; paddings 1/2 and 2/4."""
    for name, k, pad, dil, n_dw in [
        ("sep_conv_3x3", 3, 1, 1, 2),
        ("sep_conv_5x5", 5, 2, 1, 2),
        ("dil_conv_3x3", 3, 2, 2, 1),
        ("dil_conv_5x5", 5, 4, 2, 1),
    ]:
        op = make_op(name, C, 2, affine=False)
        dw = [m for m in op.modules() if isinstance(m, nn.Conv2d) and m.groups == C]
        assert len(dw) == n_dw
        assert [m.stride for m in dw] == [(2, 2)] + [(1, 1)] * (n_dw - 1)
        assert all(m.kernel_size == (k, k) and m.padding == (pad, pad) and m.dilation == (dil, dil) for m in dw)
        leaves = [m for m in op.modules() if not list(m.children())]
        assert isinstance(leaves[0], nn.ReLU) and isinstance(leaves[-1], nn.BatchNorm2d)


def test_factorized_reduce_uses_both_pixel_phases():
    """conv_1 sees the even pixels, conv_2 the odd ones: each half of the output depends only on its phase."""
    fr = FactorizedReduce(C, C, affine=False).eval()
    x = torch.randn(1, C, 8, 8).abs()  # positive, so the leading ReLU is the identity
    even, odd = x.clone(), x.clone()
    even[:, :, 1::2, 1::2] += 1.0  # changes only what the shifted path sees
    odd[:, :, ::2, ::2] += 1.0  # changes only what the first path sees
    y, y_even, y_odd = fr(x), fr(even), fr(odd)
    half = C // 2
    assert torch.allclose(y[:, :half], y_even[:, :half]) and not torch.allclose(y[:, half:], y_even[:, half:])
    assert torch.allclose(y[:, half:], y_odd[:, half:]) and not torch.allclose(y[:, :half], y_odd[:, :half])


def test_unknown_op_is_an_error_naming_it():
    with pytest.raises(ValueError, match="sep_conv_7x7"):
        make_op("sep_conv_7x7", C, 1, affine=False)
