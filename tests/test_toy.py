"""The solvable model (rarts.toy): gradients against autograd, closed-form limits, Theorem 1, the `rarts toy` CLI."""

from __future__ import annotations

import json
import math
import random

import pytest
import torch

from rarts import toy
from rarts.cli import main
from rarts.toy import ToySettings, equilibrium, run, summarize

POINTS = [(0.3, -1.7, 2.2), (2.0, -2.0, 0.0), (-1.1, 0.4, 5.0), (1.0, 1.0, 1.0)]  # (alpha, w, y)


def t(x: float) -> torch.Tensor:
    return torch.tensor(x, dtype=torch.float64, requires_grad=True)


def grads(value: torch.Tensor, *wrt: torch.Tensor) -> list[float]:
    return [g.item() for g in torch.autograd.grad(value, wrt)]


# ---- every gradient against autograd --------------------------------------------------------------------------------


@pytest.mark.parametrize("alpha,w,y", POINTS)
def test_loss_gradients_match_autograd(alpha, w, y):
    a_t, w_t = t(alpha), t(w)
    d_v, d_a = grads(toy.l_val(w_t, a_t), w_t, a_t)
    assert toy.dval_dv(w, alpha) == pytest.approx(d_v, abs=1e-12)
    assert toy.dval_dalpha(w, alpha) == pytest.approx(d_a, abs=1e-12)
    d_w, d_a = grads(toy.l_train(w_t, a_t), w_t, a_t)
    assert toy.dtrain_dw(w, alpha) == pytest.approx(d_w, abs=1e-12)
    assert toy.dtrain_dalpha(w, alpha) == pytest.approx(d_a, abs=1e-12)
    (g_w,) = torch.autograd.grad(toy.l_train(w_t, a_t), w_t, create_graph=True)
    (mixed,) = grads(g_w, a_t)
    assert toy.D2TRAIN_DALPHA_DW == pytest.approx(mixed, abs=1e-12)


@pytest.mark.parametrize("alpha,w,y", POINTS)
@pytest.mark.parametrize("lam", [0.0, 1.0, 10.0])
def test_method_alpha_gradients_match_autograd(alpha, w, y, lam):
    a_t, w_t = t(alpha), t(w)
    (d_a,) = grads(toy.l_val(w_t, a_t), a_t)
    assert toy.darts1_alpha_grad(w, alpha) == pytest.approx(d_a, abs=1e-12)
    (d_a,) = grads(toy.l_val(w_t, a_t) + lam * toy.l_train(w_t, a_t), a_t)
    assert toy.milenas_alpha_grad(w, alpha, lam) == pytest.approx(d_a, abs=1e-12)
    for xi in (0.0, 0.01, 0.3):
        # DARTS 2nd order: the total derivative of L_val(w'(alpha), alpha) through the virtual step
        (g_w,) = torch.autograd.grad(toy.l_train(w_t, a_t), w_t, create_graph=True)
        w_virtual = w_t - xi * g_w
        assert toy.virtual_w(w, alpha, xi) == pytest.approx(w_virtual.item(), abs=1e-12)
        (d_a,) = grads(toy.l_val(w_virtual, a_t), a_t)
        assert toy.darts2_alpha_grad(w, alpha, xi) == pytest.approx(d_a, abs=1e-12)


@pytest.mark.parametrize("alpha,w,y", POINTS)
@pytest.mark.parametrize("lam,beta", [(10.0, 10.0), (1.0, 0.5), (0.0, 3.0)])
def test_rarts_block_gradients_are_the_lagrangian_partials(alpha, w, y, lam, beta):
    a_t, w_t, y_t = t(alpha), t(w), t(y)
    d_y, d_w, d_a = grads(toy.lagrangian(y_t, w_t, a_t, lam, beta), y_t, w_t, a_t)
    assert toy.rarts_grad_w(y, w, alpha, lam, beta) == pytest.approx(d_w, abs=1e-12)
    assert toy.rarts_grad_y(y, w, alpha, beta) == pytest.approx(d_y, abs=1e-12)
    assert toy.rarts_grad_alpha(y, w, alpha, lam) == pytest.approx(d_a, abs=1e-12)


