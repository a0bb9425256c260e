"""MiLeNAS (He, Wang & Chu, 2020), in the form the RARTS paper compares with: one mixed-level objective.

    w     <- w - eta_w * grad_w L_train(w, alpha)                                  (SGD on a training batch)
    alpha <- alpha - eta_a * (grad_a L_val(w, alpha) + lam * grad_a L_train(w, alpha))     (Adam, new w)

lam weighs the training loss, as in RARTS eq. (2), so that RARTS with y tied to w is exactly this method when
lam = 1 (section 3.2; RARTS's w line scales its training gradient by lam, this method's does not). The alpha step
uses the weights just updated, the same Gauss-Seidel order as RARTS eq. (4); its training term reuses the step's
training batch.
"""

from __future__ import annotations

from rarts.search.base import Batch, Metrics, Passes, SearchMethod, accuracy, register_method


@register_method("milenas")
class MiLeNAS(SearchMethod):
    sweep = ("w", "alpha")
    # w: L_train; alpha: L_val and L_train at the new w, to alpha only, independent of each other
    passes = Passes(weight=1, alpha=2, pairs=1)

    def update_alpha(self, train_batch: Batch, val_batch: Batch) -> Metrics:
        # One backward pass per term. In turn, the two graphs are never held at once (half the peak memory); an
        # executor that runs them at once holds both.
        (loss_val, logits, g_val), (_, _, g_train) = self.alpha_passes((self.w, val_batch), (self.w, train_batch))
        metrics = self.apply_alpha_gradient([gv + self.settings.lam * gt for gv, gt in zip(g_val, g_train)])
        return {"arch_loss": loss_val.detach(), "arch_acc": accuracy(logits.detach(), val_batch[1]), **metrics}
