"""rarts.bench and `rarts bench`: the FLOP formula follows the passes each method makes, the report's fields,
the performance changes of the search network keep its arithmetic. Tiny networks (4 channels, 2-3 cells, 8x8)."""

from __future__ import annotations

import json

import pytest
import torch

from rarts.bench import SEARCH_METHODS, BenchSpec, measure, measure_isolated, ratios, step_flops, summarise
from rarts.cli import main
from rarts.fast import PARTS, use_fast_paths
from rarts.search import METHODS, MethodSettings
from rarts.supernet import Architecture, MixedOp, SearchNetwork


def tiny_batches(n=2):
    g = torch.Generator().manual_seed(0)
    make = lambda: (torch.randn(n, 3, 8, 8, generator=g), torch.randint(0, 10, (n,), generator=g))  # noqa: E731
    return make(), make()


def tiny_method(spec: str, **settings):
    """The method a bench spec names ("rarts-jacobi": rarts at sweep jacobi) on a tiny network."""
    name, _, sweep = spec.partition("-")
    torch.manual_seed(0)
    net, arch = SearchNetwork(4, 10, 3), Architecture()
    return METHODS[name](net, arch, MethodSettings(sweep=sweep or "gauss-seidel", **settings))


@pytest.fixture(autouse=True)
def small_matmul_peak(monkeypatch):
    """`rarts bench` times a 2048 x 2048 matmul before and after its measurements, seconds on one core; a 256 x 256
    one, timed twice, is as real a peak for the tests' assertions on it."""
    import rarts.bench as rb

    real = rb.matmul_peak
    monkeypatch.setattr(rb, "matmul_peak", lambda device: real(device, n=256, repeats=2))


TIED = [("rarts", {"y_init": "tied"}), ("rarts-jacobi", {"y_init": "tied"})]


@pytest.mark.parametrize("spec, settings", [(s, {}) for s in SEARCH_METHODS] + TIED)
def test_passes_are_the_passes_a_step_makes(spec, settings, monkeypatch):
    """Every forward pass of a step is followed by one gradient call: to weights (and perhaps alpha), a weight
    pass, or to alpha alone, an alpha pass. A method's `passes`, from which the FLOPs follow, must count them
    exactly, and its independent pairs the pairs the step hands to its executor."""
    method = tiny_method(spec, **settings)
    arch = method.arch
    method.start_epoch(0)
    forwards = []
    calls = {"weight": 0, "alpha": 0}
    alpha_ids = {id(a) for a in arch.alphas()}
    real_grad = torch.autograd.grad

    def counting_grad(outputs, inputs, *args, **kwargs):
        inputs = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
        calls["alpha" if all(id(t) in alpha_ids for t in inputs) else "weight"] += 1
        return real_grad(outputs, inputs, *args, **kwargs)

    monkeypatch.setattr(torch.autograd, "grad", counting_grad)
    for network in method.networks().values():
        network.register_forward_pre_hook(lambda *_: forwards.append(1))

    class CountingPairs:
        at_once, pairs = False, 0

        def run(self, first, second):
            self.pairs += 1
            return first(), second()

    method.executor = executor = CountingPairs()
    method.step(*tiny_batches())
    passes = method.passes
    assert (calls["weight"], calls["alpha"]) == (passes.weight, passes.alpha)
    assert len(forwards) == passes.weight + passes.alpha
    assert executor.pairs == passes.pairs


def test_step_flops_formula():
    F_ = 2.0 * 1000 * 8  # one forward at 1000 mult-adds per image, batch 8

    def flops(spec):
        passes = tiny_method(spec).passes
        return step_flops((passes.weight, passes.alpha), 1000, 8)

    assert flops("darts1") == 5 * F_
    assert flops("darts2") == 13 * F_
    assert flops("milenas") == 7 * F_
    assert flops("rarts") == 10 * F_
    assert flops("rarts-jacobi") == 6 * F_
    assert step_flops((1, 0), 1000, 8) == 3 * F_  # a training step


def test_bench_knows_every_method_and_sweep():
    assert set(SEARCH_METHODS) == {"darts1", "darts2", "milenas", "rarts", "rarts-jacobi", "random"}


def test_paper_search_network_forward_is_0_30_gmac():
    """16 channels, 8 cells, 32 x 32: 0.30 GMAC per image, so one forward and backward at batch 32 is 57.6 GFLOP;
    the fast paths count the same."""
    from rarts.flops import count_mult_adds

    net, arch = SearchNetwork(16, 10, 8), Architecture()
    mac = count_mult_adds(net, (3, 32, 32), arch.weights())
    assert 0.295e9 < mac < 0.305e9
    assert step_flops((1, 0), mac, 32) / 1e9 == pytest.approx(57.6, rel=0.02)
    assert count_mult_adds(use_fast_paths(net), (3, 32, 32), arch.weights()) == mac


def test_shared_relu_mixed_op_keeps_the_arithmetic():
    """The fast mixed op computes the ReLU of its four convolution ops once: the output and every gradient equal
    the plain sum of weights[k] * op_k(x) (float64), and the parameter names are those of the ops themselves."""
    torch.manual_seed(0)
    for stride, parts in ((1, ["shared_relu"]), (2, ["shared_relu"]), (1, PARTS), (2, PARTS)):
        mixed = use_fast_paths(MixedOp(4, stride).double(), parts)
        x = torch.randn(2, 4, 8, 8, dtype=torch.float64, requires_grad=True)
        weights = torch.softmax(torch.randn(8, dtype=torch.float64), 0).requires_grad_()
        plain = sum(weights[k] * op(x) for k, op in zip(mixed.op_index, mixed.ops))
        target = torch.randn_like(plain)
        grads_plain = torch.autograd.grad((plain * target).sum(), [x, weights, *mixed.parameters()])
        fused = mixed(x, weights)
        grads_fused = torch.autograd.grad((fused * target).sum(), [x, weights, *mixed.parameters()])
        torch.testing.assert_close(fused, plain, rtol=1e-12, atol=1e-12)
        for a, b in zip(grads_fused, grads_plain):
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    names = [n for n, _ in use_fast_paths(MixedOp(4, 1)).named_parameters()]
    assert names[0].startswith("ops.") and len(names) == sum(1 for _ in MixedOp(4, 1).parameters())