def autograd_step(method: str, state: tuple[float, ...], s: ToySettings) -> tuple[float, ...]:
    """One step of each method written with autograd only, in the documented update order."""

    def d(f, x, *rest):
        x_t = t(x)
        return grads(f(x_t, *rest), x_t)[0]

    if method == "rarts":  # eq. (4)
        alpha, w, y = state
        w = w - s.eta_w * d(lambda w_: toy.lagrangian(y, w_, alpha, s.lam, s.beta), w)
        y = y - s.eta_y * d(lambda y_: toy.lagrangian(y_, w, alpha, s.lam, s.beta), y)
        alpha = alpha - s.eta_alpha * d(lambda a_: toy.lagrangian(y, w, a_, s.lam, s.beta), alpha)
        return alpha, w, y
    alpha, w = state
    if method == "darts1":
        alpha_obj = lambda a_: toy.l_val(w, a_)  # noqa: E731
    elif method == "milenas":
        alpha_obj = lambda a_: toy.l_val(w, a_) + s.lam * toy.l_train(w, a_)  # noqa: E731
    else:

        def alpha_obj(a_):
            w_t = t(w)
            (g_w,) = torch.autograd.grad(toy.l_train(w_t, a_), w_t, create_graph=True)
            return toy.l_val(w_t - s.xi_value * g_w, a_)

    alpha = alpha - s.eta_alpha * d(alpha_obj, alpha)
    w = w - s.eta_w * d(lambda w_: toy.l_train(w_, alpha), w)
    return alpha, w


@pytest.mark.parametrize("method", toy.METHODS)
def test_steps_match_autograd_steps(method):
    s = ToySettings(method=method, lam=3.0, beta=7.0, xi=0.2, lr_w=0.03, lr_y=0.02, lr_alpha=0.05)
    rng = random.Random(0)
    for _ in range(5):
        state = tuple(rng.uniform(-3, 3) for _ in toy.initial_state(s))
        assert toy.STEPS[method](state, s) == pytest.approx(autograd_step(method, state, s), abs=1e-12)


# ---- closed forms ---------------------------------------------------------------------------------------------------

CONVERGING = [
    ("darts1", {}),
    ("darts2", {"xi": 0.0}),
    ("darts2", {}),
    ("darts2", {"xi": 0.1}),
    ("darts2", {"xi": 0.5}),
    ("milenas", {"lam": 0.0}),
    ("milenas", {"lam": 1.0}),
    ("milenas", {"lam": 10.0}),
    ("rarts", {}),
    ("rarts", {"lam": 1.0, "beta": 10.0}),
    ("rarts", {"lam": 10.0, "beta": 1.0}),
    ("rarts", {"lam": 1.0, "beta": 1.0}),
    ("rarts", {"lam": 2.0, "beta": 10.0, "y0": 5.0}),
    ("rarts", {"lam": 40.0, "beta": 10.0, "y0": -3.0}),
    ("rarts", {"lam": 10.0, "beta": 100.0, "y0": 2.0}),
    ("rarts", {"lam": 100.0, "beta": 10.0, "lr": 0.009}),
]


@pytest.mark.parametrize("method,kw", CONVERGING)
def test_iterations_converge_to_the_closed_forms(method, kw):
    s = ToySettings(method=method, **kw)
    out = summarize(run(s))
    eq = equilibrium(method, s.lam, s.beta, s.xi_value)
    assert not out["diverged"] and out["converged"] and out["steps"] == s.steps
    assert out["spectral_radius"] < 1
    assert out["alpha"] == pytest.approx(eq["alpha"], abs=1e-3)
    assert out["w"] == pytest.approx(eq["w"], abs=1e-3)
    if method == "rarts":
        assert out["y"] == pytest.approx(eq["y"], abs=1e-3)
    else:
        assert out["y"] is None and eq["y"] is None


