"""Distributed search and training on 2 CPU processes (gloo, loopback only).

The processes are started with torch.multiprocessing.spawn and join through a file:// rendezvous in the test's
temporary folder, or, for the command-line test, by torchrun on 127.0.0.1. Each spawn costs seconds (every
child imports torch), so one spawn checks many things.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

import tiny_runs
from rarts.distributed import (
    World,
    average_gradients,
    current_world,
    rank_seed,
    world_from_env,
)
from rarts.errors import UsageError

WORLD = 2
BATCH = 8  # the global batch of the step test; each process takes BATCH // WORLD images
# Steps per method: 2 for DARTS 2nd order, whose second virtual step uses the momentum buffer of the first.
STEPS = {"darts2": 2}


def _loopback_env() -> dict[str, str]:
    """Keep gloo on the loopback interface."""
    names = {name for _, name in socket.if_nameindex()}
    return {"GLOO_SOCKET_IFNAME": "lo"} if "lo" in names else {}


def _run_spawned(tmp_path: Path, fn, *args, backend: str = "gloo") -> None:
    for key, value in _loopback_env().items():
        os.environ.setdefault(key, value)
    mp.spawn(_worker, args=(str(tmp_path / "rendezvous"), fn, args, backend), nprocs=WORLD, join=True)


def _worker(rank: int, rendezvous: str, fn, args, backend: str = "gloo") -> None:
    torch.set_num_threads(1)
    if backend == "nccl":  # one GPU per process, as torchrun's LOCAL_RANK gives it
        torch.cuda.set_device(rank)
    dist.init_process_group(backend, init_method=f"file://{rendezvous}", rank=rank, world_size=WORLD)
    try:
        fn(rank, *args)
    finally:
        dist.destroy_process_group()


# --- one step: 2 processes against one process on the same global batch -----------------------------------------


class PerShard(nn.Module):
    """The single-process reference: the network applied to each process's shard separately (batch-norm
    statistics per shard), logits concatenated, so the mean loss is the average of the shards' losses."""

    def __init__(self, net: nn.Module, shards: int):
        super().__init__()
        self.net, self.shards = net, shards

    def forward(self, x, mixing):
        return torch.cat([self.net(part, mixing) for part in x.chunk(self.shards)])


def _batches(step: int) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(100 + step)
    x = torch.randn(2, BATCH, 3, 8, 8, generator=g, dtype=torch.float64)
    t = torch.randint(0, 10, (2, BATCH), generator=g)
    return (x[0], t[0]), (x[1], t[1])


def _method(name: str, shards: int = 1, device: str = "cpu"):
    from rarts.search import METHODS, MethodSettings
    from rarts.supernet import Architecture, SearchNetwork

    torch.manual_seed(0)  # initialised on the CPU: the same start on every device
    net = SearchNetwork(4, 10, 3).double().to(device)
    arch = Architecture().double().to(device)
    w = PerShard(net, shards) if shards > 1 else net
    settings = MethodSettings(lr=0.1, arch_lr=0.01, grad_clip=5.0, lam=0.7, beta=0.5, xi=0.05)
    return METHODS[name](w, arch, settings)


def _run_steps(method, shard: slice | None, steps: int) -> dict[str, torch.Tensor]:
    device = method.alphas()[0].device
    method.start_epoch(0)
    for step in range(steps):
        (xt, tt), (xv, tv) = _batches(step)
        if shard is not None:
            xt, tt, xv, tv = xt[shard], tt[shard], xv[shard], tv[shard]
        method.step((xt.to(device), tt.to(device)), (xv.to(device), tv.to(device)))
    state = {
        f"{key}.{i}": p.detach().cpu().clone()
        for key, net in method.networks().items()
        for i, p in enumerate(net.parameters())
    }
    state.update({f"alpha.{i}": a.detach().cpu().clone() for i, a in enumerate(method.alphas())})
    return state


