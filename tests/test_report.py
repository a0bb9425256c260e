"""The comparison report (rarts.report) on hand-made run folders: statistics, artefacts, HTML, refusals."""

from __future__ import annotations

import base64
import csv
import json
import math
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from fake_runs import make_search_run, make_train_run, write
from rarts import report as rep
from rarts.cli import main
from rarts.errors import UsageError
from rarts.genotype import KNOWN_GENOTYPES
from rarts.viz import pyplot, save_figure

# ---- statistics -------------------------------------------------------------------------------------------------


def test_mean_std_is_the_sample_standard_deviation():
    mean, std = rep.mean_std([1.0, 2.0, 3.0, 4.0])
    assert mean == 2.5
    assert std == pytest.approx(math.sqrt(5.0 / 3.0), rel=1e-12)  # ddof = 1: sum of squares 5 over 3
    assert rep.mean_std([2.6, 2.7]) == (pytest.approx(2.65), pytest.approx(0.0707106781, rel=1e-8))


def test_mean_std_one_value_none_and_non_finite():
    assert rep.mean_std([3.25]) == (3.25, None)
    assert rep.mean_std([]) == (None, None)
    assert rep.mean_std([None, float("nan"), 2.0, float("inf"), 4.0]) == (3.0, pytest.approx(math.sqrt(2.0)))
    assert rep.format_mean_std([2.6, 2.7]) == "2.65 ± 0.07"
    assert rep.format_mean_std([3.25]) == "3.25"  # one seed: the mean alone
    assert rep.format_mean_std([None]) == rep.DASH
    assert rep.format_mean_std([0.000586, 0.000598], None) == "0.000592 ± 0.000008"  # three significant figures
    assert rep.format_mean_std([31.25], None) == "31.25"


def test_method_rows_on_hand_made_results():
    def row(method, seed, err, sps, cost):
        return {
            "method": method,
            "seed": seed,
            "test_top1_error": err,
            "test_top5_error": None,
            "seconds_per_step": sps,
            "search_cost": cost,
            "search_cost_unit": "CPU-hours",
            "search_device": "cpu",
            "params_paper_size": 3_000_000,
            "params_trained": None,
            "supernet_val_acc": None,
        }

    rows = [row("rarts", 0, 2.6, 2.0, 1.0), row("rarts", 1, 2.7, 4.0, 3.0), row("darts2", 0, 3.0, 6.0, 5.0)]
    rows += [row("darts2", 1, 2.0, 6.0, 5.0), row("darts2", 2, 1.0, 6.0, 5.0)]
    by_method = {m["method"]: m for m in rep.method_rows(rows)}
    assert list(by_method) == ["darts2", "rarts"]  # the paper's order, not the input's
    assert by_method["rarts"]["test_error_mean"] == pytest.approx(2.65)
    assert by_method["rarts"]["test_error_std"] == pytest.approx(math.sqrt(0.005))
    assert by_method["darts2"]["test_error_mean"] == pytest.approx(2.0)
    assert by_method["darts2"]["test_error_std"] == pytest.approx(1.0)
    assert by_method["rarts"]["step_time_vs_darts2"] == pytest.approx(0.5)  # 3 s over 6 s
    assert by_method["darts2"]["step_time_vs_darts2"] == pytest.approx(1.0)
    assert by_method["rarts"]["search_cost_mean"] == pytest.approx(2.0)
    assert by_method["rarts"]["paper_test_error"] == (2.65, 0.07)
    assert by_method["darts2"]["paper_gpu_days"] == 3.1


def test_search_cost_units_and_step_time():
    run = rep.SearchRun(Path("x"), "rarts", 0, {"search_seconds": 7200.0}, {}, {"device": "cpu"}, [], [], None)
    assert rep.search_cost(run) == (2.0, "CPU-hours")
    run.environment = {"device": "cuda:0", "device_name": "NVIDIA H200"}
    assert rep.search_cost(run) == (pytest.approx(1 / 12), "GPU-days")
    assert rep.device_of(run) == ("cuda", "NVIDIA H200")
    assert rep.step_seconds({"search_seconds": 30.0, "steps": 10}) == 3.0
    assert rep.step_seconds({"seconds_per_step": 1.5, "search_seconds": 30.0, "steps": 10}) == 1.5
    assert rep.step_seconds({"search_seconds": 30.0}) is None


# ---- a report from hand-made runs ---------------------------------------------------------------------------------