def test_named_limits():
    assert equilibrium("darts1") == {"alpha": 2.0, "w": 2.0, "y": None}
    assert equilibrium("milenas", lam=7.0) == {"alpha": 2.0, "w": 2.0, "y": None}
    assert equilibrium("darts2", xi=0.5) == {"alpha": 1.0, "w": 1.0, "y": None}
    eq = equilibrium("rarts", lam=10.0, beta=10.0)
    assert (eq["alpha"], eq["w"], eq["y"]) == pytest.approx((40 / 37, 38 / 37, 34 / 37), abs=1e-15)
    assert equilibrium("rarts", lam=0.5, beta=1.0) is None  # 4*lam*beta - 2*lam - beta = 0


@pytest.mark.parametrize("seed", range(4))
def test_rarts_equilibrium_solves_system_5_and_never_has_alpha_equal_w(seed):
    rng = random.Random(seed)
    lam, beta = rng.uniform(0.1, 50), rng.uniform(0.1, 50)
    eq = equilibrium("rarts", lam, beta)
    s = ToySettings(lam=lam, beta=beta)
    assert toy.stationarity_residual((eq["alpha"], eq["w"], eq["y"]), s) < 1e-9
    assert eq["w"] - eq["alpha"] == pytest.approx(-eq["alpha"] / (2 * lam), rel=1e-9)
    assert eq["alpha"] != pytest.approx(eq["w"], abs=1e-6)


@pytest.mark.parametrize("method", ["darts1", "darts2", "milenas"])
def test_other_limits_are_fixed_points(method):
    for lam, xi in ((0.5, 0.0), (3.0, 0.02), (10.0, 0.7)):
        eq = equilibrium(method, lam=lam, xi=xi)
        s = ToySettings(method=method, lam=lam, xi=xi)
        assert toy.STEPS[method]((eq["alpha"], eq["w"]), s) == pytest.approx((eq["alpha"], eq["w"]), abs=1e-14)


def test_rarts_limit_is_independent_of_learning_rates_and_y0():
    eq = equilibrium("rarts", 10.0, 10.0)
    for kw in ({"y0": -4.0}, {"y0": 3.0, "lr_w": 0.02}, {"lr_y": 0.05, "lr_alpha": 0.003, "steps": 60000}):
        out = summarize(run(ToySettings(lam=10.0, beta=10.0, **kw)))
        assert out["converged"]
        assert (out["alpha"], out["w"], out["y"]) == pytest.approx((eq["alpha"], eq["w"], eq["y"]), abs=1e-6)


# ---- Theorem 1 -------------------------------------------------------------------------------------------------------


def test_block_step_changes_lagrangian_exactly_as_the_descent_identity_says():
    lam, beta = 3.0, 5.0
    lip = toy.lipschitz_constants(lam, beta)
    y, w, alpha = 0.7, -1.2, 2.5
    for eta in (0.01, 0.1, 0.3):
        g = toy.rarts_grad_w(y, w, alpha, lam, beta)
        change = toy.lagrangian(y, w - eta * g, alpha, lam, beta) - toy.lagrangian(y, w, alpha, lam, beta)
        assert change == pytest.approx(-eta * (1 - eta * lip["w"] / 2) * g * g, abs=1e-12)
        g = toy.rarts_grad_y(y, w, alpha, beta)
        change = toy.lagrangian(y - eta * g, w, alpha, lam, beta) - toy.lagrangian(y, w, alpha, lam, beta)
        assert change == pytest.approx(-eta * (1 - eta * lip["y"] / 2) * g * g, abs=1e-12)
        g = toy.rarts_grad_alpha(y, w, alpha, lam)
        change = toy.lagrangian(y, w, alpha - eta * g, lam, beta) - toy.lagrangian(y, w, alpha, lam, beta)
        assert change == pytest.approx(-eta * (1 - eta * lip["alpha"] / 2) * g * g, abs=1e-12)