def _steps_on_ranks(rank: int, out: str, names: tuple[str, ...], device_type: str = "cpu") -> None:
    from rarts.distributed import distribute_search

    device = f"cuda:{rank}" if device_type == "cuda" else "cpu"
    shard = slice(rank * BATCH // WORLD, (rank + 1) * BATCH // WORLD)
    results = {}
    for name in names:
        method = _method(name, device=device)
        distribute_search(method)
        results[name] = _run_steps(method, shard, STEPS.get(name, 1))
    results["unsynced"] = _run_steps(_method(names[0], device=device), shard, STEPS.get(names[0], 1))
    torch.save(results, Path(out) / f"steps-rank{rank}.pt")


def _max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k] - b[k]).abs().max()) for k in a)


# rarts (w, y and alpha steps) in the fast suite; the others, darts2 with its averaged virtual-step gradient and v
# among them, in the slow one (a step of these tiny networks takes seconds on a busy 2-core machine).
METHOD_GROUPS = (("rarts",), ("darts2", "darts1", "milenas", "random"))


# NCCL needs a GPU per process (it refuses two ranks on one GPU since NCCL 2.5): these run only where there are two.
two_gpus = pytest.mark.skipif(
    torch.cuda.device_count() < WORLD or not dist.is_nccl_available(), reason="NCCL needs two GPUs"
)


@pytest.mark.parametrize(
    "names, backend",
    [
        (METHOD_GROUPS[0], "gloo"),
        pytest.param(METHOD_GROUPS[1], "gloo", marks=pytest.mark.slow),
        pytest.param(METHOD_GROUPS[0] + METHOD_GROUPS[1], "nccl", marks=[pytest.mark.slow, two_gpus]),
    ],
)
def test_two_process_steps_equal_one_process_on_the_global_batch(tmp_path, names, backend):
    device_type = "cuda" if backend == "nccl" else "cpu"
    _run_spawned(tmp_path, _steps_on_ranks, str(tmp_path), names, device_type, backend=backend)
    ranks = [torch.load(tmp_path / f"steps-rank{r}.pt", weights_only=True) for r in range(WORLD)]
    for name in names:
        reference = _run_steps(_method(name, shards=WORLD), None, STEPS.get(name, 1))
        start = _run_steps(_method(name), None, steps=0)
        assert _max_diff(ranks[0][name], ranks[1][name]) == 0.0, name  # the replicas stay identical
        assert _max_diff(ranks[0][name], reference) < 1e-4, name
        if name != "random":  # random takes weight steps only, so only w moved; every other method moved alpha too
            moved_alpha = max(float((ranks[0][name][k] - start[k]).abs().max()) for k in start if "alpha" in k)
            assert moved_alpha > 1e-4, name
    # Without the gradient all-reduce each process follows its own shard: the check above would fail.
    unsynced = _run_steps(_method(names[0], shards=WORLD), None, STEPS.get(names[0], 1))
    assert _max_diff(ranks[0]["unsynced"], unsynced) > 1e-4


# --- whole runs: search and training on 2 processes, killed and resumed -------------------------------------------

TINY_SEARCH = {  # 16 images a half: 2 steps an epoch at 4 images per process
    **tiny_runs.TINY_SEARCH,
    "batch_size": "4",
    "checkpoint_every": "1",
    "threads": "1",
}
TINY_TRAIN = {
    "channels": 4,
    "layers": 3,
    "batch_size": 4,  # 32 images: 4 steps an epoch on 2 processes
    "eval_batch_size": 4,
    "epochs": 2,
    "progress": False,
    "tensorboard": False,
    "device": "cpu",
    "threads": 1,
}


SEARCH_FILES = ("genotype.json", "alpha.json", "alphas.jsonl")
TRAIN_FILES = ("genotype.json",)  # result.json holds times: its figures are compared below


def _search_config():
    from rarts.search.config import make_config

    return make_config("paper", TINY_SEARCH, {"method": "rarts", "device": "cpu"})


