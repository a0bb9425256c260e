"""RARTS with a Jacobi sweep (beyond the paper): every direction of eq. (4) taken at the current point.

On the solvable model it reaches the closed-form equilibrium of system (5), the same as the Gauss-Seidel sweep;
on tiny supernets (4 channels, 3 cells, 8x8, float64) its step is checked against an independent autograd
computation of the three partial derivatives of eq. (2) at one point.
"""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from rarts.cli import main
from rarts.errors import UsageError
from rarts.search import METHODS, MethodSettings
from rarts.supernet import Architecture, SearchNetwork
from rarts.toy import (
    ToySettings,
    equilibrium,
    lagrangian,
    rarts_jacobi_step,
    rarts_step,
    run,
    spectral_radius,
    summarize,
)

NO_CLIP = 1e9

# ---- the solvable model -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kw",
    [
        {"lam": 10.0, "beta": 10.0, "y0": 0.0},
        {"lam": 1.0, "beta": 10.0, "y0": 0.0},
        {"lam": 10.0, "beta": 2.0, "y0": 4.0},
        {"lam": 40.0, "beta": 10.0, "y0": -2.0},
        {"lam": 2.0, "beta": 100.0, "y0": 2.0, "lr": 0.005},
    ],
)
def test_jacobi_reaches_the_gauss_seidel_equilibrium(kw):
    """Both sweeps converge to the solution of system (5) in closed form."""
    eq = equilibrium("rarts", kw["lam"], kw["beta"])
    for sweep in ("gauss-seidel", "jacobi"):
        result = summarize(run(ToySettings(method="rarts", sweep=sweep, steps=60000, **kw)))
        assert result["converged"], (sweep, result)
        assert result["distance_to_equilibrium"] < 1e-8
        assert (result["alpha"], result["w"], result["y"]) == pytest.approx((eq["alpha"], eq["w"], eq["y"]), abs=1e-8)


def test_jacobi_is_a_gradient_step_on_the_lagrangian():
    """Each block moves by -eta_block * dL/dblock, all partials of eq. (2) taken at the same point."""
    s = ToySettings(method="rarts", sweep="jacobi", lam=3.0, beta=5.0, lr_w=0.01, lr_y=0.02, lr_alpha=0.03)
    point = (1.3, -0.4, 0.7)  # (alpha, w, y)
    a, w, y = (torch.tensor(v, dtype=torch.float64, requires_grad=True) for v in point)
    ga, gw, gy = torch.autograd.grad(lagrangian(y, w, a, s.lam, s.beta), (a, w, y))
    new = rarts_jacobi_step(point, s)
    assert new == pytest.approx((1.3 - 0.03 * ga.item(), -0.4 - 0.01 * gw.item(), 0.7 - 0.02 * gy.item()), rel=1e-12)


def test_the_equilibrium_is_a_fixed_point_of_both_sweeps_but_their_steps_differ():
    s = ToySettings(method="rarts", sweep="jacobi", lam=10.0, beta=10.0)
    eq = equilibrium("rarts", 10.0, 10.0)
    point = (eq["alpha"], eq["w"], eq["y"])
    assert rarts_jacobi_step(point, s) == pytest.approx(point, abs=1e-13)
    assert rarts_step(point, s) == pytest.approx(point, abs=1e-13)
    start = (2.0, -2.0, 0.0)
    assert rarts_jacobi_step(start, s) != pytest.approx(rarts_step(start, s), abs=1e-6)


def test_jacobi_diverges_with_too_large_a_step_and_says_why():
    result = summarize(run(ToySettings(method="rarts", sweep="jacobi", lr=0.2, steps=5000)))
    assert result["diverged"] and result["spectral_radius"] > 1
    assert result["lr_bounds"] is None  # Theorem 1 is about the Gauss-Seidel sweep
    assert "spectral radius" in result["divergence_reason"]


def test_spectral_radius_follows_the_sweep():
    gs = ToySettings(method="rarts", sweep="gauss-seidel")
    jac = ToySettings(method="rarts", sweep="jacobi")
    assert spectral_radius(gs) < 1 and spectral_radius(jac) < 1
    assert spectral_radius(gs) != pytest.approx(spectral_radius(jac), abs=1e-6)


