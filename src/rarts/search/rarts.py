"""RARTS (Xue, Qi & Xin): a relaxed architecture search with two weight sets, w and y, and first derivatives only.

RARTS minimises the relaxed Lagrangian, eq. (2),

    L(y, w, alpha) = L_val(y, alpha) + lam * L_train(w, alpha) + beta / 2 * ||y - w||^2,

by one Gauss-Seidel sweep per step, eq. (4), each line using the values the lines above it just produced:

    w     <- w - eta_w * (lam * grad_w L_train(w, alpha) + beta * (w - y))          training batch
    y     <- y - eta_y * (grad_y L_val(y, alpha) + beta * (y - w))                  validation batch, new w
    alpha <- alpha - eta_a * (lam * grad_a L_train(w, alpha) + grad_a L_val(y, alpha))     new w and new y

w and y step by `WeightSGD` (momentum, weight decay) after clipping, each with its own cosine schedule (y's
follows w's unless y_lr is set); alpha by Adam. The coupling gradients beta * (w - y) are tensor arithmetic.
What is clipped to the global norm grad_clip is each line's whole gradient, data term plus coupling term; weight
decay comes after, as in DARTS's weight step.

Each line is one `update_<block>` method; the sweep is ("wy", "alpha"), `update_wy` being lines 1 and 2. Their data
terms are an independent pair (y's is taken at the old y, which line 1 leaves alone; only line 2's coupling term
needs the new w), so it takes both data terms, then line 1's step, then line 2's: the values of `update_w`
followed by `update_y`. Line 3's two alpha passes, at the new w and the new y, are another pair. The method's
executor runs each pair in turn, or both passes at once (rarts.fast.paired); each network sees the same operations
in the same order either way.

y starts as a copy of w (y_init="copy"), from its own random initialisation ("independent"), or is w itself
("tied"): then the y line and the coupling drop out and, with lam = 1, RARTS is MiLeNAS (section 3.2; with another
lam the w line still scales its training gradient by lam, MiLeNAS's does not).

Beyond the paper, the setting sweep="jacobi" takes every gradient of the step at the current point (w, y, alpha):
the three lines of eq. (4) with the old values on their right-hand sides. One backward pass per network then gives
both its weight gradient and its part of the alpha gradient, so a step costs about what a DARTS 1st-order step
does. Its fixed points are the same, the solutions of system (5). Gauss-Seidel stays the default, as in the paper.
"""

from __future__ import annotations

import copy

import torch

from rarts.search.base import (
    Batch,
    Metrics,
    Passes,
    SearchMethod,
    WeightSGD,
    accuracy,
    cosine_scheduler,
    global_norm,
    register_method,
    reinitialise,
    zeros_for_unused,
)


