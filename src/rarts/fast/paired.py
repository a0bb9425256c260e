"""Two independent passes of a search step at once, each on a thread of its own: an executor for RARTS and MiLeNAS.

A method states how many independent pairs of passes its step has (`SearchMethod.passes.pairs`) and hands each
pair to its executor (`SearchMethod.executor`), which by default runs them in turn. A Gauss-Seidel RARTS step
(eq. 4) has two: its weight passes, w's on the training batch and y's on the validation batch (y's gradient of
L_val is taken at the old y; line 2 needs the new w for its coupling term alone), and its alpha-only passes at
the new w and the new y, which read w and y and change neither. MiLeNAS's alpha step is one: its alpha-only passes
on the validation and the training batch, both at the new w. DARTS's passes have no such pairs: its weight pass
needs the alpha its alpha pass just produced (1st order), and its 2nd order's finite-difference passes run in turn.

On a CPU the pairs pay when run side by side: the search network's kernels are small (16 channels), so two
intra-op threads on one pass keep each other waiting, while two threads that each run a whole pass of their own do
not. `PairedPasses(threads)` holds two worker threads with threads // 2 torch threads each (an odd count leaves
one out: a pair takes as long as its slower pass), and `run(first, second)` hands a pass to each and waits for
both. Each pass runs as it would alone (the same operations in the same order), so a step computes what it
computes one pass after the other, up to the rounding that the number of intra-op threads may change: with one
thread per worker it equals a serial step on one thread bit for bit (tests/test_paired.py). Grad mode and
autocast are per thread in torch: a worker runs with gradients on and no autocast, which is what the search's
passes need on the CPU.

The cost is memory: both graphs of a pair are held at once. Ctrl-C stops the waiting thread at once; closing the
runner then waits for the passes in flight to end (up to a pass's time). Whether a run pairs is decided in one
place, `runner_for`: on the CPU, with at least two torch threads, for a method whose step has pairs. `attach`
hands its runner to a method for a block, `pair` for as long as the method lives.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import weakref
from collections.abc import Iterator
from concurrent.futures import Future
from typing import Any, Callable, Optional

import torch


class _Worker:
    """A daemon thread running the callables handed to it, one at a time, with its own torch thread count. The
    thread ends on `close`, or once the worker is garbage (it holds only the queue, not the worker)."""

    def __init__(self, threads: int, name: str):
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        ready: Future = Future()
        self._thread = threading.Thread(target=_serve, args=(self._jobs, threads, ready), name=name, daemon=True)
        self._thread.start()
        self.threads = ready.result()  # torch's intra-op thread count as the worker sees it
        self._stop = weakref.finalize(self, self._jobs.put, None)

    def submit(self, fn: Callable[[], Any]) -> Future:
        future: Future = Future()
        self._jobs.put((fn, future))
        return future

    def close(self) -> None:
        self._stop()  # (once: later calls do nothing)
        self._thread.join()


def _serve(jobs: queue.SimpleQueue, threads: int, ready: Future) -> None:
    # set_num_threads fixes this thread's OpenMP and MKL thread counts; get_num_threads makes ATen's lazy
    # per-thread initialisation happen now, while the process-wide count is this worker's, not later.
    try:
        torch.set_num_threads(threads)
        ready.set_result(torch.get_num_threads())
    except BaseException as e:  # raised by the constructor, which waits on `ready`
        ready.set_exception(e)
        return
    while True:
        job = jobs.get()
        if job is None:
            return
        fn, future = job
        try:
            future.set_result(fn())
        except BaseException as e:  # handed to the waiting thread, which raises it
            future.set_exception(e)
        del job, fn, future  # nothing of the pass outlives it here


class PairedPasses:
    """Runs two callables at once on two worker threads that share `threads` torch threads between them."""

    at_once = True  # (an executor's flag: the two passes' graphs are held at once)

    def __init__(self, threads: int):
        if threads < 2:
            raise ValueError(f"two passes side by side need at least 2 threads, got {threads}")
        main = torch.get_num_threads()
        # One worker at a time: each sets the process-wide count to its own while it initialises.
        self._workers = []
        try:
            for i in range(2):
                self._workers.append(_Worker(threads // 2, f"rarts-pass-{i}"))
        finally:
            torch.set_num_threads(main)  # this thread's count (and the process-wide one) as they were
        self.threads = tuple(w.threads for w in self._workers)

    def run(self, first: Callable[[], Any], second: Callable[[], Any]) -> tuple[Any, Any]:
        """(first(), second()), computed at once. Both have finished when it returns or raises; an exception of
        `first` is raised before one of `second`, with a note of the other when both fail."""
        futures = [w.submit(fn) for w, fn in zip(self._workers, (first, second))]
        errors = [e for e in (f.exception() for f in futures) if e is not None]  # waits for both
        if errors:
            if len(errors) == 2 and hasattr(errors[0], "add_note"):  # (Python 3.11+)
                errors[0].add_note(f"the other pass of the pair failed too: {errors[1]!r}")
            raise errors[0]
        return futures[0].result(), futures[1].result()

    def close(self) -> None:
        for w in self._workers:
            w.close()


def usable(device: torch.device, enabled: bool = True) -> Optional[int]:
    """The torch threads a pair of passes would share on `device`, or None where pairing cannot pay: off, not
    the CPU (kernels of one stream run one after another on a GPU), or fewer than two threads."""
    if not enabled or device.type != "cpu":
        return None
    threads = torch.get_num_threads()
    return threads if threads >= 2 else None


def runner_for(method, device: torch.device, enabled: bool = True) -> Optional[PairedPasses]:
    """A PairedPasses for `method` (a rarts.search.base.SearchMethod) where pairing can pay (see `usable`) and its
    step has pairs of independent passes, else None."""
    threads = usable(device, enabled)
    if threads is None or not method.passes.pairs:
        return None
    return PairedPasses(threads)


def pair(method, device: torch.device, enabled: bool = True) -> Optional[PairedPasses]:
    """Make `method` run its independent pairs of passes side by side where `runner_for` says so; returns the
    PairedPasses now its executor (its threads end with it), or None."""
    runner = runner_for(method, device, enabled)
    if runner is not None:
        method.executor = runner
    return runner


@contextlib.contextmanager
def attach(method, device: torch.device, enabled: bool = True) -> Iterator[Optional[PairedPasses]]:
    """`pair` for the block: afterwards the method has its executor of before again and the workers have ended."""
    runner = runner_for(method, device, enabled)
    if runner is None:
        yield None
        return
    before, method.executor = method.executor, runner
    try:
        yield runner
    finally:
        method.executor = before
        runner.close()
