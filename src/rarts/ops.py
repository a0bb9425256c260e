"""The eight primitives of the DARTS cell search space, in a registry keyed by name.

Every factory has the signature `(C, stride, affine) -> nn.Module`, maps C channels to C channels,
and divides the spatial size by `stride`. The search network builds them with affine=False
(BatchNorm without learnable scale and shift), the final networks with affine=True.
"""

from __future__ import annotations

import contextlib
import threading
import weakref
from collections.abc import Iterator
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import nn

PRIMITIVES: tuple[str, ...] = (
    "none",
    "max_pool_3x3",
    "avg_pool_3x3",
    "skip_connect",
    "sep_conv_3x3",
    "sep_conv_5x5",
    "dil_conv_3x3",
    "dil_conv_5x5",
)

OpFactory = Callable[[int, int, bool], nn.Module]
OPS: dict[str, OpFactory] = {}


def register_op(name: str) -> Callable[[OpFactory], OpFactory]:
    def decorator(factory: OpFactory) -> OpFactory:
        OPS[name] = factory
        return factory

    return decorator


class ReLUConvBN(nn.Sequential):
    """ReLU, k x k convolution, BatchNorm: the 1x1 preprocessing of cell inputs."""

    def __init__(self, C_in: int, C_out: int, kernel_size: int, stride: int, padding: int, affine: bool = True):
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(C_in, C_out, kernel_size, stride=stride, padding=padding, bias=False),
            nn.BatchNorm2d(C_out, affine=affine),
        )


def _layout(x: torch.Tensor) -> torch.memory_format:
    """The memory format x is laid out in (channels_last or contiguous), for tensors made to match it."""
    return torch.channels_last if x.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format


def _conv_weight_grad(x: torch.Tensor, go: torch.Tensor, kernel: int, stride: int, padding: int, dilation: int):
    """d loss / d weight of a depthwise convolution, by the library's own kernel."""
    C = x.shape[1]
    weight = x.new_empty(C, 1, kernel, kernel)
    out = torch.ops.aten.convolution_backward(
        go, x, weight, None, (stride,) * 2, (padding,) * 2, (dilation,) * 2, False, (0, 0), C, (False, True, False)
    )
    return out[1]