@register_method("rarts")
class RARTS(SearchMethod):
    sweep = ("wy", "alpha")  # eq. (4): one Gauss-Seidel sweep, lines 1 and 2, then line 3
    sweeps = ("gauss-seidel", "jacobi")
    # w on L_train, y on L_val (a pair); alpha: L_train(w) and L_val(y), to alpha only (a pair)
    passes = Passes(weight=2, alpha=2, pairs=2)

    def __init__(self, w, arch, settings=None, arch_penalty=None, arch_penalty_weight=0.0):
        super().__init__(w, arch, settings, arch_penalty, arch_penalty_weight)
        s = self.settings
        self.tied = s.y_init == "tied"
        if s.sweep == "jacobi":
            # One backward per network gives both its weight gradient and its part of alpha's; w's and y's are a
            # pair. Tied, the second pass is an alpha-only pass of w itself and follows w's: at once, it would switch
            # off the weight gradients w's pass needs.
            self.sweep = ("jacobi",)
            self.passes = Passes(weight=1, alpha=1) if self.tied else Passes(weight=2, alpha=0, pairs=1)
        elif self.tied:
            self.sweep = ("w", "alpha")  # MiLeNAS's sweep
            self.passes = Passes(weight=1, alpha=2, pairs=1)
        if self.tied:
            self.y = w
            return
        self.y = copy.deepcopy(w)
        if s.y_init == "independent":
            reinitialise(self.y)
        y_lr = s.lr if s.y_lr is None else s.y_lr
        y_lr_min = s.y_lr_min if s.y_lr_min is not None else s.lr_min * y_lr / s.lr
        self.optimizers["y"] = WeightSGD(self.y.parameters(), y_lr, s.momentum, s.weight_decay)
        self.schedulers["y"] = cosine_scheduler(self.optimizers["y"], s.epochs, y_lr_min)

    def networks(self):
        return {"w": self.w} if self.tied else {"w": self.w, "y": self.y}

    def weight_pass(self, key: str, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """The data term of line 1 (key "w": lam * grad_w L_train(w, alpha)) or line 2 (key "y": grad_y L_val(y,
        alpha)) of eq. (4), at the current weights: (loss, logits, gradients)."""
        net = self.w if key == "w" else self.y
        loss, logits = self.loss(net, batch, self.mixing(detach=True))
        objective = self.settings.lam * loss if key == "w" else loss
        grads = list(torch.autograd.grad(objective, list(net.parameters())))
        return loss.detach(), logits.detach(), grads  # detached: the graph is freed before the pair's other pass

    def update_w(self, train_batch: Batch, val_batch: Batch, data=None) -> Metrics:
        # eq. (4), line 1: lam * grad_w L_train(w, alpha) + beta * (w - y)
        loss, logits, grads = self.weight_pass("w", train_batch) if data is None else data
        if not self.tied:
            with torch.no_grad():
                for g, w_i, y_i in zip(grads, self.w.parameters(), self.y.parameters()):
                    g.add_(w_i - y_i, alpha=self.settings.beta)
        self.apply_weight_gradient("w", self.w, grads)
        return {"train_loss": loss.detach(), "train_acc": accuracy(logits.detach(), train_batch[1])}

    def update_y(self, train_batch: Batch, val_batch: Batch, data=None) -> Metrics:
        # eq. (4), line 2: grad_y L_val(y, alpha) + beta * (y - w), with the w of line 1
        loss, logits, grads = self.weight_pass("y", val_batch) if data is None else data
        with torch.no_grad():
            gap = [y_i - w_i for y_i, w_i in zip(self.y.parameters(), self.w.parameters())]
            for g, d in zip(grads, gap):
                g.add_(d, alpha=self.settings.beta)
        self.apply_weight_gradient("y", self.y, grads)
        return {"y_loss": loss.detach(), "y_acc": accuracy(logits.detach(), val_batch[1]), "wy_dist": global_norm(gap)}

    def update_wy(self, train_batch: Batch, val_batch: Batch) -> Metrics:
        # eq. (4), lines 1 and 2, their data terms taken side by side: y's is at the old y, which line 1 leaves
        # alone, so only line 2's coupling term sees the new w. The same values as update_w, then update_y.
        w_data, y_data = self.executor.run(
            lambda: self.weight_pass("w", train_batch), lambda: self.weight_pass("y", val_batch)
        )
        return {**self.update_w(train_batch, val_batch, w_data), **self.update_y(train_batch, val_batch, y_data)}

    def update_alpha(self, train_batch: Batch, val_batch: Batch) -> Metrics:
        # eq. (4), line 3: lam * grad_a L_train(w, alpha) + grad_a L_val(y, alpha), with w and y of lines 1-2.
        # One backward pass per term: in turn, the two graphs are never held at once (half the peak memory); at
        # once, they are.
        (loss_val, logits, g_val), (_, _, g_train) = self.alpha_passes((self.y, val_batch), (self.w, train_batch))
        metrics = self.apply_alpha_gradient([gv + self.settings.lam * gt for gv, gt in zip(g_val, g_train)])
        return {"arch_loss": loss_val.detach(), "arch_acc": accuracy(logits.detach(), val_batch[1]), **metrics}

    def jacobi_pass(self, net, batch: Batch, scale: float):
        """One forward and one backward of scale * (loss of `net` on `batch`) to alpha and the weights of `net`:
        (loss, logits, alpha gradients, weight gradients)."""
        alphas, params = self.alphas(), list(net.parameters())
        loss, logits = self.loss(net, batch, self.mixing())
        grads = zeros_for_unused(torch.autograd.grad(scale * loss, alphas + params, allow_unused=True), alphas + params)
        return loss, logits, grads[: len(alphas)], grads[len(alphas) :]

    def update_jacobi(self, train_batch: Batch, val_batch: Batch) -> Metrics:
        # eq. (4) with every right-hand side at the current point (w, y, alpha). One backward per network:
        # lam * L_train(w, alpha) to w and alpha, L_val(y, alpha) to y and alpha (an independent pair). The coupling
        # terms use the old w, y.
        lam, beta = self.settings.lam, self.settings.beta
        if self.tied:  # y is w: its L_val term needs alpha's gradient only, taken before w moves
            loss_train, logits_train, g_alpha, g_w = self.jacobi_pass(self.w, train_batch, lam)
            loss_val, logits_val, g_alpha_val = self.alpha_pass(self.w, val_batch)
            self.apply_weight_gradient("w", self.w, g_w)
            metrics = {}
        else:
            (loss_train, logits_train, g_alpha, g_w), (loss_val, logits_val, g_alpha_val, g_y) = self.executor.run(
                lambda: self.jacobi_pass(self.w, train_batch, lam), lambda: self.jacobi_pass(self.y, val_batch, 1.0)
            )
            w_params, y_params = list(self.w.parameters()), list(self.y.parameters())
            with torch.no_grad():
                gap = torch._foreach_sub(y_params, w_params)  # y - w at the current point
                torch._foreach_add_(g_w, gap, alpha=-beta)  # + beta * (w - y)
                torch._foreach_add_(g_y, gap, alpha=beta)  # + beta * (y - w)
            self.apply_weight_gradient("w", self.w, g_w)
            self.apply_weight_gradient("y", self.y, g_y)
            metrics = {"y_loss": loss_val.detach(), "y_acc": accuracy(logits_val.detach(), val_batch[1])}
            metrics["wy_dist"] = global_norm(gap)
        metrics.update(self.apply_alpha_gradient([gv + gt for gv, gt in zip(g_alpha_val, g_alpha)]))
        return {
            "train_loss": loss_train.detach(),
            "train_acc": accuracy(logits_train.detach(), train_batch[1]),
            "arch_loss": loss_val.detach(),
            "arch_acc": accuracy(logits_val.detach(), val_batch[1]),
            **metrics,
        }