def make_compare_folder(root: Path) -> Path:
    """darts2 with two seeds, milenas with one; all trained. Test errors are chosen by hand."""
    errors = {("darts2", 0): 3.0, ("darts2", 1): 2.8, ("milenas", 0): 3.1}
    for (method, seed), err in errors.items():
        name = f"{method}-seed{seed}"
        steps = 10 if method == "darts2" else 20  # darts2: 10 s per step, milenas 5 s
        search = make_search_run(root / "search" / name, method, seed, seconds=100.0, steps=steps)
        make_train_run(root / "train" / name, search, seed, err)
    return root


class PageChecker(HTMLParser):
    """Collects tags, checks nesting of the elements that must close, and every URL-bearing attribute."""

    VOID = {"meta", "img", "br", "hr", "link", "input"}

    def __init__(self):
        super().__init__()
        self.stack: list[str] = []
        self.tags: list[str] = []
        self.images: list[dict] = []
        self.urls: list[str] = []
        self.errors: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append(tag)
        if tag == "img":
            self.images.append(a)
        for key in ("src", "href", "srcset", "data", "action"):
            if key in a:
                self.urls.append(a[key])
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1] if self.stack else 'nothing'}")
        else:
            self.stack.pop()

    def handle_data(self, data):
        self.text.append(data)


def check_page(text: str) -> PageChecker:
    assert text.startswith("<!DOCTYPE html>")
    page = PageChecker()
    page.feed(text)
    page.close()
    assert not page.errors and not page.stack, (page.errors, page.stack)
    assert page.tags[:3] == ["html", "head", "meta"] and "body" in page.tags and "title" in page.tags
    assert "link" not in page.tags and "script" not in page.tags
    outside_images = re.sub(r'src="data:[^"]*"', "", text)
    for needle in ("http://", "https://", "url(", "@import", "file:"):
        assert needle not in outside_images, needle
    for url in page.urls:  # no external reference of any kind
        assert url.startswith("data:"), url
    for img in page.images:
        prefix = "data:image/png;base64,"
        assert img["src"].startswith(prefix) and img.get("alt")
        assert base64.b64decode(img["src"][len(prefix) :])[:8] == b"\x89PNG\r\n\x1a\n"
    return page


def test_report_from_hand_made_runs(tmp_path, monkeypatch):
    import rarts.toy

    def tiny_figure1(out_dir, lr=0.01, steps=20000):  # the real one takes seconds; its wiring is what is tested
        return [save_figure(pyplot().figure(figsize=(1, 1)), Path(out_dir) / "figure1.png", dpi=110)]

    monkeypatch.setattr(rarts.toy, "figure1", tiny_figure1)
    root = make_compare_folder(tmp_path / "cmp")
    runs, notes = rep.collect_runs([root])
    assert [r.name for r in runs] == ["darts2-seed0", "darts2-seed1", "milenas-seed0"]
    assert all(r.train is not None and r.train.path.name == r.name for r in runs)
    paths = rep.build_report(runs, root / "report", notes=notes, commands=["rarts compare --methods x"])

    md = paths["markdown"].read_text()
    table = {line.split(" | ")[0].lstrip("| "): line for line in md.splitlines() if line.startswith("| ")}
    assert "| 2.90 ± 0.14 | 2.76 ± 0.09 |" in table["DARTS (2nd order)"]  # (3.0, 2.8): sd 0.1414; paper beside it
    assert "| 3.10 | — |" in table["MiLeNAS"]  # one seed: the mean alone; no paper figure
    assert "| 3.35 | 3.3 |" in table["DARTS (2nd order)"]  # DARTS_V2 at 36 channels, 20 cells: 3,349,342
    assert "| 10.00 ± 0.00 | 1.00 |" in table["DARTS (2nd order)"] and "| 5.00 | 0.50 |" in table["MiLeNAS"]
    assert "0.0278 CPU-hours" in table["MiLeNAS"]  # 100 s
    assert "rarts compare --methods x" in md and "0123456789ab" in md
    for rel in (
        "images/cells/milenas-seed0/normal.png",
        "images/cells/milenas-seed0/reduce.png",
        "images/alpha-darts2-seed0.png",
        "images/supernet-accuracy.png",
        "images/final-training.png",
        "images/toy/figure1.png",
    ):
        assert (root / "report" / rel).is_file(), rel
        assert f"]({rel})" in md

    page = check_page(paths["html"].read_text())
    assert len(page.images) == md.count("![")
    assert "Table 1: test error, parameters, search cost" in "".join(page.text)

    with open(paths["csv"]) as f:
        rows = list(csv.DictReader(f))
    assert [(r["method"], r["seed"]) for r in rows][:2] == [("darts2", "0"), ("darts2", "1")]
    assert float(rows[0]["test_top1_error"]) == 3.0 and rows[0]["params_paper_size"] == "3349342"
    with open(paths["table1"]) as f:
        t1 = {r["method"]: r for r in csv.DictReader(f)}
    assert float(t1["darts2"]["test_error_std"]) == pytest.approx(math.sqrt(0.02))
    assert t1["milenas"]["test_error_std"] == "" and t1["milenas"]["paper_test_error_mean"] == ""


