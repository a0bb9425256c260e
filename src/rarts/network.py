"""The final networks built from a genotype: CIFAR (stem, cells, auxiliary head at 2/3 depth) and ImageNet.

Both return `(logits, logits_aux)`; logits_aux is None in eval mode or without the auxiliary head.
Drop-path (per-sample dropping of a whole op's output) is set by `model.drop_path_prob` and is off in eval.
"""

from __future__ import annotations

import torch
from torch import nn

from rarts.errors import UsageError
from rarts.genotype import Genotype
from rarts.ops import FactorizedReduce, Identity, ReLUConvBN, make_op


def drop_path(x: torch.Tensor, drop_prob: float) -> torch.Tensor:
    """Zero whole samples with probability drop_prob and rescale the rest by 1 / (1 - drop_prob)."""
    if drop_prob <= 0.0:
        return x
    keep = 1.0 - drop_prob
    mask = torch.empty(x.shape[0], 1, 1, 1, device=x.device, dtype=x.dtype).bernoulli_(keep)
    return x / keep * mask


class Cell(nn.Module):
    def __init__(
        self, genotype: Genotype, C_prev_prev: int, C_prev: int, C: int, reduction: bool, reduction_prev: bool
    ):
        super().__init__()
        self.reduction = reduction
        if reduction_prev:
            self.preprocess0 = FactorizedReduce(C_prev_prev, C)
        else:
            self.preprocess0 = ReLUConvBN(C_prev_prev, C, 1, 1, 0)
        self.preprocess1 = ReLUConvBN(C_prev, C, 1, 1, 0)
        gene = genotype.reduce if reduction else genotype.normal
        self.concat = tuple(genotype.reduce_concat if reduction else genotype.normal_concat)
        self.steps = len(gene) // 2
        self.multiplier = len(self.concat)
        self.indices = [idx for _, idx in gene]
        self.ops = nn.ModuleList(make_op(name, C, 2 if reduction and idx < 2 else 1, affine=True) for name, idx in gene)

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, drop_prob: float) -> torch.Tensor:
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        for i in range(self.steps):
            total = None
            for k in (2 * i, 2 * i + 1):
                op = self.ops[k]
                h = op(states[self.indices[k]])
                if self.training and drop_prob > 0.0 and not isinstance(op, Identity):
                    h = drop_path(h, drop_prob)
                total = h if total is None else total + h
            states.append(total)
        return torch.cat([states[i] for i in self.concat], dim=1)


class AuxiliaryHead(nn.Module):
    """Classifier on the feature map after the second reduction cell: 8x8 on CIFAR, 7x7 on ImageNet.

    The two DARTS heads differ only in the pooling stride (3 on CIFAR, 2 on ImageNet) and in a last BatchNorm,
    which DARTS leaves out of the ImageNet head.
    """

    def __init__(self, C: int, num_classes: int, pool_stride: int, last_batchnorm: bool):
        super().__init__()
        # The first ReLU is not in place: its input is also the next cell's input (or, in a network of
        # three cells or fewer, the input of the final classifier), which must stay unchanged.
        layers = [
            nn.ReLU(inplace=False),
            nn.AvgPool2d(5, stride=pool_stride, padding=0, count_include_pad=False),
            nn.Conv2d(C, 128, 1, bias=False),
            nn.BatchNorm2d(128),
            nn.ReLU(inplace=True),
            nn.Conv2d(128, 768, 2, bias=False),
        ]
        if last_batchnorm:
            layers.append(nn.BatchNorm2d(768))
        layers.append(nn.ReLU(inplace=True))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(768, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).flatten(1))


