"""Build the CIFAR-10 subset that ships inside the package (src/rarts/assets/cifar10_mini.npz) and its notes.

    python scripts/make_cifar10_mini.py [--data-dir ../shared/data/cifar-10-batches-py]

Training part: the first `--per-class` images of each class among the first 4,000 images of data_batch_1,
which in the development copy are the exact original pixels (the rest of that copy went through JPEG); when a
class has too few there, it is topped up from the rest of data_batch_1, and the notes say so. Test part: the
first `--test-per-class` images of each class in test_batch. Images are stored as left-neighbour differences
(uint8, modulo 256; `rarts.data.cifar.decode_left_delta` inverts them exactly), which deflate smaller than
raw pixels; the script checks the round trip and that the file stays within 12 MB.
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import numpy as np

from rarts.data.cifar import decode_left_delta, encode_left_delta, read_batch, read_pickle

REPO = Path(__file__).resolve().parents[1]
ASSETS = REPO / "src" / "rarts" / "assets"
MAX_BYTES = 12_000_000
EXACT = 4000  # images 0-3999 of data_batch_1 are lossless originals in the development copy


def first_per_class(labels: np.ndarray, per_class: int, limit: int | None = None) -> tuple[np.ndarray, int]:
    """Sorted indices of the first `per_class` images of each class (searching the first `limit` first, then
    the rest), and how many came from beyond `limit`."""
    picked, topped_up = [], 0
    for c in range(10):
        members = np.flatnonzero(labels == c)
        if len(members) < per_class:
            raise SystemExit(f"class {c} has only {len(members)} images, {per_class} asked for")
        chosen = members[:per_class]
        if limit is not None:
            topped_up += int((chosen >= limit).sum())
        picked.append(chosen)
    return np.sort(np.concatenate(picked)), topped_up


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=str(REPO.parent / "shared" / "data" / "cifar-10-batches-py"))
    parser.add_argument("--per-class", type=int, default=350)
    parser.add_argument("--test-per-class", type=int, default=100)
    parser.add_argument("--out", default=str(ASSETS / "cifar10_mini.npz"))
    args = parser.parse_args()

    root = Path(args.data_dir)
    classes = np.array(read_pickle(root / "batches.meta")["label_names"])
    train_x, train_y = read_batch(root / "data_batch_1", "labels", 10)
    test_x, test_y = read_batch(root / "test_batch", "labels", 10)
    exact_counts = np.bincount(train_y[:EXACT], minlength=10)
    train_idx, topped_up = first_per_class(train_y, args.per_class, limit=EXACT)
    test_idx, _ = first_per_class(test_y, args.test_per_class)

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        out,
        train_images=encode_left_delta(train_x[train_idx]),
        train_labels=train_y[train_idx].astype(np.uint8),
        train_source=train_idx.astype(np.int32),
        test_images=encode_left_delta(test_x[test_idx]),
        test_labels=test_y[test_idx].astype(np.uint8),
        test_source=test_idx.astype(np.int32),
        classes=classes,
    )
    size = out.stat().st_size
    with np.load(out, allow_pickle=False) as z:
        assert np.array_equal(decode_left_delta(z["train_images"]), train_x[train_idx])
        assert np.array_equal(decode_left_delta(z["test_images"]), test_x[test_idx])
    if size > MAX_BYTES:
        raise SystemExit(f"{out} is {size / 1e6:.2f} MB, over the 12 MB limit: lower --per-class")
    digest = hashlib.sha256(out.read_bytes()).hexdigest()

    n_train, n_test = len(train_idx), len(test_idx)
    notes = f"""cifar10-mini: a real CIFAR-10 subset bundled with rarts (dataset name `cifar10-mini`)

File: cifar10_mini.npz, {size:,} bytes, sha256 {digest}
Built by scripts/make_cifar10_mini.py from the python batches (cifar-10-batches-py/).

train: {n_train:,} images, {args.per_class} per class, from data_batch_1.
  The first {args.per_class} images of each class among images 0-{EXACT - 1} of data_batch_1
  (source indices {train_idx.min()}..{train_idx.max()}; {topped_up} topped up from beyond image {EXACT - 1}).
  Class counts among those first {EXACT:,}: {", ".join(str(int(c)) for c in exact_counts)}.
  In the development copy these {EXACT:,} images are the exact original pixels.
test: {n_test:,} images, {args.test_per_class} per class: the first of each class in test_batch
  (source indices {test_idx.min()}..{test_idx.max()}). In the development copy the test pixels were
  decoded from JPEG (about 5.8/255 mean absolute error against the originals).
classes: {", ".join(classes)}

Arrays (np.load(..., allow_pickle=False)):
  train_images (N, 3, 32, 32) uint8, test_images: each pixel minus its left neighbour, modulo 256
    (decode: np.cumsum(a, axis=-1, dtype=np.uint8)); this deflates about 15% smaller than raw pixels.
  train_labels, test_labels (N,) uint8; train_source, test_source (N,) int32: index in the source batch;
  classes (10,) str.
Normalisation in rarts uses the full CIFAR-10 constants (rarts.data.CIFAR10_MEAN, CIFAR10_STD).
"""
    (out.parent / "cifar10_mini.txt").write_text(notes, encoding="utf-8")
    print(notes)


if __name__ == "__main__":
    main()
