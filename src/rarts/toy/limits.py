"""What the solvable model's iterations converge to, in closed form, and Theorem 1's learning-rate bounds.

Every method's step is affine in its state, so its limit is the fixed point of that map (derivations in
docs/toy_model.md), and the iteration converges from every start iff the spectral radius of its linear part is
below 1. For RARTS the fixed point solves system (5), the stationarity of the Lagrangian (eq. 2).
"""

from __future__ import annotations

import math
from typing import Optional

from rarts.errors import UsageError
from rarts.toy.model import METHODS, ToySettings, step_function


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