def test_measure_and_summary_fields():
    spec = BenchSpec(method="darts1", batch=2, channels=4, layers=2, image_size=8, steps=2, warmup=0, threads=1)
    m = measure(spec)
    assert len(m.seconds) == 2 and all(t > 0 for t in m.seconds)
    row = summarise(m, peak_gflops=100.0)
    assert row["seconds_per_step"]["min"] <= row["seconds_per_step"]["median"] <= row["seconds_per_step"]["max"]
    assert m.passes == (1, 1)  # darts1's
    assert row["gflops_per_step"] == pytest.approx(step_flops((1, 1), m.forward_mult_adds, 2) / 1e9)
    assert row["achieved_fraction_of_matmul_peak"] == pytest.approx(
        row["gflops_per_step"] / row["seconds_per_step"]["median"] / 100.0
    )


def test_training_step_of_a_final_network():
    spec = BenchSpec(method="train", batch=2, channels=4, layers=3, image_size=8, steps=1, warmup=0, threads=1)
    m = measure(spec)
    assert len(m.seconds) == 1 and m.forward_mult_adds > 0 and m.parameters > 0


def test_ratios_against_darts1_and_darts2():
    rows = [
        {"method": name, "batch": 32, "seconds_per_step": {"median": t}}
        for name, t in (("darts1", 2.0), ("darts2", 5.0), ("rarts", 3.0), ("train", 1.0))
    ]
    out = {r["method"]: r for r in ratios(rows)}
    assert "train" not in out
    assert out["rarts"]["vs_darts1"] == 1.5 and out["rarts"]["vs_darts2"] == 0.6
    assert out["darts1"]["vs_darts1"] == 1.0


def test_cli_search_json(capsys):
    code = main(
        "bench search --methods darts1,rarts-jacobi --channels 4 --layers 2 --image-size 8 --batch 2 --steps 1 "
        "--warmup 0 --threads 1 --no-isolate --json".split()
    )
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert result["matmul_peak_gflops"] > 0
    assert [r["method"] for r in result["results"]] == ["darts1", "rarts-jacobi"]
    for r in result["results"]:
        assert set(r["seconds_per_step"]) >= {"median", "min", "max"}
        assert r["gflops_per_step"] > 0 and r["achieved_fraction_of_matmul_peak"] > 0
        assert "peak_memory_bytes" in r
    assert result["ratios"][0]["vs_darts1"] == 1.0


@pytest.mark.parametrize("flag, expected", [("--paired-passes", [1, 1]), ("--no-paired-passes", None)])
def test_cli_search_pairs_rarts_and_milenas_passes_with_two_threads(flag, expected, capsys):
    argv = "bench search --methods darts1,milenas,rarts --channels 4 --layers 2 --image-size 8 --batch 2"
    argv += " --steps 1 --warmup 0"
    try:
        assert main(f"{argv} --threads 2 --no-isolate --json {flag}".split()) == 0
    finally:
        torch.set_num_threads(1)
    result = json.loads(capsys.readouterr().out)
    rows = {r["method"]: r for r in result["results"]}
    assert rows["rarts"]["paired_passes_threads"] == rows["milenas"]["paired_passes_threads"] == expected
    assert rows["darts1"]["paired_passes_threads"] is None  # its passes depend on each other
    assert result["settings"]["paired_passes"] is (expected is not None) and result["settings"]["threads"] == 2


def test_rounds_pool_the_steps_of_every_round(monkeypatch):
    """--rounds 2 measures each method twice, the methods in turn within a round, and pools the steps."""
    import rarts.bench as rb

    order = []
    real = rb.measure

    def measure(spec):
        order.append(spec.method)
        return real(spec)

    monkeypatch.setattr(rb, "measure", measure)
    result = rb.bench(
        ["darts1", "random"],
        [2],
        torch.device("cpu"),
        channels=4,
        layers=2,
        image_size=8,
        steps=2,
        warmup=0,
        rounds=2,
        threads=1,
        isolate=False,
    )
    assert order == ["darts1", "random"] * 2
    for r in result["results"]:
        assert len(r["seconds_per_step"]["all"]) == 4
    assert result["settings"]["rounds"] == 2 and result["settings"]["layers"] == 2


@pytest.mark.parametrize(
    "argv",
    [
        "bench search --methods darts3",
        "bench search --batch 0",
        "bench search --batch x",
        "bench search --steps 0 --methods darts1",
        "bench search --rounds 0 --methods darts1",
        "bench train --layers 2",
    ],
)
def test_cli_usage_errors(argv, capsys):
    assert main(argv.split()) == 2
    assert capsys.readouterr().err.startswith("rarts: error: --")


@pytest.mark.slow
def test_isolated_measurement_reports_its_own_peak_memory():
    spec = BenchSpec(method="random", batch=2, channels=4, layers=2, image_size=8, steps=1, warmup=0, threads=1)
    m = measure_isolated(spec)
    assert len(m.seconds) == 1
    assert m.peak_memory_bytes >= m.baseline_memory_bytes > 10**7  # torch alone takes more than 10 MB
