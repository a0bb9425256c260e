"""A fair comparison in one command: every method and seed searched (and trained) with the same settings.

    plan = ComparePlan(methods=("darts1", "rarts"), seeds=(0, 1), out=Path("runs/compare-quick"))
    outcome = run_compare(plan, InProcessRunner())

The folder `plan.out` holds

    compare.json                 the plan and every command line that worked on it
    search/<method>-seed<S>/     one search run per method and seed (`rarts search`'s run folder)
    train/<method>-seed<S>/      with train=True, the final training of that run's genotype (`rarts train`'s)
    report/                      report.md, report.html, results.csv, table1.csv, images/ (rarts.report)

Every run of a method and seed gets the same preset and the same overrides, so the runs differ only in the
method and the seed, and runs of one seed see the same data split and initial weights. Seeds run in the outer
loop, so the first complete set of methods is ready early.

Resuming: run the same command again. A finished run (summary.json / result.json) is skipped, after checking that
its saved settings are the ones this comparison asks for (a folder searched with other settings is refused
rather than mixed in); a started run (a checkpoint) is resumed; a run that fails (RunFailed) is recorded and the
others go on, and the command then exits 1 after writing the report of what finished.

Every check (the plan, every stage's settings, the settings of every finished run) comes before the first run and
before compare.json is written: a comparison takes days on the paper preset, so a typo must not surface only when
the training is reached, and a refused command must leave the folder as it was.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Protocol

from rarts.errors import RunFailed, UsageError
from rarts.report import METHOD_ORDER, RESULT_FILE, SUMMARY_FILE
from rarts.utils import read_json, write_json

PLAN_FILE = "compare.json"

# More seeds than anyone runs (each is a search per method): a range like 0-100000000 is a slip, and expanding it
# would hang the command before it said anything.
MAX_SEEDS = 1000


@dataclass
class ComparePlan:
    """What `rarts compare` runs: methods x seeds, one preset, the same overrides for every run."""

    methods: tuple[str, ...]
    seeds: tuple[int, ...]
    out: Path
    preset: str = "quick"
    train: bool = False
    search_overrides: dict[str, str] = field(default_factory=dict)
    train_overrides: dict[str, str] = field(default_factory=dict)
    device: Optional[str] = None
    data_dir: Optional[str] = None

    def validate(self, known_methods: Sequence[str]) -> None:
        if not self.methods:
            raise UsageError("--methods: name at least one method")
        unknown = [m for m in self.methods if m not in known_methods]
        if unknown:
            raise UsageError(f"--methods: unknown method {unknown[0]!r}; known: {', '.join(known_methods)}")
        if len(set(self.methods)) != len(self.methods):
            raise UsageError("--methods: a method is named twice")
        if not self.seeds:
            raise UsageError("--seeds: name at least one seed")
        if len(set(self.seeds)) != len(self.seeds):
            raise UsageError("--seeds: a seed is named twice")
        if any(s < 0 for s in self.seeds):
            raise UsageError("--seeds: seeds must be >= 0")
        if len(self.seeds) > MAX_SEEDS:
            raise UsageError(f"--seeds: {len(self.seeds)} seeds; a comparison takes at most {MAX_SEEDS} seeds")
        if not self.train:
            # Without --train no training runs, so a setting that reaches only the training would be ignored without
            # a word. A bare key that both stages know reaches both with one value, the search's too: that one is
            # taken (train.key=v with the same search.key=v cannot be told from it, and is as harmless).
            only = [k for k, v in self.train_overrides.items() if self.search_overrides.get(k) != v]
            if only:
                key, value = only[0], self.train_overrides[only[0]]
                raise UsageError(
                    f"setting {key}={value} applies only to the training (train.{key}), which runs only with "
                    "--train: add --train, or leave the setting out"
                )

    def command_line(self) -> str:
        """The `rarts compare` command that runs this plan (bare overrides written with their stage prefix)."""
        import shlex

        parts = ["rarts", "compare", "--methods", ",".join(self.methods), "--seeds", ",".join(map(str, self.seeds))]
        parts += ["--preset", self.preset] + (["--train"] if self.train else []) + ["--out", str(self.out)]
        if self.device:
            parts += ["--device", self.device]
        if self.data_dir:
            parts += ["--data-dir", self.data_dir]
        parts += [f"search.{k}={v}" for k, v in self.search_overrides.items()]
        parts += [f"train.{k}={v}" for k, v in self.train_overrides.items()]
        return " ".join(shlex.quote(p) for p in parts)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(methods=list(self.methods), seeds=list(self.seeds), out=str(self.out))
        return d


def parse_methods(text: str) -> tuple[str, ...]:
    """'darts1, rarts' -> ('darts1', 'rarts'); 'all' names every method in the paper's order."""
    if text.strip() == "all":
        return METHOD_ORDER
    return tuple(m.strip() for m in text.split(",") if m.strip())