def _train_sets():
    from rarts.data.imageset import ImageSet

    def synthetic(n: int, seed: int, split: str) -> ImageSet:
        g = torch.Generator().manual_seed(seed)
        images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g)
        return ImageSet(
            "synthetic", split, images, torch.arange(n) % 10, tuple("abcdefghij"), (0.5,) * 3, (0.25,) * 3, "synthetic"
        )

    return synthetic(32, 0, "train"), synthetic(14, 1, "test")  # 14 test images: the last shard is uneven


def _runs_on_ranks(rank: int, out: str) -> None:
    from rarts.search.loop import run_search
    from rarts.train import load_checkpoint as load_train_checkpoint
    from rarts.train import make_config, train

    out = Path(out)
    cfg = _search_config()
    summaries = [run_search(cfg, out / "search-whole", quiet=True)]
    with pytest.raises(tiny_runs.Killed):
        run_search(cfg, out / "search-killed", quiet=True, on_step=tiny_runs.kill_after(3))
    summaries.append(run_search(cfg, out / "search-killed", resume=True, quiet=True))
    tcfg = make_config("quick", TINY_TRAIN, {"genotype": "DARTS_V2"})
    results = [train(tcfg, out / "train-whole", sets=_train_sets(), log=lambda s: None)]
    assert train(tcfg, out / "train-stopped", stop_after=1, sets=_train_sets(), log=lambda s: None) is None
    results.append(train(tcfg, out / "train-stopped", resume=True, sets=_train_sets(), log=lambda s: None))
    # Killed at step 2 of epoch 2 (drop-path on: each process's generator state is in the checkpoint).
    every = make_config("quick", {**TINY_TRAIN, "checkpoint_every": 1}, {"genotype": "DARTS_V2"})
    with pytest.raises(tiny_runs.Killed):
        train(every, out / "train-killed", sets=_train_sets(), log=lambda s: None, on_step=tiny_runs.kill_after(6))
    ckpt = load_train_checkpoint(out / "train-killed" / "checkpoint.pt")
    assert (ckpt["epoch"], ckpt["step"], ckpt["partial"]["seen"]) == (1, 2, 16)
    results.append(train(every, out / "train-killed", resume=True, sets=_train_sets(), log=lambda s: None))
    # A streamed image folder (StreamLoader: each global batch cut over the processes), killed mid-epoch and
    # resumed; its one test image leaves process 1 without any, which must not hang the evaluation.
    streamed = {**TINY_TRAIN, "batch_size": 2, "eval_batch_size": 2, "workers": 0, "checkpoint_every": 1}
    fcfg = make_config(
        "quick", {**streamed, "dataset": "folder", "data_dir": str(out / "images")}, {"genotype": "DARTS_V2"}
    )
    results.append(train(fcfg, out / "folder-whole", log=lambda s: None))
    with pytest.raises(tiny_runs.Killed):  # 10 images: 2 steps an epoch of 2 x 2
        train(fcfg, out / "folder-killed", log=lambda s: None, on_step=tiny_runs.kill_after(3))
    results.append(train(fcfg, out / "folder-killed", resume=True, log=lambda s: None))
    # An auxiliary head with weight 0 would get no gradient, which DistributedDataParallel refuses: none is built.
    no_aux = make_config("quick", {**TINY_TRAIN, "auxiliary_weight": 0, "epochs": 1}, {"genotype": "DARTS_V2"})
    assert train(no_aux, out / "train-no-aux", sets=_train_sets(), log=lambda s: None) is not None
    torch.save({"summaries": summaries, "results": results}, out / f"runs-rank{rank}.pt")


def _image_folder(root: Path) -> None:
    """train/: 5 images of each of two classes; val/: one image (a class folder may be empty)."""
    Image = pytest.importorskip("PIL.Image")
    g = torch.Generator().manual_seed(0)
    for split, counts in (("train", (5, 5)), ("val", (1, 0))):
        for cls, n in zip(("cat", "dog"), counts):
            (root / split / cls).mkdir(parents=True)
            for i in range(n):
                pixels = torch.randint(0, 256, (20 + 3 * i, 24, 3), dtype=torch.uint8, generator=g).numpy()
                Image.fromarray(pixels).save(root / split / cls / f"{i}.png")