def test_older_run_without_optional_files_is_reported_with_notes(tmp_path):
    old = make_search_run(tmp_path / "old", "darts1", 0, alphas=False, metrics=False)
    summary = json.loads((old / "summary.json").read_text())
    del summary["search_seconds"], summary["steps"]
    write(old / "summary.json", summary)
    runs, _ = rep.collect_runs([old])
    paths = rep.build_report(runs, tmp_path / "report", toy_figure=False)
    md = paths["markdown"].read_text()
    assert "no search_seconds, seconds per step, metrics.jsonl, alphas.jsonl" in md
    assert "no final training runs" in md
    # test error, search cost, step time, step time ratio, supernet accuracy unknown; params and paper known
    assert "| DARTS (1st order) | 0 | — | 3.00 ± 0.14 | 3.35 | 3.3 | — | 0.7 | — | — | — |" in md
    check_page(paths["html"].read_text())


def test_settings_that_differ_are_noted(tmp_path):
    a = make_search_run(tmp_path / "a", "darts1", 0, config_extra={"epochs": 3, "data_dir": "/x"}, alphas=False)
    b = make_search_run(tmp_path / "b", "rarts", 0, config_extra={"epochs": 5, "data_dir": "/y"}, alphas=False)
    runs, _ = rep.collect_runs([a, b])
    assert rep.settings_differences(runs) == ["epochs (3, 5)"]  # method, seed and data_dir may differ


def test_runs_of_different_settings_are_flagged_above_table_1(tmp_path, capsys):
    a = make_search_run(tmp_path / "a", "darts1", 0, config_extra={"epochs": 3}, alphas=False)
    b = make_search_run(tmp_path / "b", "darts1", 1, config_extra={"epochs": 5}, alphas=False)
    assert main(["report", str(a), str(b), "--out", str(tmp_path / "rep"), "--toy-steps", "200"]) == 0
    text = (tmp_path / "rep" / "report.md").read_text()
    assert text.index("**Warning:** the runs differ in settings other than method and seed (epochs (3, 5))") < (
        text.index("## Table 1")
    )


def test_a_search_in_percents_reads_as_the_same_run_in_fractions(tmp_path):
    """Searches write accuracies in percent (summary format 2, environment.json says so); older folders hold
    fractions. Both read as percents, and an older training folder's init_channels reads as channels."""
    extra = {"final_train_acc": 0.375, "final_val_acc": 0.4125}
    old = make_search_run(tmp_path / "old", "rarts", 0, summary_extra=extra)
    new = make_search_run(
        tmp_path / "new",
        "rarts",
        0,
        summary_extra={"format_version": 2, "final_train_acc": 37.5, "final_val_acc": 41.25},
    )
    env = json.loads((new / "environment.json").read_text())
    write(new / "environment.json", {**env, "accuracy_unit": "percent"})
    rows = [json.loads(line) for line in (old / "metrics.jsonl").read_text().splitlines()]
    (new / "metrics.jsonl").write_text(
        "".join(
            json.dumps({**r, "train_acc": 100 * r["train_acc"], "val_acc": 100 * r["val_acc"]}) + "\n" for r in rows
        )
    )
    (a,), _ = rep.collect_runs([old])
    (b,), _ = rep.collect_runs([new])
    assert rep.supernet_accuracy(a, "val") == rep.supernet_accuracy(b, "val") == pytest.approx(41.25)
    assert rep.supernet_accuracy(a, "train") == pytest.approx(37.5)
    assert [r["val_acc"] for r in a.metrics] == pytest.approx([r["val_acc"] for r in b.metrics])
    assert [r["val_acc"] for r in b.metrics] == pytest.approx([15.0, 25.0, 35.0])
    train = make_train_run(tmp_path / "train", new, 0, error=3.0)
    assert rep.load_train_run(train).config["channels"] == 4  # written as init_channels


# ---- refusals -----------------------------------------------------------------------------------------------------


def test_foreign_folder_is_refused_with_its_name(tmp_path):
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "cat.jpg").write_bytes(b"x")
    with pytest.raises(UsageError, match="photos is not a rarts run folder"):
        rep.collect_runs([tmp_path / "photos"])
    with pytest.raises(UsageError, match="run folder not found: .*nowhere"):
        rep.collect_runs([tmp_path / "nowhere"])
    write(tmp_path / "foreign" / "summary.json", {"loss": 1.0})
    with pytest.raises(UsageError, match="foreign/summary.json is not a rarts search summary"):
        rep.collect_runs([tmp_path / "foreign"])


