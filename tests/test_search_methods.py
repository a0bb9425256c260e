"""The search methods (rarts.search): every update rule against an independent autograd computation.

Tiny supernets (4 channels, 3 cells, 8x8 inputs); gradient checks in float64. Parametrised over METHODS, so a
newly registered method is checked for the shared properties by being registered.
"""

from __future__ import annotations

import copy
import io

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from rarts.errors import UsageError
from rarts.search import METHODS, MethodSettings, WeightSGD
from rarts.search.base import clip_by_global_norm_
from rarts.supernet import Architecture, SearchNetwork

NO_CLIP = 1e9  # a clipping threshold no gradient here reaches, for exact update checks


def batches(dtype=torch.float64, n=4, seed=123):
    g = torch.Generator().manual_seed(seed)
    x_t = torch.randn(n, 3, 8, 8, generator=g, dtype=dtype)
    x_v = torch.randn(n, 3, 8, 8, generator=g, dtype=dtype)
    t_t = torch.randint(0, 10, (n,), generator=g)
    t_v = torch.randint(0, 10, (n,), generator=g)
    return (x_t, t_t), (x_v, t_v)


def make(name, dtype=torch.float64, seed=0, penalty=None, penalty_weight=0.0, layers=3, **settings):
    """A method on a 4-channel supernet; 3 cells hold both cell types, 2 cells (both reductions) are cheaper."""
    torch.manual_seed(seed)
    net = SearchNetwork(4, 10, layers).to(dtype)
    arch = Architecture().to(dtype)
    with torch.no_grad():  # alpha away from uniform, so softmax derivatives are not special
        for a in arch.alphas():
            a.normal_(0.0, 0.5)
    settings.setdefault("epochs", 4)
    method = METHODS[name](net, arch, MethodSettings(**settings), penalty, penalty_weight)
    method.start_epoch(0)
    return method


def snapshot(method):
    """Copies of every parameter set of a method: {"w": [...], "y": [...], "alpha": [...]}."""
    out = {key: [p.detach().clone() for p in net.parameters()] for key, net in method.networks().items()}
    out["alpha"] = [a.detach().clone() for a in method.alphas()]
    return out


def changed(before, after):
    return {key for key in before if any(not torch.equal(a, b) for a, b in zip(before[key], after[key]))}


def rel_err(got, want):
    got = torch.cat([g.flatten() for g in got])
    want = torch.cat([w.flatten() for w in want])
    return ((got - want).norm() / want.norm()).item()


def ce(net, params, batch, alphas):
    """Cross-entropy of `net` at `params` (by name; None: its own) with mixing softmax(alphas), via plain autograd."""
    x, t = batch
    mix = tuple(F.softmax(a, dim=-1) for a in alphas)
    logits = net(x, mix) if params is None else functional_call(net, params, (x, mix))
    return F.cross_entropy(logits, t)


def smooth(module):
    """Swap ReLU for softplus and max-pool for average pool, in place: a network with no kinks.

    On the ReLU network, central differences with eps = 0.01 / ||v|| cross activation and max-pool switches
    (the gradient jumps on that scale), so they sit far from the exact mixed derivative: a relative error of
    about 4 on these 4-channel networks. The exactness checks of DARTS 2nd order therefore run on a smooth
    network, where the central difference converges as eps^2; the method's code is the same.
    """
    for name, child in module.named_children():
        if isinstance(child, nn.ReLU):
            setattr(module, name, nn.Softplus(beta=2.0))
        elif isinstance(child, nn.MaxPool2d):
            setattr(module, name, nn.AvgPool2d(3, child.stride, 1))
        else:
            smooth(child)
    return module


def fresh_alphas(method):
    return [a.detach().clone().requires_grad_() for a in method.alphas()]


# ---- the registry and the interface ---------------------------------------------------------------------------------


def test_registry_holds_every_method():
    assert set(METHODS) == {"darts1", "darts2", "milenas", "rarts", "random"}
    for name, cls in METHODS.items():
        assert cls.name == name


