"""DARTS, first order (Liu, Simonyan & Yang, 2019): alpha follows the validation loss at the current weights.

    alpha <- alpha - eta_a * grad_a L_val(w, alpha)         (Adam on a validation batch)
    w     <- w - eta_w * grad_w L_train(w, alpha)            (SGD on a training batch, with the new alpha)

The order (alpha, then w) is the DARTS reference's. The first-order method drops the response of w to alpha,
which is why it stalls at (alpha, w) = (2, 2) on the paper's solvable model (section 3.3).
"""

from __future__ import annotations

from rarts.search.base import Batch, Metrics, Passes, SearchMethod, accuracy, register_method


@register_method("darts1")
class DARTS1(SearchMethod):
    sweep = ("alpha", "w")
    passes = Passes(weight=1, alpha=1)  # alpha: L_val, to alpha only; w: L_train with the new alpha

    def update_alpha(self, train_batch: Batch, val_batch: Batch) -> Metrics:
        loss, logits = self.loss(self.w, val_batch, self.mixing(), update_stats=False, weight_grads=False)
        metrics = self.apply_alpha_gradient(self.alpha_gradient(loss))
        return {"arch_loss": loss.detach(), "arch_acc": accuracy(logits.detach(), val_batch[1]), **metrics}
