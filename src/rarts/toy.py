"""The paper's solvable bilevel model (section 3.3): every method's iteration, their closed-form limits, Theorem 1.

    L_val(v, alpha)   = alpha*v - 2*alpha + 1          (v is w, or y for RARTS)
    L_train(w, alpha) = w^2 - 2*alpha*w + alpha^2      (= (w - alpha)^2, so w*(alpha) = alpha)

The bilevel problem min_alpha L_val(w*(alpha), alpha) = (alpha - 1)^2 has its optimum at (alpha, w) = (1, 1). Every
run starts at (alpha, w) = (2, -2), RARTS's second weight y at y0. The model is tiny, so everything is plain Python
floats: gradients are written out by hand (tests check them against autograd) and the limits of the iterations are
known in closed form (derivations in docs/toy_model.md).

Update order. DARTS 1st/2nd order and MiLeNAS follow the DARTS code: the alpha step first, with the current w, then
the w step with the new alpha. RARTS is eq. (4) as written: w, then y with the new w, then alpha with the new w and y.
RARTS with sweep="jacobi" (beyond the paper) takes all three directions at the same point, so it is plain gradient
descent on L (eq. 2) with per-block step sizes; its fixed points are those of eq. (4), the solutions of system (5).
MiLeNAS's w step is plain SGD on L_train: lam scales only the L_train term of the alpha gradient.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
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
BLOWUP = 1e8  # |value| past which a run counts as diverged; the model's own scale is O(1)
RESIDUAL_TOL = 1e-6  # a run has converged when every update direction is below this at its last point


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


# ---- closed forms --------------------------------------------------------------------------------------------------


def rarts_determinant(lam: float, beta: float) -> float:
    """det of the Hessian of L (eq. 2) in (y, w, alpha): 4*lam*beta - 2*lam - beta. L is strictly convex iff > 0."""
    return 4.0 * lam * beta - 2.0 * lam - beta


def equilibrium(method: str, lam: float = 10.0, beta: float = 10.0, xi: float = 0.01) -> Optional[dict]:
    """The fixed point of a method's iteration as {'alpha', 'w', 'y'} (y None without a y), or None if not unique.

    DARTS 1st order and MiLeNAS: (2, 2) for every lam. DARTS 2nd order: alpha = w = 2 / (1 + 2*xi).
    RARTS, the solution of system (5) (stationary point of eq. 2), with D = 4*lam*beta - 2*lam - beta:
        alpha = 4*lam*beta / D,   w = 2*beta*(2*lam - 1) / D,   y = 2 - alpha.
    It depends on neither the learning rates nor y0.
    """
    if method in ("darts1", "milenas"):
        return {"alpha": 2.0, "w": 2.0, "y": None}
    if method == "darts2":
        a = 2.0 / (1.0 + 2.0 * xi)
        return {"alpha": a, "w": a, "y": None}
    if method == "rarts":
        det = rarts_determinant(lam, beta)
        if det == 0.0:
            return None
        alpha = 4.0 * lam * beta / det
        return {"alpha": alpha, "w": 2.0 * beta * (2.0 * lam - 1.0) / det, "y": 2.0 - alpha}
    raise UsageError(f"--method: unknown method {method!r}; choose from {', '.join(METHODS)}")


def lipschitz_constants(lam: float, beta: float) -> dict[str, float]:
    """Lipschitz constants of each block gradient of L (eq. 2) in its own block: the block's exact curvature here."""
    return {"w": 2.0 * lam + beta, "y": beta, "alpha": 2.0 * lam}


def lr_bounds(s: ToySettings) -> dict:
    """Theorem 1's learning-rate bounds for this model: eta_w < c1, eta_y < c2, eta_alpha < c3, with c = 2 / L_block.

    L is quadratic in each block with curvature L_block, so one block step changes L by exactly
    -eta * (1 - eta * L_block / 2) * g^2: it descends iff eta < 2 / L_block (a bound of None means no bound).
    """
    lip = lipschitz_constants(s.lam, s.beta)
    out: dict = {"lipschitz": lip}
    violated = []
    for c, block, eta in (("c1", "w", s.eta_w), ("c2", "y", s.eta_y), ("c3", "alpha", s.eta_alpha)):
        bound = 2.0 / lip[block] if lip[block] > 0 else None
        out[c] = bound
        out[f"eta_{block}"] = eta
        if bound is not None and not eta < bound:
            violated.append(f"eta_{block} = {eta:g} >= {c} = {bound:.6g}")
    out["satisfied"] = not violated
    out["violated"] = violated
    return out


def iteration_matrix(s: ToySettings) -> list[list[float]]:
    """The linear part M of the affine iteration x <- M x + c, read off by stepping from 0 and the unit vectors."""
    step = step_function(s)
    n = 3 if s.method == "rarts" else 2
    origin = step((0.0,) * n, s)
    columns = [step(tuple(1.0 if j == i else 0.0 for j in range(n)), s) for i in range(n)]
    return [[columns[j][i] - origin[i] for j in range(n)] for i in range(n)]


