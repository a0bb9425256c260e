"""Training from scratch: the recipe's pieces, the run folder, exact resume after an epoch and of a streamed set,
evaluation and one-line errors. What every resumable run does (kill and resume, failures, the run folder's rules)
is tested for search and training alike in test_runs.py."""

from __future__ import annotations

import json
import math

import pytest
import torch

from rarts.cli import main
from rarts.config import load_preset
from rarts.errors import UsageError
from rarts.genotype import KNOWN_GENOTYPES
from rarts.network import count_params
from rarts.train import (
    TrainConfig,
    drop_path_at,
    evaluate,
    load_checkpoint,
    make_config,
    make_criterion,
    make_data,
    make_model,
    make_optimizer,
    make_scheduler,
    model_from_checkpoint,
    preset_for,
    train,
    train_one_epoch,
    training_loss,
)
from tiny_runs import TINY_TRAIN, Killed, kill_after, same_training, synthetic_set


@pytest.fixture(scope="module")
def sets():
    return synthetic_set(24, 0), synthetic_set(16, 1, "test")


def tiny_config(**overrides) -> TrainConfig:
    return make_config("quick", {**TINY_TRAIN, **overrides}, {"genotype": "DARTS_V2"})


def silent(_: str) -> None:
    pass


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, sets):
    run = tmp_path_factory.mktemp("run")
    cfg = tiny_config()
    result = train(cfg, run, sets=sets, log=silent)
    return run, cfg, result


# --- presets and settings -----------------------------------------------------------------------------------------


def test_paper_presets_hold_the_recipes():
    cifar = TrainConfig(genotype="DARTS_V2", **load_preset("train", "paper"))
    assert (cifar.dataset, cifar.epochs, cifar.batch_size, cifar.lr, cifar.lr_min) == ("cifar10", 600, 96, 0.025, 0.0)
    assert (cifar.lr_schedule, cifar.momentum, cifar.weight_decay, cifar.label_smoothing) == ("cosine", 0.9, 3e-4, 0.0)
    assert (cifar.auxiliary, cifar.auxiliary_weight, cifar.drop_path_prob, cifar.cutout) == (True, 0.4, 0.2, 16)
    assert (cifar.grad_clip, cifar.channels, cifar.layers) == (5.0, 36, 20)
    net = TrainConfig(genotype="DARTS_V2", **preset_for("paper", "imagenet"))
    assert (net.dataset, net.epochs, net.batch_size, net.lr, net.lr_schedule, net.lr_gamma) == (
        "imagenet",
        250,
        128,
        0.1,
        "step",
        0.97,
    )
    assert (net.momentum, net.weight_decay, net.label_smoothing, net.auxiliary_weight) == (0.9, 3e-5, 0.1, 0.4)
    assert (net.channels, net.layers, net.grad_clip, net.checkpoint_every) == (48, 14, 5.0, 1000)
    assert cifar.checkpoint_every == 0  # a CIFAR epoch is 520 steps: its end is checkpoint enough
    assert preset_for("paper", "folder") == preset_for("paper", "imagenet")
    assert preset_for("paper", "cifar100")["dataset"] == "cifar10"  # the --dataset flag then wins
    assert make_config("paper", {}, {"genotype": "DARTS_V2", "dataset": "imagenet"}).epochs == 250
    assert make_config("quick", {}, {"genotype": "DARTS_V2"}).dataset == "cifar10-mini"


@pytest.mark.parametrize(
    "override",
    [
        {"epochs": "0"},
        {"lr": "-0.1"},
        {"lr_schedule": "linear"},
        {"drop_path_prob": "1.5"},
        {"label_smoothing": "1"},
        {"amp": "fp8"},
        {"channels_last": "maybe"},
        {"layers": "2"},
        {"dataset": "mnist"},
        {"weight_decay": "nan"},
        {"no_such_key": "1"},
    ],
)
def test_bad_settings_are_usage_errors(override):
    with pytest.raises(UsageError):
        make_config("quick", override, {"genotype": "DARTS_V2"})


def test_missing_genotype_is_a_usage_error():
    with pytest.raises(UsageError, match="genotype"):
        make_config("quick", {}, {})


# --- the recipe's pieces ------------------------------------------------------------------------------------------


