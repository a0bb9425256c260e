"""Depthwise convolutions whose CPU backward pass avoids oneDNN's slow paths, with the values of nn.Conv2d.

oneDNN has a fast weight-gradient kernel for the 3 x 3, undilated, stride-1 depthwise convolution only; the
search space's 5 x 5 and dilated ones take it 5 to 20 times longer than their forward pass. `FastDepthwiseConv2d`
(nn.Conv2d with a forward of its own, swapped in by `rarts.fast.use_fast_paths`) rewrites them onto that case.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from rarts.fast.policy import applies


def layout(x: torch.Tensor) -> torch.memory_format:
    """The memory format x is laid out in (channels_last or contiguous), for tensors made to match it."""
    return torch.channels_last if x.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format


def conv_weight_grad(x: torch.Tensor, go: torch.Tensor, kernel: int, stride: int, padding: int, dilation: int):
    """d loss / d weight of a depthwise convolution, by the library's own kernel."""
    C = x.shape[1]
    weight = x.new_empty(C, 1, kernel, kernel)
    out = torch.ops.aten.convolution_backward(
        go, x, weight, None, (stride,) * 2, (padding,) * 2, (dilation,) * 2, False, (0, 0), C, (False, True, False)
    )
    return out[1]


def depthwise_weight_grad(x: torch.Tensor, go: torch.Tensor, kernel: int, padding: int, dilation: int) -> torch.Tensor:
    """d loss / d weight (C, 1, k, k) of a stride-1 depthwise convolution with output gradient `go`, on the CPU.

    The cases oneDNN is slow on are rewritten as its fast 3 x 3, undilated case, exactly (the sums are the same,
    in another order):
    - dilation d: the convolution splits into d x d undilated convolutions on the polyphase components
      x[:, :, a::d, b::d] (padding / d each), whose weight gradients add up;
    - a k x k kernel (k = 5, 7, ...): the weight gradient of offsets (u0 .. u0+2, v0 .. v0+2) is the 3 x 3 weight
      gradient of the padded input cropped at (u0, v0), so overlapping 3 x 3 blocks at u0, v0 = 0, 2, .. k-3 tile it.
    """
    fmt = layout(x)
    if dilation > 1:
        total = None
        for a in range(dilation):
            for b in range(dilation):
                xa = x[:, :, a::dilation, b::dilation].contiguous(memory_format=fmt)
                ga = go[:, :, a::dilation, b::dilation].contiguous(memory_format=fmt)
                part = depthwise_weight_grad(xa, ga, kernel, padding // dilation, 1)
                total = part if total is None else total + part
        return total
    if kernel <= 3:
        return conv_weight_grad(x, go, kernel, 1, padding, 1)
    H, W = go.shape[2:]
    padded = F.pad(x, (padding,) * 4)
    out = x.new_empty(x.shape[1], 1, kernel, kernel)
    starts = range(0, kernel - 2, 2)
    for u0 in starts:
        for v0 in starts:
            crop = padded[:, :, u0 : u0 + H + 2, v0 : v0 + W + 2].contiguous(memory_format=fmt)
            out[:, :, u0 : u0 + 3, v0 : v0 + 3] = conv_weight_grad(crop, go, 3, 1, 0, 1)
    return out


def depthwise_backward(x, weight, grad_out, padding: int, dilation: int, needs: tuple[bool, bool]):
    """(d loss / d x, d loss / d weight) of a stride-1, same-size depthwise convolution of x, each None unless
    `needs` asks for it: the input gradient is the forward convolution of grad_out with the flipped kernel, the
    weight gradient `depthwise_weight_grad`."""
    grad_out = grad_out.contiguous(memory_format=layout(x))
    grad_x = grad_w = None
    if needs[0]:
        grad_x = F.conv2d(grad_out, weight.flip(2, 3), None, 1, padding, dilation, x.shape[1])
    if needs[1]:
        grad_w = depthwise_weight_grad(x, grad_out, weight.shape[-1], padding, dilation)
    return grad_x, grad_w


class DepthwiseConvFunction(torch.autograd.Function):
    """A stride-1, same-size depthwise convolution whose backward is `depthwise_backward`.

    Forward: the library's convolution. Backward: the input gradient is the forward convolution of the output
    gradient with the flipped kernel (same padding, same dilation); the weight gradient `depthwise_weight_grad`.
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


class FastDepthwiseConv2d(nn.Conv2d):
    """A k x k depthwise convolution (groups = channels, no bias): nn.Conv2d with the same parameters and state dict,
    computed faster on the CPU when gradients are formed (`applies`).

    There, two rewrites apply, both exact:
    - stride 2 with dilation 2 and even padding 2q reads only the even rows and columns of its input, so it is the
      undilated stride-1 convolution (padding q) of x[:, :, ::2, ::2];
    - a stride-1 convolution that keeps the spatial size, with a 5 x 5 kernel or dilation, runs through
      `DepthwiseConvFunction`, whose backward is 2 to 10 times faster than oneDNN's on these shapes.
    Everything else (CUDA, other dtypes, inference, tracing for export) is nn.Conv2d's own forward.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.rewrites(x):
            return super().forward(x)
        (k,), (s,), (p,), (d,) = self.kernel_size[:1], self.stride[:1], self.padding[:1], self.dilation[:1]
        if s == 2:
            x = x[:, :, ::2, ::2]
            p, d = p // 2, 1
            if k <= 3:
                return F.conv2d(x, self.weight, None, 1, p, 1, self.groups)
        return DepthwiseConvFunction.apply(x, self.weight, p, d)

    def rewrites(self, x: torch.Tensor) -> bool:
        """Whether the forward on x takes one of the rewrites (float32 only: oneDNN's kernels were measured there)."""
        if x.dtype != torch.float32 or not applies(x):
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