@pytest.mark.parametrize("name", sorted(METHODS))
def test_one_seed_gives_identical_steps_and_tensor_metrics(name):
    train, val = batches(torch.float32)
    states = []
    for _ in range(2):
        method = make(name, dtype=torch.float32, seed=7, layers=2)
        metrics = method.step(train, val)
        states.append(snapshot(method))
    assert changed(states[0], states[1]) == set()
    assert "train_loss" in metrics and "train_acc" in metrics
    for key, value in metrics.items():  # metrics stay tensors: the loop decides when to sync
        assert isinstance(value, torch.Tensor) and value.dim() == 0, key
        assert torch.isfinite(value), key
        assert not value.requires_grad, key


# The parameter sets each update block changes: its own, or both w and y for RARTS's lines 1 and 2 taken together.
BLOCK_CHANGES = {"wy": {"w", "y"}}


@pytest.mark.parametrize("name", sorted(METHODS))
def test_each_block_changes_only_its_own_parameters(name):
    method = make(name, layers=2)
    train, val = batches()
    method.step(train, val)  # momentum buffers exist from here on
    blocks = method.sweep + (("w", "y") if "wy" in method.sweep else ())  # and the lines of "wy" one by one
    for block in blocks:
        before = snapshot(method)
        stats = {k: [b.clone() for b in net.buffers()] for k, net in method.networks().items()}
        getattr(method, f"update_{block}")(train, val)
        assert changed(before, snapshot(method)) == BLOCK_CHANGES.get(block, {block}), block
        if block == "alpha":  # alpha steps evaluate the networks without touching their BatchNorm statistics
            for key, net in method.networks().items():
                assert all(torch.equal(a, b) for a, b in zip(stats[key], net.buffers()))


@pytest.mark.parametrize("name", sorted(METHODS))
def test_state_dict_round_trip_continues_identically(name):
    train, val = batches(torch.float32)
    method = make(name, dtype=torch.float32, seed=3, layers=2)
    method.step(train, val)
    method.end_epoch()  # a scheduler state past its start
    buf = io.BytesIO()
    torch.save(method.state_dict(), buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)
    other = make(name, dtype=torch.float32, seed=99, layers=2)  # different weights and alpha until loaded
    other.load_state_dict(state)
    assert other.learning_rates() == method.learning_rates()
    method.step(train, val)
    other.step(train, val)
    assert changed(snapshot(method), snapshot(other)) == set()


def test_load_state_dict_rejects_another_method():
    state = make("darts1", dtype=torch.float32).state_dict()
    with pytest.raises(UsageError, match="darts1"):
        make("milenas", dtype=torch.float32).load_state_dict(state)


# ---- the alpha gradient of each method, against its equation --------------------------------------------------------


def test_darts1_alpha_gradient():
    method = make("darts1")
    train, val = batches()
    w_old = copy.deepcopy(method.w)
    alphas = fresh_alphas(method)
    method.step(train, val)
    want = torch.autograd.grad(ce(w_old, None, val, alphas), alphas)  # grad_a L_val(w, alpha)
    assert rel_err([a.grad for a in method.alphas()], want) < 1e-10


@pytest.mark.parametrize("lam", [0.3, 2.5])
def test_milenas_alpha_gradient(lam):
    method = make("milenas", lam=lam)
    train, val = batches()
    alphas = fresh_alphas(method)
    method.step(train, val)  # w first, then alpha at the new w
    w_new = copy.deepcopy(method.w)
    objective = ce(w_new, None, val, alphas) + lam * ce(w_new, None, train, alphas)
    want = torch.autograd.grad(objective, alphas)
    assert rel_err([a.grad for a in method.alphas()], want) < 1e-10


@pytest.mark.parametrize("lam,beta", [(0.5, 0.0), (2.0, 10.0)])
def test_rarts_alpha_gradient(lam, beta):
    method = make("rarts", lam=lam, beta=beta, y_init="independent")
    train, val = batches()
    alphas = fresh_alphas(method)
    method.step(train, val)
    w_new, y_new = copy.deepcopy(method.w), copy.deepcopy(method.y)
    # eq. (4), line 3: lam * grad_a L_train(w_new, alpha) + grad_a L_val(y_new, alpha)
    objective = lam * ce(w_new, None, train, alphas) + ce(y_new, None, val, alphas)
    want = torch.autograd.grad(objective, alphas)
    assert rel_err([a.grad for a in method.alphas()], want) < 1e-10