def _untimed(d: dict) -> dict:
    times = ("seconds", "search_seconds", "cpu_seconds", "epoch_time_s", "elapsed_s", "train_time_s", "train_time_h")
    return {k: v for k, v in d.items() if k not in times}


def _assert_same_run(a: Path, b: Path, files: tuple[str, ...]) -> None:
    """Two run folders hold the same files and the same metric rows (but for times). The epoch means may differ in
    float32 rounding: a resumed epoch adds the saved sum of all processes to rank 0's new terms, not rank by rank."""
    for name in files:
        assert (a / name).read_text() == (b / name).read_text(), name
    rows_a, rows_b = (
        [_untimed(json.loads(line)) for line in (d / "metrics.jsonl").read_text().splitlines()] for d in (a, b)
    )
    assert [r.keys() for r in rows_a] == [r.keys() for r in rows_b]
    for ra, rb in zip(rows_a, rows_b):
        for key, value in ra.items():
            assert rb[key] == (pytest.approx(value, rel=1e-6) if isinstance(value, float) else value), key


@pytest.mark.slow
def test_two_process_search_and_training_runs_resume_exactly(tmp_path):
    from rarts.data import DeviceLoader
    from rarts.runs import load_checkpoint
    from rarts.search import METHODS
    from rarts.search.loop import evaluate, prepare_data
    from rarts.supernet import Architecture, SearchNetwork
    from rarts.train import evaluate as evaluate_network
    from rarts.train import load_checkpoint as load_train_checkpoint
    from rarts.train import model_from_checkpoint

    _image_folder(tmp_path / "images")
    _run_spawned(tmp_path, _runs_on_ranks, str(tmp_path))
    ranks = [torch.load(tmp_path / f"runs-rank{r}.pt", weights_only=True) for r in range(WORLD)]
    # Search: rank 0 reports and writes one set of files; a killed and resumed run ends as the whole one.
    whole, resumed = ranks[0]["summaries"]
    assert whole["world_size"] == WORLD and whole["steps"] == 4 and ranks[1]["summaries"] == [{}, {}]
    assert resumed["genotype"] == whole["genotype"]
    _assert_same_run(tmp_path / "search-whole", tmp_path / "search-killed", SEARCH_FILES)
    assert len((tmp_path / "search-whole" / "alphas.jsonl").read_text().splitlines()) == 2
    # The logged validation figures are those of the whole validation half, evaluated here on one process.
    cfg = _search_config()
    ckpt = load_checkpoint(tmp_path / "search-whole" / "checkpoint.pt", "search")
    method = METHODS["rarts"](SearchNetwork(4, 10, 2), Architecture(), cfg.method_settings)
    method.load_state_dict(ckpt["method"])
    loss, acc = evaluate(method.w, prepare_data(cfg, torch.device("cpu")).val_eval, method.mixing(detach=True))
    last = json.loads((tmp_path / "search-whole" / "metrics.jsonl").read_text().splitlines()[-1])
    assert last["val_loss"] == pytest.approx(loss, abs=1e-5) and last["val_acc"] == pytest.approx(100 * acc, abs=1e-7)
    # Training: the same on both ranks (figures summed over them), the resumed run ends as the whole one.
    assert _untimed(ranks[1]["results"][0]) == _untimed(ranks[0]["results"][0])
    first, second, third, folder_whole, folder_resumed = ranks[0]["results"]
    assert folder_whole["test_images"] == 1 and _untimed(folder_resumed) == _untimed(folder_whole)
    _assert_same_run(tmp_path / "folder-whole", tmp_path / "folder-killed", TRAIN_FILES)
    assert first["world_size"] == WORLD and first["test_images"] == 14
    assert _untimed(second) == _untimed(first) and _untimed(third) == _untimed(first)
    _assert_same_run(tmp_path / "train-whole", tmp_path / "train-stopped", TRAIN_FILES)
    _assert_same_run(tmp_path / "train-whole", tmp_path / "train-killed", TRAIN_FILES)
    killed = load_train_checkpoint(tmp_path / "train-killed" / "checkpoint.pt")
    assert killed["epoch"] == 2 and len(killed["rng_ranks"]) == WORLD
    model = model_from_checkpoint(
        load_train_checkpoint(tmp_path / "train-whole" / "checkpoint.pt"), torch.device("cpu")
    )
    stats = evaluate_network(model, DeviceLoader.from_image_set(_train_sets()[1], 5, "cpu", train=False))
    assert stats["test_loss"] == pytest.approx(first["test_loss"], abs=1e-5)
    assert 100.0 - stats["test_top1"] == pytest.approx(first["test_top1_error"], abs=1e-9)


