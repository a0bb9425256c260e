"""Independent passes side by side (rarts.fast.paired): the runner, and RARTS and MiLeNAS steps that equal the
serial ones."""

from __future__ import annotations

import gc
import json
import threading

import pytest
import torch

from rarts.fast import paired, use_fast_paths
from rarts.fast.paired import PairedPasses
from rarts.search import METHODS, MethodSettings
from rarts.search.base import InTurn
from rarts.supernet import Architecture, SearchNetwork
from tiny_runs import TINY_SEARCH

# ---- the runner ----------------------------------------------------------------------------------------------------


def test_the_two_callables_run_at_the_same_time():
    barrier = threading.Barrier(2, timeout=20)  # passes only when both wait on it at once

    def meet(name):
        barrier.wait()
        return name, threading.current_thread().name

    runner = PairedPasses(2)
    try:
        (a, thread_a), (b, thread_b) = runner.run(lambda: meet("a"), lambda: meet("b"))
    finally:
        runner.close()
    assert (a, b) == ("a", "b")
    assert thread_a != thread_b and threading.current_thread().name not in (thread_a, thread_b)


@pytest.mark.parametrize("threads, each", [(2, (1, 1)), (3, (1, 1)), (4, (2, 2))])
def test_the_workers_share_the_threads_and_leave_the_callers_count_alone(threads, each):
    before = torch.get_num_threads()
    runner = PairedPasses(threads)
    try:
        assert torch.get_num_threads() == before
        assert runner.threads == each
        assert runner.run(torch.get_num_threads, torch.get_num_threads) == each  # as the passes see it
        assert torch.get_num_threads() == before
    finally:
        runner.close()


def test_an_error_is_raised_after_both_have_finished():
    finished = threading.Event()

    def fail():
        raise ValueError("first failed")

    def slow():
        finished.wait(0.2)
        finished.set()
        return 1

    def also_fails():
        raise RuntimeError("second failed")

    runner = PairedPasses(2)
    try:
        with pytest.raises(ValueError, match="first failed"):
            runner.run(fail, slow)
        assert finished.is_set()
        with pytest.raises(ValueError, match="first failed") as err:
            runner.run(fail, also_fails)
        if hasattr(err.value, "add_note"):  # Python 3.11+: the other failure is noted, not lost
            assert "second failed" in "".join(err.value.__notes__)
        assert runner.run(lambda: 1, lambda: 2) == (1, 2)  # the workers go on
    finally:
        runner.close()


def test_the_worker_threads_end_on_close_and_when_the_runner_is_dropped():
    runner = PairedPasses(2)
    threads = [w._thread for w in runner._workers]
    runner.close()
    assert not any(t.is_alive() for t in threads)
    runner = PairedPasses(2)
    threads = [w._thread for w in runner._workers]
    del runner
    gc.collect()
    for t in threads:
        t.join(timeout=20)
    assert not any(t.is_alive() for t in threads)


def test_one_thread_cannot_be_paired():
    with pytest.raises(ValueError, match="at least 2"):
        PairedPasses(1)


def test_a_worker_that_cannot_start_fails_the_constructor(monkeypatch):
    before = torch.get_num_threads()

    def refuse(n):
        if threading.current_thread().name.startswith("rarts-pass"):
            raise RuntimeError("no threads here")
        real(n)

    real = torch.set_num_threads
    monkeypatch.setattr(torch, "set_num_threads", refuse)
    with pytest.raises(RuntimeError, match="no threads here"):
        PairedPasses(2)
    assert torch.get_num_threads() == before


def test_methods_without_pairs_get_no_runner_and_never_call_their_executor():
    class Refusing:
        at_once = True

        def run(self, first, second):
            raise AssertionError("a method without pairs handed its executor a pair")

    methods = (make("darts1"), make("darts2"), make("random"), make("rarts", y_init="tied", sweep="jacobi"))
    for method in methods:
        sweep = method.sweep
        assert method.passes.pairs == 0
        torch.set_num_threads(2)  # where a method with pairs would get a runner
        try:
            assert paired.runner_for(method, torch.device("cpu")) is None
            with paired.attach(method, torch.device("cpu")) as runner:
                assert runner is None and isinstance(method.executor, InTurn) and method.sweep == sweep
        finally:
            torch.set_num_threads(1)
        # Which passes a step hands its executor does not depend on the thread count: one thread keeps the step cheap.
        method.executor = Refusing()
        method.start_epoch(0)
        method.step(*batches()[:2])


# ---- the methods ---------------------------------------------------------------------------------------------------


