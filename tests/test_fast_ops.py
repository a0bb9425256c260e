"""The CPU speed and memory rewrites in rarts.ops compute what the plain modules compute.

- DepthwiseConv2d: outputs and both gradients against nn.Conv2d with the same weight, for every depthwise
  convolution of the search space (3 x 3 and 5 x 5, stride 1 and 2, dilation 1 and 2), and the rewrite is taken;
- depthwise_weight_grad (polyphase and 3 x 3 tiling) against the library's kernel in float64;
- weighted_norm: values, gradients and running statistics against weight * BatchNorm2d in every mode;
- second derivatives through the rewrites (a gradient taken with create_graph=True) against the plain ops;
- MaxPool2d: the same gradient as nn.MaxPool2d, and no int64 index tensor kept for the backward pass;
- the memory a mixed op keeps for its backward pass, counted against the figure the rewrites give.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from rarts.ops import (
    DepthwiseConv2d,
    MaxPool2d,
    _conv_weight_grad,
    _DepthwiseConvFunction,
    depthwise_weight_grad,
    weighted_norm,
)
from rarts.supernet import MixedOp

# (kernel, stride, padding, dilation) of the depthwise convolutions of sep_conv_3x3/5x5 and dil_conv_3x3/5x5
SEARCH_SPACE_CONVS = [(3, 1, 1, 1), (5, 1, 2, 1), (3, 2, 1, 1), (5, 2, 2, 1), (3, 1, 2, 2), (5, 1, 4, 2)]
SEARCH_SPACE_CONVS += [(3, 2, 2, 2), (5, 2, 4, 2)]


@pytest.mark.parametrize("kernel,stride,padding,dilation", SEARCH_SPACE_CONVS)
@pytest.mark.parametrize("layout", [torch.channels_last, torch.contiguous_format])
def test_depthwise_conv_matches_conv2d(kernel, stride, padding, dilation, layout):
    torch.manual_seed(0)
    C = 6
    fast = DepthwiseConv2d(C, kernel, stride, padding, dilation)
    plain = nn.Conv2d(C, C, kernel, stride, padding, dilation, groups=C, bias=False)
    plain.load_state_dict(fast.state_dict())  # the same parameter names
    for size in (8, 9) if stride == 2 else (8,):
        x = torch.randn(3, C, size, size).contiguous(memory_format=layout).requires_grad_()
        y_fast, y_plain = fast(x), plain(x)
        torch.testing.assert_close(y_fast, y_plain, rtol=1e-5, atol=1e-5)
        grad_out = torch.randn_like(y_plain)
        g_fast = torch.autograd.grad(y_fast, [x, fast.weight], grad_out)
        g_plain = torch.autograd.grad(y_plain, [x, plain.weight], grad_out)
        for a, b in zip(g_fast, g_plain):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
        rewritten = kernel > 3 or dilation > 1 if stride == 1 else dilation == 2
        assert fast._rewrite(x) == rewritten


def test_depthwise_conv_falls_back_where_the_rewrite_does_not_apply():
    conv = DepthwiseConv2d(4, 5, 1, 2, 1)
    x = torch.randn(2, 4, 8, 8, requires_grad=True)
    assert conv._rewrite(x)
    assert not conv._rewrite(x.double())  # float32 only
    with torch.no_grad():
        assert not conv._rewrite(x)  # inference: the library's forward
    assert not DepthwiseConv2d(4, 4, 1, 3, 2)._rewrite(x)  # padding not a multiple of the dilation
    assert not DepthwiseConv2d(4, 3, 1, 2, 2)._rewrite(torch.randn(2, 4, 7, 7, requires_grad=True))  # odd size
    DepthwiseConv2d.fast_cpu_backward = False
    try:
        assert not conv._rewrite(x)
    finally:
        DepthwiseConv2d.fast_cpu_backward = True


@pytest.mark.parametrize("kernel,padding,dilation", [(3, 1, 1), (5, 2, 1), (7, 3, 1), (3, 2, 2), (5, 4, 2), (3, 3, 3)])
def test_depthwise_weight_grad_is_exact_in_float64(kernel, padding, dilation):
    torch.manual_seed(1)
    x = torch.randn(2, 3, 12, 12, dtype=torch.float64)
    grad_out = torch.randn(2, 3, 12, 12, dtype=torch.float64)
    expected = _conv_weight_grad(x, grad_out, kernel, 1, padding, dilation)
    torch.testing.assert_close(depthwise_weight_grad(x, grad_out, kernel, padding, dilation), expected)


def test_depthwise_function_gradcheck():
    torch.manual_seed(2)
    x = torch.randn(1, 2, 6, 6, dtype=torch.float64, requires_grad=True)
    w = torch.randn(2, 1, 3, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: _DepthwiseConvFunction.apply(a, b, 2, 2), (x, w))
    assert torch.autograd.gradgradcheck(lambda a, b: _DepthwiseConvFunction.apply(a, b, 2, 2), (x, w))


def _norm_pair(**kwargs):
    fused = nn.BatchNorm2d(5, affine=False, **kwargs).double()
    with torch.no_grad():
        if fused.running_mean is not None:
            fused.running_mean.uniform_(-1, 1)
            fused.running_var.uniform_(0.5, 2)
    return fused, copy.deepcopy(fused)


@pytest.mark.parametrize("mode", ["train", "eval", "untracked", "cumulative", "frozen"])
def test_weighted_norm_matches_weight_times_batch_norm(mode):
    torch.manual_seed(3)
    kwargs = {"track_running_stats": False} if mode == "untracked" else {}
    if mode == "cumulative":
        kwargs["momentum"] = None
    fused, plain = _norm_pair(**kwargs)
    if mode == "eval":
        fused.eval(), plain.eval()
    if mode == "frozen":  # what search/base.frozen_statistics does
        fused.track_running_stats = plain.track_running_stats = False
    for _ in range(2):  # twice, so the cumulative average moves on
        x = torch.randn(4, 5, 3, 3, dtype=torch.float64, requires_grad=True)
        weight = torch.tensor(0.3, dtype=torch.float64, requires_grad=True)
        out_fused = weighted_norm(x, fused, weight)
        out_plain = weight * plain(x)
        torch.testing.assert_close(out_fused, out_plain)
        grad_out = torch.randn_like(out_plain)
        for a, b in zip(
            torch.autograd.grad(out_fused, [x, weight], grad_out), torch.autograd.grad(out_plain, [x, weight], grad_out)
        ):
            torch.testing.assert_close(a, b)
    for a, b in zip(fused.buffers(), plain.buffers()):
        torch.testing.assert_close(a, b)
    x = torch.randn(2, 5, 3, 3, dtype=torch.float64, requires_grad=True)
    weight = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)
    frozen = copy.deepcopy(fused)
    frozen.track_running_stats = False if mode != "eval" else frozen.track_running_stats
    assert torch.autograd.gradcheck(lambda a, b: weighted_norm(a, frozen, b), (x, weight))


def test_weighted_norm_with_affine_parameters_is_computed_as_written():
    norm = nn.BatchNorm2d(3)
    x, weight = torch.randn(2, 3, 4, 4), torch.tensor(0.5)
    torch.testing.assert_close(weighted_norm(x, copy.deepcopy(norm), weight), weight * norm(x))


@pytest.mark.parametrize("stride", [1, 2])
def test_max_pool_gradient_equals_the_library_and_keeps_no_indices(stride):
    torch.manual_seed(4)
    x = torch.randn(2, 3, 9, 9).contiguous(memory_format=torch.channels_last).requires_grad_()
    x_ties = torch.zeros(2, 3, 9, 9, requires_grad=True)  # every window a tie: the first maximum takes the gradient
    for inp in (x, x_ties):
        dtypes: list[torch.dtype] = []

        def pack(t, dtypes=dtypes):
            dtypes.append(t.dtype)
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            y = MaxPool2d(3, stride, 1)(inp)
        assert dtypes and torch.int64 not in dtypes
        y_plain = nn.MaxPool2d(3, stride, 1)(inp)
        torch.testing.assert_close(y, y_plain, rtol=0, atol=0)
        grad_out = torch.randn_like(y)
        torch.testing.assert_close(
            torch.autograd.grad(y, inp, grad_out)[0], torch.autograd.grad(y_plain, inp, grad_out)[0], rtol=0, atol=0
        )


def _saved_bytes(module_call) -> int:
    """Bytes of the distinct storages autograd keeps for the backward pass of `module_call()`."""
    storages: dict[int, int] = {}

    def pack(t):
        storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        module_call()
    return sum(storages.values())


def test_mixed_op_keeps_14_activations_per_edge_for_the_backward_pass():
    """A stride-1 edge (N, C, H, W) keeps, in units of one activation: the input x and the shared ReLU of it (2),
    per separable convolution the outputs of its two depthwise and two pointwise convolutions (4 each, 8), per
    dilated convolution its depthwise and pointwise outputs (2 each, 4): 14. Written plainly it kept 27: every
    convolution op its own ReLU (3), the pools' outputs and the max pool's int64 indices (4), each op's output for
    the gradient of its weight (6) and the separable convolutions' inner ReLU (2)."""
    torch.manual_seed(5)
    mixed = MixedOp(8, 1)
    x = torch.randn(4, 8, 16, 16).contiguous(memory_format=torch.channels_last).requires_grad_()
    unit = x.numel() * x.element_size()
    weights = torch.softmax(torch.randn(8), 0).requires_grad_()
    small = sum(p.numel() * 4 for p in mixed.parameters()) + 64 * 1024  # weights, statistics, scalars
    saved = _saved_bytes(lambda: mixed(x, weights))
    assert 14 * unit <= saved <= 14 * unit + small
    plain = _saved_bytes(lambda: sum(weights[k] * op(x) for k, op in zip(mixed.op_index, mixed.ops)))
    assert 27 * unit <= plain <= 27 * unit + small


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("train", [True, False])
def test_mixed_op_rewrites_compute_the_plain_sum(stride, train):
    """The mixed op with every rewrite (fused norms, pools recomputed, separable convolutions' middle recomputed,
    fast depthwise convolutions) against the plain sum of weight x op(x): outputs, gradients of x, of the weights
    and of every parameter, and the running statistics afterwards (float32, as the rewrites apply there)."""
    torch.manual_seed(6)
    fast = MixedOp(6, stride)
    plain = copy.deepcopy(fast)
    fast.train(train), plain.train(train)
    x = torch.randn(4, 6, 8, 8).contiguous(memory_format=torch.channels_last).requires_grad_()
    weights = torch.softmax(torch.randn(8), 0).requires_grad_()
    out_fast = fast(x, weights)
    out_plain = sum(weights[k] * op(x) for k, op in zip(plain.op_index, plain.ops))
    torch.testing.assert_close(out_fast, out_plain, rtol=1e-5, atol=1e-5)
    grad_out = torch.randn_like(out_plain)
    g_fast = torch.autograd.grad(out_fast, [x, weights, *fast.parameters()], grad_out)
    g_plain = torch.autograd.grad(out_plain, [x, weights, *plain.parameters()], grad_out)
    for a, b in zip(g_fast, g_plain):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    for a, b in zip(fast.buffers(), plain.buffers()):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("stride", [1, 2])
