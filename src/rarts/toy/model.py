"""The paper's solvable bilevel model (section 3.3): its two losses, and one step of each method on it.

    L_val(v, alpha)   = alpha*v - 2*alpha + 1          (v is w, or y for RARTS)
    L_train(w, alpha) = w^2 - 2*alpha*w + alpha^2      (= (w - alpha)^2, so w*(alpha) = alpha)

The bilevel problem min_alpha L_val(w*(alpha), alpha) = (alpha - 1)^2 has its optimum at (alpha, w) = (1, 1). Every
run starts at (alpha, w) = (2, -2), RARTS's second weight y at y0. The model is tiny, so everything is plain Python
floats: gradients are written out by hand (tests check them against autograd).

Update order. DARTS 1st/2nd order and MiLeNAS follow the DARTS code: the alpha step first, with the current w, then
the w step with the new alpha. RARTS is eq. (4) as written: w, then y with the new w, then alpha with the new w and y.
RARTS with sweep="jacobi" (beyond the paper) takes all three directions at the same point, so it is plain gradient
descent on L (eq. 2) with per-block step sizes; its fixed points are those of eq. (4), the solutions of system (5).
MiLeNAS's w step is plain SGD on L_train: lam scales only the L_train term of the alpha gradient.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional

from rarts.errors import UsageError

METHODS = ("darts1", "darts2", "milenas", "rarts")
METHOD_NAMES = {
    "darts1": "DARTS 1st order",
    "darts2": "DARTS 2nd order",
    "milenas": "MiLeNAS",
    "rarts": "RARTS (eq. 4)",
}
SWEEPS = ("gauss-seidel", "jacobi")  # RARTS's update order: eq. (4) line by line, or every block at the same point
ALPHA0, W0 = 2.0, -2.0
BILEVEL_OPTIMUM = {"alpha": 1.0, "w": 1.0}


# ---- the two losses and their derivatives ----------------------------------------------------------------------


def l_val(v: float, alpha: float) -> float:
    return alpha * v - 2.0 * alpha + 1.0


def l_train(w: float, alpha: float) -> float:
    return w * w - 2.0 * alpha * w + alpha * alpha


def dval_dv(v: float, alpha: float) -> float:
    return alpha


def dval_dalpha(v: float, alpha: float) -> float:
    return v - 2.0


def dtrain_dw(w: float, alpha: float) -> float:
    return 2.0 * (w - alpha)


def dtrain_dalpha(w: float, alpha: float) -> float:
    return 2.0 * (alpha - w)


D2TRAIN_DALPHA_DW = -2.0  # the mixed derivative d2 L_train / (d alpha d w), constant for this model


def lagrangian(y: float, w: float, alpha: float, lam: float, beta: float) -> float:
    """The relaxed Lagrangian, eq. (2): L_val(y, alpha) + lam * L_train(w, alpha) + beta/2 * (y - w)^2."""
    return l_val(y, alpha) + lam * l_train(w, alpha) + 0.5 * beta * (y - w) ** 2


# ---- each method's search directions ------------------------------------------------------------------------------


def darts1_alpha_grad(w: float, alpha: float) -> float:
    """DARTS 1st order: grad_alpha L_val(w, alpha), w taken as a constant."""
    return dval_dalpha(w, alpha)


def virtual_w(w: float, alpha: float, xi: float) -> float:
    """DARTS 2nd order's virtual step w' = w - xi * grad_w L_train(w, alpha)."""
    return w - xi * dtrain_dw(w, alpha)


def darts2_alpha_grad(w: float, alpha: float, xi: float) -> float:
    """d/dalpha L_val(w'(alpha), alpha) = grad_alpha L_val(w', alpha) - xi * d2L_train/(dalpha dw) * grad_w' L_val.

    The mixed second derivative is exact here (the DARTS code approximates it by finite differences).
    """
    w_virtual = virtual_w(w, alpha, xi)
    return dval_dalpha(w_virtual, alpha) - xi * D2TRAIN_DALPHA_DW * dval_dv(w_virtual, alpha)


def milenas_alpha_grad(w: float, alpha: float, lam: float) -> float:
    """MiLeNAS (mixed level): grad_alpha L_val(w, alpha) + lam * grad_alpha L_train(w, alpha)."""
    return dval_dalpha(w, alpha) + lam * dtrain_dalpha(w, alpha)


def rarts_grad_w(y: float, w: float, alpha: float, lam: float, beta: float) -> float:
    """dL/dw of eq. (2): lam * grad_w L_train(w, alpha) + beta * (w - y)."""
    return lam * dtrain_dw(w, alpha) + beta * (w - y)


def rarts_grad_y(y: float, w: float, alpha: float, beta: float) -> float:
    """dL/dy of eq. (2): grad_y L_val(y, alpha) + beta * (y - w)."""
    return dval_dv(y, alpha) + beta * (y - w)


def rarts_grad_alpha(y: float, w: float, alpha: float, lam: float) -> float:
    """dL/dalpha of eq. (2): lam * grad_alpha L_train(w, alpha) + grad_alpha L_val(y, alpha)."""
    return lam * dtrain_dalpha(w, alpha) + dval_dalpha(y, alpha)


# ---- settings ------------------------------------------------------------------------------------------------------


@dataclass
class ToySettings:
    """One run of one method on the model. Defaults converge for every method (docs/toy_model.md)."""

    method: str = "rarts"
    lam: float = 10.0
    beta: float = 10.0
    y0: float = 0.0
    xi: Optional[float] = None  # DARTS 2nd order's virtual step; None takes the w learning rate, as DARTS does
    lr: float = 0.01
    lr_w: Optional[float] = None  # per-block learning rates of eq. (4); None takes lr
    lr_y: Optional[float] = None
    lr_alpha: Optional[float] = None
    steps: int = 20000
    sweep: str = "gauss-seidel"  # RARTS only: "gauss-seidel" (eq. 4) or "jacobi"

    def validate(self) -> None:
        if self.method not in METHODS:
            raise UsageError(f"--method: unknown method {self.method!r}; choose from {', '.join(METHODS)}")
        if self.sweep not in SWEEPS:
            raise UsageError(f"--sweep: unknown sweep {self.sweep!r}; choose from {', '.join(SWEEPS)}")
        if self.sweep != "gauss-seidel" and self.method != "rarts":
            raise UsageError(f"--sweep {self.sweep}: only rarts has a choice of sweep")
        for name in ("lam", "beta", "y0", "xi", "lr", "lr_w", "lr_y", "lr_alpha"):
            value = getattr(self, name)
            if value is not None and not math.isfinite(value):
                raise UsageError(f"--{name.replace('_', '-')} must be a finite number, got {value}")
        for name in ("lam", "beta", "xi"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise UsageError(f"--{name} must be non-negative, got {value}")
        for name in ("lr", "lr_w", "lr_y", "lr_alpha"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise UsageError(f"--{name.replace('_', '-')} must be positive, got {value}")
        if self.steps <= 0:
            raise UsageError(f"--steps must be a positive integer, got {self.steps}")

    @property
    def eta_w(self) -> float:
        return self.lr if self.lr_w is None else self.lr_w

    @property
    def eta_y(self) -> float:
        return self.lr if self.lr_y is None else self.lr_y

    @property
    def eta_alpha(self) -> float:
        return self.lr if self.lr_alpha is None else self.lr_alpha

    @property
    def xi_value(self) -> float:
        return self.eta_w if self.xi is None else self.xi


# ---- one step of each method: state (alpha, w) or, for RARTS, (alpha, w, y) ----------------------------------------


def darts1_step(state: tuple[float, ...], s: ToySettings) -> tuple[float, ...]:
    alpha, w = state
    alpha = alpha - s.eta_alpha * darts1_alpha_grad(w, alpha)
    w = w - s.eta_w * dtrain_dw(w, alpha)
    return alpha, w


def darts2_step(state: tuple[float, ...], s: ToySettings) -> tuple[float, ...]:
    alpha, w = state
    alpha = alpha - s.eta_alpha * darts2_alpha_grad(w, alpha, s.xi_value)
    w = w - s.eta_w * dtrain_dw(w, alpha)
    return alpha, w


def milenas_step(state: tuple[float, ...], s: ToySettings) -> tuple[float, ...]:
    alpha, w = state
    alpha = alpha - s.eta_alpha * milenas_alpha_grad(w, alpha, s.lam)
    w = w - s.eta_w * dtrain_dw(w, alpha)
    return alpha, w


def rarts_step(state: tuple[float, ...], s: ToySettings) -> tuple[float, ...]:
    """One Gauss-Seidel sweep of eq. (4), each line using the values just updated."""
    alpha, w, y = state
    w = w - s.eta_w * rarts_grad_w(y, w, alpha, s.lam, s.beta)
    y = y - s.eta_y * rarts_grad_y(y, w, alpha, s.beta)
    alpha = alpha - s.eta_alpha * rarts_grad_alpha(y, w, alpha, s.lam)
    return alpha, w, y


def rarts_jacobi_step(state: tuple[float, ...], s: ToySettings) -> tuple[float, ...]:
    """One Jacobi sweep: the three directions of eq. (4), all taken at the current point (y, w, alpha)."""
    alpha, w, y = state
    return (
        alpha - s.eta_alpha * rarts_grad_alpha(y, w, alpha, s.lam),
        w - s.eta_w * rarts_grad_w(y, w, alpha, s.lam, s.beta),
        y - s.eta_y * rarts_grad_y(y, w, alpha, s.beta),
    )


StepFunction = Callable[[tuple[float, ...], ToySettings], tuple[float, ...]]
STEPS: dict[str, StepFunction] = {
    "darts1": darts1_step,
    "darts2": darts2_step,
    "milenas": milenas_step,
    "rarts": rarts_step,
}


def step_function(s: ToySettings) -> StepFunction:
    """The iteration of `s.method`, in `s.sweep` order for RARTS."""
    return rarts_jacobi_step if s.method == "rarts" and s.sweep == "jacobi" else STEPS[s.method]


def initial_state(s: ToySettings) -> tuple[float, ...]:
    return (ALPHA0, W0, float(s.y0)) if s.method == "rarts" else (ALPHA0, W0)


def stationarity_residual(state: tuple[float, ...], s: ToySettings) -> float:
    """Largest update direction at one point (all evaluated there): zero exactly at a fixed point of the method."""
    if s.method == "rarts":  # system (5): the three partial derivatives of L
        alpha, w, y = state
        return max(
            abs(rarts_grad_w(y, w, alpha, s.lam, s.beta)),
            abs(rarts_grad_y(y, w, alpha, s.beta)),
            abs(rarts_grad_alpha(y, w, alpha, s.lam)),
        )
    alpha, w = state
    if s.method == "darts1":
        alpha_grad = darts1_alpha_grad(w, alpha)
    elif s.method == "darts2":
        alpha_grad = darts2_alpha_grad(w, alpha, s.xi_value)
    else:
        alpha_grad = milenas_alpha_grad(w, alpha, s.lam)
    return max(abs(alpha_grad), abs(dtrain_dw(w, alpha)))