class _FinalNetwork(nn.Module):
    """Shared body: cells with reductions at layers//3 and 2*layers//3, auxiliary head after the 2nd one."""

    def _build_cells(
        self, genotype: Genotype, C_prev_prev: int, C_prev: int, C_curr: int, layers: int, reduction_prev: bool
    ) -> int:
        self.cells = nn.ModuleList()
        self.aux_index = 2 * layers // 3
        C_aux = C_prev
        for i in range(layers):
            reduction = i in (layers // 3, 2 * layers // 3)
            if reduction:
                C_curr *= 2
            cell = Cell(genotype, C_prev_prev, C_prev, C_curr, reduction, reduction_prev)
            self.cells.append(cell)
            reduction_prev = reduction
            C_prev_prev, C_prev = C_prev, cell.multiplier * C_curr
            if i == self.aux_index:
                C_aux = C_prev
        self.C_final = C_prev
        return C_aux

    def _run_cells(self, s0: torch.Tensor, s1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        logits_aux = None
        for i, cell in enumerate(self.cells):
            s0, s1 = s1, cell(s0, s1, self.drop_path_prob)
            if i == self.aux_index and self.auxiliary_head is not None and self.training:
                logits_aux = self.auxiliary_head(s1)
        return s1, logits_aux


class NetworkCIFAR(_FinalNetwork):
    def __init__(self, C: int, num_classes: int, layers: int, auxiliary: bool, genotype: Genotype):
        super().__init__()
        self.genotype = genotype
        self.drop_path_prob = 0.0
        stem_multiplier = 3
        C_curr = stem_multiplier * C
        self.stem = nn.Sequential(nn.Conv2d(3, C_curr, 3, padding=1, bias=False), nn.BatchNorm2d(C_curr))
        C_aux = self._build_cells(genotype, C_curr, C_curr, C, layers, reduction_prev=False)
        self.auxiliary_head = AuxiliaryHead(C_aux, num_classes, 3, last_batchnorm=True) if auxiliary else None
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(self.C_final, num_classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x: (N, 3, 32, 32). Returns logits (N, classes) and auxiliary logits (training only) or None."""
        s = self.stem(x)
        out, logits_aux = self._run_cells(s, s)
        return self.classifier(self.global_pooling(out).flatten(1)), logits_aux


class NetworkImageNet(_FinalNetwork):
    def __init__(self, C: int, num_classes: int, layers: int, auxiliary: bool, genotype: Genotype):
        super().__init__()
        self.genotype = genotype
        self.drop_path_prob = 0.0
        self.stem0 = nn.Sequential(
            nn.Conv2d(3, C // 2, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(C // 2),
            nn.ReLU(inplace=True),
            nn.Conv2d(C // 2, C, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(C),
        )
        # Not in place: stem0's output is also the first cell's s0.
        self.stem1 = nn.Sequential(
            nn.ReLU(inplace=False), nn.Conv2d(C, C, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(C)
        )
        C_aux = self._build_cells(genotype, C, C, C, layers, reduction_prev=True)
        self.auxiliary_head = AuxiliaryHead(C_aux, num_classes, 2, last_batchnorm=False) if auxiliary else None
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(self.C_final, num_classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x: (N, 3, 224, 224). Returns logits (N, classes) and auxiliary logits (training only) or None."""
        s0 = self.stem0(x)
        s1 = self.stem1(s0)
        out, logits_aux = self._run_cells(s0, s1)
        return self.classifier(self.global_pooling(out).flatten(1)), logits_aux


def build_network(
    genotype: Genotype,
    dataset: str,
    C: int | None = None,
    layers: int | None = None,
    auxiliary: bool = True,
    num_classes: int | None = None,
) -> nn.Module:
    """The final network for `dataset` (cifar10, cifar100, cifar10-mini, imagenet, folder) with the paper's sizes.

    The ImageNet network needs an even C: its first cell follows the stem's reduction, so a FactorizedReduce halves
    C there (the CIFAR network takes any C; its FactorizedReduces see doubled channel counts only)."""
    if dataset in ("imagenet", "folder"):  # image folders get the ImageNet network, as `rarts train` builds it
        if C is not None and C % 2:
            raise UsageError(
                f"the ImageNet network needs an even number of channels (a FactorizedReduce halves it), got {C}"
            )
        return NetworkImageNet(C or 48, num_classes or 1000, layers or 14, auxiliary, genotype)
    classes = num_classes or (100 if dataset == "cifar100" else 10)
    return NetworkCIFAR(C or 36, classes, layers or 20, auxiliary, genotype)


def count_params(model: nn.Module, include_auxiliary: bool = False) -> int:
    """Parameter count; the auxiliary head is excluded unless asked, as DARTS reports it."""
    return sum(
        p.numel() for name, p in model.named_parameters() if include_auxiliary or not name.startswith("auxiliary_head")
    )


INPUT_SIZES: dict[str, tuple[int, int, int]] = {
    "cifar10": (3, 32, 32),
    "cifar100": (3, 32, 32),
    "imagenet": (3, 224, 224),
}


def summarize_network(model: _FinalNetwork, input_size: tuple[int, int, int]) -> dict:
    """Parameter and operation counts of a final network, per image of shape input_size (C, H, W).

    `params` leaves out the auxiliary head, as DARTS reports; `mult_adds` counts convolutions and linear layers
    in eval mode (auxiliary head off); `operations` is the full breakdown of rarts.flops.count_operations.
    """
    from rarts.flops import count_mult_adds, count_operations

    aux_input: list[tuple[int, ...]] = []
    hook = model.cells[model.aux_index].register_forward_hook(lambda m, i, out: aux_input.append(tuple(out.shape[1:])))
    try:
        operations = count_operations(model, input_size)
    finally:
        hook.remove()
    summary = {
        "params": count_params(model),
        "params_with_auxiliary": count_params(model, include_auxiliary=True),
        "mult_adds": operations["mult_adds"],
        "mult_adds_auxiliary_head": None,
        "operations": operations,
    }
    if model.auxiliary_head is not None:
        summary["mult_adds_auxiliary_head"] = count_mult_adds(model.auxiliary_head, aux_input[0])
    return summary