def test_mixed_op_second_derivatives_match_the_plain_sum(stride):
    """A gradient taken with create_graph=True through the rewrites differentiates again as the plain sum's does.

    The fast backward passes treat a batch's saved statistics as constants, exact for a gradient but not for a
    second derivative (the mixed derivative came out 2.6% off on the ReLU supernet); asked for a graph, they take
    the plain ops. Checked here: d/d(x, weights, parameters) of <grad of <out, u> to (x, parameters), v>."""
    torch.manual_seed(8)
    fast = MixedOp(4, stride).double()
    plain = copy.deepcopy(fast)
    x = torch.randn(2, 4, 6, 6, dtype=torch.float64).contiguous(memory_format=torch.channels_last).requires_grad_()
    weights = torch.softmax(torch.randn(8, dtype=torch.float64), 0).requires_grad_()

    def second(out, params):
        u = torch.randn_like(out, generator=torch.Generator().manual_seed(0))
        g = torch.autograd.grad((out * u).sum(), [x, *params], create_graph=True)
        gen = torch.Generator().manual_seed(1)
        projection = sum((gi * torch.randn(gi.shape, dtype=gi.dtype, generator=gen)).sum() for gi in g)
        return torch.autograd.grad(projection, [x, weights, *params], allow_unused=True)

    out_fast = fast(x, weights)
    out_plain = sum(weights[k] * op(x) for k, op in zip(plain.op_index, plain.ops))
    got = second(out_fast, list(fast.parameters()))
    want = second(out_plain, list(plain.parameters()))
    for a, b in zip(got, want):
        if b is None:
            assert a is None or not a.any()
        else:
            torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("pool", [nn.AvgPool2d(3, 1, 1, count_include_pad=False), nn.MaxPool2d(3, 2, 1)])