@pytest.mark.parametrize("lam,beta,lr", [(10.0, 10.0, 0.01), (1.0, 10.0, 0.05), (100.0, 10.0, 0.009), (2.0, 1.0, 0.35)])
def test_lagrangian_descends_below_the_bounds(lam, beta, lr):
    s = ToySettings(lam=lam, beta=beta, lr=lr, steps=5000)
    bounds = toy.lr_bounds(s)
    assert bounds["satisfied"] and bounds["violated"] == []
    r = run(s)
    assert r.lagrangian_monotone is True
    assert len(r.lagrangian) == s.steps + 1


def test_lagrangian_rises_above_a_bound():
    s = ToySettings(lam=10.0, beta=10.0, lr_w=0.07, steps=200)  # c1 = 2 / 30
    assert toy.lr_bounds(s)["violated"] == [f"eta_w = 0.07 >= c1 = {2 / 30:.6g}"]
    r = run(s)
    assert r.lagrangian_monotone is False and r.first_lagrangian_rise is not None


def test_bounds_are_the_block_curvatures():
    b = toy.lr_bounds(ToySettings(lam=100.0, beta=10.0))
    assert (b["c1"], b["c2"], b["c3"]) == pytest.approx((2 / 210, 2 / 10, 1 / 100))
    b = toy.lr_bounds(ToySettings(lam=0.0, beta=0.0))
    assert b["c1"] is None and b["c2"] is None and b["c3"] is None and b["satisfied"]


# ---- divergence ------------------------------------------------------------------------------------------------------


def test_divergence_above_the_bound_is_reported_with_finite_values():
    out = summarize(run(ToySettings(lam=100.0, beta=10.0, lr=0.01)))
    assert out["diverged"] is True and out["converged"] is False
    assert out["steps"] < 20000
    assert "c1" in out["divergence_reason"] and "c3" in out["divergence_reason"]
    assert out["lagrangian_monotone"] is False
    assert out["spectral_radius"] > 1
    for key in ("alpha", "w", "y", "lagrangian", "residual"):
        assert math.isfinite(out[key])
    json.dumps(out, allow_nan=False)


def test_divergence_of_an_unbounded_lagrangian_is_reported():
    out = summarize(run(ToySettings(lam=0.1, beta=10.0)))  # 4*lam*beta - 2*lam - beta < 0: a saddle
    assert out["diverged"] and out["lr_bounds"]["satisfied"]
    assert out["lagrangian_monotone"] is True  # descends all the way down
    assert "unbounded below" in out["divergence_reason"]
    json.dumps(out, allow_nan=False)


def test_nan_is_never_kept():
    r = run(ToySettings(method="milenas", lam=1.0, lr=10.0, steps=10000))
    assert r.diverged
    assert all(math.isfinite(v) and abs(v) <= toy.BLOWUP for v in r.alpha + r.w)


# ---- the command line ----------------------------------------------------------------------------------------------


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


KEYS = {
    "method",
    "alpha",
    "w",
    "y",
    "steps",
    "diverged",
    "converged",
    "residual",
    "lagrangian_monotone",
    "lagrangian",
    "lagrangian_first_rise",
    "equilibrium",
    "distance_to_equilibrium",
    "lr_bounds",
    "spectral_radius",
    "divergence_reason",
    "settings",
}


@pytest.mark.parametrize("method", toy.METHODS)
def test_cli_json_schema(capsys, method):
    code, out, err = cli(capsys, "toy", "run", "--method", method, "--steps", "3000", "--json")
    assert code == 0 and err == ""
    result = json.loads(out)
    assert set(result) == KEYS
    assert result["method"] == method and result["steps"] == 3000 and result["diverged"] is False
    assert set(result["equilibrium"]) == {"alpha", "w", "y"}
    assert isinstance(result["alpha"], float) and isinstance(result["w"], float)
    if method == "rarts":
        assert isinstance(result["y"], float) and isinstance(result["equilibrium"]["y"], float)
        assert result["lagrangian_monotone"] is True
        assert {"c1", "c2", "c3", "eta_w", "eta_y", "eta_alpha", "satisfied", "violated"} <= set(result["lr_bounds"])
    else:
        assert result["y"] is None and result["equilibrium"]["y"] is None
        assert result["lagrangian_monotone"] is None and result["lr_bounds"] is None


