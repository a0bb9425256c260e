"""What every search method shares: the interface, the registry, the optimisers and the gradient plumbing.

A method owns the supernet weights w (RARTS also y), the architecture alpha and their optimisers, and exposes

    metrics = method.step(train_batch, val_batch)   # one search step; metrics are 0-d tensors, never synced here
    method.start_epoch(epoch); method.end_epoch()   # epoch hooks: random redraws alpha, schedulers step
    method.state_dict(); method.load_state_dict(s)  # everything a resumed run needs, plain tensors and numbers

`step` runs the method's `sweep`, a tuple of block names such as ("alpha", "w"), calling `update_<block>` for
each in that order. Every update takes (train_batch, val_batch), changes only its own block, and returns its
metrics. Writing the order down as data keeps each method's file its update rule and nothing else, and lets
tests call and check the blocks one by one. The sweep is fixed by the method and its settings.

Each method also writes down the passes its step makes (`passes`: forward-backward passes to the weights, to
alpha only, and how many pairs of them are independent of each other); rarts.bench counts FLOPs by them. The two
passes of an independent pair go to the method's `executor`, which runs them in turn (`InTurn`) unless the
search loop hands in another (rarts.fast.paired runs them at once); the values are the same either way.

The weight optimiser is SGD with momentum and weight decay (`WeightSGD`, written out here so that DARTS 2nd
order can form its virtual step from the momentum buffer it owns), gradient clipping by global norm, and a
cosine learning rate per epoch. The architecture optimiser is Adam with its own weight decay, as in DARTS.

All gradients of one update pass through `apply_weight_gradient` or `apply_alpha_gradient`, and through the
`grad_sync` hook there (the identity here; an all-reduce when the batch is split over processes).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Callable, Optional, Protocol

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from rarts.errors import UsageError
from rarts.supernet import Architecture, SearchNetwork

Batch = tuple[torch.Tensor, torch.Tensor]  # images (N, 3, H, W), labels (N,)
Metrics = dict[str, torch.Tensor]  # 0-d tensors on the device
ArchPenalty = Callable[[Architecture], torch.Tensor]

METHODS: dict[str, type[SearchMethod]] = {}


def register_method(name: str) -> Callable[[type[SearchMethod]], type[SearchMethod]]:
    """Class decorator: make a method available as `METHODS[name]` (and so to `rarts search --method`)."""

    def decorator(cls: type[SearchMethod]) -> type[SearchMethod]:
        cls.name = name
        METHODS[name] = cls
        return cls

    return decorator


@dataclass
class MethodSettings:
    """The hyperparameters of the update rules. Defaults are the DARTS CIFAR-10 search settings. A search run's
    config nests one (SearchConfig.method_settings); the values are checked once, when it is made."""

    epochs: int = 50  # length of the cosine schedule
    lr: float = 0.025  # weight learning rate, cosine from lr to lr_min over `epochs`
    lr_min: float = 0.001
    momentum: float = 0.9
    weight_decay: float = 3e-4
    grad_clip: float = 5.0  # global-norm clipping of each weight set's gradient
    arch_lr: float = 3e-4
    arch_betas: tuple[float, float] = (0.5, 0.999)
    arch_weight_decay: float = 1e-3
    lam: float = 1.0  # weight of L_train in the alpha objective (MiLeNAS, RARTS eq. (2))
    beta: float = 1.0  # RARTS coupling beta/2 ||y - w||^2, eq. (2)
    y_lr: Optional[float] = None  # RARTS: learning rate of y; None follows w's schedule
    y_lr_min: Optional[float] = None
    y_init: str = "copy"  # RARTS: "copy" of w, "independent" initialisation, or "tied" (y is w: MiLeNAS)
    xi: Optional[float] = None  # DARTS 2nd order virtual step; None uses the current weight learning rate
    random_resample: str = "once"  # random: draw alpha "once" or every "epoch"
    sweep: str = "gauss-seidel"  # RARTS: eq. (4) line by line, or "jacobi" (every gradient at the current point)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        finite = ("lr", "lr_min", "momentum", "weight_decay", "arch_lr", "arch_weight_decay", "lam", "beta")
        for name in finite + ("y_lr", "y_lr_min", "xi"):  # (grad_clip may be inf: no clipping)
            value = getattr(self, name)
            if value is not None and not math.isfinite(value):
                raise UsageError(f"setting {name}: must be a finite number, got {value}")
        for name in ("lr", "arch_lr"):
            if not getattr(self, name) > 0:
                raise UsageError(f"setting {name}: must be positive, got {getattr(self, name)}")
        for name in ("y_lr", "xi"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise UsageError(f"setting {name}: must be positive, got {value}")
        for name in ("lr_min", "momentum", "weight_decay", "arch_weight_decay", "lam", "beta"):
            if not getattr(self, name) >= 0:
                raise UsageError(f"setting {name}: must not be negative, got {getattr(self, name)}")
        if self.y_lr_min is not None and not self.y_lr_min >= 0:
            raise UsageError(f"setting y_lr_min: must not be negative, got {self.y_lr_min}")
        if not self.grad_clip > 0:
            raise UsageError(f"setting grad_clip: must be positive, got {self.grad_clip}")
        if not all(0 <= b < 1 for b in self.arch_betas) or len(self.arch_betas) != 2:
            raise UsageError(f"setting arch_betas: two numbers in [0, 1), got {self.arch_betas}")
        if self.epochs < 1:
            raise UsageError(f"setting epochs: must be at least 1, got {self.epochs}")
        if self.y_init not in ("copy", "independent", "tied"):
            raise UsageError(f"setting y_init: copy, independent or tied, got {self.y_init!r}")
        if self.random_resample not in ("once", "epoch"):
            raise UsageError(f"setting random_resample: once or epoch, got {self.random_resample!r}")
        if self.sweep not in ("gauss-seidel", "jacobi"):
            raise UsageError(f"setting sweep: gauss-seidel or jacobi, got {self.sweep!r}")


class WeightSGD(torch.optim.Optimizer):
    """SGD with momentum and weight decay, computed as torch.optim.SGD does (no dampening, no Nesterov):

        d = g + weight_decay * w;   b = momentum * b + d   (b = d at the first step);   w = w - lr * b

    `direction(grads)` returns the b that a step with gradients `grads` would take, changing nothing.
    """

    def __init__(self, params, lr: float, momentum: float = 0.9, weight_decay: float = 3e-4):
        super().__init__(params, {"lr": lr, "momentum": momentum, "weight_decay": weight_decay})

    def _direction(self, group: dict, p: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        d = g.add(p, alpha=group["weight_decay"])
        buf = self.state[p].get("momentum_buffer")
        return d if buf is None else d.add(buf, alpha=group["momentum"])

    @torch.no_grad()
    def direction(self, grads: list[torch.Tensor]) -> list[torch.Tensor]:
        """The update direction b of every parameter (in parameter order) for gradients `grads`."""
        pairs = [(group, p) for group in self.param_groups for p in group["params"]]
        return [self._direction(group, p, g) for (group, p), g in zip(pairs, grads)]

    @torch.no_grad()
    def step(self, closure=None):  # type: ignore[override]
        # The same arithmetic as _direction, on all tensors of a group at once (one kernel launch per operation).
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            directions = torch._foreach_add([p.grad for p in params], params, alpha=group["weight_decay"])
            with_buffer = [(d, self.state[p]["momentum_buffer"]) for d, p in zip(directions, params) if self.state[p]]
            if with_buffer:
                torch._foreach_add_([d for d, _ in with_buffer], [b for _, b in with_buffer], alpha=group["momentum"])
            for p, b in zip(params, directions):
                self.state[p]["momentum_buffer"] = b
            torch._foreach_add_(params, directions, alpha=-group["lr"])


def global_norm(tensors: list[torch.Tensor]) -> torch.Tensor:
    """The L2 norm of all tensors together, as one vector (a 0-d tensor)."""
    return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(tensors)))


def clip_by_global_norm_(grads: list[torch.Tensor], max_norm: float) -> torch.Tensor:
    """Scale `grads` in place so that their joint L2 norm is at most max_norm; return the norm before.

    The same rule as torch.nn.utils.clip_grad_norm_, kept on the device (no host sync).
    """
    norm = global_norm(grads)
    scale = (max_norm / (norm + 1e-6)).clamp(max=1.0)
    torch._foreach_mul_(grads, scale)
    return norm


def zeros_for_unused(grads, tensors) -> list[torch.Tensor]:
    """autograd.grad's output with allow_unused=True, None replaced by zeros of the tensor's shape."""
    return [torch.zeros_like(t) if g is None else g for g, t in zip(grads, tensors)]


def accuracy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Top-1 accuracy in [0, 1] as a 0-d tensor."""
    return (logits.argmax(dim=1) == target).float().mean()