def lrs_per_epoch(cfg: TrainConfig) -> list[float]:
    model = torch.nn.Linear(2, 2)
    optimizer = make_optimizer(cfg, model)
    scheduler = make_scheduler(cfg, optimizer)
    lrs = []
    for _ in range(cfg.epochs):
        lrs.append(optimizer.param_groups[0]["lr"])  # the rate the epoch trains at
        optimizer.step()
        scheduler.step()  # after the epoch, never before the first
    return lrs


def test_cosine_schedule_first_and_last_epochs():
    cfg = TrainConfig(genotype="DARTS_V2", **load_preset("train", "paper"))
    lrs = lrs_per_epoch(cfg)
    assert lrs[0] == 0.025
    assert lrs[-1] == pytest.approx(0.025 * 0.5 * (1 + math.cos(math.pi * 599 / 600)), rel=1e-12)
    assert lrs[300] == pytest.approx(0.0125, rel=1e-12)
    assert all(a > b for a, b in zip(lrs, lrs[1:]))
    assert lrs[-1] > 0


def test_cosine_schedule_with_a_floor():
    cfg = tiny_config(epochs=4, lr=0.1, lr_min=0.02)
    lrs = lrs_per_epoch(cfg)
    expected = [0.02 + 0.08 * 0.5 * (1 + math.cos(math.pi * e / 4)) for e in range(4)]
    assert lrs == pytest.approx(expected, rel=1e-12)


def test_step_schedule_decays_by_gamma_per_epoch():
    cfg = make_config("paper", {"epochs": 5}, {"genotype": "DARTS_V2", "dataset": "imagenet"})
    assert lrs_per_epoch(cfg) == pytest.approx([0.1 * 0.97**e for e in range(5)], rel=1e-12)


def test_drop_path_ramps_linearly_from_zero():
    cfg = TrainConfig(genotype="DARTS_V2", **load_preset("train", "paper"))
    assert drop_path_at(cfg, 0) == 0.0
    assert drop_path_at(cfg, 300) == pytest.approx(0.1)
    assert drop_path_at(cfg, 599) == pytest.approx(0.2 * 599 / 600)
    assert [drop_path_at(tiny_config(epochs=4, drop_path_prob=0.2), e) for e in range(4)] == pytest.approx(
        [0.0, 0.05, 0.1, 0.15]
    )


def test_label_smoothing_matches_its_closed_form():
    torch.manual_seed(0)
    logits = torch.randn(6, 10, dtype=torch.float64)
    target = torch.randint(0, 10, (6,))
    eps = 0.1
    criterion = make_criterion(tiny_config(label_smoothing=eps))
    logp = logits.log_softmax(dim=1)
    expected = ((1 - eps) * -logp.gather(1, target[:, None]).squeeze(1) + eps * -logp.mean(dim=1)).mean()
    assert criterion(logits, target).item() == pytest.approx(expected.item(), rel=1e-12)
    plain = make_criterion(tiny_config())
    assert plain(logits, target).item() == pytest.approx(torch.nn.functional.cross_entropy(logits, target).item())


def tiny_model(auxiliary: bool = True) -> torch.nn.Module:
    torch.manual_seed(0)
    return make_model(KNOWN_GENOTYPES["DARTS_V2"], "cifar", 4, 3, auxiliary, 10, torch.device("cpu"))


def test_auxiliary_loss_in_training_only():
    model = tiny_model()
    x, y = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 3])
    criterion = torch.nn.CrossEntropyLoss()
    model.train()
    logits, logits_aux = model(x)
    assert logits_aux is not None
    loss = training_loss(criterion, logits, logits_aux, y, 0.4)
    assert loss.item() == pytest.approx((criterion(logits, y) + 0.4 * criterion(logits_aux, y)).item(), rel=1e-6)
    assert training_loss(criterion, logits, logits_aux, y, 0.0).item() == pytest.approx(criterion(logits, y).item())
    model.eval()
    logits, logits_aux = model(x)
    assert logits_aux is None
    loader = [(x, y)]
    stats = evaluate(model, loader)
    assert stats["test_loss"] == pytest.approx(torch.nn.functional.cross_entropy(logits, y).item(), rel=1e-6)