def test_weighted_norm_recomputes_its_pool_exactly(pool):
    torch.manual_seed(7)
    fused, plain = _norm_pair()
    x = torch.randn(3, 5, 6, 6, dtype=torch.float64, requires_grad=True)
    weight = torch.tensor(0.4, dtype=torch.float64, requires_grad=True)
    out_fused = weighted_norm(x, fused, weight, before=pool)
    out_plain = weight * plain(pool(x))
    torch.testing.assert_close(out_fused, out_plain)
    grad_out = torch.randn_like(out_plain)
    for a, b in zip(
        torch.autograd.grad(out_fused, [x, weight], grad_out), torch.autograd.grad(out_plain, [x, weight], grad_out)
    ):
        torch.testing.assert_close(a, b)
    torch.testing.assert_close(fused.running_mean, plain.running_mean)
    fused.track_running_stats = False
    assert torch.autograd.gradcheck(lambda a, b: weighted_norm(a, fused, b, before=pool), (x, weight))


def test_alpha_steps_form_no_weight_gradients(monkeypatch):
    """The alpha step's forward runs with the weights' requires_grad off (weight_grads=False), so the custom
    backward passes of rarts.ops, which cannot see which gradients the caller asked for, skip the weight
    gradients too; the weights require gradients again afterwards. The weight step forms them."""
    import rarts.ops
    from rarts.search import METHODS, MethodSettings
    from rarts.supernet import Architecture, SearchNetwork

    calls = []
    real = rarts.ops.depthwise_weight_grad
    monkeypatch.setattr(rarts.ops, "depthwise_weight_grad", lambda *a, **k: calls.append(1) or real(*a, **k))
    torch.manual_seed(8)
    net = SearchNetwork(4, 10, 3).to(memory_format=torch.channels_last)
    method = METHODS["darts1"](net, Architecture(), MethodSettings())
    batch = (torch.randn(4, 3, 8, 8).contiguous(memory_format=torch.channels_last), torch.randint(0, 10, (4,)))
    method.update_alpha(batch, batch)
    assert calls == [] and all(p.requires_grad for p in net.parameters())
    method.update_w(batch, batch)
    assert len(calls) > 0
