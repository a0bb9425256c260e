"""`rarts genotype` and `rarts space` end to end: output, figures, counts, and one-line errors with exit 2."""

import json
import shutil

import pytest

from rarts.cli import main
from rarts.genotype import KNOWN_GENOTYPES

V2 = KNOWN_GENOTYPES["DARTS_V2"]


def test_show_readable_and_json(capsys):
    assert main(["genotype", "show", "DARTS_V2"]) == 0
    out = capsys.readouterr().out
    assert "node 0 = sep_conv_3x3(c_{k-2}) + sep_conv_3x3(c_{k-1})" in out and V2.to_darts_string() in out
    assert main(["genotype", "show", V2.to_darts_string(), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == V2.to_dict()


def test_show_a_line_copied_from_darts_genotypes_py(tmp_path, capsys):
    line = "DARTS_V2 = " + V2.to_darts_string()
    assert main(["genotype", "show", line, "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == V2.to_dict()
    (tmp_path / "genotypes.py").write_text(line + "\n")
    assert main(["genotype", "show", str(tmp_path / "genotypes.py"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == V2.to_dict()


def test_show_from_a_run_folder(tmp_path, capsys):
    (tmp_path / "genotype.json").write_text(V2.to_json())
    assert main(["genotype", "show", str(tmp_path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == V2.to_dict()


def test_plot_writes_both_cells(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert main(["genotype", "plot", "DARTS_V1", "--out", str(tmp_path), "--format", "png", "svg"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["normal.png", "normal.svg", "reduce.png", "reduce.svg"]
    assert "matplotlib" in capsys.readouterr().out


def test_params_cifar_defaults(capsys):
    assert main(["genotype", "params", "DARTS_V2", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert (result["channels"], result["layers"], result["classes"]) == (36, 20, 10)
    assert result["params"] == 3_349_342
    assert result["params_with_auxiliary"] == 3_825_768
    assert result["mult_adds"] == 528_359_040


def test_params_imagenet_defaults(capsys):
    assert main(["genotype", "params", "DARTS_V2", "--dataset", "imagenet", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert (result["channels"], result["layers"], result["input_size"]) == (48, 14, [3, 224, 224])
    assert result["params"] == 4_718_752
    assert result["mult_adds"] == 529_911_552


def test_params_readable(capsys):
    assert main(["genotype", "params", "DARTS_V1", "--channels", "7", "--layers", "5"]) == 0  # CIFAR: any C
    capsys.readouterr()
    assert main(["genotype", "params", "DARTS_V1", "--channels", "8", "--layers", "5"]) == 0
    out = capsys.readouterr().out
    assert "8 channels, 5 cells" in out and "parameters (auxiliary head excluded)" in out


def test_cells_is_the_older_name_of_layers(capsys):
    assert main(["genotype", "params", "DARTS_V1", "--channels", "8", "--cells", "5", "--json"]) == 0
    older = json.loads(capsys.readouterr().out)
    assert main(["genotype", "params", "DARTS_V1", "--channels", "8", "--layers", "5", "--json"]) == 0
    assert older == json.loads(capsys.readouterr().out) and older["layers"] == 5


def test_space_params(capsys):
    assert main(["space", "params", "--json", "--input-size", "8"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert (result["weights"], result["alphas"], result["alpha_shape"]) == (1_930_618, 224, [14, 8])
    assert main(["space", "params", "--channels", "4", "--layers", "3", "--classes", "5", "--input-size", "8"]) == 0
    assert "architecture alpha" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["genotype", "show", "DARTS_V7"], "unknown genotype 'DARTS_V7'"),
        (["genotype", "show", "Genotype(normal=[('sep_conv_9x9', 0)])"], "unknown op 'sep_conv_9x9'"),
        (["genotype", "show", V2.to_darts_string().replace("('dil_conv_3x3', 2)", "('dil_conv_3x3', 6)")], "input 6"),
        (["genotype", "show", "BAD_JSON"], "neither JSON nor a DARTS genotype string"),
        (["genotype", "show", "BAD_OP_JSON"], "unknown op 'conv_1x1'"),
        (["genotype", "params", "DARTS_V2", "--channels", "0"], "--channels"),
        (["genotype", "params", "DARTS_V2", "--dataset", "imagenet", "--channels", "7"], "an even number of channels"),
        (["genotype", "params", "DARTS_V2", "--dataset", "mnist"], "invalid choice"),
        (["space", "params", "--layers", "0"], "--layers"),
        (["genotype", "params", "DARTS_V2", "--layers", "1"], "needs at least 3 cells"),
        (["genotype", "params", "DARTS_V2", "--layers", "2", "--dataset", "imagenet"], "needs at least 3 cells"),
        (["genotype", "show", "x" * 300], "unknown genotype 'xxx"),
        (["genotype", "show", "DARTS_V2 = " + V2.to_darts_string().replace("'max_pool_3x3'", "max_pool")], "position"),
    ],
)
def test_bad_input_is_one_line_exit_2(tmp_path, capsys, argv, fragment):
    (tmp_path / "bad.json").write_text("{oops")
    (tmp_path / "badop.json").write_text(json.dumps({"normal": [["conv_1x1", 0]] * 2, "reduce": [["conv_1x1", 0]] * 2}))
    argv = [
        {"BAD_JSON": str(tmp_path / "bad.json"), "BAD_OP_JSON": str(tmp_path / "badop.json")}.get(a, a) for a in argv
    ]
    try:
        code = main(argv)
    except SystemExit as e:  # argparse errors
        code = e.code
    err = capsys.readouterr().err
    assert code == 2
    assert fragment in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