@pytest.mark.parametrize("weight", [0.0, 0.4])
def test_auxiliary_head_trains_only_with_a_weight(weight):
    model = tiny_model()
    cfg = tiny_config(auxiliary_weight=weight)
    before = {k: v.clone() for k, v in model.state_dict().items() if k.startswith("auxiliary_head.classifier")}
    g = torch.Generator().manual_seed(0)
    loader = [(torch.randn(4, 3, 32, 32, generator=g), torch.tensor([0, 1, 2, 3]))]
    train_one_epoch(model, loader, make_optimizer(cfg, model), make_criterion(cfg), cfg, None)
    after = model.state_dict()
    changed = any(not torch.equal(before[k], after[k]) for k in before)
    assert changed == (weight > 0)


# --- the metrics log --------------------------------------------------------------------------------------------


def test_metrics_logger_writes_jsonl_and_csv_and_trims_on_resume(tmp_path):
    from rarts.metrics_log import MetricsLogger

    with MetricsLogger(tmp_path, tensorboard=False) as log:
        log.log({"epoch": 0, "loss": 2.5, "acc": 10.0})
        log.log({"epoch": 1, "loss": float("nan"), "acc": 20.0, "extra": 1})
        log.log({"epoch": 2, "loss": 1.5})
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert rows[1] == {"epoch": 1, "loss": None, "acc": 20.0, "extra": 1}  # strict JSON: NaN becomes null
    assert (tmp_path / "metrics.csv").read_text().splitlines() == [
        "epoch,loss,acc",
        "0,2.5,10.0",
        "1,nan,20.0",
        "2,1.5,",
    ]
    with MetricsLogger(tmp_path, resume_step=2, tensorboard=False) as log:  # epoch 2 is about to be repeated
        log.log({"epoch": 2, "loss": 1.25, "acc": 30.0})
    assert [json.loads(line)["loss"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()] == [
        2.5,
        None,
        1.25,
    ]
    assert (tmp_path / "metrics.csv").read_text().splitlines()[1:] == ["0,2.5,10.0", "1,,20.0", "2,1.25,30.0"]
    MetricsLogger(tmp_path, tensorboard=False).close()  # a fresh run starts empty files
    assert (tmp_path / "metrics.jsonl").read_text() == "" and (tmp_path / "metrics.csv").read_text() == ""


# --- a run --------------------------------------------------------------------------------------------------------


def test_run_folder_holds_the_artefacts(finished_run):
    run, cfg, result = finished_run
    for name in ("config.json", "environment.json", "genotype.json", "metrics.jsonl", "metrics.csv", "result.json"):
        assert (run / name).is_file(), name
    saved = json.loads((run / "result.json").read_text())
    assert saved == json.loads(json.dumps(result))
    assert 0 <= result["test_top1_error"] <= 100 and 0 <= result["test_top5_error"] <= result["test_top1_error"]
    net = make_model(KNOWN_GENOTYPES["DARTS_V2"], "cifar", 4, 3, True, 10, torch.device("cpu"))
    assert result["params"] == count_params(net) < result["params_with_auxiliary"]
    assert result["mult_adds"] > 0 and result["train_time_s"] > 0 and result["device"]
    assert json.loads((run / "config.json").read_text())["channels"] == 4
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [0, 1, 2]
    assert [r["lr"] for r in rows] == pytest.approx(lrs_per_epoch(cfg), rel=1e-12)
    assert [r["drop_path_prob"] for r in rows] == pytest.approx([drop_path_at(cfg, e) for e in range(3)])
    for key in ("train_loss", "train_top1", "test_top1", "test_top5", "epoch_time_s"):
        assert key in rows[0]
    assert rows[-1]["test_top1"] == pytest.approx(100 - result["test_top1_error"])
    csv_lines = (run / "metrics.csv").read_text().splitlines()
    assert csv_lines[0].startswith("epoch,lr,drop_path_prob") and len(csv_lines) == 4


def test_cuda_generators_come_back_even_when_another_number_of_gpus_is_visible(monkeypatch):
    """All GPUs' states when as many are visible as when saved, else the saved current GPU's into the current one."""
    from rarts.runs import capture_rng, restore_rng

    calls = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: [torch.tensor([1]), torch.tensor([2])])
    monkeypatch.setattr(torch.cuda, "get_rng_state", lambda: torch.tensor([2]))
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", lambda states: calls.append(("all", len(states))))
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda state: calls.append(("current", state.tolist())))
    cpu = torch.device("cpu")
    state = capture_rng(cpu)
    restore_rng(state, cpu)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)  # e.g. one GPU per process at the resume
    restore_rng(state, cpu)
    restore_rng({**state, "cuda_device": None}, cpu)  # a checkpoint without its own GPU's state: nothing to restore
    assert calls == [("all", 2), ("current", [2])]