@contextlib.contextmanager
def frozen_statistics(net: nn.Module) -> Iterator[None]:
    """Within the block, training-mode BatchNorm layers of `net` normalise with batch statistics without
    updating their running statistics (nor their batch counters). Nested, the inner block changes nothing."""
    batchnorm = nn.modules.batchnorm._BatchNorm
    layers = [m for m in net.modules() if isinstance(m, batchnorm) and m.track_running_stats]
    for m in layers:
        m.track_running_stats = False
    try:
        yield
    finally:
        for m in layers:
            m.track_running_stats = True


@contextlib.contextmanager
def without_weight_grads(net: nn.Module) -> Iterator[None]:
    """Within the block, the parameters of `net` that require gradients do not. Nested, the inner block changes
    nothing."""
    params = [p for p in net.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


def reinitialise(net: nn.Module) -> nn.Module:
    """Draw fresh initial weights (and reset BatchNorm statistics) for every submodule that has them."""
    for module in net.modules():
        if module is not net and hasattr(module, "reset_parameters"):
            module.reset_parameters()
    return net


def cosine_scheduler(optimizer: torch.optim.Optimizer, epochs: int, lr_min: float):
    return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs, eta_min=lr_min)


@dataclass(frozen=True)
class Passes:
    """The forward-backward passes of one step: `weight` passes (the backward to the weights and the inputs, about
    twice a forward's work) and `alpha` passes (the backward to alpha only, about one forward's), of which `pairs`
    pairs are independent of each other (neither reads what the other changes), which the executor may run at once.
    """

    weight: int
    alpha: int
    pairs: int = 0


