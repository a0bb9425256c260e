"""Shared test settings and fixtures."""

import os

# Idle OpenMP threads sleep instead of spinning: on a busy 2-core machine a spinning thread of one process takes a
# core that another process's thread is waiting for, and a tiny step on two threads becomes many times slower. Set
# before torch is imported, for this process and every one a test starts (benchmark scripts, spawned ranks,
# torchrun, isolated measurements); it changes when threads wait, not what they compute.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

# The fast suite runs tiny networks, where one thread is as fast as two and immune to oversubscription on a
# busy 2-core machine (where two spinning threads per process can make a step many times slower).
torch.set_num_threads(1)


@pytest.fixture
def image_root(tmp_path):
    """An image-folder dataset: train/ with 3 images per class, val/ with 2, classes cat and dog, random pixels
    of several sizes, JPEG and PNG."""
    Image = pytest.importorskip("PIL.Image")
    rng = np.random.default_rng(0)
    for split, n in (("train", 3), ("val", 2)):
        for cls in ("cat", "dog"):
            (tmp_path / split / cls).mkdir(parents=True)
            for i in range(n):
                pixels = rng.integers(0, 256, (30 + 7 * i, 40, 3), dtype=np.uint8)
                ext = "png" if i % 2 else "jpg"
                Image.fromarray(pixels).save(tmp_path / split / cls / f"{i}.{ext}")
    return tmp_path
