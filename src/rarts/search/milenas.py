"""MiLeNAS (He, Wang & Chu, 2020), in the form the RARTS paper compares with: one mixed-level objective.

    w     <- w - eta_w * grad_w L_train(w, alpha)                                  (SGD on a training batch)
    alpha <- alpha - eta_a * (grad_a L_val(w, alpha) + lam * grad_a L_train(w, alpha))     (Adam, new w)

lam weighs the training loss, as in RARTS eq. (2), so that RARTS with y tied to w is exactly this method when
lam = 1 (section 3.2; RARTS's w line scales its training gradient by lam, this method's does not). The alpha step
uses the weights just updated, the same Gauss-Seidel order as RARTS eq. (4); its training term reuses the step's
training batch.
"""

from __future__ import annotations

from rarts.search.base import Batch, Metrics, SearchMethod, accuracy, register_method


@register_method("milenas")
class MiLeNAS(SearchMethod):
    sweep = ("w", "alpha")

    def has_paired_passes(self) -> bool:
        # the alpha passes on the validation and the training batch, both at the new w, are independent
        return True

    def update_alpha(self, train_batch: Batch, val_batch: Batch) -> Metrics:
        # One backward pass per term. One after the other, the two graphs are never held at once (half the peak
        # memory); side by side (rarts.search.paired, on the CPU with two or more threads) they are.
        (loss_val, logits, g_val), (_, _, g_train) = self.side_by_side(
            lambda: self.alpha_pass(self.w, val_batch), lambda: self.alpha_pass(self.w, train_batch)
        )
        metrics = self.apply_alpha_gradient([gv + self.settings.lam * gt for gv, gt in zip(g_val, g_train)])
        return {"arch_loss": loss_val.detach(), "arch_acc": accuracy(logits.detach(), val_batch[1]), **metrics}