def exact_darts2_gradient(method, train, val, alphas):
    """grad of alpha -> L_val(w'(alpha), alpha), w' the virtual SGD step with momentum and weight decay."""
    s = method.settings
    xi = method.xi()
    net = copy.deepcopy(method.w)
    names = [n for n, _ in method.w.named_parameters()]
    params = [p.detach().clone().requires_grad_() for p in method.w.parameters()]
    buffers = [method.optimizers["w"].state[p]["momentum_buffer"] for p in method.w.parameters()]
    g = torch.autograd.grad(ce(net, dict(zip(names, params)), train, alphas), params, create_graph=True)
    w_virtual = [p - xi * (s.momentum * b + gi + s.weight_decay * p) for p, b, gi in zip(params, buffers, g)]
    return torch.autograd.grad(ce(net, dict(zip(names, w_virtual)), val, alphas), alphas)


def test_darts2_xi_is_the_weight_learning_rate_unless_set():
    assert make("darts2", lr=0.1, layers=2).xi() == 0.1
    assert make("darts2", lr=0.1, xi=0.05, layers=2).xi() == 0.05


def test_darts2_alpha_gradient_matches_the_exact_hessian_formula():
    method = make("darts2", lr=0.1)
    smooth(method.w)
    train, val = batches()
    method.step(train, val)  # a non-zero momentum buffer for the virtual step
    alphas = fresh_alphas(method)
    want = exact_darts2_gradient(method, train, val, alphas)
    method.update_alpha(train, val)
    assert rel_err([a.grad for a in method.alphas()], want) < 1e-2


def test_darts2_finite_difference_matches_the_exact_mixed_derivative():
    method = make("darts2")
    smooth(method.w)
    train, _ = batches()
    method.step(*batches(seed=5))
    g = torch.Generator().manual_seed(1)
    v = [torch.randn(p.shape, generator=g, dtype=p.dtype) for p in method.w.parameters()]
    got = method.mixed_second_derivative(train, v)
    # Exact: grad_a (grad_w L_train(w, alpha) . v), by double backward.
    alphas = fresh_alphas(method)
    net = copy.deepcopy(method.w)
    names = [n for n, _ in method.w.named_parameters()]
    params = [p.detach().clone().requires_grad_() for p in method.w.parameters()]
    gw = torch.autograd.grad(ce(net, dict(zip(names, params)), train, alphas), params, create_graph=True)
    want = torch.autograd.grad(sum((gi * vi).sum() for gi, vi in zip(gw, v)), alphas)
    assert rel_err(got, want) < 1e-2
    # The denominator is 2 * eps: halving or doubling it would be off by a factor 2 or 4.
    assert 0.98 < got[0].norm() / want[0].norm() < 1.02


def test_random_draws_alpha_once_or_every_epoch():
    train, val = batches(torch.float32)
    once = make("random", dtype=torch.float32)
    first = [a.detach().clone() for a in once.alphas()]
    assert first[0].std() > 0.5  # a standard normal draw, not the 1e-3 initialisation
    once.step(train, val)
    once.end_epoch()
    once.start_epoch(1)
    assert all(torch.equal(a, b) for a, b in zip(first, once.alphas()))
    per_epoch = make("random", dtype=torch.float32, random_resample="epoch")
    per_epoch.start_epoch(1)
    assert not any(torch.equal(a, b) for a, b in zip(first, per_epoch.alphas()))


# ---- the weight updates ----------------------------------------------------------------------------------------------


