"""Running one method on the solvable model: its iterates, whether it diverged, and the JSON summary of the run.

The summary sets the end point beside the closed-form limit and, for RARTS, Theorem 1's checks: whether the
Lagrangian (eq. 2) descended and whether the learning rates were below their bounds.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Optional

from rarts.toy.limits import equilibrium, lr_bounds, rarts_determinant, spectral_radius
from rarts.toy.model import ToySettings, initial_state, lagrangian, stationarity_residual, step_function

BLOWUP = 1e8  # |value| past which a run counts as diverged; the model's own scale is O(1)
RESIDUAL_TOL = 1e-6  # a run has converged when every update direction is below this at its last point


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