def make(name="rarts", fast=False, **settings):
    torch.manual_seed(0)
    net = SearchNetwork(4, 10, 3)
    if fast:
        use_fast_paths(net)
    arch = Architecture()
    with torch.no_grad():
        for a in arch.alphas():
            a.normal_(0.0, 0.5)
    return METHODS[name](net, arch, MethodSettings(epochs=4, **settings))


def batches(n=6, seed=5):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(n, 3, 8, 8, generator=g), torch.randint(0, 10, (n,), generator=g)) for _ in range(4)]


def state(method):
    """Every tensor a step changes: weights, running statistics, alpha, optimiser states."""
    out = {}
    for key, net in method.networks().items():
        out.update({f"{key}.{k}": v for k, v in net.state_dict().items()})
    out.update({f"arch.{k}": v for k, v in method.arch.state_dict().items()})
    for key, opt in method.optimizers.items():
        for i, s in opt.state_dict()["state"].items():
            out.update({f"{key}.opt.{i}.{k}": v for k, v in s.items() if torch.is_tensor(v)})
    return out


@pytest.mark.parametrize(
    "name, settings",
    [
        ("rarts", {"sweep": "gauss-seidel"}),
        ("rarts", {"sweep": "jacobi"}),
        ("rarts", {"y_init": "tied"}),  # its two alpha passes side by side on one network
        ("milenas", {}),  # the same
    ],
)
@pytest.mark.parametrize("fast", [False, True])
def test_paired_steps_equal_the_serial_steps_exactly(name, settings, fast):
    # One torch thread here (conftest) and one in each worker: the same kernels on the same data, so the same bits.
    assert torch.get_num_threads() == 1
    settings = {"beta": 2.0, "lam": 0.5, **settings} if name == "rarts" else {"lam": 0.5}
    serial, side_by_side = make(name, fast, **settings), make(name, fast, **settings)
    sweep = settings.get("sweep", "gauss-seidel")
    data = batches()
    with paired.attach(side_by_side, torch.device("cpu"), enabled=True) as none:
        assert none is None  # one thread: nothing to share
    runner = PairedPasses(2)
    side_by_side.executor = runner
    try:
        if name == "rarts" and sweep == "gauss-seidel" and "y_init" not in settings:
            assert serial.sweep == side_by_side.sweep == ("wy", "alpha")  # the executor does not change the sweep
        for train, val in zip(data[::2], data[1::2]):
            m_serial, m_paired = serial.step(train, val), side_by_side.step(train, val)
            assert m_serial.keys() == m_paired.keys()
            for k in m_serial:
                assert torch.equal(m_serial[k], m_paired[k]), k
    finally:
        runner.close()
    a, b = state(serial), state(side_by_side)
    assert a.keys() == b.keys()
    changed = [k for k in a if not torch.equal(a[k], b[k])]
    assert not changed, changed[:5]
    assert side_by_side.sweep == serial.sweep
    for net in side_by_side.networks().values():  # every switch a pass held is back as it was
        assert all(p.requires_grad for p in net.parameters())
        assert all(m.track_running_stats for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d))


def test_a_switch_held_by_two_threads_stays_on_until_both_have_left():
    """Two alpha passes of one network at once (milenas, a tied rarts) both turn its weight gradients and its
    statistics updates off: the first to finish must not turn them back on under the other."""
    from rarts.search.base import frozen_statistics, without_weight_grads

    method = make("milenas")
    net = method.w
    norms = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    first_in, second_in, first_out = threading.Event(), threading.Event(), threading.Event()
    seen = {}

    def switches():  # (any weight requires its gradient, any BatchNorm updates its statistics)
        return any(p.requires_grad for p in net.parameters()), any(m.track_running_stats for m in norms)

    def first():
        with frozen_statistics(net), without_weight_grads(net):  # as each alpha pass holds them
            first_in.set()
            assert second_in.wait(20)
            seen["both inside"] = switches()
        first_out.set()

    def second():
        assert first_in.wait(20)
        with frozen_statistics(net), without_weight_grads(net):
            second_in.set()
            assert first_out.wait(20)
            seen["second alone inside"] = switches()

    passes = iter((first, second))
    method.alpha_pass = lambda net, batch: next(passes)()
    runner = PairedPasses(2)
    method.executor = runner
    try:
        method.alpha_passes((net, None), (net, None))
    finally:
        runner.close()
    assert seen == {"both inside": (False, False), "second alone inside": (False, False)}
    assert switches() == (True, True)


