"""DARTS, second order: alpha follows the validation loss after one virtual weight step.

    w'     = w - xi * (momentum * b + grad_w L_train(w, alpha) + weight_decay * w)      the virtual step
    g      = grad_a L_val(w', alpha) - xi * grad^2_{a,w} L_train(w, alpha) v,   v = grad_w' L_val(w', alpha)
    alpha <- Adam step with g;   then   w <- SGD step on L_train(w, alpha) with the new alpha

The virtual step is the step the weight optimiser would take (momentum buffer b and weight decay included, no
clipping, as in the DARTS reference), formed from `WeightSGD.direction`, not from an optimiser's private state.
Only the gradient term depends on alpha, so dw'/dalpha = -xi * grad^2_{a,w} L_train and g is the exact
gradient of alpha -> L_val(w'(alpha), alpha). The mixed second derivative times v is taken by central
differences, H v ~ (grad_a L_train(w + eps v) - grad_a L_train(w - eps v)) / (2 eps), eps = 0.01 / ||v||.
xi defaults to the current weight learning rate.
"""

from __future__ import annotations

import torch

from rarts.search.base import (
    Batch,
    Metrics,
    Passes,
    SearchMethod,
    accuracy,
    global_norm,
    register_method,
    zeros_for_unused,
)


@register_method("darts2")
class DARTS2(SearchMethod):
    sweep = ("alpha", "w")
    # the virtual step's g_train; L_val at w' to alpha and w'; w: L_train; two alpha-only passes at w +- eps v
    passes = Passes(weight=3, alpha=2)

    def xi(self) -> float:
        return self.settings.xi if self.settings.xi is not None else self.optimizers["w"].param_groups[0]["lr"]

    def update_alpha(self, train_batch: Batch, val_batch: Batch) -> Metrics:
        xi = self.xi()
        names, params = zip(*self.w.named_parameters())
        # The virtual step w' (its gradient needs no alpha).
        loss_train, _ = self.loss(self.w, train_batch, self.mixing(detach=True), update_stats=False)
        g_train = self.grad_sync(list(torch.autograd.grad(loss_train, params)))
        w_virtual = [
            (p - xi * d).detach().requires_grad_() for p, d in zip(params, self.optimizers["w"].direction(g_train))
        ]
        # grad_a L_val(w', alpha) and v = grad_w' L_val(w', alpha) from one backward pass.
        loss_val, logits = self.loss(
            self.w, val_batch, self.mixing(), params=dict(zip(names, w_virtual)), update_stats=False
        )
        grads = zeros_for_unused(
            torch.autograd.grad(loss_val, self.alphas() + w_virtual, allow_unused=True), self.alphas() + w_virtual
        )
        n_alpha = len(self.alphas())
        g_val, v = grads[:n_alpha], self.grad_sync(grads[n_alpha:])  # g_val is synced with the whole alpha gradient
        hv = self.mixed_second_derivative(train_batch, v)
        g = [ga - xi * h for ga, h in zip(g_val, hv)]
        metrics = self.apply_alpha_gradient(g)
        return {"arch_loss": loss_val.detach(), "arch_acc": accuracy(logits.detach(), val_batch[1]), **metrics}

    def mixed_second_derivative(self, batch: Batch, v: list[torch.Tensor]) -> list[torch.Tensor]:
        """grad^2_{a,w} L_train(w, alpha) v, one tensor per alpha, by central differences with eps = 0.01 / ||v||."""
        eps = 0.01 / global_norm(v).clamp_min(1e-12)
        named = list(self.w.named_parameters())

        def grad_alpha_at(sign: float) -> list[torch.Tensor]:
            shifted = {name: p.detach() + (sign * eps) * vi for (name, p), vi in zip(named, v)}
            loss, _ = self.loss(self.w, batch, self.mixing(), params=shifted, update_stats=False)
            return self.alpha_gradient(loss)

        g_plus, g_minus = grad_alpha_at(1.0), grad_alpha_at(-1.0)
        return [(gp - gm) / (2 * eps) for gp, gm in zip(g_plus, g_minus)]
