"""`rarts compare` (rarts.compare): planning, resuming and skipping with a fake runner; the real thing end to end."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from fake_runs import make_search_run, make_train_run, write
from rarts import compare as cmp
from rarts.errors import RunFailed, UsageError
from test_report import check_page


class FakeRunner:
    """Writes finished run folders instantly; can be told to be interrupted or to fail on chosen jobs."""

    search_checkpoint = "checkpoint.pt"
    train_checkpoint = "checkpoint.pt"

    def __init__(self, interrupt: set | None = None, fail: set | None = None):
        self.interrupt = interrupt or set()
        self.fail = fail or set()
        self.calls: list[tuple] = []

    def free_settings(self, stage):
        return frozenset({"data_dir", "device", "progress", "genotype"})

    def search_config(self, plan, method, seed):
        return {"method": method, "seed": seed, "epochs": 3, "batch_size": 8, **plan.search_overrides}

    def train_config(self, plan, search_dir, seed):
        return {"genotype": str(search_dir), "seed": seed, "init_channels": 4, "layers": 3, **plan.train_overrides}

    def search(self, plan, method, seed, run_dir, resume):
        self.calls.append(("search", method, seed, resume))
        if ("search", method, seed) in self.interrupt:
            write(run_dir / "config.json", self.search_config(plan, method, seed))
            (run_dir / self.search_checkpoint).write_bytes(b"epoch 1")
            raise KeyboardInterrupt
        if ("search", method, seed) in self.fail:
            raise RunFailed("loss became nan in epoch 1")
        make_search_run(run_dir, method, seed, alphas=False, config_extra=plan.search_overrides)

    def train(self, plan, search_dir, seed, run_dir, resume):
        self.calls.append(("train", search_dir.name, seed, resume))
        make_train_run(run_dir, search_dir, seed, 3.0 + seed)


def plan_for(tmp_path: Path, **kw) -> cmp.ComparePlan:
    kw.setdefault("methods", ("darts1", "rarts"))
    kw.setdefault("seeds", (0, 1))
    return cmp.ComparePlan(out=tmp_path / "cmp", **kw)


def test_parsing_methods_seeds_and_overrides():
    assert cmp.parse_methods("darts1, rarts") == ("darts1", "rarts")
    assert cmp.parse_methods("all") == ("darts1", "darts2", "milenas", "rarts", "random")
    assert cmp.parse_seeds("0,2,5-7") == (0, 2, 5, 6, 7)
    with pytest.raises(UsageError, match="--seeds: 'x' is not an integer"):
        cmp.parse_seeds("0,x")
    search, train = cmp.split_overrides(
        {"search.epochs": "1", "train.epochs": "2", "batch_size": "8", "lam": "2"},
        search_keys=("epochs", "batch_size", "lam"),
        train_keys=("epochs", "batch_size"),
    )
    assert search == {"epochs": "1", "batch_size": "8", "lam": "2"} and train == {"epochs": "2", "batch_size": "8"}
    with pytest.raises(UsageError, match="unknown setting 'colour'"):
        cmp.split_overrides({"colour": "red"}, ("epochs",), ("epochs",))


@pytest.mark.parametrize(
    "kw,message",
    [
        ({"methods": ("darts3",)}, "unknown method 'darts3'"),
        ({"methods": ("rarts", "rarts")}, "named twice"),
        ({"seeds": ()}, "at least one seed"),
        ({"seeds": (-1,)}, ">= 0"),
    ],
)
def test_bad_plans_are_refused(tmp_path, kw, message):
    with pytest.raises(UsageError, match=message):
        cmp.run_compare(plan_for(tmp_path, **kw), FakeRunner(), report=False)


def test_jobs_run_seed_by_seed_then_train(tmp_path):
    plan = plan_for(tmp_path, train=True)
    names = [j.name for j in cmp.jobs(plan)]
    assert names[:4] == ["search darts1 seed 0", "search rarts seed 0", "search darts1 seed 1", "search rarts seed 1"]
    assert names[4:] == ["train darts1 seed 0", "train rarts seed 0", "train darts1 seed 1", "train rarts seed 1"]
    assert cmp.jobs(plan)[5].run_dir == tmp_path / "cmp" / "train" / "rarts-seed0"


def test_interrupted_compare_resumes_and_skips_finished_runs(tmp_path):
    plan = plan_for(tmp_path, train=True)
    runner = FakeRunner(interrupt={("search", "darts1", 1)})
    with pytest.raises(KeyboardInterrupt):
        cmp.run_compare(plan, runner, log=lambda s: None, report=False)
    assert runner.calls == [
        ("search", "darts1", 0, False),
        ("search", "rarts", 0, False),
        ("search", "darts1", 1, False),
    ]

    again = FakeRunner()
    lines: list[str] = []
    outcome = cmp.run_compare(plan, again, log=lines.append, report=False, command="rarts compare (again)")
    assert again.calls[:2] == [("search", "darts1", 1, True), ("search", "rarts", 1, False)]  # resumed, then new
    assert [c[0] for c in again.calls[2:]] == ["train"] * 4
    assert outcome.skipped == ["search darts1 seed 0", "search rarts seed 0"]
    assert outcome.resumed == ["search darts1 seed 1"] and len(outcome.started) == 5
    assert any("finished before, skipped" in line for line in lines)

    third = FakeRunner()
    outcome = cmp.run_compare(plan, third, log=lambda s: None, report=False, command="rarts compare (third)")
    assert third.calls == [] and len(outcome.skipped) == 8  # everything finished: nothing runs
    recorded = (tmp_path / "cmp" / "compare.json").read_text()
    assert "rarts compare (again)" in recorded and "rarts compare (third)" in recorded


def test_finished_run_with_other_settings_is_refused(tmp_path):
    plan = plan_for(tmp_path, methods=("rarts",), seeds=(0,), search_overrides={"epochs": "3"})
    cmp.run_compare(plan, FakeRunner(), log=lambda s: None, report=False)
    other = plan_for(tmp_path, methods=("rarts",), seeds=(0,), search_overrides={"epochs": "5"})
    with pytest.raises(UsageError, match=r"rarts-seed0 was run with other settings \(epochs: \"3\" there, \"5\" here"):
        cmp.run_compare(other, FakeRunner(), log=lambda s: None, report=False)


def test_a_failed_run_is_recorded_and_the_others_go_on(tmp_path):
    plan = plan_for(tmp_path, methods=("rarts",), seeds=(0, 1), train=True)
    runner = FakeRunner(fail={("search", "rarts", 0)})
    with pytest.raises(RunFailed, match=r"2 run\(s\) failed .*loss became nan.*not run, its search failed"):
        cmp.run_compare(plan, runner, log=lambda s: None, report_options={"toy_figure": False})
    assert ("search", "rarts", 1, False) in runner.calls and ("train", "rarts-seed1", 1, False) in runner.calls
    md = (tmp_path / "cmp" / "report" / "report.md").read_text()  # the report covers what finished
    assert "| RARTS | 1 | 4.00 |" in md and "failed: search rarts seed 0" in md


class RecordingRunner(cmp.InProcessRunner):
    """The real settings (InProcessRunner's configs, validated as a real run's are), but no search or training runs:
    a finished search folder is written at once."""

    def __init__(self):
        self.calls: list[tuple] = []

    def search(self, plan, method, seed, run_dir, resume):
        self.calls.append(("search", method, seed))
        make_search_run(run_dir, method, seed, alphas=False, config_extra=plan.search_overrides)

    def train(self, plan, search_dir, seed, run_dir, resume):
        self.calls.append(("train", search_dir.name, seed))


@pytest.mark.parametrize(
    "overrides,message",
    [
        ({"train.subsett": "5"}, "unknown setting 'subsett'"),
        ({"train.layers": "2"}, "layers=2: needs at least 3 cells"),
        ({"train.epochs": "many"}, "setting epochs: expected an integer"),
    ],
)
def test_training_settings_are_checked_before_the_first_search(tmp_path, overrides, message):
    runner = RecordingRunner()
    search, train = runner.split({"search.epochs": "1", **overrides})
    plan = plan_for(tmp_path, train=True, search_overrides=search, train_overrides=train)
    with pytest.raises(UsageError, match=message):
        cmp.run_compare(plan, runner, known_methods=cmp.known_methods(), log=lambda s: None, report=False)
    assert runner.calls == [] and not plan.out.exists()  # refused before days of searching, and nothing written


def test_training_settings_are_checked_without_the_search_folders(tmp_path):
    runner = RecordingRunner()  # the training config names a search folder that does not exist yet: that is fine
    search, train = runner.split({"search.epochs": "1", "train.epochs": "1", "tensorboard": "false"})
    plan = plan_for(
        tmp_path, methods=("rarts",), seeds=(0,), train=True, search_overrides=search, train_overrides=train
    )
    cmp.run_compare(plan, runner, known_methods=cmp.known_methods(), log=lambda s: None, report=False)
    assert runner.calls == [("search", "rarts", 0), ("train", "rarts-seed0", 0)]


def test_training_settings_without_train_are_refused(tmp_path):
    runner = RecordingRunner()
    search, train = runner.split({"search.epochs": "5", "train.epochs": "20"})
    plan = plan_for(tmp_path, search_overrides=search, train_overrides=train)
    with pytest.raises(UsageError, match=r"^setting epochs=20 applies only to the training .*add --train") as e:
        cmp.run_compare(plan, runner, known_methods=cmp.known_methods(), log=lambda s: None, report=False)
    assert "\n" not in str(e.value) and runner.calls == [] and not plan.out.exists()
    search, train = runner.split({"auxiliary": "false"})  # a bare key only the training has
    with pytest.raises(UsageError, match="setting auxiliary=false applies only to the training"):
        cmp.run_compare(plan_for(tmp_path, train_overrides=train), runner, log=lambda s: None, report=False)
    # A bare key both stages have reaches both with one value: the search's, so it is taken without --train.
    search, train = runner.split({"tensorboard": "false", "search.epochs": "1"})
    plan = plan_for(tmp_path, methods=("rarts",), seeds=(0,), search_overrides=search, train_overrides=train)
    cmp.run_compare(plan, runner, known_methods=cmp.known_methods(), log=lambda s: None, report=False)
    assert runner.calls == [("search", "rarts", 0)]


def test_a_refused_command_is_not_recorded(tmp_path):
    runner = RecordingRunner()
    bad = plan_for(tmp_path, search_overrides={"epochs": "nope"})
    with pytest.raises(UsageError, match="expected an integer"):
        cmp.run_compare(bad, runner, known_methods=cmp.known_methods(), report=False, command="rarts compare (bad)")
    assert not bad.out.exists()  # a refused first command leaves no folder behind

    plan = plan_for(tmp_path, methods=("rarts",), seeds=(0, 1), search_overrides={"epochs": "3"})
    cmp.run_compare(plan, FakeRunner(), log=lambda s: None, report=False, command="rarts compare (good)")
    recorded = (plan.out / "compare.json").read_text()
    bad = plan_for(tmp_path, methods=("rarts",), seeds=(0, 1), search_overrides={"epochs": "nope"})
    with pytest.raises(UsageError, match="expected an integer"):
        cmp.run_compare(bad, runner, known_methods=cmp.known_methods(), report=False, command="rarts compare (bad)")
    assert (plan.out / "compare.json").read_text() == recorded

    # Seed 2 is new, seed 0 finished with other settings: refused before seed 2's search starts, and not recorded.
    other = plan_for(tmp_path, methods=("rarts",), seeds=(2, 0), search_overrides={"epochs": "5"})
    fake = FakeRunner()
    with pytest.raises(UsageError, match="rarts-seed0 was run with other settings"):
        cmp.run_compare(other, fake, log=lambda s: None, report=False, command="rarts compare (other)")
    assert fake.calls == [] and not (plan.out / "search" / "rarts-seed2").exists()
    assert (plan.out / "compare.json").read_text() == recorded
    assert json.loads(recorded)["commands"] == ["rarts compare (good)"]


def test_too_many_seeds_are_refused(tmp_path):
    assert len(cmp.parse_seeds("0-999")) == cmp.MAX_SEEDS == 1000
    for text in ("0-1000", "0-999,1000", "0-100000000", "5,0-99999999999999999999"):  # refused at once, not expanded
        with pytest.raises(UsageError, match=r"^--seeds: .*at most 1000 seeds"):
            cmp.parse_seeds(text)
    with pytest.raises(UsageError, match="at most 1000 seeds"):
        cmp.run_compare(plan_for(tmp_path, seeds=tuple(range(1001))), FakeRunner(), report=False)


# ---- the real search loop and training, end to end ---------------------------------------------------------------

TINY = {
    "search.dataset": "cifar10-mini",
    "search.subset": "64",  # 32 images per half: 2 steps of batch 16 per epoch
    "search.image_size": "8",
    "search.channels": "4",
    "search.layers": "3",
    "search.epochs": "1",
    "search.batch_size": "16",
    "search.checkpoint_every": "1",
    "train.dataset": "cifar10-mini",
    "train.init_channels": "4",
    "train.layers": "3",
    "train.epochs": "1",
    "train.batch_size": "128",
    "train.auxiliary": "false",
    "tensorboard": "false",
}


class InterruptedRunner(cmp.InProcessRunner):
    """The real runner, but the search of `target` is interrupted (Ctrl-C) right after its first step's checkpoint."""

    def __init__(self, target: tuple[str, int]):
        self.target = target

    def search(self, plan, method, seed, run_dir, resume):
        if (method, seed) != self.target:
            return super().search(plan, method, seed, run_dir, resume)
        from rarts.search.loop import run_search

        def interrupt(epoch, step):
            raise KeyboardInterrupt

        run_search(self._search_cfg(plan, method, seed), run_dir, resume=resume, quiet=True, on_step=interrupt)