def test_cli_toy_jacobi(capsys):
    assert main(["toy", "run", "--method", "rarts", "--sweep", "jacobi", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["settings"]["sweep"] == "jacobi" and result["converged"]
    assert result["distance_to_equilibrium"] < 1e-8
    assert main(["toy", "run", "--method", "rarts", "--sweep", "jacobi"]) == 0
    assert "sweep=jacobi" in capsys.readouterr().out


def test_cli_toy_sweep_is_for_rarts_only(capsys):
    assert main(["toy", "run", "--method", "darts1", "--sweep", "jacobi"]) == 2
    assert "--sweep" in capsys.readouterr().err


# ---- the search method ---------------------------------------------------------------------------------------------


def batches(n=4, seed=123):
    g = torch.Generator().manual_seed(seed)
    x_t, x_v = (torch.randn(n, 3, 8, 8, generator=g, dtype=torch.float64) for _ in range(2))
    t_t, t_v = (torch.randint(0, 10, (n,), generator=g) for _ in range(2))
    return (x_t, t_t), (x_v, t_v)


def make(sweep, seed=0, layers=3, **settings):
    """RARTS on a 4-channel supernet; 3 cells hold both cell types, 2 cells (both reductions) are cheaper."""
    torch.manual_seed(seed)
    net = SearchNetwork(4, 10, layers).double()
    arch = Architecture().double()
    with torch.no_grad():
        for a in arch.alphas():
            a.normal_(0.0, 0.5)
    settings.setdefault("epochs", 4)
    settings.setdefault("grad_clip", NO_CLIP)
    return METHODS["rarts"](net, arch, MethodSettings(sweep=sweep, **settings))


def ce(net, batch, alphas):
    x, t = batch
    return F.cross_entropy(net(x, tuple(F.softmax(a, dim=-1) for a in alphas)), t)


@pytest.mark.parametrize("y_init", ["copy", pytest.param("independent", marks=pytest.mark.slow)])
def test_jacobi_step_is_every_partial_of_eq2_at_the_start_point(y_init):
    lam, beta, lr, wd = 0.7, 2.0, 0.05, 3e-4
    method = make("jacobi", lam=lam, beta=beta, lr=lr, weight_decay=wd, y_init=y_init)
    train, val = batches()
    w0 = [p.detach().clone().requires_grad_() for p in method.w.parameters()]
    y0 = [p.detach().clone().requires_grad_() for p in method.y.parameters()]
    a0 = [a.detach().clone().requires_grad_() for a in method.alphas()]
    # an independent computation at the start point: copies of the networks at w0 and y0
    import copy

    net_w, net_y = copy.deepcopy(method.w), copy.deepcopy(method.y)
    with torch.no_grad():
        for p, q in zip(net_w.parameters(), w0):
            p.copy_(q)
        for p, q in zip(net_y.parameters(), y0):
            p.copy_(q)
    l_train, l_val = ce(net_w, train, a0), ce(net_y, val, a0)
    g_w = torch.autograd.grad(lam * l_train, list(net_w.parameters()), retain_graph=True)
    g_at = torch.autograd.grad(l_train, a0)
    g_y = torch.autograd.grad(l_val, list(net_y.parameters()), retain_graph=True)
    g_av = torch.autograd.grad(l_val, a0)

    metrics = method.step(train, val)

    for p, w, y, g in zip(method.w.parameters(), w0, y0, g_w):
        d = g + beta * (w - y) + wd * w  # first step: the momentum buffer is the direction itself
        torch.testing.assert_close(p.detach(), (w - lr * d).detach(), rtol=1e-10, atol=1e-12)
    for p, w, y, g in zip(method.y.parameters(), w0, y0, g_y):
        d = g + beta * (y - w) + wd * y
        torch.testing.assert_close(p.detach(), (y - lr * d).detach(), rtol=1e-10, atol=1e-12)
    for a, gt, gv in zip(method.alphas(), g_at, g_av):
        torch.testing.assert_close(a.grad, lam * gt + gv, rtol=1e-10, atol=1e-12)
    assert {"train_loss", "y_loss", "arch_loss", "wy_dist"} <= set(metrics)
    assert all(torch.is_tensor(v) and v.dim() == 0 for v in metrics.values())
    torch.testing.assert_close(metrics["train_loss"], l_train.detach())
    torch.testing.assert_close(metrics["arch_loss"], l_val.detach())


def test_jacobi_and_gauss_seidel_share_the_w_line_and_the_statistics():
    """Line 1 of eq. (4) uses only old values, so both sweeps give the same w; y and alpha differ. Both update
    BatchNorm's running statistics once per network, at the same points."""
    train, val = batches()
    gs, jac = make("gauss-seidel"), make("jacobi")
    gs.step(train, val)
    jac.step(train, val)
    for p, q in zip(gs.w.parameters(), jac.w.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-12, atol=1e-14)
    assert any(not torch.allclose(p, q) for p, q in zip(gs.y.parameters(), jac.y.parameters()))
    assert any(not torch.allclose(p, q) for p, q in zip(gs.alphas(), jac.alphas()))
    for key in ("w", "y"):
        for (name, b1), (_, b2) in zip(gs.networks()[key].named_buffers(), jac.networks()[key].named_buffers()):
            torch.testing.assert_close(b1, b2, rtol=1e-12, atol=1e-14, msg=f"{key}.{name}")


def test_tied_jacobi_takes_both_steps_at_one_point():
    """y tied to w: the w step on lam * L_train (line 1 of eq. (4) without y, as in the Gauss-Seidel tied sweep)
    and the alpha step on lam * L_train + L_val, both at the start point."""
    lam, lr = 0.5, 0.05
    method = make("jacobi", lam=lam, lr=lr, y_init="tied", weight_decay=0.0)
    train, val = batches()
    w0 = [p.detach().clone() for p in method.w.parameters()]
    a0 = [a.detach().clone().requires_grad_() for a in method.alphas()]
    import copy

    ref = copy.deepcopy(method.w)
    l_train, l_val = ce(ref, train, a0), ce(ref, val, a0)
    g_w = torch.autograd.grad(l_train, list(ref.parameters()), retain_graph=True)
    g_a = torch.autograd.grad(lam * l_train + l_val, a0)
    method.step(train, val)
    for p, w, g in zip(method.w.parameters(), w0, g_w):
        torch.testing.assert_close(p.detach(), w - lr * lam * g, rtol=1e-10, atol=1e-12)
    for a, g in zip(method.alphas(), g_a):
        torch.testing.assert_close(a.grad, g, rtol=1e-10, atol=1e-12)


def test_sweep_setting_is_checked():
    with pytest.raises(UsageError, match="sweep"):
        MethodSettings(sweep="random-order").validate()
    torch.manual_seed(0)
    with pytest.raises(UsageError, match="sweep"):
        METHODS["darts1"](SearchNetwork(4, 10, 3), Architecture(), MethodSettings(sweep="jacobi"))


def test_jacobi_checkpoint_round_trip():
    train, val = batches()
    a, b = make("jacobi", seed=1, layers=2), make("jacobi", seed=2, layers=2)
    a.step(train, val)
    b.load_state_dict(a.state_dict())
    a.step(train, val)
    b.step(train, val)
    for p, q in zip(a.w.parameters(), b.w.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=0)
