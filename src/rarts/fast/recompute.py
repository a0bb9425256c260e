"""Autograd functions that keep less for the backward pass and recompute the rest there, with the plain values.

A mixed op of the search network keeps, written plainly, 27 activations per edge for its backward pass; with these
(and the shared ReLU of rarts.fast.mixed_op) 14 (tests/test_fast_ops.py counts them):
- `weighted_norm`: weight * BatchNorm(x) for a BatchNorm without affine parameters keeps x alone, not also the
  normalised output for the gradient of the weight; a pool before the norm is recomputed too (no output, no argmax);
- `NormReLUConvFunction`: the middle of a separable convolution (BatchNorm, ReLU, depthwise convolution) keeps
  its input alone, recomputing the ReLU's output;
- `FastMaxPool2d`: max pooling that keeps its input, not the int64 argmax, and recomputes the argmax.

Asked for a gradient's graph (create_graph=True, for an exact second derivative), the functions differentiate
the plain ops instead: their fast backward treats a batch's saved statistics as constants, exact for a gradient
but not for a second derivative.
"""

from __future__ import annotations

from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import nn

from rarts.fast.depthwise import depthwise_backward
from rarts.fast.policy import applies


class WeightedBatchNormFunction(torch.autograd.Function):
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

    A BatchNorm without affine parameters goes through `WeightedBatchNormFunction` (one saved tensor instead of
    two, and none for `before`, an nn.MaxPool2d or nn.AvgPool2d) where the fast paths apply; one with them, or
    elsewhere (`applies`), is computed as written.
    """
    if not isinstance(norm, nn.BatchNorm2d) or norm.affine or not applies(x):
        return weight * norm(x if before is None else before(x))
    return WeightedBatchNormFunction.apply(x, weight, before, *norm_arguments(norm))


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


class NormReLUConvFunction(torch.autograd.Function):
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


class MaxPoolFunction(torch.autograd.Function):
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


class FastMaxPool2d(nn.MaxPool2d):
    """nn.MaxPool2d (square window, no dilation) that recomputes its argmax in the backward pass where the fast
    paths apply (`applies`) and its input requires a gradient."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        plain = self.dilation == 1 and not self.ceil_mode and not self.return_indices
        if not (plain and x.requires_grad and applies(x)):
            return super().forward(x)
        return MaxPoolFunction.apply(x, self)