def _torchrun(tmp_path: Path, args: list[str]) -> subprocess.CompletedProcess:
    """`python -m torch.distributed.run --nproc_per_node=2 <args>` on the loopback interface; must succeed."""
    with socket.socket() as sock:  # a free port on the loopback interface for torchrun's rendezvous
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1"]
    env = {**os.environ, **_loopback_env(), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [*torchrun, f"--master_port={port}", *args], capture_output=True, text=True, env=env, timeout=600, cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.mark.slow
@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=two_gpus)])
def test_torchrun_search_on_two_processes_writes_one_run_folder(tmp_path, device):
    out = tmp_path / "run"
    search = ["-m", "rarts", "search", "--method", "darts1", "--out", str(out), "--device", device, "--quiet"]
    proc = _torchrun(tmp_path, [*search, *(f"{k}={v}" for k, v in TINY_SEARCH.items())])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["world_size"], summary["epochs"], summary["steps"]) == (2, 2, 4)
    assert proc.stdout.count("genotype.json") == 1  # rank 0 alone reports
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 2


@pytest.mark.slow
@two_gpus
def test_torchrun_training_on_two_gpus_tests_every_image_once(tmp_path):
    """NCCL and DistributedDataParallel on two GPUs: the bundled subset's 1,000 test images, each seen once."""
    out = tmp_path / "train"
    train = ["-m", "rarts", "train", "--genotype", "DARTS_V2", "--preset", "quick", "--out", str(out)]
    settings = ["--device", "cuda", "epochs=2", "channels=4", "layers=3", "batch_size=32", "checkpoint_every=20"]
    proc = _torchrun(tmp_path, [*train, *settings])
    result = json.loads((out / "result.json").read_text())
    assert (result["world_size"], result["test_images"], result["device_type"]) == (2, 1000, "cuda")
    assert proc.stdout.count("result.json") == 1  # rank 0 alone reports
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 2


# --- helpers without processes ------------------------------------------------------------------------------------


def test_world_from_env(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert world_from_env() == World(0, 1, 0)
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "1")
    world = world_from_env()
    assert world == World(3, 4, 1) and world.enabled and not world.is_main
    monkeypatch.setenv("RANK", "4")
    with pytest.raises(UsageError, match="RANK=4"):
        world_from_env()
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(UsageError, match="WORLD_SIZE"):
        world_from_env()


def test_the_step_test_covers_every_method():
    from rarts.search import METHODS

    assert set(sum(METHOD_GROUPS, ())) == set(METHODS)


def test_single_process_collectives_change_nothing():
    assert current_world() == World()
    grads = [torch.ones(2, 3), torch.full((4,), 2.0)]
    out = average_gradients(grads)
    assert all(torch.equal(a, b) for a, b in zip(out, [torch.ones(2, 3), torch.full((4,), 2.0)]))
    assert len({rank_seed(0, e, r) for e in range(3) for r in range(4)}) == 12