def test_checkpoint_is_plain_data(finished_run):
    run, cfg, _ = finished_run
    ckpt = torch.load(run / "checkpoint.pt", weights_only=True)
    assert ckpt["epoch"] == 3
    for key in ("model", "optimizer", "scheduler", "rng", "loader", "genotype", "config", "network"):
        assert key in ckpt
    assert ckpt["genotype"] == KNOWN_GENOTYPES["DARTS_V2"].to_dict()
    assert ckpt["config"]["channels"] == 4 and ckpt["network"]["channels"] == 4


def test_resume_ends_with_the_same_weights(tmp_path, sets):
    cfg = tiny_config(drop_path_prob=0.3)
    straight = tmp_path / "straight"
    train(cfg, straight, sets=sets, log=silent)
    parted = tmp_path / "parted"
    assert train(cfg, parted, stop_after=1, sets=sets, log=silent) is None
    assert not (parted / "result.json").exists()
    assert load_checkpoint(parted / "checkpoint.pt")["epoch"] == 1
    train(cfg, parted, resume=True, stop_after=2, sets=sets, log=silent)
    train(cfg, parted, resume=True, sets=sets, log=silent)
    same_training(straight, parted)
    assert len((parted / "metrics.jsonl").read_text().splitlines()) == 3


def test_a_streamed_run_killed_within_an_epoch_resumes_exactly(tmp_path, image_root):
    """An image folder streams through StreamLoader (ImageNet network, random crops and colour jitter): a run
    killed after step 1 of epoch 2 resumes at step 2 with the images it would have seen."""
    settings = {**TINY_TRAIN, "batch_size": 2, "eval_batch_size": 4, "epochs": 2, "workers": 0, "checkpoint_every": 1}
    cfg = make_config("quick", {**settings, "dataset": "folder", "data_dir": str(image_root)}, {"genotype": "DARTS_V2"})
    whole = train(cfg, tmp_path / "whole", log=silent)
    with pytest.raises(Killed):
        train(cfg, tmp_path / "killed", log=silent, on_step=kill_after(4))  # 3 steps an epoch
    ckpt = load_checkpoint(tmp_path / "killed" / "checkpoint.pt")
    assert (ckpt["epoch"], ckpt["step"]) == (1, 1) and ckpt["loader"]["position"] == 1
    resumed = train(cfg, tmp_path / "killed", resume=True, log=silent)
    assert resumed["test_images"] == whole["test_images"] == 4
    same_training(tmp_path / "whole", tmp_path / "killed")


def test_a_streamed_set_smaller_than_a_batch_is_refused(tmp_path, image_root):
    overrides = {**TINY_TRAIN, "batch_size": 4, "dataset": "folder", "data_dir": str(image_root)}
    cfg = make_config("quick", overrides, {"genotype": "DARTS_V2"})
    with pytest.raises(UsageError, match="folder has 6 training images, fewer than batch_size=4 x 2 processes"):
        make_data(cfg, torch.device("cpu"), False, world_size=2)


def test_model_from_checkpoint_matches_and_rejects_other_weights(finished_run, tmp_path):
    run, _, _ = finished_run
    ckpt = load_checkpoint(run / "checkpoint.pt")
    model = model_from_checkpoint(ckpt, torch.device("cpu"))
    for key, value in model.state_dict().items():
        assert torch.equal(value, ckpt["model"][key])
    ckpt["genotype"] = KNOWN_GENOTYPES["DARTS_V1"].to_dict()
    with pytest.raises(UsageError, match="another architecture"):
        model_from_checkpoint(ckpt, torch.device("cpu"))
    bad = tmp_path / "other.pt"
    torch.save(ckpt, bad)
    assert main(["evaluate", "--checkpoint", str(bad)]) == 2