def test_weight_sgd_matches_torch_sgd_and_its_direction():
    torch.manual_seed(0)
    p1 = torch.nn.Parameter(torch.randn(5, 3, dtype=torch.float64))
    p2 = torch.nn.Parameter(p1.detach().clone())
    ours = WeightSGD([p1], lr=0.1, momentum=0.9, weight_decay=0.01)
    ref = torch.optim.SGD([p2], lr=0.1, momentum=0.9, weight_decay=0.01)
    for _ in range(4):
        g = torch.randn(5, 3, dtype=torch.float64)
        (d,) = ours.direction([g])
        before = p1.detach().clone()
        p1.grad, p2.grad = g.clone(), g.clone()
        ours.step()
        ref.step()
        torch.testing.assert_close(p1, p2, rtol=0, atol=1e-15)
        torch.testing.assert_close(p1.detach(), before - 0.1 * d, rtol=0, atol=1e-15)


def test_clip_by_global_norm_matches_torch():
    torch.manual_seed(0)
    grads = [torch.randn(4, 3) * 5, torch.randn(7) * 5]
    params = [torch.nn.Parameter(torch.zeros_like(g)) for g in grads]
    for p, g in zip(params, grads):
        p.grad = g.clone()
    ref_norm = torch.nn.utils.clip_grad_norm_(params, 5.0)
    norm = clip_by_global_norm_(grads, 5.0)
    torch.testing.assert_close(norm, ref_norm)
    for p, g in zip(params, grads):
        torch.testing.assert_close(g, p.grad)


@pytest.mark.parametrize("lam,beta", [(1.0, 0.0), (0.5, 2.0)])
def test_rarts_weight_steps_are_eq_4(lam, beta):
    lr, y_lr, wd = 0.1, 0.03, 3e-4
    method = make(
        "rarts", lam=lam, beta=beta, lr=lr, y_lr=y_lr, weight_decay=wd, grad_clip=NO_CLIP, y_init="independent"
    )
    train, val = batches()
    alphas = fresh_alphas(method)
    w0 = [p.detach().clone() for p in method.w.parameters()]
    y0 = [p.detach().clone() for p in method.y.parameters()]
    net = copy.deepcopy(method.w)
    names = [n for n, _ in method.w.named_parameters()]
    # eq. (4), line 1 (first step: the momentum buffer is the gradient itself)
    w_req = [p.clone().requires_grad_() for p in w0]
    gw = torch.autograd.grad(lam * ce(net, dict(zip(names, w_req)), train, alphas), w_req)
    w1 = [w - lr * (g + beta * (w - y) + wd * w) for w, y, g in zip(w0, y0, gw)]
    # eq. (4), line 2, with the new w
    y_req = [p.clone().requires_grad_() for p in y0]
    gy = torch.autograd.grad(ce(net, dict(zip(names, y_req)), val, alphas), y_req)
    y1 = [y - y_lr * (g + beta * (y - w) + wd * y) for y, w, g in zip(y0, w1, gy)]
    method.update_w(train, val)
    assert rel_err([p.detach() - w for p, w in zip(method.w.parameters(), w0)], [a - b for a, b in zip(w1, w0)]) < 1e-10
    method.update_y(train, val)
    assert rel_err([p.detach() - y for p, y in zip(method.y.parameters(), y0)], [a - b for a, b in zip(y1, y0)]) < 1e-10


def test_rarts_clips_w_and_y_gradients():
    method = make("rarts", beta=1.0, lr=1.0, momentum=0.0, weight_decay=0.0, grad_clip=1e-3, y_init="independent")
    train, val = batches()
    before = snapshot(method)
    method.update_w(train, val)
    method.update_y(train, val)
    after = snapshot(method)
    for key in ("w", "y"):
        step = torch.cat([(a - b).flatten() for a, b in zip(after[key], before[key])])
        assert step.norm().item() == pytest.approx(1e-3, rel=1e-3)


def test_rarts_with_y_tied_to_w_and_beta_zero_is_milenas():
    train, val = batches()
    rarts = make("rarts", y_init="tied", beta=0.0, lam=1.0, seed=4)
    milenas = make("milenas", lam=1.0, seed=4)
    assert rarts.sweep == milenas.sweep == ("w", "alpha")
    for _ in range(3):
        rarts.step(train, val)
        milenas.step(train, val)
    a, b = snapshot(rarts), snapshot(milenas)
    for key in ("w", "alpha"):
        assert rel_err(a[key], b[key]) < 1e-12


