"""The shared helpers: atomic files, typed configs, the CLI's error contract."""

import dataclasses
import json
import os
from typing import Optional

import pytest
import torch

from rarts.cli import main
from rarts.config import build_config, parse_overrides
from rarts.errors import UsageError
from rarts.utils import atomic_torch_save, atomic_write_text, read_json, write_json


def test_atomic_write_leaves_no_temporary_and_ordinary_permissions(tmp_path):
    path = tmp_path / "sub" / "a.json"
    write_json(path, {"x": 1})
    assert read_json(path) == {"x": 1}
    assert [p.name for p in path.parent.iterdir()] == ["a.json"]
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(path).st_mode & 0o777 == 0o666 & ~umask


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
    path = tmp_path / "ckpt.pt"
    atomic_torch_save({"step": 1}, path)

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        atomic_torch_save({"step": 2, "bad": Unpicklable()}, path)
    assert torch.load(path, weights_only=True) == {"step": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.pt"]


def test_read_json_errors_name_the_file(tmp_path):
    with pytest.raises(UsageError, match="not found"):
        read_json(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    atomic_write_text(bad, "{oops")
    with pytest.raises(UsageError, match="bad.json"):
        read_json(bad)


@dataclasses.dataclass
class _Cfg:
    epochs: int = 3
    lr: float = 0.1
    name: str = "x"
    flag: bool = False
    betas: tuple[float, ...] = (0.5, 0.999)
    xi: Optional[float] = None

    def validate(self):
        if self.lr <= 0:
            raise UsageError(f"lr must be positive, got {self.lr}")


def test_build_config_layers_types_and_validation():
    cfg = build_config(_Cfg, {"epochs": 5, "lr": 0.2}, parse_overrides(["lr=0.05", "flag=true", "betas=0.9,0.99"]))
    assert (cfg.epochs, cfg.lr, cfg.flag, cfg.betas) == (5, 0.05, True, (0.9, 0.99))
    assert build_config(_Cfg, {"xi": "none"}).xi is None
    assert build_config(_Cfg, {"epochs": None}).epochs == 3  # an unset flag keeps the default
    with pytest.raises(UsageError, match="unknown setting 'epoch'"):
        build_config(_Cfg, {"epoch": 1})
    with pytest.raises(UsageError, match="epochs: expected an integer"):
        build_config(_Cfg, {"epochs": "2.5"})
    with pytest.raises(UsageError, match="lr must be positive"):
        build_config(_Cfg, {"lr": -1})
    with pytest.raises(UsageError, match="key=value"):
        parse_overrides(["epochs"])


def test_cli_errors_are_one_line_with_exit_2(capsys):
    with pytest.raises(SystemExit) as e:
        main(["no-such-command"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "invalid choice" in err


def test_out_of_memory_is_recognised_on_the_cpu_and_on_cuda():
    from rarts.utils import is_out_of_memory

    assert is_out_of_memory(torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert is_out_of_memory(
        RuntimeError("[enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: can't allocate memory")
    )
    assert is_out_of_memory(MemoryError())
    assert not is_out_of_memory(RuntimeError("mat1 and mat2 shapes cannot be multiplied (1x6912 and 768x10)"))
    assert not is_out_of_memory(ValueError("can't allocate memory"))


def test_environment_record_keeps_the_first_session_and_lists_the_resumes(tmp_path):
    from rarts.runs import write_environment

    path = tmp_path / "environment.json"
    write_environment(path, {"command": "rarts search --method rarts lam=2"}, resumed=False)
    write_environment(path, {"command": "rarts search --resume"}, resumed=True)
    write_environment(path, {"command": "rarts search --resume --device cpu"}, resumed=True)
    env = json.loads(path.read_text())
    assert env["command"] == "rarts search --method rarts lam=2"
    assert [r["command"] for r in env["resumes"]] == ["rarts search --resume", "rarts search --resume --device cpu"]
    write_environment(path, {"command": "rarts search --method darts1"}, resumed=False)  # a new run starts afresh
    assert json.loads(path.read_text()) == {"command": "rarts search --method darts1"}


def test_a_path_that_cannot_be_written_is_one_line(tmp_path, capsys):
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    assert main(["genotype", "plot", "DARTS_V2", "--out", str(a_file / "cells.svg")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("rarts: error: Not a directory: ") and str(a_file) in err and err.count("\n") == 1


def test_every_subcommand_says_what_it_does():
    import argparse

    from rarts.cli import build_parser

    def walk(parser: argparse.ArgumentParser, path: str) -> list[str]:
        found = []
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    found += [f"{path} {name}"] * (not sub.description) + walk(sub, f"{path} {name}")
        return found

    assert walk(build_parser(), "rarts") == []


def test_an_unknown_setting_suggests_the_known_one_it_resembles():
    @dataclasses.dataclass
    class Settings:
        init_channels: int = 16
        layers: int = 8
        lam: float = 1.0

    with pytest.raises(UsageError, match=r"unknown setting 'channels' \(did you mean init_channels\?\)"):
        build_config(Settings, {"channels": "8"})
    with pytest.raises(UsageError, match=r"unknown setting 'cells' \(did you mean layers\?\)"):
        build_config(Settings, {"cells": "8"})
    with pytest.raises(UsageError, match=r"unknown setting 'lamda' \(did you mean lam\?\)"):
        build_config(Settings, {"lamda": "2"})
    with pytest.raises(UsageError, match=r"unknown setting 'colour'; known: init_channels, lam, layers$"):
        build_config(Settings, {"colour": "red"})


def test_read_json_names_a_file_that_is_no_json_text(tmp_path):
    binary = tmp_path / "weights.pt"
    binary.write_bytes(b"PK\x03\x04\x80\x81")
    with pytest.raises(UsageError, match=r"weights.pt is not a JSON text file \(not UTF-8 at byte 4\)"):
        read_json(binary)
    with pytest.raises(UsageError, match="is a folder, not a JSON file"):
        read_json(tmp_path)


@pytest.mark.parametrize("command", [["latency", "measure"], ["bench", "search"]])
def test_an_out_file_that_is_a_folder_is_refused_before_the_measurements(tmp_path, capsys, command):
    assert main([*command, "--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err == f"rarts: error: --out {tmp_path} is a folder; give a file name\n"


def test_an_out_file_where_no_file_can_be_written_is_refused_before_the_measurements(capsys):
    # /proc takes no new files, even from root (CI runs as root, where permission bits would not stop it)
    assert main(["bench", "search", "--out", "/proc/rarts-bench.json"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("rarts: error: cannot write --out /proc/rarts-bench.json: no file can be created in /proc (")


def test_under_torchrun_only_rank_0_prints_a_refused_setting(tmp_path, capsys, monkeypatch):
    argv = ["search", "--method", "rarts", "--preset", "quick", "--out", str(tmp_path / "r"), "lam=-1"]
    monkeypatch.setenv("RANK", "1")
    assert main(argv) == 2
    assert capsys.readouterr().err == ""
    monkeypatch.setenv("RANK", "0")
    assert main(argv) == 2
    assert capsys.readouterr().err.startswith("rarts: error: setting lam")


def test_space_params_takes_image_size_as_input_size(capsys):
    assert main(["space", "params", "--channels", "4", "--layers", "3", "--image-size", "8", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["input_size"] == [3, 8, 8]