def test_the_pairs_meet_in_different_threads():
    """The passes of a paired step really run in the workers, w's and y's each in its own."""
    method = make()
    seen = []
    original = method.loss

    def spy(net, *args, **kwargs):
        seen.append(("w" if net is method.w else "y", threading.current_thread().name))
        return original(net, *args, **kwargs)

    method.loss = spy
    train, val = batches()[:2]
    torch.set_num_threads(2)
    try:
        with paired.attach(method, torch.device("cpu")) as runner:
            assert runner is not None and runner.threads == (1, 1) and method.executor is runner
            method.step(train, val)
    finally:
        torch.set_num_threads(1)
    assert sorted(seen) == [("w", "rarts-pass-0"), ("w", "rarts-pass-1"), ("y", "rarts-pass-0"), ("y", "rarts-pass-1")]
    assert isinstance(method.executor, InTurn) and method.sweep == ("wy", "alpha")


@pytest.mark.parametrize(
    "name, settings, device, enabled",
    [
        ("darts1", {}, "cpu", True),  # its weight pass needs the alpha its alpha pass makes
        ("rarts", {"y_init": "tied", "sweep": "jacobi"}, "cpu", True),  # the alpha pass would stop w's weight pass
        ("rarts", {}, "cuda", True),  # never paired on a GPU (not touched: no CUDA needed)
        ("rarts", {}, "cpu", False),
    ],
)
def test_no_pairs_where_they_cannot_pay(name, settings, device, enabled):
    method = make(name, **settings)
    sweep = method.sweep
    torch.set_num_threads(2)
    try:
        with paired.attach(method, torch.device(device), enabled) as runner:
            assert runner is None and isinstance(method.executor, InTurn) and method.sweep == sweep
    finally:
        torch.set_num_threads(1)


# ---- the search command --------------------------------------------------------------------------------------------


# milenas's paired steps equal its serial ones exactly (test_paired_steps_equal_the_serial_steps_exactly): the search
# through the loop, on two threads, runs in the slow suite
@pytest.mark.parametrize("method", ["rarts", pytest.param("milenas", marks=pytest.mark.slow)])
def test_a_search_with_two_threads_pairs_its_passes_and_says_so(tmp_path, method):
    from rarts.search.config import make_config
    from rarts.search.loop import run_search

    out = {}
    try:
        for flag in ("true", "false"):
            settings = {**TINY_SEARCH, "method": method, "epochs": "1", "threads": "2", "paired_passes": flag}
            cfg = make_config("quick", settings)
            run = tmp_path / flag
            summary = run_search(cfg, str(run), quiet=True)
            assert summary["method"] == method
            env = json.loads((run / "environment.json").read_text())
            alpha = json.loads((run / "alpha.json").read_text())
            alphas = alpha["alpha_normal"] + alpha["alpha_reduce"]
            out[flag] = (env["paired_passes_threads"], summary["genotype"], alphas)
    finally:
        torch.set_num_threads(1)
    assert out["true"][0] == [1, 1] and out["false"][0] is None
    # the same search, up to the rounding of two intra-op threads against one per pass
    assert out["true"][1] == out["false"][1]
    assert torch.allclose(torch.tensor(out["true"][2]), torch.tensor(out["false"][2]), rtol=0, atol=1e-6)
    assert not torch.equal(torch.tensor(out["true"][2]), torch.zeros(28, 8))  # alpha moved


def test_out_of_memory_in_a_paired_pass_fails_with_advice(tmp_path, monkeypatch):
    from rarts.errors import RunFailed
    from rarts.search.config import make_config
    from rarts.search.loop import run_search
    from rarts.search.rarts import RARTS

    def no_memory(self, key, batch):
        assert threading.current_thread().name.startswith("rarts-pass")  # raised in a worker, reported by the loop
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: can't allocate memory: 25 MB")

    monkeypatch.setattr(RARTS, "weight_pass", no_memory)
    cfg = make_config("quick", {**TINY_SEARCH, "threads": "2"})
    before = set(threading.enumerate())
    try:
        with pytest.raises(RunFailed, match=r"out of CPU memory at epoch 1/2, step 1/2 of rarts.*paired_passes=false"):
            run_search(cfg, tmp_path / "run", quiet=True)
    finally:
        torch.set_num_threads(1)
    assert not set(threading.enumerate()) - before  # the run's workers were closed


@pytest.mark.parametrize("name", ["rarts", "milenas"])
def test_a_pair_run_in_turn_frees_the_first_graph_before_the_second_pass(name):
    """In turn, the second pass of a pair must not run while the first pass's graph is still referenced: the
    passes hand back detached losses and logits, so only gradients outlive a pass and a step in turn holds one
    pass's graph at a time."""
    method = make(name, fast=True)
    held = []

    class Watching(InTurn):
        def run(self, first, second):
            a = first()
            held.append([t.grad_fn is None and not t.requires_grad for t in a[:2]])
            return a, second()

    method.executor = Watching()
    train, val = batches()[:2]
    method.step(train, val)
    assert len(held) == method.passes.pairs and all(all(flags) for flags in held)
