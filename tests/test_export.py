"""Export: the TorchScript (and, when installed, ONNX) model gives the eager network's logits."""

from __future__ import annotations

import importlib.util
import json
import warnings

import pytest
import torch

from rarts.cli import main
from rarts.data.imageset import ImageSet
from rarts.errors import UsageError
from rarts.export import export_checkpoint, inference_model
from rarts.train import load_checkpoint, make_config, model_from_checkpoint, train

HAS_ONNX = importlib.util.find_spec("onnx") is not None
HAS_ONNXRUNTIME = importlib.util.find_spec("onnxruntime") is not None


def synthetic_set(n: int, seed: int) -> ImageSet:
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g)
    return ImageSet(
        "synthetic", "train", images, torch.arange(n) % 10, tuple("abcdefghij"), (0.5,) * 3, (0.25,) * 3, ""
    )


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A trained tiny network (one epoch, so BatchNorm running statistics are not the initial ones)."""
    run = tmp_path_factory.mktemp("run")
    overrides = {"channels": 4, "layers": 3, "batch_size": 8, "epochs": 1, "progress": False}
    cfg = make_config("quick", {**overrides, "tensorboard": False, "device": "cpu"}, {"genotype": "DARTS_V2"})
    train(cfg, run, sets=(synthetic_set(16, 0), synthetic_set(8, 1)), log=lambda s: None)
    return run / "checkpoint.pt"


def eager_logits(checkpoint, x: torch.Tensor) -> torch.Tensor:
    net = model_from_checkpoint(load_checkpoint(checkpoint), torch.device("cpu")).eval()
    with torch.no_grad():
        return net(x)[0]


def test_inference_model_drops_the_auxiliary_head(checkpoint):
    net = model_from_checkpoint(load_checkpoint(checkpoint), torch.device("cpu"))
    net.drop_path_prob = 0.2
    model = inference_model(net)
    assert not model.training and model.net.drop_path_prob == 0.0
    assert not any(name.startswith("net.auxiliary_head") for name, _ in model.named_parameters())
    assert net.auxiliary_head is not None  # the original is left alone


def test_torchscript_export_equals_the_eager_network(checkpoint, tmp_path):
    out = tmp_path / "model.pt"
    info = export_checkpoint(checkpoint, "torchscript", out)
    assert info["check_max_abs_diff"] is not None and info["check_max_abs_diff"] < 1e-5
    meta = json.loads((tmp_path / "model.pt.json").read_text())
    assert meta["input"]["shape"] == ["N", 3, 32, 32] and meta["output"]["shape"] == ["N", 10]
    assert meta["genotype"] == load_checkpoint(checkpoint)["genotype"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit is deprecated, TorchScript files are not
        loaded = torch.jit.load(str(out))
    x = torch.randn(7, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        exported = loaded(x)
    assert exported.shape == (7, 10)
    torch.testing.assert_close(exported, eager_logits(checkpoint, x), rtol=1e-5, atol=1e-6)
    assert not any("auxiliary" in name for name, _ in loaded.named_parameters())


@pytest.mark.skipif(not HAS_ONNX, reason="the onnx package (extra 'onnx') is not installed")
def test_onnx_export_equals_the_eager_network(checkpoint, tmp_path):
    out = tmp_path / "model.onnx"
    info = export_checkpoint(checkpoint, "onnx", out)
    assert out.is_file() and out.stat().st_size > 0
    if not HAS_ONNXRUNTIME:
        pytest.skip("onnxruntime is not installed: the ONNX file was written but not run")
    assert info["check_max_abs_diff"] < 1e-4


@pytest.mark.skipif(HAS_ONNX, reason="checks the message shown when onnx is missing")
def test_onnx_without_the_extra_is_a_usage_error(checkpoint, tmp_path):
    with pytest.raises(UsageError, match="onnx"):
        export_checkpoint(checkpoint, "onnx", tmp_path / "model.onnx")


def test_export_command(checkpoint, tmp_path, capsys):
    out = tmp_path / "cli.pt"
    assert main(["export", "--checkpoint", str(checkpoint.parent), "--format", "torchscript", "--out", str(out)]) == 0
    assert out.is_file() and "max |exported - eager|" in capsys.readouterr().out


def test_export_bad_inputs_are_one_line(checkpoint, tmp_path, capsys):
    for argv in (
        ["export", "--checkpoint", str(tmp_path / "missing.pt"), "--format", "torchscript", "--out", "m.pt"],
        ["export", "--checkpoint", str(checkpoint), "--format", "torchscript", "--out", str(tmp_path)],
    ):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("rarts: error:") and err.count("\n") == 1, err
    with pytest.raises(SystemExit) as exit_info:  # argparse rejects the format before anything runs
        main(["export", "--checkpoint", str(checkpoint), "--format", "tflite", "--out", str(tmp_path / "m")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "tflite" in err and err.count("\n") == 1, err
    with pytest.raises(UsageError, match="format"):
        export_checkpoint(checkpoint, "tflite", tmp_path / "m")