# --- the command line ---------------------------------------------------------------------------------------------


def one_line_error(capsys, argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("rarts: error: ") and err.count("\n") == 1, err
    return err


def test_unknown_genotype_is_one_line(capsys, tmp_path):
    err = one_line_error(capsys, ["train", "--genotype", "NO_SUCH_CELL", "--out", str(tmp_path / "r")])
    assert "NO_SUCH_CELL" in err


def test_missing_data_is_one_line(capsys, tmp_path):
    err = one_line_error(
        capsys, ["train", "--genotype", "DARTS_V2", "--dataset", "cifar10", "--data-dir", str(tmp_path / "nowhere")]
    )
    assert "nowhere" in err
    one_line_error(capsys, ["train", "--genotype", "DARTS_V2", "--dataset", "cifar10"])


def test_bad_checkpoints_are_one_line(capsys, tmp_path):
    one_line_error(capsys, ["evaluate", "--checkpoint", str(tmp_path / "missing.pt")])
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    one_line_error(capsys, ["evaluate", "--checkpoint", str(junk)])
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(2)}, foreign)
    one_line_error(capsys, ["evaluate", "--checkpoint", str(foreign)])
    one_line_error(capsys, ["train", "--resume", "--out", str(tmp_path / "none")])


def test_evaluate_command_rebuilds_the_network_and_tests_it(finished_run, capsys):
    run, _, _ = finished_run
    assert main(["evaluate", "--checkpoint", str(run), "--device", "cpu", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["dataset"] == "cifar10-mini" and r["test_images"] == 1000  # the checkpoint names its dataset
    assert 0 <= r["test_top5_error"] <= r["test_top1_error"] <= 100
    assert r["params"] == json.loads((run / "result.json").read_text())["params"]
    assert r["precision"] == "fp32" and r["epoch"] == 3


@pytest.mark.slow
def test_train_then_evaluate_commands_on_the_bundled_subset(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["train", "--genotype", "DARTS_V2", "--preset", "quick", "--out", str(out), "--device", "cpu"]
    argv += ["epochs=2", "channels=4", "layers=3", "progress=false", "tensorboard=false"]
    assert main(argv) == 0
    result = json.loads((out / "result.json").read_text())
    assert result["dataset"] == "cifar10-mini" and result["test_images"] == 1000 and result["epochs"] == 2
    assert "test error" in capsys.readouterr().out
    assert main(["evaluate", "--checkpoint", str(out / "checkpoint.pt"), "--device", "cpu", "--json"]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    assert evaluated["test_top1_error"] == pytest.approx(result["test_top1_error"])
    assert evaluated["test_top5_error"] == pytest.approx(result["test_top5_error"])
    assert main(argv + ["--resume"]) == 0  # a finished run resumes to its result without training again
    assert json.loads((out / "result.json").read_text())["test_top1_error"] == result["test_top1_error"]
    assert main(argv[:-5] + ["--resume"]) == 2  # the preset's epochs are not this run's 2
    assert "differs from the run's 2" in capsys.readouterr().err
    assert main(["train", "--out", str(out), "--resume"]) == 0  # without --preset: the checkpoint's settings


# --- CUDA (skipped without a GPU) ---------------------------------------------------------------------------------

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@cuda
def test_cuda_auto_means_bf16_and_channels_last(tmp_path, sets):
    cfg = tiny_config(device="cuda", amp="auto", channels_last="auto", epochs=2)
    result = train(cfg, tmp_path, sets=sets, log=silent)
    assert result["device_type"] == "cuda" and result["channels_last"] is True
    assert result["precision"] == ("bf16" if torch.cuda.is_bf16_supported() else "fp16")
    ckpt = load_checkpoint(tmp_path / "checkpoint.pt")
    assert all(v.device.type == "cpu" for v in ckpt["model"].values())
    on_gpu = model_from_checkpoint(ckpt, torch.device("cuda")).eval()
    on_cpu = model_from_checkpoint(ckpt, torch.device("cpu")).eval()
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(on_gpu(x.cuda())[0].cpu(), on_cpu(x)[0], rtol=1e-3, atol=1e-3)


@cuda
def test_cuda_fp16_keeps_its_grad_scaler_across_a_resume(tmp_path, sets):
    cfg = tiny_config(device="cuda", amp="fp16", channels_last="on", epochs=2)
    assert train(cfg, tmp_path, stop_after=1, sets=sets, log=silent) is None
    assert load_checkpoint(tmp_path / "checkpoint.pt")["scaler"]["scale"] > 0
    result = train(cfg, tmp_path, resume=True, sets=sets, log=silent)
    assert result["precision"] == "fp16" and math.isfinite(result["test_loss"])


# --- resume records and the run's files -------------------------------------------------------------------------------


def test_resume_takes_the_cells_from_the_checkpoint_after_the_genotype_moved(tmp_path, sets):
    cells = tmp_path / "cells.json"
    cells.write_text(json.dumps(KNOWN_GENOTYPES["DARTS_V1"].to_dict()))
    cfg = make_config("quick", {**TINY_TRAIN, "epochs": 2}, {"genotype": str(cells)})
    run = tmp_path / "run"
    train(cfg, run, stop_after=1, sets=sets, log=silent)
    cells.rename(tmp_path / "moved.json")
    result = train(cfg, run, resume=True, sets=sets, log=silent)
    assert result["genotype"] == KNOWN_GENOTYPES["DARTS_V1"].to_dict()
    assert json.loads((run / "config.json").read_text())["genotype"] == str(cells)
    env = json.loads((run / "environment.json").read_text())
    assert len(env["resumes"]) == 1 and env["resumes"][0]["resumed_at_epoch"] == 1
    assert env["resumed_at_epoch"] == 0  # the first session's record stays on top


def test_epochs_flag_reaches_the_settings(capsys, tmp_path):
    err = one_line_error(capsys, ["train", "--genotype", "DARTS_V2", "--epochs", "0", "--out", str(tmp_path / "r")])
    assert "epochs" in err
    assert not (tmp_path / "r").exists()
    assert "--threads 0" in one_line_error(capsys, ["evaluate", "--checkpoint", str(tmp_path), "--threads", "0"])


def test_no_auxiliary_head_is_built_when_its_loss_has_no_weight(tmp_path, sets):
    train(tiny_config(epochs=1, auxiliary_weight=0.0), tmp_path, sets=sets, log=silent)
    ckpt = load_checkpoint(tmp_path / "checkpoint.pt")
    assert ckpt["network"]["auxiliary"] is False
    assert not any(key.startswith("auxiliary_head") for key in ckpt["model"])
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["params_with_auxiliary"] == result["params"]


def test_export_never_overwrites_the_checkpoint_or_a_run_file(finished_run, tmp_path, capsys):
    run, _, _ = finished_run
    for out in (run / "checkpoint.pt", run / "result"):  # the model file, or its <out>.json, lands on a run file
        err = one_line_error(capsys, ["export", "--checkpoint", str(run), "--format", "torchscript", "--out", str(out)])
        assert "--out" in err
    model = tmp_path / "model.pt"
    argv = ["export", "--checkpoint", str(run), "--format", "torchscript", "--out", str(model)]
    assert main(argv) == 0 and main(argv) == 0  # an earlier export is replaced
    assert json.loads((tmp_path / "model.pt.json").read_text())["check_max_abs_diff"] == 0.0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt", "model.pt.json"]  # no partial file left


def test_a_finished_run_whose_result_was_overwritten_gets_it_back(tmp_path, sets):
    cfg = tiny_config(epochs=1)
    first = train(cfg, tmp_path, sets=sets, log=silent)
    (tmp_path / "result.json").write_text('{"format": "torchscript"}')
    again = train(cfg, tmp_path, resume=True, sets=sets, log=silent)
    assert again["test_top1_error"] == first["test_top1_error"] and again["params"] == first["params"]


def test_a_search_checkpoint_given_to_evaluate_says_to_train_first(tmp_path, capsys):
    torch.save({"format": "rarts-search-checkpoint", "version": 1}, tmp_path / "checkpoint.pt")
    err = one_line_error(capsys, ["evaluate", "--checkpoint", str(tmp_path)])
    assert "is a search checkpoint, not a training one: train the cells it found first" in err
    assert f"(rarts train --genotype {tmp_path})" in err
