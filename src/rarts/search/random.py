"""The random baseline: alpha drawn at random, weights trained as in DARTS first order, no alpha step.

Each entry of alpha is drawn from a standard normal, so the derived genotype is a uniformly random choice of
edges and non-none ops. With random_resample="once" the draw happens at the start of the first epoch; with
"epoch", at the start of every epoch, so the supernet is trained under a changing mixture. The draw uses the
global torch generator, whose state the search loop checkpoints, so a resumed run draws the same alphas.
"""

from __future__ import annotations

import torch

from rarts.search.base import Passes, SearchMethod, register_method


@register_method("random")
class RandomSearch(SearchMethod):
    sweep = ("w",)
    passes = Passes(weight=1, alpha=0)  # w only

    def start_epoch(self, epoch: int) -> None:
        if epoch == 0 or self.settings.random_resample == "epoch":
            with torch.no_grad():
                for a in self.alphas():
                    a.copy_(torch.randn_like(a))