@pytest.mark.slow
def test_compare_end_to_end_with_an_interruption(tmp_path):
    runner = cmp.InProcessRunner()
    search, train = runner.split(TINY)
    plan = plan_for(tmp_path, methods=("darts1", "rarts"), seeds=(0, 1), preset="paper", train=True, device="cpu")
    plan.search_overrides, plan.train_overrides = search, train
    with pytest.raises(KeyboardInterrupt):
        cmp.run_compare(plan, InterruptedRunner(("darts1", 1)), known_methods=cmp.known_methods(), report=False)
    interrupted = plan.out / "search" / "darts1-seed1"
    assert (interrupted / "checkpoint.pt").is_file() and not (interrupted / "summary.json").exists()

    outcome = cmp.run_compare(
        plan, runner, known_methods=cmp.known_methods(), report_options={"toy_steps": 500}, log=lambda s: None
    )
    assert outcome.skipped == ["search darts1 seed 0", "search rarts seed 0"]
    assert outcome.resumed == ["search darts1 seed 1"] and len(outcome.started) == 5
    summary = json.loads((interrupted / "summary.json").read_text())
    assert summary["steps"] == 2 and summary["method"] == "darts1" and summary["seed"] == 1

    report = plan.out / "report"
    for name in ("report.md", "report.html", "results.csv", "table1.csv", "images/supernet-accuracy.png"):
        assert (report / name).is_file(), name
    for name in ("images/final-training.png", "images/toy/figure1.png"):
        assert (report / name).is_file(), name
    for run in ("darts1-seed0", "darts1-seed1", "rarts-seed0", "rarts-seed1"):
        assert (report / "images" / f"alpha-{run}.png").is_file()
        assert (report / "images" / "cells" / run / "normal.png").is_file()
        assert (report / "images" / "cells" / run / "reduce.png").is_file()
    md = (report / "report.md").read_text()
    rows = [line for line in md.splitlines() if line.startswith(("| DARTS (1st order) | 0, 1 |", "| RARTS | 0, 1 |"))]
    assert len(rows) == 2 and all(" ± " in row.split(" | ")[2] for row in rows)  # two seeds: mean ± std
    with open(report / "results.csv") as f:
        results = list(csv.DictReader(f))
    assert len(results) == 4 and all(0 <= float(r["test_top1_error"]) <= 100 for r in results)
    assert "rarts compare --methods darts1,rarts --seeds 0,1 --preset paper --train" in md
    page = check_page((report / "report.html").read_text())
    assert len(page.images) == md.count("![")


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="Linux only")
def test_reset_peak_memory_starts_the_peak_afresh():
    import resource

    import numpy as np

    block = np.ones(40_000_000 // 8)  # 40 MB touched
    block += 1
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    del block
    assert cmp.reset_peak_memory()
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert after < before - 20_000  # KiB: the 40 MB block no longer counts


def test_settings_check_ignores_free_keys_and_keys_only_one_side_has(tmp_path):
    job = cmp.Job("search", "rarts", 0, tmp_path / "run", tmp_path / "run")
    write(job.run_dir / "config.json", {"epochs": 3, "device": "cuda", "lam": 1.0})
    cmp.check_same_settings(job, {"epochs": 3, "device": "cpu", "lam": 1.0, "new_setting": 7}, frozenset({"device"}))
    with pytest.raises(UsageError, match="lam: 1.0 there, 2.0 here"):
        cmp.check_same_settings(job, {"epochs": 3, "lam": 2.0}, frozenset({"device"}))