def test_cli_flags_reach_the_run(capsys):
    code, out, _ = cli(capsys, "toy", "run", "--lam", "2", "--beta", "5", "--y0", "1", "--lr", "0.02", "--json")
    result = json.loads(out)
    s = result["settings"]
    assert code == 0 and (s["lam"], s["beta"], s["y0"], s["lr"]) == (2.0, 5.0, 1.0, 0.02)
    assert result["equilibrium"] == equilibrium("rarts", 2.0, 5.0)


def test_cli_diverged_run_prints_no_nan(capsys):
    code, out, _ = cli(capsys, "toy", "run", "--lam", "100", "--beta", "10", "--json")
    result = json.loads(out)
    assert code == 0 and result["diverged"] is True
    assert "NaN" not in out and "Infinity" not in out
    code, out, _ = cli(capsys, "toy", "run", "--lam", "100", "--beta", "10")
    assert "DIVERGED" in out and "c1" in out and "nan" not in out.lower() and "inf" not in out.lower()


def test_cli_table(capsys):
    code, out, _ = cli(capsys, "toy", "run", "--method", "rarts", "--steps", "20000")
    assert code == 0
    assert "end point" in out and "equilibrium" in out and "1.08108108" in out and "satisfied" in out


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["--method", "sgd"], "--method"),
        (["--lr", "0"], "--lr"),
        (["--lr", "-0.1"], "--lr"),
        (["--lr-y", "0"], "--lr-y"),
        (["--steps", "0"], "--steps"),
        (["--steps", "-5"], "--steps"),
        (["--steps", "ten"], "--steps"),
        (["--lam", "-1"], "--lam"),
        (["--beta", "-0.5"], "--beta"),
        (["--xi", "-0.1"], "--xi"),
        (["--lam", "nan"], "--lam"),
    ],
)
def test_cli_bad_input(capsys, argv, needle):
    code, out, err = cli(capsys, "toy", "run", *argv)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and needle in err and "Traceback" not in err


def test_cli_figure_bad_input(capsys, tmp_path):
    code, _, err = cli(capsys, "toy", "figure", "--out", str(tmp_path), "--steps", "0")
    assert code == 2 and "--steps" in err and len(err.strip().splitlines()) == 1


def test_cli_figure_writes_files(capsys, tmp_path):
    code, out, _ = cli(capsys, "toy", "figure", "--out", str(tmp_path / "fig"), "--steps", "1500")
    assert code == 0
    names = {"figure1.png", "figure1.svg", "figure1_endpoints.csv", "figure1_endpoints.md"}
    assert {p.name for p in (tmp_path / "fig").iterdir()} == names
    assert (tmp_path / "fig" / "figure1.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "<svg" in (tmp_path / "fig" / "figure1.svg").read_text()
    csv_lines = (tmp_path / "fig" / "figure1_endpoints.csv").read_text().splitlines()
    assert csv_lines[0].startswith("panel,method,lam,beta,y0,alpha,w") and len(csv_lines) == 1 + 15
    assert (tmp_path / "fig" / "figure1_endpoints.md").read_text().count("\n") == 2 + 15


@pytest.mark.parametrize("argv", [["--lr", "1e300"], ["--lam", "1e300"], ["--method", "darts2", "--xi", "1e300"]])
def test_cli_overflowing_settings_report_divergence_in_strict_json(capsys, argv):
    code, out, err = cli(capsys, "toy", "run", *argv, "--steps", "10", "--json")
    assert code == 0, err

    def refuse(constant):
        raise ValueError(constant)

    result = json.loads(out, parse_constant=refuse)  # no NaN or Infinity
    assert result["diverged"] and result["divergence_reason"]
    if result["steps"] == 0:
        assert result["lagrangian_monotone"] is None