def spectral_radius(s: ToySettings) -> float | None:
    """Largest |eigenvalue| of the iteration matrix: the iteration converges from every start iff it is < 1.
    None when the matrix itself overflows float64 (learning rates or weights near 1e300)."""
    import numpy as np

    matrix = np.array(iteration_matrix(s))
    if not np.isfinite(matrix).all():
        return None
    rho = float(np.max(np.abs(np.linalg.eigvals(matrix))))
    return rho if math.isfinite(rho) else None


# ---- running ------------------------------------------------------------------------------------------------------


@dataclass
class ToyRun:
    """A run's iterates (index 0 is the start) and what became of it."""

    settings: ToySettings
    alpha: list[float] = field(default_factory=list)
    w: list[float] = field(default_factory=list)
    y: Optional[list[float]] = None
    lagrangian: Optional[list[float]] = None  # eq. (2) at each iterate, RARTS only
    diverged: bool = False

    @property
    def steps(self) -> int:
        return len(self.alpha) - 1

    @property
    def final(self) -> tuple[float, ...]:
        if self.y is None:
            return self.alpha[-1], self.w[-1]
        return self.alpha[-1], self.w[-1], self.y[-1]

    @property
    def lagrangian_monotone(self) -> Optional[bool]:
        """Whether L (eq. 2) never rose from one step to the next (up to rounding); None for the other methods."""
        if self.lagrangian is None:
            return None
        return self.first_lagrangian_rise is None

    @property
    def first_lagrangian_rise(self) -> Optional[int]:
        if self.lagrangian is None:
            return None
        values = self.lagrangian
        for k in range(1, len(values)):
            if values[k] > values[k - 1] + 1e-12 * max(1.0, abs(values[k - 1])):
                return k
        return None


def run(s: ToySettings) -> ToyRun:
    """Iterate `s.steps` steps; stop early, with diverged=True, once a value leaves [-BLOWUP, BLOWUP] or is not finite.

    The iterates kept are all finite: a diverged run ends at the last point inside the bound.
    """
    s.validate()
    step = step_function(s)
    state = initial_state(s)
    out = ToyRun(settings=s, alpha=[state[0]], w=[state[1]])
    if s.method == "rarts":
        out.y = [state[2]]
        out.lagrangian = [lagrangian(state[2], state[1], state[0], s.lam, s.beta)]
    for _ in range(s.steps):
        new = step(state, s)
        if not all(abs(v) <= BLOWUP for v in new):  # also catches nan
            out.diverged = True
            break
        state = new
        out.alpha.append(state[0])
        out.w.append(state[1])
        if out.y is not None:
            out.y.append(state[2])
            out.lagrangian.append(lagrangian(state[2], state[1], state[0], s.lam, s.beta))
    return out


def summarize(r: ToyRun) -> dict:
    """The JSON-ready result of a run: final point, closed-form equilibrium, Theorem 1's checks. Never nan or inf."""
    s = r.settings
    final = r.final
    eq = equilibrium(s.method, s.lam, s.beta, s.xi_value)
    residual = stationarity_residual(final, s)
    rho = spectral_radius(s)
    distance = None
    if eq is not None:
        distance = max(abs(final[0] - eq["alpha"]), abs(final[1] - eq["w"]))
        if eq["y"] is not None:
            distance = max(distance, abs(final[2] - eq["y"]))
    # Theorem 1's bounds are about the Gauss-Seidel sweep; a Jacobi sweep is judged by its spectral radius alone.
    bounds = lr_bounds(s) if s.method == "rarts" and s.sweep == "gauss-seidel" else None
    reason = None
    if r.diverged:
        reasons = []
        if bounds is not None and bounds["violated"]:
            reasons.append("learning rate above Theorem 1's bound: " + "; ".join(bounds["violated"]))
        if s.method == "rarts" and rarts_determinant(s.lam, s.beta) <= 0:
            reasons.append(
                f"4*lam*beta - 2*lam - beta = {rarts_determinant(s.lam, s.beta):g} <= 0: L is unbounded below"
            )
        reasons.append(
            f"spectral radius of the iteration {rho:.6g} > 1" if rho is not None else "its iteration matrix overflows"
        )
        reason = "; ".join(reasons)
    return {
        "method": s.method,
        "alpha": final[0],
        "w": final[1],
        "y": final[2] if s.method == "rarts" else None,
        "steps": r.steps,
        "diverged": r.diverged,
        "converged": (not r.diverged) and residual < RESIDUAL_TOL,
        "residual": residual,
        "lagrangian_monotone": r.lagrangian_monotone if r.steps else None,  # no step kept: nothing to judge
        "lagrangian": r.lagrangian[-1] if r.lagrangian is not None else None,
        "lagrangian_first_rise": r.first_lagrangian_rise,
        "equilibrium": eq,
        "distance_to_equilibrium": distance,
        "lr_bounds": bounds,
        "spectral_radius": rho,
        "divergence_reason": reason,
        "settings": {**asdict(s), "xi": s.xi_value if s.method == "darts2" else s.xi},
    }


# ---- Figure 1 ------------------------------------------------------------------------------------------------------

