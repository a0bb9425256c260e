"""CIFAR-10 and CIFAR-100 from their standard python batches, and the bundled CIFAR-10 subset.

The python batches are the folders inside the official archives (and what torchvision downloads):
`cifar-10-batches-py/` with data_batch_1..5, test_batch and batches.meta, and `cifar-100-python/` with
train, test and meta (fine labels). Each batch is a pickled dict whose `data` is an (N, 3072) uint8 array:
1024 red values, then 1024 green, then 1024 blue, each a row-major 32x32 plane; so a reshape to
(N, 3, 32, 32) is already NCHW.

The pickles are read with an unpickler that accepts only the numpy classes these files use, so a foreign
pickle cannot run code; everything read is checked (keys, shapes, dtypes, label range, counts) and any
problem is a one-line UsageError that names the file.
"""

from __future__ import annotations

import pickle
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from rarts.data.imageset import CIFAR10_MEAN, CIFAR10_STD, CIFAR100_MEAN, CIFAR100_STD, ImageSet
from rarts.errors import UsageError

CIFAR10_FOLDER = "cifar-10-batches-py"
CIFAR100_FOLDER = "cifar-100-python"
CIFAR10_TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
MINI_FILE = "cifar10_mini.npz"

_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),  # how Python 3 writes bytes under pickle protocol 2
}


class _BatchUnpickler(pickle.Unpickler):
    """Unpickles plain dicts, lists, strings and numpy arrays; refuses every other class."""

    def find_class(self, module: str, name: str):
        if (module, name) in _ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"it refers to {module}.{name}, which a CIFAR batch never does")


def _one_line(e: BaseException) -> str:
    return " ".join(f"{type(e).__name__}: {e}".split())


def read_pickle(path: Path) -> dict:
    """The dict stored in one CIFAR python file, with str keys (latin-1 decoding, as torchvision does)."""
    if not path.is_file():
        raise UsageError(f"missing file {path}")
    try:
        with open(path, "rb") as f:
            obj = _BatchUnpickler(f, encoding="latin1").load()
    except Exception as e:
        raise UsageError(f"{path} is truncated or not a CIFAR python file ({_one_line(e)})") from e
    if not isinstance(obj, dict):
        raise UsageError(f"{path} is not a CIFAR python file: it holds a {type(obj).__name__}, not a dict")
    return obj


