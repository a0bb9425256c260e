"""What a user is told: a garbage checkpoint, a broken JSON file, a search run given to evaluate, a quiet training
run, and the default number of image decoding processes."""

from __future__ import annotations

import io
import os
import pickle
import warnings

import pytest
import torch

from fake_runs import make_search_run
from rarts.cli import main
from rarts.errors import UsageError
from rarts.runs import load_checkpoint
from rarts.train import make_config, train
from rarts.utils import read_json
from tiny_runs import TINY_TRAIN, synthetic_set


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("true",))


def _malicious_checkpoint() -> bytes:
    buf = io.BytesIO()
    torch.save({"format": "rarts-train-checkpoint", "x": _RunsCode()}, buf)
    return buf.getvalue()


@pytest.mark.parametrize(
    "content",
    [os.urandom(4096), b"", b"not a checkpoint\n", pickle.dumps([1, 2], protocol=2), _malicious_checkpoint()],
    ids=["random", "empty", "text", "plain-pickle", "code"],
)
def test_a_garbage_checkpoint_is_named_without_torchs_advice(tmp_path, capsys, content):
    path = tmp_path / "checkpoint.pt"
    path.write_bytes(content)
    with pytest.raises(UsageError, match="is not a rarts checkpoint, or it is damaged") as e:
        load_checkpoint(path, "train")
    assert "weights_only" not in str(e.value)
    assert main(["evaluate", "--checkpoint", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a rarts checkpoint" in err and "weights_only" not in err


def test_a_json_error_keeps_its_line_and_column(tmp_path, capsys):
    path = tmp_path / "bad.json"
    path.write_text('{"a": "b', encoding="utf-8")
    with pytest.raises(UsageError, match="Unterminated string starting at: line 1 column 7$"):
        read_json(path)
    path.write_text('{\n  "normal": [1,,]}', encoding="utf-8")
    assert main(["genotype", "show", str(path)]) == 2
    assert "Expecting value: line 2 column 16" in capsys.readouterr().err


@pytest.mark.parametrize("command", [["evaluate"], ["export", "--format", "onnx", "--out", "model.onnx"]])
def test_a_search_run_folder_given_as_a_checkpoint_says_what_to_pass(tmp_path, capsys, command):
    run = make_search_run(tmp_path / "search", "rarts", 0)
    assert not (run / "checkpoint.pt").exists()
    assert main([command[0], "--checkpoint", str(run), *command[1:]]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{run} is a search run folder" in err and f"--genotype {run}" in err
    assert "not found" not in err


def _bars(monkeypatch) -> list:
    """The `disable` of every tqdm bar made from now on."""
    import tqdm

    made, real = [], tqdm.tqdm

    def recording(*args, **kwargs):
        made.append(kwargs.get("disable"))
        return real(*args, **kwargs)

    monkeypatch.setattr(tqdm, "tqdm", recording)
    return made


@pytest.mark.parametrize("quiet", [False, True])
def test_a_quiet_training_run_shows_no_bar_and_no_lines(tmp_path, monkeypatch, quiet):
    cfg = make_config("quick", {**TINY_TRAIN, "epochs": 1, "progress": True}, {"genotype": "DARTS_V2"})
    bars, lines = _bars(monkeypatch), []
    sets = synthetic_set(16, 0), synthetic_set(8, 1, "test")
    result = train(cfg, tmp_path / "run", sets=sets, log=lines.append, quiet=quiet)
    assert result is not None and (tmp_path / "run" / "result.json").is_file()
    assert bars and all(disable is True for disable in bars) == quiet
    assert (lines == []) == quiet
    assert read_json(tmp_path / "run" / "config.json")["progress"] is True  # the setting stays as it was


def test_train_passes_quiet_on(tmp_path, monkeypatch):
    import rarts.train

    seen = {}
    monkeypatch.setattr(rarts.train, "train", lambda cfg, out, **kwargs: seen.update(kwargs))
    assert main(["train", "--genotype", "DARTS_V2", "--preset", "quick", "--out", str(tmp_path / "q"), "--quiet"]) == 0
    assert seen["quiet"] is True


def test_image_folders_default_to_the_cores_available(image_root, monkeypatch):
    from rarts.data import StreamLoader, load_dataset
    from rarts.data.folder import available_workers
    from rarts.train.config import TrainConfig

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert TrainConfig().workers is None and available_workers() == cores
    train_set = load_dataset("folder", str(image_root), "train")
    loader = StreamLoader(train_set, 3, seed=0)
    assert loader.workers == cores
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert len(list(loader)) == 2
    assert not [w for w in caught if "worker" in str(w.message)]
    monkeypatch.setenv("LOCAL_WORLD_SIZE", str(2 * cores))  # torchrun's processes on the machine share the cores
    assert available_workers() == 1