FIGURE_PANELS = (
    ("lam", "lambda varied, beta = 10, y0 = 0", [{"lam": v, "beta": 10.0, "y0": 0.0} for v in (1.0, 2.0, 10.0, 40.0)]),
    (
        "beta",
        "beta varied, lambda = 10, y0 = 0",
        [{"lam": 10.0, "beta": v, "y0": 0.0} for v in (1.0, 2.0, 10.0, 100.0)],
    ),
    ("y0", "y0 varied, lambda = beta = 10", [{"lam": 10.0, "beta": 10.0, "y0": v} for v in (-2.0, 0.0, 2.0, 4.0)]),
)
TABLE_COLUMNS = ("panel", "method", "lam", "beta", "y0", "alpha", "w", "y", "alpha_eq", "w_eq", "y_eq", "steps")


def figure1(out_dir: str | Path, lr: float = 0.01, steps: int = 20000) -> list[Path]:
    """Figure 1: RARTS trajectories in the (alpha, w) plane, three panels; PNG, SVG and the endpoint table (CSV, MD)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from rarts.utils import atomic_write_bytes, atomic_write_text

    out_dir = Path(out_dir)
    darts = run(ToySettings(method="darts1", lr=lr, steps=steps))
    rows = []
    fig, axes = plt.subplots(1, 3, figsize=(16, 5.4), constrained_layout=True)
    for ax, (key, title, cases) in zip(axes, FIGURE_PANELS):
        ax.plot(darts.alpha, darts.w, color="0.35", ls="--", lw=1.4, label="DARTS 1st order")
        ax.plot([2.0], [2.0], "s", color="0.35", ms=8, mfc="none", mew=1.5, label="DARTS limit (2, 2)")
        rows.append(_table_row(key, darts))
        colors = plt.cm.viridis([0.0, 0.3, 0.6, 0.85])
        for color, case in zip(colors, cases):
            r = run(ToySettings(method="rarts", lr=lr, steps=steps, **case))
            eq = equilibrium("rarts", case["lam"], case["beta"])
            label = f"{'lambda' if key == 'lam' else key} = {case[key]:g}" + (" (diverged)" if r.diverged else "")
            ax.plot(r.alpha, r.w, color=color, lw=1.4, label=label)
            if eq is not None:
                ax.plot([eq["alpha"]], [eq["w"]], "x", color=color, ms=10, mew=2.2, zorder=6)
            rows.append(_table_row(key, r))
        ax.plot([1.0], [1.0], "*", color="crimson", ms=16, label="bilevel optimum (1, 1)", zorder=5)
        ax.plot([2.0], [-2.0], "o", color="black", ms=6, label="start (2, -2)", zorder=5)
        ax.plot([], [], "x", color="0.2", ms=9, mew=2, label="equilibrium (closed form)")
        ax.set_title(title, fontsize=12)
        ax.set_xlabel("alpha", fontsize=11)
        ax.set_ylabel("w", fontsize=11)
        ax.grid(alpha=0.3)
        ax.set_ylim(-2.4, 5.0)  # the room above w = 3 holds the legend, clear of every trajectory
        ax.legend(fontsize=9, loc="upper left", ncol=2)
    fig.suptitle(f"Solvable model: RARTS trajectories (lr = {lr:g}, {steps} steps) vs DARTS 1st order", fontsize=13)
    paths = []
    for ext in ("png", "svg"):
        buf = io.BytesIO()
        fig.savefig(buf, format=ext, dpi=130)
        path = out_dir / f"figure1.{ext}"
        atomic_write_bytes(path, buf.getvalue())
        paths.append(path)
    plt.close(fig)
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=TABLE_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(out_dir / "figure1_endpoints.csv", text.getvalue())
    paths.append(out_dir / "figure1_endpoints.csv")
    atomic_write_text(out_dir / "figure1_endpoints.md", endpoint_markdown(rows))
    paths.append(out_dir / "figure1_endpoints.md")
    return paths


def _table_row(panel: str, r: ToyRun) -> dict:
    s = r.settings
    eq = equilibrium(s.method, s.lam, s.beta, s.xi_value) or {"alpha": None, "w": None, "y": None}
    final = r.final
    rarts_only = s.method == "rarts"
    return {
        "panel": panel,
        "method": s.method,
        "lam": s.lam if rarts_only else "",
        "beta": s.beta if rarts_only else "",
        "y0": s.y0 if rarts_only else "",
        "alpha": round(final[0], 6),
        "w": round(final[1], 6),
        "y": round(final[2], 6) if rarts_only else "",
        "alpha_eq": _fmt(eq["alpha"]),
        "w_eq": _fmt(eq["w"]),
        "y_eq": _fmt(eq["y"]),
        "steps": f"{r.steps} (diverged)" if r.diverged else r.steps,
    }


def _fmt(value: Optional[float]) -> object:
    return "" if value is None else round(value, 6)


def endpoint_markdown(rows: list[dict]) -> str:
    lines = ["| " + " | ".join(TABLE_COLUMNS) + " |", "|" + "---|" * len(TABLE_COLUMNS)]
    for row in rows:
        lines.append("| " + " | ".join(str(row[c]) for c in TABLE_COLUMNS) + " |")
    return "\n".join(lines) + "\n"
