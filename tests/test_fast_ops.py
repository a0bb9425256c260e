"""The fast paths of rarts.fast compute what the reference modules of rarts.ops and rarts.supernet compute.

- use_fast_paths: swaps classes only (the same parameters, buffers and state dict keys), part by part;
- FastDepthwiseConv2d: outputs and both gradients against nn.Conv2d with the same weight, for every depthwise
  convolution of the search space (3 x 3 and 5 x 5, stride 1 and 2, dilation 1 and 2), and the rewrite is taken;
- depthwise_weight_grad (polyphase and 3 x 3 tiling) against the library's kernel in float64;
- weighted_norm: values, gradients and running statistics against weight * BatchNorm2d in every mode;
- the fast mixed op against the reference one: outputs, every gradient, running statistics, second derivatives;
- FastMaxPool2d: the same gradient as nn.MaxPool2d, and no int64 index tensor kept for the backward pass;
- the memory a mixed op keeps for its backward pass, counted against the figure the rewrites give;
- search and final networks with the fast paths against the reference ones, a whole training step.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from rarts.fast import PARTS, use_fast_paths
from rarts.fast.depthwise import DepthwiseConvFunction, FastDepthwiseConv2d, conv_weight_grad, depthwise_weight_grad
from rarts.fast.mixed_op import FastMixedOp, SharedReLUMixedOp
from rarts.fast.recompute import FastMaxPool2d, weighted_norm
from rarts.supernet import MixedOp, SearchNetwork

# (kernel, stride, padding, dilation) of the depthwise convolutions of sep_conv_3x3/5x5 and dil_conv_3x3/5x5
SEARCH_SPACE_CONVS = [(3, 1, 1, 1), (5, 1, 2, 1), (3, 2, 1, 1), (5, 2, 2, 1), (3, 1, 2, 2), (5, 1, 4, 2)]
SEARCH_SPACE_CONVS += [(3, 2, 2, 2), (5, 2, 4, 2)]


@pytest.mark.parametrize("kernel,stride,padding,dilation", SEARCH_SPACE_CONVS)
@pytest.mark.parametrize("layout", [torch.channels_last, torch.contiguous_format])
def test_depthwise_conv_matches_conv2d(kernel, stride, padding, dilation, layout):
    torch.manual_seed(0)
    C = 6
    fast = depthwise(C, kernel, stride, padding, dilation)
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
        assert fast.rewrites(x) == rewritten


def depthwise(C: int, kernel: int, stride: int, padding: int, dilation: int) -> FastDepthwiseConv2d:
    return FastDepthwiseConv2d(C, C, kernel, stride, padding, dilation, groups=C, bias=False)


def test_depthwise_conv_falls_back_where_the_rewrite_does_not_apply():
    conv = depthwise(4, 5, 1, 2, 1)
    x = torch.randn(2, 4, 8, 8, requires_grad=True)
    assert conv.rewrites(x)
    assert not conv.rewrites(x.double())  # float32 only
    with torch.no_grad():
        assert not conv.rewrites(x)  # inference: the library's forward
    assert not depthwise(4, 4, 1, 3, 2).rewrites(x)  # padding not a multiple of the dilation
    assert not depthwise(4, 3, 1, 2, 2).rewrites(torch.randn(2, 4, 7, 7, requires_grad=True))  # odd size


def test_the_switch_swaps_classes_and_keeps_every_tensor_and_name():
    """use_fast_paths changes module classes in place, part by part: the same parameter and buffer objects under
    the same names, so checkpoints and optimisers are shared with the reference network; a second call, or a part
    left out, changes nothing."""
    torch.manual_seed(0)
    net = SearchNetwork(4, 10, 3)
    reference = copy.deepcopy(net)
    tensors = {k: id(v) for k, v in net.state_dict(keep_vars=True).items()}
    assert use_fast_paths(net, parts=["depthwise"]) is net
    kinds = {type(m) for m in net.modules()}
    assert FastDepthwiseConv2d in kinds and MixedOp in kinds and not kinds & {FastMixedOp, SharedReLUMixedOp}
    use_fast_paths(net, parts=["shared_relu"])
    assert SharedReLUMixedOp in {type(m) for m in net.modules()}
    fast = use_fast_paths(copy.deepcopy(reference), PARTS)
    kinds = [type(m) for m in fast.modules()]
    assert FastMixedOp in kinds and MixedOp not in kinds
    assert [type(m) for m in use_fast_paths(fast).modules()] == kinds
    assert {k: id(v) for k, v in net.state_dict(keep_vars=True).items()} == tensors
    assert list(fast.state_dict()) == list(reference.state_dict())
    fast.load_state_dict(reference.state_dict())
    with pytest.raises(ValueError, match="fused"):
        use_fast_paths(net, parts=["fused"])


@pytest.mark.parametrize("kernel,padding,dilation", [(3, 1, 1), (5, 2, 1), (7, 3, 1), (3, 2, 2), (5, 4, 2), (3, 3, 3)])
def test_depthwise_weight_grad_is_exact_in_float64(kernel, padding, dilation):
    torch.manual_seed(1)
    x = torch.randn(2, 3, 12, 12, dtype=torch.float64)
    grad_out = torch.randn(2, 3, 12, 12, dtype=torch.float64)
    expected = conv_weight_grad(x, grad_out, kernel, 1, padding, dilation)
    torch.testing.assert_close(depthwise_weight_grad(x, grad_out, kernel, padding, dilation), expected)


def test_depthwise_function_gradcheck():
    torch.manual_seed(2)
    x = torch.randn(1, 2, 6, 6, dtype=torch.float64, requires_grad=True)
    w = torch.randn(2, 1, 3, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: DepthwiseConvFunction.apply(a, b, 2, 2), (x, w))
    assert torch.autograd.gradgradcheck(lambda a, b: DepthwiseConvFunction.apply(a, b, 2, 2), (x, w))


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
    if mode == "frozen":  # what rarts.search.base.frozen_statistics does
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
            y = FastMaxPool2d(3, stride, 1)(inp)
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


def test_fast_mixed_op_keeps_14_activations_per_edge_for_the_backward_pass():
    """A stride-1 edge (N, C, H, W) keeps, in units of one activation: the input x and the shared ReLU of it (2),
    per separable convolution the outputs of its two depthwise and two pointwise convolutions (4 each, 8), per
    dilated convolution its depthwise and pointwise outputs (2 each, 4): 14. The reference mixed op keeps 29: every
    convolution op its own ReLU (3), the pools' outputs and the max pool's int64 indices (4), each op's output for
    the gradient of its weight (6) and the separable convolutions' inner ReLU (2)."""
    torch.manual_seed(5)
    reference = MixedOp(8, 1)
    mixed = use_fast_paths(copy.deepcopy(reference))
    x = torch.randn(4, 8, 16, 16).contiguous(memory_format=torch.channels_last).requires_grad_()
    unit = x.numel() * x.element_size()
    weights = torch.softmax(torch.randn(8), 0).requires_grad_()
    small = sum(p.numel() * 4 for p in mixed.parameters()) + 64 * 1024  # weights, statistics, scalars
    saved = _saved_bytes(lambda: mixed(x, weights))
    assert 14 * unit <= saved <= 14 * unit + small
    plain = _saved_bytes(lambda: reference(x, weights))
    assert 29 * unit <= plain <= 29 * unit + small


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("train", [True, False])
def test_mixed_op_rewrites_compute_the_plain_sum(stride, train):
    """The mixed op with every rewrite (fused norms, pools recomputed, separable convolutions' middle recomputed,
    fast depthwise convolutions) against the plain sum of weight x op(x): outputs, gradients of x, of the weights
    and of every parameter, and the running statistics afterwards (float32, as the rewrites apply there)."""
    torch.manual_seed(6)
    plain = MixedOp(6, stride)
    fast = use_fast_paths(copy.deepcopy(plain))
    fast.train(train), plain.train(train)
    x = torch.randn(4, 6, 8, 8).contiguous(memory_format=torch.channels_last).requires_grad_()
    weights = torch.softmax(torch.randn(8), 0).requires_grad_()
    out_fast = fast(x, weights)
    out_plain = plain(x, weights)
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
    plain = MixedOp(4, stride).double()
    fast = use_fast_paths(copy.deepcopy(plain))
    x = torch.randn(2, 4, 6, 6, dtype=torch.float64).contiguous(memory_format=torch.channels_last).requires_grad_()
    weights = torch.softmax(torch.randn(8, dtype=torch.float64), 0).requires_grad_()

    def second(out, params):
        u = torch.randn_like(out, generator=torch.Generator().manual_seed(0))
        g = torch.autograd.grad((out * u).sum(), [x, *params], create_graph=True)
        gen = torch.Generator().manual_seed(1)
        projection = sum((gi * torch.randn(gi.shape, dtype=gi.dtype, generator=gen)).sum() for gi in g)
        return torch.autograd.grad(projection, [x, weights, *params], allow_unused=True)

    out_fast = fast(x, weights)
    out_plain = plain(x, weights)
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
    backward passes of rarts.fast, which cannot see which gradients the caller asked for, skip the weight
    gradients too; the weights require gradients again afterwards. The weight step forms them."""
    import rarts.fast.depthwise
    from rarts.search import METHODS, MethodSettings
    from rarts.supernet import Architecture

    calls = []
    real = rarts.fast.depthwise.depthwise_weight_grad
    fake = lambda *a, **k: calls.append(1) or real(*a, **k)  # noqa: E731
    monkeypatch.setattr(rarts.fast.depthwise, "depthwise_weight_grad", fake)
    torch.manual_seed(8)
    net = use_fast_paths(SearchNetwork(4, 10, 3).to(memory_format=torch.channels_last))
    method = METHODS["darts1"](net, Architecture(), MethodSettings())
    batch = (torch.randn(4, 3, 8, 8).contiguous(memory_format=torch.channels_last), torch.randint(0, 10, (4,)))
    method.update_alpha(batch, batch)
    assert calls == [] and all(p.requires_grad for p in net.parameters())
    method.update_w(batch, batch)
    assert len(calls) > 0


@pytest.mark.parametrize("kind", ["search", "final"])
def test_networks_with_the_fast_paths_compute_what_the_reference_networks_compute(kind):
    """A training-mode forward and backward of a whole network: the logits, every gradient (the mixing weights'
    too) and the running statistics afterwards, with and without the fast paths."""
    from rarts.genotype import KNOWN_GENOTYPES
    from rarts.network import NetworkCIFAR

    torch.manual_seed(9)
    x = torch.randn(4, 3, 8, 8).contiguous(memory_format=torch.channels_last)
    target = torch.randint(0, 10, (4,))
    if kind == "search":
        reference = SearchNetwork(4, 10, 3)
        mixing = tuple(torch.softmax(torch.randn(14, 8), -1).requires_grad_() for _ in range(2))
        inputs, call = list(mixing), lambda net: net(x, mixing)
    else:
        reference = NetworkCIFAR(4, 10, 3, False, KNOWN_GENOTYPES["DARTS_V2"])
        inputs, call = [], lambda net: net(x)[0]
    reference = reference.to(memory_format=torch.channels_last)
    fast = use_fast_paths(copy.deepcopy(reference))
    results = []
    for net in (reference, fast):
        logits = call(net)
        loss = torch.nn.functional.cross_entropy(logits, target)
        results.append((logits, torch.autograd.grad(loss, [*net.parameters(), *inputs])))
    (logits_ref, grads_ref), (logits_fast, grads_fast) = results
    torch.testing.assert_close(logits_fast, logits_ref, rtol=1e-5, atol=1e-5)
    for a, b in zip(grads_fast, grads_ref, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    for (name, a), b in zip(fast.state_dict().items(), reference.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5, msg=name)