class Executor(Protocol):
    """How the two passes of an independent pair run: `run(first, second)` returns (first(), second())."""

    at_once: bool  # whether both passes' graphs may be held at once

    def run(self, first: Callable[[], Any], second: Callable[[], Any]) -> tuple[Any, Any]: ...


class InTurn:
    """The default executor: first, then second (one pass's graph at a time)."""

    at_once = False

    def run(self, first: Callable[[], Any], second: Callable[[], Any]) -> tuple[Any, Any]:
        return first(), second()


class SearchMethod:
    """Base class of the search methods; see the module docstring for the interface."""

    name: str = ""
    sweep: tuple[str, ...] = ("alpha", "w")  # the blocks `step` updates, in order
    sweeps: tuple[str, ...] = ("gauss-seidel",)  # the values of the `sweep` setting the method accepts
    passes: Passes  # the passes one step makes: each method writes down its own
    # Runs the two passes of each independent pair: in turn, unless the loop hands in another (rarts.fast.paired).
    executor: Executor = InTurn()
    # Every weight and alpha gradient passes through grad_sync before it is used: the identity on one process;
    # a data-parallel run sets it to an all-reduce that averages the gradients over the processes.
    grad_sync: Callable[[list[torch.Tensor]], list[torch.Tensor]] = staticmethod(list)

    def __init__(
        self,
        w: SearchNetwork,
        arch: Architecture,
        settings: MethodSettings | None = None,
        arch_penalty: ArchPenalty | None = None,
        arch_penalty_weight: float = 0.0,
    ):
        self.settings = settings or MethodSettings()
        if arch_penalty_weight < 0:
            raise UsageError(f"setting arch_penalty_weight: must not be negative, got {arch_penalty_weight}")
        if self.settings.sweep not in self.sweeps:
            raise UsageError(
                f"setting sweep: method {self.name} takes {' or '.join(self.sweeps)}, not {self.settings.sweep}"
            )
        if arch_penalty is not None and arch_penalty_weight > 0 and "alpha" not in self.sweep:
            raise UsageError(f"method {self.name}: it takes no alpha step, so an architecture penalty cannot act")
        s = self.settings
        self.w = w
        self.arch = arch
        self.arch_penalty = arch_penalty
        self.arch_penalty_weight = arch_penalty_weight
        self.optimizers: dict[str, torch.optim.Optimizer] = {
            "w": WeightSGD(w.parameters(), s.lr, s.momentum, s.weight_decay)
        }
        self.schedulers = {"w": cosine_scheduler(self.optimizers["w"], s.epochs, s.lr_min)}
        if "alpha" in self.sweep:
            self.optimizers["alpha"] = torch.optim.Adam(
                arch.parameters(), lr=s.arch_lr, betas=tuple(s.arch_betas), weight_decay=s.arch_weight_decay
            )

    # -- the interface -------------------------------------------------------------------------------------------

    def step(self, train_batch: Batch, val_batch: Batch) -> Metrics:
        """One search step: every block of `sweep`, in order, each using the values the previous ones produced."""
        metrics: Metrics = {}
        for block in self.sweep:
            metrics.update(getattr(self, f"update_{block}")(train_batch, val_batch))
        return metrics

    def networks(self) -> dict[str, nn.Module]:
        """The weight sets of the method by name: {"w": w}, and "y" for RARTS."""
        return {"w": self.w}

    def start_epoch(self, epoch: int) -> None:
        """Called before the first step of each epoch (not when a run resumes in the middle of one)."""

    def end_epoch(self) -> None:
        """Called after the last step of each epoch: the cosine schedules move on."""
        for scheduler in self.schedulers.values():
            scheduler.step()

    def learning_rates(self) -> dict[str, float]:
        return {f"{key}_lr" if key != "w" else "lr": opt.param_groups[0]["lr"] for key, opt in self.optimizers.items()}

    def state_dict(self) -> dict:
        """Weights, alpha, optimiser and scheduler states: plain tensors and numbers (loads with weights_only)."""
        return {
            "method": self.name,
            "networks": {k: net.state_dict() for k, net in self.networks().items()},
            "arch": self.arch.state_dict(),
            "optimizers": {k: opt.state_dict() for k, opt in self.optimizers.items()},
            "schedulers": {k: sch.state_dict() for k, sch in self.schedulers.items()},
        }

    def load_state_dict(self, state: dict) -> None:
        if state.get("method") != self.name:
            raise UsageError(f"checkpoint is of method {state.get('method')!r}, not {self.name!r}")
        for key, net in self.networks().items():
            net.load_state_dict(state["networks"][key])
        self.arch.load_state_dict(state["arch"])
        for key, opt in self.optimizers.items():
            opt.load_state_dict(state["optimizers"][key])
        for key, sch in self.schedulers.items():
            sch.load_state_dict(state["schedulers"][key])

    # -- the weight step shared by darts1, darts2, milenas and random: SGD on L_train(w, alpha) ------------------

    def update_w(self, train_batch: Batch, val_batch: Batch) -> Metrics:
        loss, logits = self.loss(self.w, train_batch, self.mixing(detach=True))
        grads = torch.autograd.grad(loss, list(self.w.parameters()))
        self.apply_weight_gradient("w", self.w, list(grads))
        return {"train_loss": loss.detach(), "train_acc": accuracy(logits.detach(), train_batch[1])}

    # -- helpers for the update rules ----------------------------------------------------------------------------

    def mixing(self, detach: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """softmax(alpha) per edge, (normal, reduce), each (14, 8); detached for steps that need no alpha gradient."""
        w_normal, w_reduce = self.arch.weights()
        if detach:
            return w_normal.detach(), w_reduce.detach()
        return w_normal, w_reduce

    def alpha_pass(self, net: nn.Module, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """grad_alpha of the loss of `net` on `batch` (alpha only, running statistics untouched): (loss, logits,
        gradients). Loss and logits come back detached, so the pass's graph is freed as soon as it ends, before the
        other pass of a pair run in turn begins."""
        loss, logits = self.loss(net, batch, self.mixing(), update_stats=False, weight_grads=False)
        return loss.detach(), logits.detach(), self.alpha_gradient(loss)

    def alpha_passes(self, first: tuple[nn.Module, Batch], second: tuple[nn.Module, Batch]) -> tuple[Any, Any]:
        """`alpha_pass` of two (network, batch) pairs, an independent pair handed to the executor. The networks'
        statistics updates and weight gradients are switched off around both passes, not within each: when the
        two share a network and run at once, the first to end would otherwise switch them on under the other."""
        with contextlib.ExitStack() as stack:
            for net in {id(net): net for net, _ in (first, second)}.values():
                stack.enter_context(frozen_statistics(net))
                stack.enter_context(without_weight_grads(net))
            return self.executor.run(lambda: self.alpha_pass(*first), lambda: self.alpha_pass(*second))

    def alphas(self) -> list[nn.Parameter]:
        return self.arch.alphas()

    def alpha_gradient(self, objective: torch.Tensor) -> list[torch.Tensor]:
        """grad_alpha of `objective`, alpha only (no weight gradients are formed). A cell type the network lacks
        (fewer than 3 layers have no normal cell) gets a zero gradient."""
        return zeros_for_unused(torch.autograd.grad(objective, self.alphas(), allow_unused=True), self.alphas())

    @staticmethod
    def loss(
        net: nn.Module,
        batch: Batch,
        mixing: tuple[torch.Tensor, torch.Tensor],
        params: dict[str, torch.Tensor] | None = None,
        update_stats: bool = True,
        weight_grads: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Cross-entropy of `net` on `batch` with the given mixing weights; returns (loss, logits).

        params: evaluate at these weights (by name) instead of the module's own, e.g. a virtual step.
        update_stats: False leaves BatchNorm's running statistics alone (it still normalises with the batch's),
            so the forward passes of alpha steps and virtual points leave them as the weight steps made them.
        weight_grads: False for a pass whose loss is differentiated to alpha only: the forward runs with the
            weights' requires_grad off, so autograd neither records nor keeps anything for weight gradients (the
            library's nodes skip them anyway; the custom ones of rarts.fast learn it only this way).
        """
        x, target = batch
        with contextlib.ExitStack() as stack:
            if not update_stats:
                stack.enter_context(frozen_statistics(net))
            if not weight_grads:
                stack.enter_context(without_weight_grads(net))
            logits = net(x, mixing) if params is None else functional_call(net, params, (x, mixing))
        return F.cross_entropy(logits, target), logits

    def apply_weight_gradient(self, key: str, net: nn.Module, grads: list[torch.Tensor]) -> None:
        """Clip the gradient of weight set `key` to the global norm grad_clip and take its SGD step."""
        grads = self.grad_sync(grads)
        clip_by_global_norm_(grads, self.settings.grad_clip)
        for p, g in zip(net.parameters(), grads):
            p.grad = g
        self.optimizers[key].step()

    def penalty(self) -> torch.Tensor | None:
        """weight * arch_penalty(alpha), or None without a penalty."""
        if self.arch_penalty is None or self.arch_penalty_weight == 0:
            return None
        return self.arch_penalty_weight * self.arch_penalty(self.arch)

    def apply_alpha_gradient(self, grads: list[torch.Tensor]) -> Metrics:
        """Add the architecture penalty's gradient (once per alpha step) and take the Adam step on alpha.

        The gradient handed to Adam stays in `alpha.grad` until the next alpha step.
        """
        metrics: Metrics = {}
        grads = self.grad_sync(grads)
        penalty = self.penalty()
        if penalty is not None:
            extra = torch.autograd.grad(penalty, self.alphas(), allow_unused=True)
            grads = [g if e is None else g + e for g, e in zip(grads, extra)]
            metrics["arch_penalty"] = penalty.detach()
        for a, g in zip(self.alphas(), grads):
            a.grad = g.detach()
        self.optimizers["alpha"].step()
        return metrics