def depthwise_weight_grad(x: torch.Tensor, go: torch.Tensor, kernel: int, padding: int, dilation: int) -> torch.Tensor:
    """d loss / d weight (C, 1, k, k) of a stride-1 depthwise convolution with output gradient `go`, on the CPU.

    oneDNN has a fast kernel for the 3 x 3, undilated case only; the others take it 5 to 20 times longer than the
    forward pass. They are rewritten as that case, exactly (the sums are the same, in another order):
    - dilation d: the convolution splits into d x d undilated convolutions on the polyphase components
      x[:, :, a::d, b::d] (padding / d each), whose weight gradients add up;
    - a k x k kernel (k = 5, 7, ...): the weight gradient of offsets (u0 .. u0+2, v0 .. v0+2) is the 3 x 3 weight
      gradient of the padded input cropped at (u0, v0), so overlapping 3 x 3 blocks at u0, v0 = 0, 2, .. k-3 tile it.
    """
    layout = _layout(x)
    if dilation > 1:
        total = None
        for a in range(dilation):
            for b in range(dilation):
                xa = x[:, :, a::dilation, b::dilation].contiguous(memory_format=layout)
                ga = go[:, :, a::dilation, b::dilation].contiguous(memory_format=layout)
                part = depthwise_weight_grad(xa, ga, kernel, padding // dilation, 1)
                total = part if total is None else total + part
        return total
    if kernel <= 3:
        return _conv_weight_grad(x, go, kernel, 1, padding, 1)
    H, W = go.shape[2:]
    padded = F.pad(x, (padding,) * 4)
    out = x.new_empty(x.shape[1], 1, kernel, kernel)
    starts = range(0, kernel - 2, 2)
    for u0 in starts:
        for v0 in starts:
            crop = padded[:, :, u0 : u0 + H + 2, v0 : v0 + W + 2].contiguous(memory_format=layout)
            out[:, :, u0 : u0 + 3, v0 : v0 + 3] = _conv_weight_grad(crop, go, 3, 1, 0, 1)
    return out


class _DepthwiseConvFunction(torch.autograd.Function):
    """A stride-1, same-size depthwise convolution whose backward avoids oneDNN's slow CPU paths.

    Forward: the library's convolution. Backward: the input gradient is the forward convolution of the output
    gradient with the flipped kernel (same padding, same dilation); the weight gradient is `depthwise_weight_grad`.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, padding: int, dilation: int) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.padding, ctx.dilation = padding, dilation
        return F.conv2d(x, weight, None, 1, padding, dilation, x.shape[1])

    @staticmethod
    def backward(ctx, go: torch.Tensor):
        x, weight = ctx.saved_tensors
        grad_x, grad_w = depthwise_backward(x, weight, go, ctx.padding, ctx.dilation, ctx.needs_input_grad[:2])
        return grad_x, grad_w, None, None


def depthwise_backward(x, weight, grad_out, padding: int, dilation: int, needs: tuple[bool, bool]):
    """(d loss / d x, d loss / d weight) of a stride-1, same-size depthwise convolution of x, each None unless
    `needs` asks for it: the input gradient is the forward convolution of grad_out with the flipped kernel, the
    weight gradient `depthwise_weight_grad`."""
    grad_out = grad_out.contiguous(memory_format=_layout(x))
    grad_x = grad_w = None
    if needs[0]:
        grad_x = F.conv2d(grad_out, weight.flip(2, 3), None, 1, padding, dilation, x.shape[1])
    if needs[1]:
        grad_w = depthwise_weight_grad(x, grad_out, weight.shape[-1], padding, dilation)
    return grad_x, grad_w


def _on_cpu_with_grad(x: torch.Tensor) -> bool:
    """Whether the CPU rewrites apply to input x: on the CPU, gradients on, not being traced or scripted."""
    if x.device.type != "cpu" or not torch.is_grad_enabled():
        return False
    return not (torch.jit.is_tracing() or torch.jit.is_scripting())


class DepthwiseConv2d(nn.Conv2d):
    """A k x k depthwise convolution (groups = channels, no bias): nn.Conv2d with the same parameters and state dict,
    computed faster on the CPU when gradients are formed.

    There, two rewrites apply, both exact:
    - stride 2 with dilation 2 and even padding 2q reads only the even rows and columns of its input, so it is the
      undilated stride-1 convolution (padding q) of x[:, :, ::2, ::2];
    - a stride-1 convolution that keeps the spatial size, with a 5 x 5 kernel or dilation, runs through
      `_DepthwiseConvFunction`, whose backward is 2 to 10 times faster than oneDNN's on these shapes.
    Everything else (CUDA, other dtypes, inference, tracing for export) is nn.Conv2d's own forward.
    """

    fast_cpu_backward = True  # False: always nn.Conv2d's forward (the benchmarks switch it to compare)

    def __init__(self, channels: int, kernel_size: int, stride: int, padding: int, dilation: int = 1):
        super().__init__(channels, channels, kernel_size, stride, padding, dilation, groups=channels, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self._rewrite(x):
            return super().forward(x)
        (k,), (s,), (p,), (d,) = self.kernel_size[:1], self.stride[:1], self.padding[:1], self.dilation[:1]
        if s == 2:
            x = x[:, :, ::2, ::2]
            p, d = p // 2, 1
            if k <= 3:
                return F.conv2d(x, self.weight, None, 1, p, 1, self.groups)
        return _DepthwiseConvFunction.apply(x, self.weight, p, d)

    def _rewrite(self, x: torch.Tensor) -> bool:
        if not self.fast_cpu_backward or x.dtype != torch.float32 or not _on_cpu_with_grad(x):
            return False
        if not (x.requires_grad or self.weight.requires_grad):
            return False
        k, s, p, d = self.kernel_size[0], self.stride[0], self.padding[0], self.dilation[0]
        if self.kernel_size[1] != k or self.stride[1] != s or self.padding[1] != p or self.dilation[1] != d:
            return False
        if s == 2:
            return d == 2 and p % 2 == 0 and 2 * p == d * (k - 1)
        same_size = 2 * p == d * (k - 1)
        if s != 1 or not same_size or (k <= 3 and d == 1):
            return False
        return p % d == 0 and x.shape[2] % d == 0 and x.shape[3] % d == 0


_SWITCH_LOCK = threading.Lock()
_SWITCHES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # module -> {switch name: [holders, saved]}


@contextlib.contextmanager
def module_switch(
    net: nn.Module, name: str, turn_on: Callable[[], object], turn_off: Callable[[object], None]
) -> Iterator[None]:
    """Hold the switch `name` of `net` for the block. The first holder to enter calls turn_on(), which changes
    `net` and returns what turn_off(saved) needs to undo it; the last holder to leave calls turn_off. Two passes
    on two threads (rarts.search.paired) may so hold one switch of one network at once: with a plain set-and-reset,
    the first to finish would reset it under the other, still running."""
    with _SWITCH_LOCK:
        holders = _SWITCHES.setdefault(net, {})
        if name not in holders:
            holders[name] = [0, turn_on()]
        entry = holders[name]
        entry[0] += 1
    try:
        yield
    finally:
        with _SWITCH_LOCK:
            entry[0] -= 1
            if entry[0] == 0:
                del holders[name]
                turn_off(entry[1])


def frozen_statistics(net: nn.Module) -> contextlib.AbstractContextManager:
    """Within the block, training-mode BatchNorm layers of `net` normalise with batch statistics without
    updating their running statistics (nor their batch counters). Threads may hold it at once (`module_switch`)."""

    def freeze() -> list[nn.Module]:
        batchnorm = nn.modules.batchnorm._BatchNorm
        layers = [m for m in net.modules() if isinstance(m, batchnorm) and m.track_running_stats]
        for m in layers:
            m.track_running_stats = False
        return layers

    def thaw(layers: list[nn.Module]) -> None:
        for m in layers:
            m.track_running_stats = True

    return module_switch(net, "frozen_statistics", freeze, thaw)


class _WeightedBatchNormFunction(torch.autograd.Function):
    """weight * batch_norm(before(x)) for a BatchNorm without affine parameters, keeping only x for the backward.

    Written out as `weight * bn(x)`, autograd keeps both x (for the norm) and bn(x) (for the gradient of the 0-d
    weight, a softmax of alpha). Here bn(x) is recomputed from x and the saved per-channel statistics when the
    weight's gradient is asked for, so a mixed op keeps one tensor per primitive instead of two. `before`, a max or
    an average pool, is recomputed in the backward pass too, so its output (and argmax) is not kept either.
    """

    @staticmethod
    def forward(ctx, x, weight, before, running_mean, running_var, use_batch_stats: bool, momentum, eps):
        p = x if before is None else pool_forward(before, x)
        y, mean, invstd = torch.ops.aten.native_batch_norm(
            p, None, None, running_mean, running_var, use_batch_stats, momentum, eps
        )
        mean, invstd = _statistics(mean, invstd, running_mean, running_var, use_batch_stats, eps)
        ctx.save_for_backward(x, weight, mean, invstd)
        ctx.use_batch_stats, ctx.eps, ctx.before = use_batch_stats, eps, before
        return y.mul_(weight)

    @staticmethod
    def backward(ctx, grad_out):
        x, weight, mean, invstd = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph=True: the plain ops, so that second derivatives are exact
            before, use_batch_stats, eps = ctx.before, ctx.use_batch_stats, ctx.eps

            def plain(x, weight):
                p = x if before is None else pool_forward(before, x)
                return weight * _plain_norm(p, mean, invstd, use_batch_stats, eps)

            return _graph_backward(ctx, grad_out, plain, 8)
        grad_x = grad_weight = None
        p, indices = (x, None) if ctx.before is None else pool_forward(ctx.before, x, return_indices=True)
        if ctx.needs_input_grad[1]:
            normed = _normalised(p, mean, invstd)
            grad_weight = (grad_out * normed).sum().reshape(weight.shape)
        if ctx.needs_input_grad[0]:
            grad_x = _norm_backward(grad_out * weight, p, mean, invstd, ctx.use_batch_stats, ctx.eps)
            if ctx.before is not None:
                grad_x = pool_backward(ctx.before, x, grad_x, indices)
        return grad_x, grad_weight, None, None, None, None, None, None


def weighted_norm(
    x: torch.Tensor, norm: nn.Module, weight: torch.Tensor, before: Optional[nn.Module] = None
) -> torch.Tensor:
    """weight * norm(before(x)), with `norm` a BatchNorm2d; the same values, running statistics and gradients.

    A BatchNorm without affine parameters goes through `_WeightedBatchNormFunction` (one saved tensor instead of
    two, and none for `before`, an nn.MaxPool2d or nn.AvgPool2d) on the CPU; one with them, or on another
    device (where these rewrites were not measured), is computed as written.
    """
    if not isinstance(norm, nn.BatchNorm2d) or norm.affine or x.device.type != "cpu":
        return weight * norm(x if before is None else before(x))
    return _WeightedBatchNormFunction.apply(x, weight, before, *norm_arguments(norm))


def _pool_arguments(pool: nn.Module) -> tuple:
    pair = nn.modules.utils._pair
    return pair(pool.kernel_size), pair(pool.stride or pool.kernel_size), pair(pool.padding)


def pool_forward(pool: nn.Module, x: torch.Tensor, return_indices: bool = False):
    """The output of `pool` (nn.MaxPool2d or nn.AvgPool2d) on x, without autograd; with return_indices, the pair
    (output, a max pool's argmax or None)."""
    kernel, stride, padding = _pool_arguments(pool)
    if isinstance(pool, nn.MaxPool2d):
        return F.max_pool2d(x, kernel, stride, padding, pool.dilation, pool.ceil_mode, return_indices=return_indices)
    out = F.avg_pool2d(x, kernel, stride, padding, pool.ceil_mode, pool.count_include_pad, pool.divisor_override)
    return (out, None) if return_indices else out


def pool_backward(pool: nn.Module, x: torch.Tensor, grad: torch.Tensor, indices=None) -> torch.Tensor:
    """d loss / d x of `pool` at x given d loss / d output (a max pool's argmax is recomputed unless given)."""
    kernel, stride, padding = _pool_arguments(pool)
    if isinstance(pool, nn.MaxPool2d):
        dilation = nn.modules.utils._pair(pool.dilation)
        if indices is None:
            _, indices = pool_forward(pool, x, return_indices=True)
        return torch.ops.aten.max_pool2d_with_indices_backward(
            grad, x, kernel, stride, padding, dilation, pool.ceil_mode, indices
        )
    return torch.ops.aten.avg_pool2d_backward(
        grad, x, kernel, stride, padding, pool.ceil_mode, pool.count_include_pad, pool.divisor_override
    )


def norm_arguments(norm: nn.BatchNorm2d) -> tuple:
    """(running_mean, running_var, use_batch_stats, momentum, eps) for aten's native_batch_norm, by nn.BatchNorm2d's
    rules for which statistics to use and whether (and how) to update the running ones; counts the batch."""
    momentum = 0.0 if norm.momentum is None else norm.momentum
    if norm.training and norm.track_running_stats and norm.num_batches_tracked is not None:
        norm.num_batches_tracked.add_(1)
        if norm.momentum is None:
            momentum = 1.0 / float(norm.num_batches_tracked)
    use_batch_stats = norm.training or (norm.running_mean is None and norm.running_var is None)
    track = not norm.training or norm.track_running_stats
    running_mean = norm.running_mean if track else None
    running_var = norm.running_var if track else None
    return running_mean, running_var, use_batch_stats, momentum, norm.eps


def _statistics(mean, invstd, running_mean, running_var, use_batch_stats: bool, eps: float):
    """The per-channel mean and 1/std a normalisation used: the batch's, or the running ones."""
    if use_batch_stats:
        return mean, invstd
    return running_mean.clone(), (running_var + eps).rsqrt()


def _normalised(x: torch.Tensor, mean: torch.Tensor, invstd: torch.Tensor) -> torch.Tensor:
    """A BatchNorm's output without affine parameters, recomputed from x and the statistics it used."""
    return (x - mean.view(1, -1, 1, 1)) * invstd.view(1, -1, 1, 1)


def _norm_backward(grad: torch.Tensor, x: torch.Tensor, mean, invstd, use_batch_stats: bool, eps: float):
    """d loss / d x of a BatchNorm without affine parameters, given d loss / d output."""
    if use_batch_stats:
        return torch.ops.aten.native_batch_norm_backward(
            grad, x, None, None, None, mean, invstd, True, eps, [True, False, False]
        )[0]
    return grad * invstd.view(1, -1, 1, 1)


def _graph_backward(ctx, grad_out, plain: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], n_args: int):
    """The backward of `plain(x, weight)` through autograd, keeping the graph of the gradient: what a custom
    function returns when its caller asks for that graph (create_graph=True, e.g. an exact Hessian-vector
    product). Its fast backward treats the saved batch statistics as constants, which is exact for a gradient
    but would drop terms of a second derivative."""
    x, weight = ctx.saved_tensors[:2]
    needs = ctx.needs_input_grad[:2]
    with torch.enable_grad():
        out = plain(x, weight)
    wanted = [t for t, need in zip((x, weight), needs) if need]
    grads = iter(torch.autograd.grad(out, wanted, grad_out, create_graph=True))
    return tuple(next(grads) if need else None for need in needs) + (None,) * (n_args - 2)


def _plain_norm(p: torch.Tensor, mean, invstd, use_batch_stats: bool, eps: float) -> torch.Tensor:
    """A BatchNorm's output without affine parameters as differentiable ops (batch statistics as functions of p)."""
    if use_batch_stats:
        return F.batch_norm(p, None, None, training=True, eps=eps)
    return _normalised(p, mean, invstd)


class _NormReLUConvFunction(torch.autograd.Function):
    """depthwise_conv(relu(batch_norm(x))) for a BatchNorm without affine parameters and a stride-1, same-size
    depthwise convolution, keeping only x (and the statistics) for the backward pass, where the ReLU's output is
    recomputed: one normalisation pass instead of a kept activation. The middle of a separable convolution."""

    @staticmethod
    def forward(ctx, x, weight, padding: int, running_mean, running_var, use_batch_stats: bool, momentum, eps):
        hidden, mean, invstd = torch.ops.aten.native_batch_norm(
            x, None, None, running_mean, running_var, use_batch_stats, momentum, eps
        )
        mean, invstd = _statistics(mean, invstd, running_mean, running_var, use_batch_stats, eps)
        ctx.save_for_backward(x, weight, mean, invstd)
        ctx.padding, ctx.use_batch_stats, ctx.eps = padding, use_batch_stats, eps
        return F.conv2d(hidden.relu_(), weight, None, 1, padding, 1, x.shape[1])

    @staticmethod
    def backward(ctx, grad_out):
        x, weight, mean, invstd = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph=True: the plain ops, so that second derivatives are exact
            padding, use_batch_stats, eps = ctx.padding, ctx.use_batch_stats, ctx.eps

            def plain(x, weight):
                hidden = _plain_norm(x, mean, invstd, use_batch_stats, eps).relu()
                return F.conv2d(hidden, weight, None, 1, padding, 1, x.shape[1])

            return _graph_backward(ctx, grad_out, plain, 8)
        hidden = _normalised(x, mean, invstd).relu()
        grad_hidden, grad_w = depthwise_backward(hidden, weight, grad_out, ctx.padding, 1, ctx.needs_input_grad[:2])
        grad_x = None
        if grad_hidden is not None:
            grad_x = _norm_backward(grad_hidden * (hidden > 0), x, mean, invstd, ctx.use_batch_stats, ctx.eps)
        return grad_x, grad_w, None, None, None, None, None, None


class _MaxPoolFunction(torch.autograd.Function):
    """Max pooling that keeps its input for the backward pass instead of the int64 argmax indices (twice the size
    of a stride-1 output): the input is usually kept anyway by the other ops that read the same state, and the
    backward recomputes the argmax at the cost of one pooling pass. (The search network's mixed op does not use
    this: its pools are recomputed inside `weighted_norm`.)"""

    @staticmethod
    def forward(ctx, x, pool):
        ctx.save_for_backward(x)
        ctx.pool = pool
        return pool_forward(pool, x)

    @staticmethod
    def backward(ctx, grad_out):
        (x,) = ctx.saved_tensors
        return pool_backward(ctx.pool, x, grad_out), None


class MaxPool2d(nn.MaxPool2d):
    """nn.MaxPool2d (square window, no dilation) that recomputes its argmax in the backward pass on the CPU."""

    recompute_indices = True  # False: nn.MaxPool2d's forward (the benchmarks switch it to compare)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        plain = self.dilation == 1 and not self.ceil_mode and not self.return_indices
        if not (plain and self.recompute_indices and x.requires_grad and _on_cpu_with_grad(x)):
            return super().forward(x)
        return _MaxPoolFunction.apply(x, self)


class DilConv(nn.Sequential):
    """ReLU, depthwise k x k dilated convolution, pointwise 1x1, BatchNorm."""

    def __init__(
        self, C_in: int, C_out: int, kernel_size: int, stride: int, padding: int, dilation: int, affine: bool = True
    ):
        super().__init__(
            nn.ReLU(inplace=False),
            DepthwiseConv2d(C_in, kernel_size, stride, padding, dilation),
            nn.Conv2d(C_in, C_out, 1, bias=False),
            nn.BatchNorm2d(C_out, affine=affine),
        )

    @property
    def activation(self) -> nn.Module:
        """The leading ReLU."""
        return self[0]

    def after_activation(self, x: torch.Tensor) -> torch.Tensor:
        """The block without its leading ReLU, on an input that has been through it: self(x) == after(relu(x))."""
        return self.norm(self.before_norm(x))

    def before_norm(self, x: torch.Tensor) -> torch.Tensor:
        """The two convolutions, on an input that has been through the ReLU: after_activation(x) == norm(this)."""
        return self[2](self[1](x))

    @property
    def norm(self) -> nn.Module:
        """The closing BatchNorm."""
        return self[3]


class SepConv(nn.Sequential):
    """Two DilConv blocks without dilation; only the first depthwise convolution is strided."""

    def __init__(self, C_in: int, C_out: int, kernel_size: int, stride: int, padding: int, affine: bool = True):
        super().__init__(
            DilConv(C_in, C_in, kernel_size, stride, padding, dilation=1, affine=affine),
            DilConv(C_in, C_out, kernel_size, 1, padding, dilation=1, affine=affine),
        )

    @property
    def activation(self) -> nn.Module:
        """The leading ReLU (of the first block)."""
        return self[0].activation

    def after_activation(self, x: torch.Tensor) -> torch.Tensor:
        """The op without its leading ReLU, on an input that has been through it."""
        return self[1](self[0].after_activation(x))

    def before_norm(self, x: torch.Tensor) -> torch.Tensor:
        """Everything but the closing BatchNorm, on an input that has been through the leading ReLU.

        On the CPU, when gradients are formed and `recompute_middle` is set, the middle of the op (the first block's
        BatchNorm, the second block's ReLU and depthwise convolution) is `_NormReLUConvFunction`, which recomputes
        the ReLU's output in the backward pass instead of keeping it: one activation less per op.
        """
        first, second = self[0], self[1]
        hidden = first.before_norm(x)
        norm, conv = first.norm, second[1]
        fused = self.recompute_middle and _on_cpu_with_grad(hidden) and not norm.affine
        fused = fused and type(second.activation) is nn.ReLU
        if fused and conv.stride[0] == 1 and conv.dilation[0] == 1 and 2 * conv.padding[0] == conv.kernel_size[0] - 1:
            hidden = _NormReLUConvFunction.apply(hidden, conv.weight, conv.padding[0], *norm_arguments(norm))
        else:
            hidden = conv(second.activation(norm(hidden)))
        return second[2](hidden)

    recompute_middle = True  # False: keep every activation (the benchmarks switch it to compare)

    @property
    def norm(self) -> nn.Module:
        """The closing BatchNorm (of the second block)."""
        return self[1].norm


class Identity(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class Zero(nn.Module):
    """The `none` op: zeros of the output shape (subsampled when strided)."""

    def __init__(self, stride: int):
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            return x.mul(0.0)
        return x[:, :, :: self.stride, :: self.stride].mul(0.0)


class FactorizedReduce(nn.Module):
    """Halve the spatial size with two 1x1 stride-2 convolutions, the second shifted by one pixel."""

    def __init__(self, C_in: int, C_out: int, affine: bool = True):
        super().__init__()
        if C_out % 2:
            raise ValueError(f"FactorizedReduce needs an even number of output channels, got {C_out}")
        self.relu = nn.ReLU(inplace=False)
        self.conv_1 = nn.Conv2d(C_in, C_out // 2, 1, stride=2, bias=False)
        self.conv_2 = nn.Conv2d(C_in, C_out // 2, 1, stride=2, bias=False)
        self.bn = nn.BatchNorm2d(C_out, affine=affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.before_norm(x))

    @property
    def norm(self) -> nn.Module:
        return self.bn

    def before_norm(self, x: torch.Tensor) -> torch.Tensor:
        """Everything but the closing BatchNorm: forward(x) == bn(before_norm(x))."""
        x = self.relu(x)
        # The shifted path sees pixels (1, 1), (1, 3), ...; pad so odd sizes keep the shape of the first path.
        shifted = x[:, :, 1:, 1:]
        if x.shape[2] % 2 or x.shape[3] % 2:
            shifted = nn.functional.pad(shifted, (0, x.shape[3] % 2, 0, x.shape[2] % 2))
        return torch.cat([self.conv_1(x), self.conv_2(shifted)], dim=1)


@register_op("none")
def _none(C: int, stride: int, affine: bool) -> nn.Module:
    return Zero(stride)


@register_op("max_pool_3x3")
def _max_pool(C: int, stride: int, affine: bool) -> nn.Module:
    return MaxPool2d(3, stride=stride, padding=1)


@register_op("avg_pool_3x3")
def _avg_pool(C: int, stride: int, affine: bool) -> nn.Module:
    return nn.AvgPool2d(3, stride=stride, padding=1, count_include_pad=False)


@register_op("skip_connect")
def _skip(C: int, stride: int, affine: bool) -> nn.Module:
    return Identity() if stride == 1 else FactorizedReduce(C, C, affine=affine)


@register_op("sep_conv_3x3")
def _sep3(C: int, stride: int, affine: bool) -> nn.Module:
    return SepConv(C, C, 3, stride, 1, affine=affine)


@register_op("sep_conv_5x5")
def _sep5(C: int, stride: int, affine: bool) -> nn.Module:
    return SepConv(C, C, 5, stride, 2, affine=affine)


@register_op("dil_conv_3x3")
def _dil3(C: int, stride: int, affine: bool) -> nn.Module:
    return DilConv(C, C, 3, stride, 2, 2, affine=affine)


@register_op("dil_conv_5x5")
def _dil5(C: int, stride: int, affine: bool) -> nn.Module:
    return DilConv(C, C, 5, stride, 4, 2, affine=affine)


def make_op(name: str, C: int, stride: int, affine: bool) -> nn.Module:
    """Build primitive `name`; an unknown name is a ValueError listing the known ones."""
    try:
        factory = OPS[name]
    except KeyError:
        raise ValueError(f"unknown op {name!r}; known: {', '.join(PRIMITIVES)}") from None
    return factory(C, stride, affine)