@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step\\(\\)` before `optimizer.step\\(\\)`")
def test_rarts_y_learning_rate_follows_w_unless_set():
    same = make("rarts", lr=0.1, lr_min=0.01, epochs=2)
    own = make("rarts", lr=0.1, lr_min=0.01, y_lr=0.2, epochs=2)
    assert same.learning_rates() == {"lr": 0.1, "alpha_lr": 3e-4, "y_lr": 0.1}
    assert own.learning_rates()["y_lr"] == 0.2
    for m in (same, own):
        m.end_epoch()
    assert same.learning_rates()["y_lr"] == same.learning_rates()["lr"]
    assert own.learning_rates()["y_lr"] == pytest.approx(2 * own.learning_rates()["lr"])


def test_rarts_y_initialisation():
    copied = make("rarts", y_init="copy")
    assert all(torch.equal(a, b) for a, b in zip(copied.w.parameters(), copied.y.parameters()))
    assert copied.w is not copied.y
    independent = make("rarts", y_init="independent")
    assert not torch.equal(independent.w.stem[0].weight, independent.y.stem[0].weight)
    tied = make("rarts", y_init="tied")
    assert tied.y is tied.w and set(tied.networks()) == {"w"}


# ---- the architecture penalty hook ----------------------------------------------------------------------------------


def square_penalty(arch):
    return sum((a**2).sum() for a in arch.alphas())


@pytest.mark.parametrize("name", sorted(n for n, cls in METHODS.items() if "alpha" in cls.sweep))
def test_architecture_penalty_is_added_once_per_alpha_step(name):
    train, val = batches()
    plain = make(name, seed=2, layers=2)
    penalised = make(name, seed=2, layers=2, penalty=square_penalty, penalty_weight=0.1)
    plain.step(train, val)  # both at the same point, with momentum buffers
    penalised.step(train, val)
    plain.load_state_dict(penalised.state_dict())
    alphas = [a.detach().clone() for a in penalised.alphas()]
    plain.update_alpha(train, val)
    metrics = penalised.update_alpha(train, val)
    for a, g_plain, g_pen in zip(alphas, (p.grad for p in plain.alphas()), (p.grad for p in penalised.alphas())):
        torch.testing.assert_close(g_pen - g_plain, 0.1 * 2 * a, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(metrics["arch_penalty"], 0.1 * sum((a**2).sum() for a in alphas))


def test_penalty_on_a_method_without_alpha_step_is_rejected():
    with pytest.raises(UsageError, match="random"):
        make("random", penalty=square_penalty, penalty_weight=1.0)


# ---- the data-parallel hook ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name,calls",
    [
        ("rarts", ["w", "y", "alpha"]),
        ("darts2", ["w (virtual step)", "w (v)", "alpha", "w"]),
        ("random", ["w"]),
    ],
)
def test_every_gradient_passes_through_grad_sync(name, calls):
    method = make(name, layers=2)
    n_weights, n_alphas = len(list(method.w.parameters())), len(method.alphas())
    seen = []

    def sync(grads):
        seen.append(len(grads))
        return [g * 1.0 for g in grads]

    method.grad_sync = sync
    method.step(*batches())
    assert seen == [n_alphas if c == "alpha" else n_weights for c in calls]


# ---- settings --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [
        {"lam": -1.0},
        {"beta": -0.1},
        {"lr": 0.0},
        {"lr": -0.1},
        {"arch_lr": 0.0},
        {"y_lr": 0.0},
        {"xi": -1.0},
        {"grad_clip": 0.0},
        {"y_init": "shared"},
        {"random_resample": "step"},
        {"epochs": 0},
    ],
)
def test_invalid_settings_are_rejected(bad):
    key = next(iter(bad))
    with pytest.raises(UsageError, match=key):
        MethodSettings(**bad).validate()