@pytest.mark.parametrize(
    "version,message", [(99, "format_version 99, newer than this rarts reads"), (0, "older format"), ("x", "integer")]
)
def test_unreadable_format_versions_are_refused(tmp_path, version, message):
    run = make_search_run(tmp_path / "run", "rarts", 0, alphas=False, summary_extra={"format_version": version})
    with pytest.raises(UsageError, match=message):
        rep.collect_runs([run])


def test_unfinished_and_unpaired_runs(tmp_path):
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "checkpoint.pt").write_bytes(b"")
    with pytest.raises(UsageError, match="half is an unfinished search run"):
        rep.collect_runs([tmp_path / "half"])
    search = make_search_run(tmp_path / "s", "rarts", 0, alphas=False)
    train = make_train_run(tmp_path / "t", tmp_path / "elsewhere", 0, 3.0)
    with pytest.raises(UsageError, match="none of the search runs given"):
        rep.collect_runs([search, train])
    paired = make_train_run(tmp_path / "t2", search, 0, 3.0)
    runs, _ = rep.collect_runs([paired, search])
    assert runs[0].train.path == paired


def test_a_training_run_pairs_by_its_genotype_once_the_search_folder_moved(tmp_path):
    """Folders copied from a cluster, or named relative to another directory: the trained cells decide."""
    search = make_search_run(tmp_path / "s", "rarts", 0, alphas=False, genotype="DARTS_V1")
    other = make_search_run(tmp_path / "o", "darts1", 0, alphas=False, genotype="DARTS_V2")
    train = make_train_run(tmp_path / "t", tmp_path / "moved-away", 0, 3.0)
    result = json.loads((train / "result.json").read_text())
    result["genotype"] = KNOWN_GENOTYPES["DARTS_V1"].to_dict()
    (train / "result.json").write_text(json.dumps(result))
    runs, _ = rep.collect_runs([search, other, train])
    assert {r.path.name: r.train.path if r.train else None for r in runs} == {"s": train, "o": None}
    twin = make_search_run(tmp_path / "twin", "rarts", 1, alphas=False, genotype="DARTS_V1")
    with pytest.raises(UsageError, match="the genotype of several search runs"):
        rep.collect_runs([search, twin, train])


def test_unfinished_run_inside_a_compare_folder_is_left_out_with_a_note(tmp_path):
    make_search_run(tmp_path / "cmp" / "search" / "rarts-seed0", "rarts", 0, alphas=False)
    (tmp_path / "cmp" / "search" / "rarts-seed1").mkdir()
    runs, notes = rep.collect_runs([tmp_path / "cmp"])
    assert [r.name for r in runs] == ["rarts-seed0"]
    assert any("rarts-seed1` left out" in n for n in notes)


# ---- the command --------------------------------------------------------------------------------------------------


def test_report_command(tmp_path, capsys):
    run = make_search_run(tmp_path / "run", "rarts", 0)
    assert main(["report", str(run), "--out", str(tmp_path / "rep"), "--toy-steps", "200"]) == 0
    assert "report.html" in capsys.readouterr().out
    assert {p.name for p in (tmp_path / "rep").iterdir()} >= {"report.md", "report.html", "results.csv", "images"}
    assert (tmp_path / "rep" / "images" / "toy" / "figure1.png").is_file()
    (tmp_path / "empty").mkdir()
    assert main(["report", str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("rarts: error:") and "\n" not in err


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("chromium") is None, reason="headless Chromium not installed")
def test_html_renders_in_headless_chromium(tmp_path):
    """The page loads offline in a real browser: its DOM keeps every table and image, and it paints a screenshot."""
    root = make_compare_folder(tmp_path / "cmp")
    runs, _ = rep.collect_runs([root])
    paths = rep.build_report(runs, root / "report", toy_steps=200)
    flags = ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-extensions"]
    url = paths["html"].resolve().as_uri()
    dom = subprocess.run(flags + ["--dump-dom", url], capture_output=True, text=True, timeout=120).stdout
    assert dom.count("<img") == paths["markdown"].read_text().count("![") and dom.count("<table") == 3
    shot = tmp_path / "shot.png"
    subprocess.run(flags + [f"--screenshot={shot}", "--window-size=1280,2400", url], capture_output=True, timeout=120)
    from PIL import Image

    colours = Image.open(shot).convert("RGB").getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 50  # text, table shading and plotted figures, not a blank page
