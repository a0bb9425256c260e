"""Keep glibc's malloc from handing large tensors' memory back to the kernel after every use.

A search step on the CPU allocates and frees thousands of activation tensors of 0.1 to 10 MB. With glibc's default
settings each such block comes from a fresh mmap (or the top of the heap is trimmed when it is freed), so every
tensor's pages are faulted in and zeroed by the kernel again, step after step. On the 2-core development machine
that was 17% of a DARTS step (8.9 s against 7.4 s per darts1 step at batch 32; `rarts bench search`, README).

`tune_cpu_allocator()` raises the mmap threshold to glibc's maximum (32 MB) and turns heap trimming off, so freed
blocks are reused by the next step. The resident set then stays at its peak between steps instead of shrinking,
which the peak figures do not change. The `rarts` command calls it at start-up; set RARTS_MALLOC_TUNING=0 to leave
malloc alone. It does nothing where the C library is not glibc (macOS, Windows, musl) and never raises.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform

M_TRIM_THRESHOLD = -1  # glibc's mallopt parameter numbers (malloc.h)
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_MAX = 32 * 1024 * 1024  # glibc rejects larger values on 64-bit systems
TRIM_THRESHOLD = 2**31 - 1  # never trim in practice

_tuned: bool | None = None


def tune_cpu_allocator() -> bool:
    """Apply the settings above once per process; True when glibc accepted them."""
    global _tuned
    if _tuned is not None:
        return _tuned
    _tuned = False
    if os.environ.get("RARTS_MALLOC_TUNING", "1").strip().lower() in ("0", "false", "no", "off"):
        return False
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    _tuned = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    return _tuned


def is_tuned() -> bool:
    """Whether this process's allocator has been tuned (for the environment record of runs and benchmarks)."""
    return bool(_tuned)