def read_batch(path: Path, label_key: str, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """One python batch: images (N, 3, 32, 32) uint8 and labels (N,) int64, checked."""
    obj = read_pickle(path)
    for key in ("data", label_key):
        if key not in obj:
            raise UsageError(f"{path} is not a CIFAR python batch: it has no {key!r} entry")
    data = obj["data"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        shape = getattr(data, "shape", None)
        dtype = getattr(data, "dtype", type(data).__name__)
        raise UsageError(f"{path}: 'data' is {dtype} of shape {shape}, expected uint8 of shape (N, 3072)")
    try:
        labels = np.asarray(obj[label_key], dtype=np.int64)
    except (TypeError, ValueError) as e:
        raise UsageError(f"{path}: {label_key!r} is not a list of integers") from e
    if labels.shape != (data.shape[0],):
        raise UsageError(f"{path}: {labels.size} labels for {data.shape[0]} images")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise UsageError(f"{path}: labels range {labels.min()}..{labels.max()}, expected 0..{num_classes - 1}")
    return data.reshape(-1, 3, 32, 32), labels


def _class_names(path: Path, key: str, expected: int) -> tuple[str, ...]:
    meta = read_pickle(path)
    names = meta.get(key)
    if not isinstance(names, list) or len(names) != expected or not all(isinstance(n, str) for n in names):
        raise UsageError(f"{path}: {key!r} should list {expected} class names")
    return tuple(names)


def _check_balanced(where: Path, labels: np.ndarray, num_classes: int) -> None:
    counts = np.bincount(labels, minlength=num_classes)
    if counts.min() != counts.max():
        raise UsageError(
            f"{where}: images per class range {counts.min()}..{counts.max()}; a CIFAR split has the same number"
            " of images of every class (a file is missing, truncated or foreign)"
        )


def resolve_folder(data_dir: str | Path | None, folder: str, marker: str, dataset: str) -> Path:
    """The batches folder: `data_dir` itself when it holds `marker`, else `data_dir/folder`."""
    if data_dir is None:
        raise UsageError(
            f"{dataset} needs --data-dir: the {folder}/ folder or its parent"
            f" (get it with `rarts data download {dataset} --root DIR`)"
        )
    root = Path(data_dir).expanduser()
    if not root.is_dir():
        raise UsageError(f"--data-dir {root} is not a folder")
    if (root / marker).exists() or not (root / folder).is_dir():
        return root
    return root / folder


def load_cifar10(data_dir: str | Path | None, split: str) -> ImageSet:
    """CIFAR-10 from `cifar-10-batches-py/`: train 50,000 images (5 batches), test 10,000."""
    root = resolve_folder(data_dir, CIFAR10_FOLDER, "batches.meta", "cifar10")
    meta = read_pickle(root / "batches.meta")
    classes = _class_names(root / "batches.meta", "label_names", 10)
    per_batch = meta.get("num_cases_per_batch")
    files = CIFAR10_TRAIN_FILES if split == "train" else ("test_batch",)
    images, labels = [], []
    for name in files:
        x, y = read_batch(root / name, "labels", 10)
        if per_batch is not None and len(y) != per_batch:
            raise UsageError(f"{root / name}: {len(y)} images, batches.meta says {per_batch} per batch")
        images.append(x)
        labels.append(y)
    y = np.concatenate(labels)
    _check_balanced(root / files[0] if len(files) == 1 else root, y, 10)
    return ImageSet(
        name="cifar10",
        split=split,
        images=torch.from_numpy(np.concatenate(images)),
        labels=torch.from_numpy(y),
        classes=classes,
        mean=CIFAR10_MEAN,
        std=CIFAR10_STD,
        source=str(root.resolve()),
    )


def load_cifar100(data_dir: str | Path | None, split: str) -> ImageSet:
    """CIFAR-100 (fine labels) from `cifar-100-python/`: train 50,000 images, test 10,000."""
    root = resolve_folder(data_dir, CIFAR100_FOLDER, "meta", "cifar100")
    classes = _class_names(root / "meta", "fine_label_names", 100)
    path = root / ("train" if split == "train" else "test")
    x, y = read_batch(path, "fine_labels", 100)
    _check_balanced(path, y, 100)
    return ImageSet(
        name="cifar100",
        split=split,
        images=torch.from_numpy(np.ascontiguousarray(x)),
        labels=torch.from_numpy(y),
        classes=classes,
        mean=CIFAR100_MEAN,
        std=CIFAR100_STD,
        source=str(root.resolve()),
    )


def mini_path() -> Path:
    """Where the bundled CIFAR-10 subset lies inside the installed package."""
    return Path(str(resources.files("rarts") / "assets" / MINI_FILE))


def encode_left_delta(images: np.ndarray) -> np.ndarray:
    """Each pixel minus its left neighbour, modulo 256: the same information, but it deflates about 15% smaller."""
    return np.diff(images, axis=-1, prepend=np.uint8(0))


def decode_left_delta(delta: np.ndarray) -> np.ndarray:
    """Inverse of `encode_left_delta`: a running sum along each row, modulo 256 (exact)."""
    return np.cumsum(delta, axis=-1, dtype=np.uint8)


def load_cifar10_mini(split: str, path: Path | None = None) -> ImageSet:
    """The CIFAR-10 subset that ships with the package (see assets/cifar10_mini.txt): no download needed."""
    path = path or mini_path()
    if not path.is_file():
        raise UsageError(
            f"missing file {path}: the bundled subset is not installed (rebuild: scripts/make_cifar10_mini.py)"
        )
    try:
        with np.load(path, allow_pickle=False) as z:
            delta = z[f"{split}_images"]
            labels = z[f"{split}_labels"].astype(np.int64)
            classes = tuple(str(c) for c in z["classes"])
    except (OSError, KeyError, ValueError) as e:
        raise UsageError(f"{path} is damaged or not the bundled subset ({_one_line(e)})") from e
    return ImageSet(
        name="cifar10-mini",
        split=split,
        images=torch.from_numpy(decode_left_delta(delta)),
        labels=torch.from_numpy(labels),
        classes=classes,
        mean=CIFAR10_MEAN,
        std=CIFAR10_STD,
        source=f"bundled: {path}",
    )
