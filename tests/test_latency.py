"""Latency tables and the expected-latency penalty, on the tiny search network (4 channels, 3 cells, 8x8)."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from rarts.cli import main
from rarts.errors import UsageError
from rarts.flops import count_mult_adds
from rarts.genotype import KNOWN_GENOTYPES, derive_genotype, load_genotype
from rarts.latency import (
    EDGE_INPUTS,
    LatencyPenalty,
    LatencyTable,
    final_plan,
    measure_network,
    measure_table,
    op_key,
    search_plan,
)
from rarts.ops import PRIMITIVES
from rarts.supernet import Architecture, SearchNetwork

C, LAYERS, SIZE = 4, 3, 8
# The tiny network's cells: (reduction, node channels, input size, node size). Reductions at 3//3 = 1 and 2*3//3 = 2.
TINY_CELLS = [(False, 4, 8, 8), (True, 8, 8, 4), (True, 16, 4, 2)]


@pytest.fixture(scope="module")
def plan():
    return search_plan(C, LAYERS, SIZE)


def hand_table(plan, op_ms) -> LatencyTable:
    """A table with op latencies op_ms(name, C, H, stride) and 0.5 ms for each fixed part."""
    entries = {}
    for key in plan.required_keys():
        if key.startswith("op:"):
            _, name, c, hw, s, _ = key.split(":")
            entries[key] = op_ms(name, int(c[1:]), int(hw.split("x")[0]), int(s[1:]))
        else:
            entries[key] = 0.5
    return LatencyTable(entries, networks=[dict(plan.description)], source="hand table")


def cost_table(plan) -> LatencyTable:
    """A deterministic, realistic table: each part costs 0.01 ms plus 1 ms per million mult-adds."""
    entries = {}
    for key, probe in plan.probes.items():
        module = probe.build().eval()
        if len(probe.inputs) == 1 and any(True for _ in module.parameters()):
            entries[key] = 0.01 + count_mult_adds(module, probe.inputs[0]) / 1e6
        else:
            entries[key] = 0.01
    return LatencyTable(entries, networks=[dict(plan.description)], source="cost table")


def test_plan_reads_the_shapes_of_the_network(plan):
    assert [(c.reduction, c.C, c.H_in, c.H_out) for c in plan.cells] == TINY_CELLS
    assert plan.stem == "stem:cifar:3x8x8>12"
    assert plan.head == "head:C64:2x2>10"
    assert plan.cells[2].pre0.startswith("pre:FactorizedReduce:16>16:8x8")  # after a reduction cell
    # 7 ops x (1 shape in the normal cell + 2 in each reduction cell) + stem, 5 preprocessings, 3 merges, head
    assert len(plan.required_keys()) == 7 * 5 + 1 + 5 + 3 + 1


def test_expected_latency_equals_a_hand_computation(plan):
    table = hand_table(plan, lambda name, c, h, s: (PRIMITIVES.index(name) + 1) * c * h * h / 100 / s)
    penalty = LatencyPenalty(table, plan)
    torch.manual_seed(0)
    arch = Architecture(init_scale=1.0)
    w_normal, w_reduce = (w.detach() for w in arch.weights())
    expected = 0.0
    for reduction, c, h_in, h_out in TINY_CELLS:
        w = w_reduce if reduction else w_normal
        for e, j in enumerate(EDGE_INPUTS):
            stride = 2 if reduction and j < 2 else 1
            h = h_in if j < 2 else h_out
            for k, name in enumerate(PRIMITIVES):
                if name != "none":
                    expected += float(w[e, k]) * (k + 1) * c * h * h / 100 / stride
    assert float(penalty(arch).detach()) == pytest.approx(expected, rel=1e-6)
    assert penalty.fixed_ms == pytest.approx(0.5 * (1 + 3 * 3 + 1))
    assert penalty.expected_latency_ms(arch) == pytest.approx(expected + penalty.fixed_ms, rel=1e-6)


def test_uniform_alpha_with_unit_latencies(plan):
    """Every op at 1 ms and alpha = 0: 3 cells x 14 edges x 7/8 (none weighs 1/8 at zero latency)."""
    penalty = LatencyPenalty(hand_table(plan, lambda *a: 1.0), plan)
    arch = Architecture(init_scale=0.0)
    assert float(penalty(arch).detach()) == pytest.approx(3 * 14 * 7 / 8)


def test_gradient_matches_closed_form_and_finite_differences(plan):
    table = hand_table(plan, lambda name, c, h, s: len(name) * c * h / s / 10)
    penalty = LatencyPenalty(table, plan)
    torch.manual_seed(1)
    a_n = torch.randn(14, 8, dtype=torch.float64, requires_grad=True)
    a_r = torch.randn(14, 8, dtype=torch.float64, requires_grad=True)

    def f(a_n, a_r):
        return penalty((F.softmax(a_n, -1), F.softmax(a_r, -1)))

    g_n, g_r = torch.autograd.grad(f(a_n, a_r), (a_n, a_r))
    # d/d alpha_k of sum_o p_o L_o = p_k (L_k - sum_o p_o L_o), per edge
    for a, lat, g in ((a_n, penalty.latency_normal, g_n), (a_r, penalty.latency_reduce, g_r)):
        p = F.softmax(a.detach(), -1)
        closed = p * (lat - (p * lat).sum(-1, keepdim=True))
        torch.testing.assert_close(g, closed, rtol=1e-12, atol=1e-12)
    assert torch.autograd.gradcheck(f, (a_n, a_r), eps=1e-6, atol=1e-6)
    # through an Architecture in float32, the gradient reaches alpha
    arch = Architecture()
    penalty(arch).backward()
    assert arch.alpha_normal.grad is not None and arch.alpha_normal.grad.abs().sum() > 0


def tiny_search(weight: float, table: LatencyTable, steps: int = 4, seed: int = 0) -> tuple[Architecture, float]:
    """First-order DARTS on random data, the architecture objective L_val + weight * expected latency."""
    torch.manual_seed(seed)
    net = SearchNetwork(C, 10, LAYERS)
    arch = Architecture()
    penalty = LatencyPenalty(table, net)
    w_opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    a_opt = torch.optim.Adam(arch.parameters(), lr=0.05, betas=(0.5, 0.999))
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(8, 3, SIZE, SIZE, generator=gen)
    y = torch.randint(0, 10, (8,), generator=gen)
    for _ in range(steps):
        a_opt.zero_grad()
        (F.cross_entropy(net(x[4:], arch), y[4:]) + weight * penalty(arch)).backward()
        a_opt.step()
        w_opt.zero_grad()
        F.cross_entropy(net(x[:4], arch), y[:4]).backward()
        w_opt.step()
    return arch, penalty.genotype_latency(derive_genotype(arch.alpha_normal, arch.alpha_reduce))


def test_latency_weight_lowers_the_derived_genotypes_latency(plan):
    table = cost_table(plan)
    arch0, lat0 = tiny_search(0.0, table)
    arch1, lat1 = tiny_search(50.0, table)
    penalty = LatencyPenalty(table, plan)
    assert lat1 < lat0
    assert float(penalty(arch1).detach()) < float(penalty(arch0).detach())


def test_a_table_missing_a_shape_is_rejected(plan):
    table = hand_table(plan, lambda *a: 1.0)
    missing = op_key("sep_conv_5x5", 8, 8, 8, 2, "search")
    del table.entries[missing]
    with pytest.raises(UsageError, match=f"hand table has no entry {missing}: it covers search network C=4"):
        LatencyPenalty(table, plan)
    bigger = search_plan(8, LAYERS, SIZE)
    with pytest.raises(UsageError, match="has no entry stem:cifar:3x8x8>24 \\(and 4[0-9] more\\)"):
        LatencyPenalty(hand_table(plan, lambda *a: 1.0), bigger)


def test_penalty_from_a_network_takes_the_tables_image_size(plan):
    table = hand_table(plan, lambda *a: 2.0)
    assert LatencyPenalty(table, SearchNetwork(C, 10, LAYERS)).fixed_ms == pytest.approx(5.5)
    with pytest.raises(UsageError, match="covers no search network with C=8"):
        LatencyPenalty(table, SearchNetwork(8, 10, LAYERS))


def test_genotype_and_final_predictions_sum_the_right_parts(plan):
    # Unit entries: a discrete network is 1 stem + (2 preprocessings + 8 ops + 1 merge) per cell + 1 head.
    genotype = KNOWN_GENOTYPES["DARTS_V2"]
    penalty = LatencyPenalty(hand_table(plan, lambda *a: 1.0), plan)
    assert penalty.genotype_latency(genotype) == pytest.approx(0.5 * 2 + 3 * (0.5 * 3 + 8))
    final = final_plan("cifar10", C=4, layers=5)
    entries = {k: 1.0 for k in final.required_keys()} | penalty.table.entries
    both = LatencyTable(entries, networks=[plan.description, final.description])
    assert LatencyPenalty(both, plan).predict_final(genotype, "cifar10", 4, 5) == pytest.approx(2 + 11 * 5)
    with pytest.raises(UsageError, match="no entry stem:cifar:3x32x32>12"):
        penalty.predict_final(genotype, "cifar10", 4, 5)


def test_final_plan_is_genotype_agnostic_and_knows_imagenet():
    plan = final_plan("cifar10", C=4, layers=3)
    assert plan.variant == "final" and plan.description["C"] == 4
    v1 = set(plan.genotype_keys(KNOWN_GENOTYPES["DARTS_V1"]))
    assert v1 <= set(plan.required_keys())
    imagenet = final_plan("imagenet", C=8, layers=3)
    assert imagenet.stem == "stem:imagenet:3x224x224>8"
    assert imagenet.cells[0].pre0.startswith("pre:FactorizedReduce:8>8:56x56")
    assert imagenet.head == "head:C128:7x7>1000"


def test_search_ops_are_built_as_the_supernet_builds_them(plan):
    pool = plan.probes[op_key("max_pool_3x3", 4, 8, 8, 1, "search")].build()
    assert isinstance(pool[1], torch.nn.BatchNorm2d) and not pool[1].affine
    skip = plan.probes[op_key("skip_connect", 8, 8, 8, 2, "search")].build()
    assert type(skip).__name__ == "FactorizedReduce" and not skip.bn.affine
    final = final_plan("cifar10", C=4, layers=3)
    sep = final.probes[op_key("sep_conv_3x3", 4, 32, 32, 1, "final")].build()
    assert sep[0][3].affine


def test_measured_table_covers_the_network_and_records_conditions(plan, tmp_path):
    table = measure_table([plan], torch.device("cpu"), batch=2, warmup=1, repeats=3, threads=1)
    assert set(table.entries) == set(plan.required_keys())
    assert all(v > 0 for v in table.entries.values())
    c = table.conditions
    assert (c["batch"], c["threads"], c["dtype"], c["device"]) == (2, 1, "float32", "cpu")
    assert c["torch"] == torch.__version__ and "device_name" in c
    table.save(tmp_path / "t.json")
    again = LatencyTable.load(tmp_path / "t.json")
    assert again.entries == table.entries and again.networks == table.networks
    LatencyPenalty(again, SearchNetwork(C, 10, LAYERS))


@pytest.mark.parametrize("clock", ["wall", "cpu"])
def test_measure_network_reports_a_median(clock):
    from rarts.network import build_network

    model = build_network(KNOWN_GENOTYPES["DARTS_V2"], "cifar10", 4, 3, auxiliary=False)
    out = measure_network(model, 8, torch.device("cpu"), batch=1, warmup=1, repeats=3, clock=clock)
    assert 0 < out["min_ms"] <= out["median_ms"]
    assert (out["conditions"]["repeats"], out["conditions"]["clock"]) == (3, clock)
    with pytest.raises(UsageError, match="unknown clock 'gpu'"):
        measure_network(model, 8, torch.device("cpu"), clock="gpu")


def test_bad_table_files_are_usage_errors(tmp_path):
    path = tmp_path / "t.json"
    path.write_text(json.dumps({"entries": {}}))
    with pytest.raises(UsageError, match="is not a rarts latency table"):
        LatencyTable.load(path)
    path.write_text(json.dumps({"format": "rarts-latency-table", "version": 1, "entries": {"a": -1}}))
    with pytest.raises(UsageError, match="non-negative milliseconds"):
        LatencyTable.load(path)


def test_cli_measure_predict_network(tmp_path, capsys):
    table = str(tmp_path / "t.json")
    tiny = ["--repeats", "2", "--warmup", "0", "--threads", "1", "--clock", "cpu"]
    assert (
        main(["latency", "measure", "--channels", "4", "--layers", "3", "--image-size", "8", "--out", table] + tiny)
        == 0
    )
    assert main(["latency", "predict", "--genotype", "DARTS_V2", "--table", table, "--network", "search"]) == 0
    assert "predicted" in capsys.readouterr().out
    # the search table does not cover the final network: one-line error, exit 2
    assert main(["latency", "predict", "--genotype", "DARTS_V2", "--table", table]) == 2
    assert "has no entry stem:cifar:3x32x32>108" in capsys.readouterr().err
    final = str(tmp_path / "f.json")
    args = ["latency", "measure", "--network", "final", "--final-channels", "4", "--final-layers", "3", "--out", final]
    assert main(args + tiny) == 0
    capsys.readouterr()
    assert main(["latency", "predict", "--genotype", "DARTS_V1", "--table", final, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["network"]["C"] == 4 and out["predicted_ms"] > out["fixed_ms"] > 0
    args = ["latency", "network", "--genotype", "DARTS_V1", "--channels", "4", "--layers", "3", "--table", final]
    assert main(args + tiny + ["--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["predicted_ms"] > 0 and out["measured_over_predicted"] > 0
    assert out["conditions_differing_from_table"] == {}  # measured as the table was
    assert main(args + tiny[:-2] + ["--batch", "2"]) == 0  # another batch and clock than the table's
    warning = capsys.readouterr().out.splitlines()[-1]
    assert warning.startswith("warning: the table was measured under other conditions (batch 1 there, 2 here, ")
    assert "clock cpu there, wall here" in warning


def test_cli_usage_errors(tmp_path, capsys):
    assert main(["latency", "measure", "--channels", "0", "--layers", "3", "--image-size", "8"]) == 2
    assert "--channels must be a positive integer" in capsys.readouterr().err
    assert main(["latency", "predict", "--genotype", "DARTS_V2", "--table", str(tmp_path / "none.json")]) == 2
    assert "file not found" in capsys.readouterr().err
    assert main(["latency", "network", "--genotype", "DARTS_V2", "--dtype", "float16", "--device", "cpu"]) == 2
    assert "float16 is for CUDA" in capsys.readouterr().err


# --- the search wiring: rarts search --latency-table T --latency-weight W --------------------------------------------

TINY_SEARCH = [
    "dataset=cifar10-mini",
    "subset=32",
    "image_size=8",
    "channels=4",
    "layers=2",
    "batch_size=8",
    "epochs=1",
    "arch_lr=0.05",
    "progress=false",
    "tensorboard=false",
    "plots=false",
]


def run_tiny_search(tmp_path, name: str, table: LatencyTable, *extra: str) -> list[dict]:
    table.save(tmp_path / "t.json")
    args = ["search", "--method", "rarts", "--device", "cpu", "--quiet", "--out", str(tmp_path / name)]
    assert main(args + ["--latency-table", str(tmp_path / "t.json"), *extra, *TINY_SEARCH]) == 0
    return [json.loads(line) for line in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]


def test_search_logs_the_latency_and_penalises_alpha(tmp_path):
    plan = search_plan(4, 2, 8)
    table = cost_table(plan)
    penalty = LatencyPenalty(table, plan)
    (row,) = run_tiny_search(tmp_path, "w1", table, "--latency-weight", "20")
    genotype = load_genotype(row["genotype"])
    assert row["latency_genotype_ms"] == pytest.approx(penalty.genotype_latency(genotype))
    assert row["latency_expected_ms"] > penalty.fixed_ms
    assert row["arch_penalty"] > 0  # the method's alpha step took W x expected latency
    summary = json.loads((tmp_path / "w1" / "summary.json").read_text())
    assert summary["final_latency_genotype_ms"] == row["latency_genotype_ms"]


@pytest.mark.slow
def test_search_weight_lowers_the_latency_through_the_command(tmp_path):
    table = cost_table(search_plan(4, 2, 8))
    (w0,) = run_tiny_search(tmp_path, "w0", table)
    (w1,) = run_tiny_search(tmp_path, "w1", table, "--latency-weight", "20")
    assert "arch_penalty" not in w0
    assert w1["latency_expected_ms"] < w0["latency_expected_ms"]
    assert w1["latency_genotype_ms"] < w0["latency_genotype_ms"]


def test_search_refuses_a_table_that_misses_its_network(tmp_path, capsys):
    table = str(tmp_path / "t.json")
    cost_table(search_plan(4, 3, 8)).save(table)  # 3 cells; the run has 2
    args = ["search", "--method", "darts1", "--device", "cpu", "--quiet", "--out", str(tmp_path / "run")]
    assert main(args + ["--latency-table", table, "--latency-weight", "1", *TINY_SEARCH]) == 2
    assert "has no entry" in capsys.readouterr().err
    assert main(args + ["--latency-weight", "1", *TINY_SEARCH]) == 2
    assert "latency_weight needs latency_table" in capsys.readouterr().err
    assert main(args + ["--latency-table", table, "--latency-weight", "-1", *TINY_SEARCH]) == 2
    assert "latency_weight: must be a finite number >= 0, got -1.0" in capsys.readouterr().err


def test_cli_measure_takes_the_class_count_of_a_folder_dataset(tmp_path, capsys):
    table = tmp_path / "t.json"
    tiny = ["--repeats", "1", "--warmup", "0", "--threads", "1", "--clock", "cpu"]
    size = ["--channels", "4", "--layers", "3", "--image-size", "8"]
    argv = ["latency", "measure", *size, "--dataset", "folder", "--classes", "3", "--out", str(table), *tiny]
    assert main(argv) == 0
    capsys.readouterr()
    keys = json.loads(table.read_text())["entries"]
    assert any(key.startswith("head:") and key.endswith(">3") for key in keys)
    assert main(["latency", "measure", "--network", "final", *size, "--out", str(tmp_path / "f.json")]) == 2
    assert "--final-channels and --final-layers" in capsys.readouterr().err