def parse_seeds(text: str) -> tuple[int, ...]:
    """'0,1,2' -> (0, 1, 2); 'a-b' is the range a..b inclusive. More than MAX_SEEDS seeds is a UsageError, raised
    before a range is expanded."""
    seeds: list[int] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        try:
            lo, hi = part.split("-", 1) if "-" in part[1:] else (part, part)
            lo, hi = int(lo), int(hi)
        except ValueError:
            raise UsageError(f"--seeds: {part!r} is not an integer or a range a-b") from None
        count = len(seeds) + max(0, hi - lo + 1)  # counted, not len(range): that overflows past 2**63
        if count > MAX_SEEDS:
            raise UsageError(
                f"--seeds: {text.strip()!r} names {count} seeds; a comparison takes at most {MAX_SEEDS} seeds"
            )
        seeds.extend(range(lo, hi + 1))
    return tuple(seeds)


def split_overrides(
    overrides: dict[str, str], search_keys: Sequence[str], train_keys: Sequence[str]
) -> tuple[dict[str, str], dict[str, str]]:
    """Route key=value overrides: `search.key` and `train.key` to that stage only, a bare key to every stage whose
    config has it. A key that no stage knows is a UsageError."""
    search: dict[str, str] = {}
    train: dict[str, str] = {}
    for key, value in overrides.items():
        stage, _, name = key.partition(".")
        if name and stage in ("search", "train"):
            (search if stage == "search" else train)[name] = value
            continue
        if key not in search_keys and key not in train_keys:
            known = sorted(set(search_keys) | set(train_keys))
            raise UsageError(f"unknown setting {key!r} for search or training; known: {', '.join(known)}")
        if key in search_keys:
            search[key] = value
        if key in train_keys:
            train[key] = value
    return search, train


class Runner(Protocol):
    """Runs the two stages. The configs returned are the dicts a run writes to its config.json."""

    search_checkpoint: str  # file name of a started search run's checkpoint
    train_checkpoint: str

    def free_settings(self, stage: str) -> frozenset[str]:
        """Settings of `stage` ("search", "train") that may differ between a finished run and this comparison."""
        ...

    def search_config(self, plan: ComparePlan, method: str, seed: int) -> dict[str, Any]: ...

    def train_config(self, plan: ComparePlan, search_dir: Path, seed: int) -> dict[str, Any]: ...

    def search(self, plan: ComparePlan, method: str, seed: int, run_dir: Path, resume: bool) -> None: ...

    def train(self, plan: ComparePlan, search_dir: Path, seed: int, run_dir: Path, resume: bool) -> None: ...


@dataclass
class Job:
    stage: str  # "search" or "train"
    method: str
    seed: int
    run_dir: Path
    search_dir: Path

    @property
    def name(self) -> str:
        return f"{self.stage} {self.method} seed {self.seed}"


@dataclass
class CompareOutcome:
    skipped: list[str] = field(default_factory=list)  # finished before this call
    resumed: list[str] = field(default_factory=list)
    started: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)  # "<job>: <message>"
    report: dict[str, Path] = field(default_factory=dict)


def run_name(method: str, seed: int) -> str:
    return f"{method}-seed{seed}"


def jobs(plan: ComparePlan) -> list[Job]:
    """Every search, then (with plan.train) every training; seeds in the outer loop."""
    out = []
    stages = ("search", "train") if plan.train else ("search",)
    for stage in stages:
        for seed in plan.seeds:
            for method in plan.methods:
                search_dir = plan.out / "search" / run_name(method, seed)
                out.append(Job(stage, method, seed, plan.out / stage / run_name(method, seed), search_dir))
    return out


def job_state(job: Job, runner: Runner) -> str:
    """'done' (finished), 'resume' (a checkpoint to continue) or 'new'."""
    done = SUMMARY_FILE if job.stage == "search" else RESULT_FILE
    checkpoint = runner.search_checkpoint if job.stage == "search" else runner.train_checkpoint
    if (job.run_dir / done).is_file():
        return "done"
    if (job.run_dir / checkpoint).is_file():
        return "resume"
    return "new"


def check_same_settings(job: Job, expected: dict[str, Any], free: frozenset[str]) -> None:
    """Refuse a finished run whose config.json differs from what this comparison would run, in any setting but
    the `free` ones. Settings only one side has (one added to rarts since the run) are not compared."""
    path = job.run_dir / "config.json"
    if not path.is_file():
        raise UsageError(f"{job.run_dir} is finished but holds no config.json: cannot check its settings; remove it")
    saved = read_json(path)
    if not isinstance(saved, dict):
        raise UsageError(f"{path} is not a settings object: remove that folder")
    a = {k: json.dumps(v, sort_keys=True) for k, v in saved.items()}
    b = {k: json.dumps(v, sort_keys=True) for k, v in expected.items()}
    differ = sorted(k for k in set(a) & set(b) if k not in free and a[k] != b[k])
    if differ:
        detail = ", ".join(f"{k}: {a[k]} there, {b[k]} here" for k in differ[:4])
        raise UsageError(
            f"{job.run_dir} was run with other settings ({detail}): use another --out, or remove that folder"
        )


def expected_config(plan: ComparePlan, runner: Runner, job: Job) -> dict[str, Any]:
    """The config `job` runs with (the runner builds and validates it)."""
    if job.stage == "search":
        return runner.search_config(plan, job.method, job.seed)
    return runner.train_config(plan, job.search_dir, job.seed)


def check_plan(plan: ComparePlan, runner: Runner, todo: Sequence[Job]) -> None:
    """Refuse, before anything runs or is written, what would otherwise be refused only when its job is reached:
    a setting either stage rejects, and a finished run with other settings.

    Every stage's config is built once per method (the seed changes no setting's validity, and building one for
    each of hundreds of seeds would take seconds). A training config names its search folder as the genotype; the
    folder need not exist yet, as the genotype, the one thing not known before the search, is read only when the
    training starts (and is a free setting when a finished training is checked)."""
    for method in plan.methods:
        seed = plan.seeds[0]
        runner.search_config(plan, method, seed)
        if plan.train:
            runner.train_config(plan, plan.out / "search" / run_name(method, seed), seed)
    for job in todo:
        if job_state(job, runner) == "done":
            check_same_settings(job, expected_config(plan, runner, job), runner.free_settings(job.stage))


def record_plan(plan: ComparePlan, command: str) -> list[str]:
    """Write compare.json (the plan, and the command lines that worked on this folder); return those lines."""
    path = plan.out / PLAN_FILE
    commands: list[str] = []
    if path.is_file():
        old = read_json(path)
        if isinstance(old, dict) and isinstance(old.get("commands"), list):
            commands = [str(c) for c in old["commands"]]
    commands.append(command)
    write_json(path, {"plan": plan.to_dict(), "commands": commands})
    return commands


def run_compare(
    plan: ComparePlan,
    runner: Runner,
    known_methods: Sequence[str] = METHOD_ORDER,
    log: Callable[[str], None] = print,
    command: Optional[str] = None,  # recorded in compare.json; default: plan.command_line()
    report: bool = True,
    report_options: Optional[dict[str, Any]] = None,
) -> CompareOutcome:
    """Run (or resume) every job of the plan, then write the report. Raises RunFailed at the end if a run failed."""
    from rarts.report import report_from_folders

    plan.validate(known_methods)
    todo = jobs(plan)
    check_plan(plan, runner, todo)
    # Only a command that passed every check is recorded (compare.json: the command lines that worked on the folder).
    plan.out.mkdir(parents=True, exist_ok=True)
    commands = record_plan(plan, command if command is not None else plan.command_line())
    outcome = CompareOutcome()
    failed_searches: set[Path] = set()
    for i, job in enumerate(todo, 1):
        tag = f"[{i}/{len(todo)}] {job.name}"
        if job.stage == "train" and job.search_dir in failed_searches:
            outcome.failed.append(f"{job.name}: not run, its search failed")
            log(f"{tag}: not run, its search failed")
            continue
        state = job_state(job, runner)
        if state == "done":  # its settings were checked by check_plan
            outcome.skipped.append(job.name)
            log(f"{tag}: finished before, skipped ({job.run_dir})")
            continue
        log(f"{tag}: {'resuming' if state == 'resume' else 'starting'} in {job.run_dir}")
        t0 = time.perf_counter()
        try:
            if job.stage == "search":
                runner.search(plan, job.method, job.seed, job.run_dir, resume=state == "resume")
            else:
                runner.train(plan, job.search_dir, job.seed, job.run_dir, resume=state == "resume")
        except RunFailed as e:
            outcome.failed.append(f"{job.name}: {e}")
            if job.stage == "search":
                failed_searches.add(job.search_dir)
            log(f"{tag}: failed: {e}")
            continue
        except KeyboardInterrupt:
            log(f"{tag}: interrupted; run the same command again to resume")
            raise
        (outcome.resumed if state == "resume" else outcome.started).append(job.name)
        log(f"{tag}: done in {time.perf_counter() - t0:.1f} s")

    if report:
        finished = [j.run_dir for j in todo if job_state(j, runner) == "done"]
        if any(j.stage == "search" and j.run_dir in finished for j in todo):
            notes = [f"failed: {f}" for f in outcome.failed]
            outcome.report = report_from_folders(
                finished,
                plan.out / "report",
                notes=notes,
                commands=commands,
                title=f"RARTS comparison ({plan.preset} preset)",
                **(report_options or {}),
            )
            log(f"report: {outcome.report['markdown']}, {outcome.report['html']}, {outcome.report['csv']}")
    if outcome.failed:
        raise RunFailed(
            f"{len(outcome.failed)} run(s) failed ({'; '.join(outcome.failed)}); the report covers the rest. "
            "Run the same command again to retry them"
        )
    return outcome


# --- the real runner: the search loop and the training function, in this process ------------------------------------

# Set by the comparison itself, one value per run; an override would make the runs differ in more than that.
PLANNED_KEYS = ("method", "seed", "genotype")


def known_methods() -> tuple[str, ...]:
    """The registered search methods, the paper's ones first."""
    from rarts.search import METHODS

    return tuple(sorted(METHODS, key=lambda m: (METHOD_ORDER.index(m) if m in METHOD_ORDER else len(METHOD_ORDER), m)))


class InProcessRunner:
    """Runs rarts.search.loop.run_search and rarts.train.train in this process, so progress and errors surface."""

    search_checkpoint = "checkpoint.pt"
    train_checkpoint = "checkpoint.pt"

    def split(self, overrides: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
        """Route key=value overrides to the search and the training config (see split_overrides)."""
        from rarts.config import setting_names
        from rarts.search.config import SearchConfig
        from rarts.train import TrainConfig

        for key in overrides:
            if key.rpartition(".")[2] in PLANNED_KEYS:
                raise UsageError(f"setting {key!r} is set by the comparison: use --methods and --seeds")
        return split_overrides(overrides, setting_names(SearchConfig), setting_names(TrainConfig))

    def free_settings(self, stage: str) -> frozenset[str]:
        """Where the data lie and how a run reports (the settings a resumed run may change), and the genotype's
        folder of a training run, which a compare folder that moved no longer matches."""
        from rarts.runs import resume_free_settings

        return resume_free_settings("search") if stage == "search" else resume_free_settings("train") | {"genotype"}

    @staticmethod
    def _flags(plan: ComparePlan) -> dict[str, Any]:
        return {"device": plan.device, "data_dir": plan.data_dir}

    def _search_cfg(self, plan: ComparePlan, method: str, seed: int):
        from rarts.search.config import make_config

        return make_config(plan.preset, plan.search_overrides, {**self._flags(plan), "method": method, "seed": seed})

    def _train_cfg(self, plan: ComparePlan, search_dir: Path, seed: int):
        from rarts.train import make_config

        flags = {**self._flags(plan), "genotype": str(search_dir), "seed": seed}
        return make_config(plan.preset, plan.train_overrides, flags)

    def search_config(self, plan: ComparePlan, method: str, seed: int) -> dict[str, Any]:
        return asdict(self._search_cfg(plan, method, seed))

    def train_config(self, plan: ComparePlan, search_dir: Path, seed: int) -> dict[str, Any]:
        return asdict(self._train_cfg(plan, search_dir, seed))

    def search(self, plan: ComparePlan, method: str, seed: int, run_dir: Path, resume: bool) -> None:
        from rarts.search.loop import run_search

        reset_peak_memory()
        run_search(self._search_cfg(plan, method, seed), run_dir, resume=resume)

    def train(self, plan: ComparePlan, search_dir: Path, seed: int, run_dir: Path, resume: bool) -> None:
        from rarts.train import train

        reset_peak_memory()
        train(self._train_cfg(plan, search_dir, seed), run_dir, resume=resume)


def reset_peak_memory() -> bool:
    """Start the peak-memory figures afresh, so each run of this process reports its own peak, not an earlier
    run's: CUDA's peak statistics, and the process's peak resident set size (Linux: /proc/self/clear_refs).
    Returns False where the CPU peak cannot be reset (then a run's figure is the process's peak so far)."""
    import torch

    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            torch.cuda.reset_peak_memory_stats(i)
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets the high-water mark of the resident set size, which getrusage reports
    except OSError:
        return False
    return True
