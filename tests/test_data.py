"""Datasets (rarts.data): CIFAR python batches, the bundled subset, download, search split, DeviceLoader, folders."""

from __future__ import annotations

import hashlib
import io
import json
import pickle
import re
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from rarts.cli import main
from rarts.data import (
    ARCHIVES,
    CIFAR10_MEAN,
    CIFAR10_STD,
    DeviceLoader,
    ImageSet,
    balanced_subset,
    crop_and_flip,
    cutout_mask,
    download,
    input_size,
    load_dataset,
    mini_path,
    num_classes,
    search_split,
)
from rarts.data.download import Archive
from rarts.errors import RunFailed, UsageError

SHARED_CIFAR10 = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar-10-batches-py"
CLASSES10 = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
RAW = {
    "mean": (0.0, 0.0, 0.0),
    "std": (1 / 255, 1 / 255, 1 / 255),
}  # normalisation that leaves pixel values as they are


# ---- tiny CIFAR folders in the standard format --------------------------------------------------------------------


def _dump(path: Path, obj: dict) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


def make_cifar10(root: Path, per_class: int = 2, seed: int = 0) -> tuple[Path, dict]:
    """cifar-10-batches-py/ with 5 training batches and a test batch of 10 * per_class images each."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    n = 10 * per_class
    _dump(folder / "batches.meta", {"num_cases_per_batch": n, "label_names": CLASSES10, "num_vis": 3072})
    written = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        labels = rng.permutation(np.repeat(np.arange(10), per_class)).tolist()
        _dump(
            folder / name,
            {"batch_label": name, "labels": labels, "data": data, "filenames": [f"{i}.png" for i in range(n)]},
        )
        written[name] = (data, labels)
    return folder, written


def make_cifar100(root: Path, per_class: int = 1) -> Path:
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    _dump(folder / "meta", {"fine_label_names": [f"c{i}" for i in range(100)], "coarse_label_names": ["x"] * 20})
    for name in ("train", "test"):
        fine = rng.permutation(np.repeat(np.arange(100), per_class)).tolist()
        data = rng.integers(0, 256, (len(fine), 3072), dtype=np.uint8)
        _dump(folder / name, {"fine_labels": fine, "coarse_labels": [f // 5 for f in fine], "data": data})
    return folder


def test_cifar10_round_trip(tmp_path):
    folder, written = make_cifar10(tmp_path)
    train = load_dataset("cifar10", str(folder), "train")
    assert isinstance(train, ImageSet)
    assert train.images.shape == (100, 3, 32, 32) and train.images.dtype == torch.uint8
    assert train.labels.dtype == torch.int64 and train.classes == tuple(CLASSES10)
    data, labels = written["data_batch_1"]
    # The 3072 values are the R plane, then G, then B, each row-major 32x32.
    assert torch.equal(train.images[0, 1, 2, 3], torch.tensor(data[0, 1024 + 2 * 32 + 3]))
    assert train.labels[:20].tolist() == labels
    assert torch.equal(train.images[80:], torch.from_numpy(written["data_batch_5"][0]).view(20, 3, 32, 32))
    test = load_dataset("cifar10", str(tmp_path), "test")  # the parent folder works as well
    assert len(test) == 20 and test.class_counts() == [2] * 10
    assert test.mean == CIFAR10_MEAN and test.source == str(folder.resolve())


def test_cifar100_round_trip(tmp_path):
    make_cifar100(tmp_path)
    train = load_dataset("cifar100", str(tmp_path), "train")
    assert train.images.shape == (100, 3, 32, 32) and train.num_classes == 100
    assert train.class_counts() == [1] * 100 and train.classes[7] == "c7"


@pytest.mark.parametrize(
    "damage,name,words",
    [
        ("missing", "data_batch_3", "missing file"),
        ("truncated", "data_batch_2", "truncated"),
        ("text", "test_batch", "not a CIFAR"),
        ("foreign_pickle", "data_batch_4", "refers to os.system"),
        ("wrong_shape", "data_batch_1", "(N, 3072)"),
        ("label_range", "data_batch_5", "labels range"),
        ("missing", "batches.meta", "missing file"),
    ],
)
def test_damaged_files_name_the_file(tmp_path, damage, name, words):
    folder, _ = make_cifar10(tmp_path)
    path = folder / name
    if damage == "missing":
        path.unlink()
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[:3000])
    elif damage == "text":
        path.write_text("not a pickle at all\n")
    elif damage == "foreign_pickle":
        # A pickle that would call os.system("true") when loaded by a plain unpickler.
        path.write_bytes(b"cos\nsystem\n(S'true'\ntR.")
    elif damage == "wrong_shape":
        _dump(path, {"labels": [0] * 20, "data": np.zeros((20, 1024), np.uint8)})
    elif damage == "label_range":
        _dump(path, {"labels": [10] * 20, "data": np.zeros((20, 3072), np.uint8)})
    split = "test" if name == "test_batch" else "train"
    with pytest.raises(UsageError) as e:
        load_dataset("cifar10", str(folder), split)
    message = str(e.value)
    assert str(path) in message and words in message and "\n" not in message


def test_wrong_counts_are_refused(tmp_path):
    folder, _ = make_cifar10(tmp_path)
    _dump(folder / "data_batch_2", {"labels": [0] * 10, "data": np.zeros((10, 3072), np.uint8)})
    with pytest.raises(UsageError, match="data_batch_2: 10 images, batches.meta says 20"):
        load_dataset("cifar10", str(folder), "train")


def test_missing_data_dir_says_how_to_get_it(tmp_path):
    with pytest.raises(UsageError, match="rarts data download cifar10"):
        load_dataset("cifar10", None, "train")
    with pytest.raises(UsageError, match="is not a folder"):
        load_dataset("cifar100", str(tmp_path / "nowhere"), "train")
    with pytest.raises(UsageError, match="unknown dataset"):
        load_dataset("mnist", None, "train")
    with pytest.raises(UsageError, match="unknown split"):
        load_dataset("cifar10-mini", None, "val")


def test_names_sizes_and_classes():
    assert [num_classes(n) for n in ("cifar10", "cifar100", "cifar10-mini", "imagenet")] == [10, 100, 10, 1000]
    assert [input_size(n) for n in ("cifar10", "cifar10-mini", "imagenet", "folder")] == [32, 32, 224, 224]


# ---- the bundled subset -------------------------------------------------------------------------------------------


def test_bundled_subset_is_class_balanced_and_small():
    assert mini_path().stat().st_size <= 12_000_000
    train = load_dataset("cifar10-mini", None, "train")
    test = load_dataset("cifar10-mini", None, "test")
    assert train.images.shape == (3500, 3, 32, 32) and train.images.dtype == torch.uint8
    assert train.class_counts() == [350] * 10 and test.class_counts() == [100] * 10
    assert train.classes == tuple(CLASSES10) and train.source.startswith("bundled: ")
    mean, std = train.channel_stats()
    assert np.allclose(mean, CIFAR10_MEAN, atol=0.02) and np.allclose(std, CIFAR10_STD, atol=0.02)


# ---- the real CIFAR-10 copy ---------------------------------------------------------------------------------------


@pytest.mark.skipif(not SHARED_CIFAR10.is_dir(), reason=f"real CIFAR-10 not found at {SHARED_CIFAR10}")
def test_real_cifar10_and_the_subset_built_from_it():
    train = load_dataset("cifar10", str(SHARED_CIFAR10), "train")
    test = load_dataset("cifar10", str(SHARED_CIFAR10.parent), "test")
    assert len(train) == 50_000 and len(test) == 10_000
    assert train.class_counts() == [5000] * 10 and test.class_counts() == [1000] * 10
    assert train.labels[:20].tolist() == [6, 9, 9, 4, 1, 1, 2, 7, 8, 3, 4, 7, 7, 2, 9, 9, 9, 3, 2, 6]
    with np.load(mini_path()) as z:
        source = torch.from_numpy(z["train_source"].astype(np.int64))
        test_source = torch.from_numpy(z["test_source"].astype(np.int64))
    assert int(source.max()) < 4000  # only exact originals
    mini = load_dataset("cifar10-mini", None, "train")
    assert torch.equal(mini.images, train.images[source]) and torch.equal(mini.labels, train.labels[source])
    assert torch.equal(load_dataset("cifar10-mini", None, "test").images, test.images[test_source])


# ---- download -----------------------------------------------------------------------------------------------------


def _tar(path: Path, members: dict[str, bytes], symlink: str | None = None) -> str:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        if symlink:
            info = tarfile.TarInfo(symlink)
            info.type = tarfile.SYMTYPE
            info.linkname = "/etc/passwd"
            tar.addfile(info)
    return hashlib.md5(path.read_bytes()).hexdigest()


def _fake_archive(tmp_path: Path) -> tuple[Path, str]:
    folder, _ = make_cifar10(tmp_path / "src")
    members = {f"cifar-10-batches-py/{p.name}": p.read_bytes() for p in sorted(folder.iterdir())}
    archive = tmp_path / "cifar-10-python.tar.gz"
    return archive, _tar(archive, members)


def _patch(monkeypatch, url: str, md5: str) -> None:
    spec = ARCHIVES["cifar10"]
    monkeypatch.setitem(ARCHIVES, "cifar10", Archive(url, md5, spec.filename, spec.folder, spec.files))


def test_download_verifies_and_unpacks(tmp_path, monkeypatch):
    archive, md5 = _fake_archive(tmp_path)
    _patch(monkeypatch, archive.as_uri(), md5)
    folder = download("cifar10", tmp_path / "root", progress=False)
    assert folder == tmp_path / "root" / "cifar-10-batches-py"
    assert len(load_dataset("cifar10", str(folder), "train")) == 100
    assert [p.name for p in (tmp_path / "root").iterdir() if p.name.startswith(".")] == []  # no scratch left


def test_download_rejects_a_bad_checksum(tmp_path, monkeypatch):
    archive, _ = _fake_archive(tmp_path)
    _patch(monkeypatch, archive.as_uri(), "0" * 32)
    with pytest.raises(UsageError, match="MD5 .* is not the expected 0000"):
        download("cifar10", tmp_path / "root", progress=False)
    assert not (tmp_path / "root" / "cifar-10-python.tar.gz").exists()


@pytest.mark.parametrize("evil", ["../escaped.txt", "/tmp/rarts-absolute.txt", "link"])
def test_extraction_refuses_members_escaping_the_root(tmp_path, monkeypatch, evil):
    archive = tmp_path / "evil.tar.gz"
    members = {"cifar-10-batches-py/batches.meta": b"x"}
    if evil == "link":
        md5 = _tar(archive, members, symlink="cifar-10-batches-py/data_batch_1")
    else:
        md5 = _tar(archive, {**members, evil: b"gotcha"})
    _patch(monkeypatch, archive.as_uri(), md5)
    root = tmp_path / "root"
    with pytest.raises(UsageError, match="refusing member"):
        download("cifar10", root, progress=False)
    assert not (tmp_path / "escaped.txt").exists() and not (root / "escaped.txt").exists()
    assert not Path("/tmp/rarts-absolute.txt").exists() and not (root / "cifar-10-batches-py").exists()


def test_download_offline_fails_fast_with_a_clear_message(tmp_path, monkeypatch, capsys):
    _patch(monkeypatch, "http://127.0.0.1:9/cifar-10-python.tar.gz", "0" * 32)  # nothing listens on port 9
    start = time.perf_counter()
    with pytest.raises(RunFailed, match="could not download http://127.0.0.1:9/.*offline"):
        download("cifar10", tmp_path / "root", timeout=2, progress=False)
    assert main(["data", "download", "cifar10", "--root", str(tmp_path / "root"), "--timeout", "2"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("rarts: error: could not download") and "\n" not in err
    assert time.perf_counter() - start < 10


def _offline(monkeypatch) -> None:
    import urllib.error
    import urllib.request

    def refuse(*args, **kwargs):
        raise urllib.error.URLError("no network in tests")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)


def test_a_damaged_archive_in_root_is_named_with_both_checksums_when_offline(tmp_path, monkeypatch, capsys):
    _offline(monkeypatch)
    root = tmp_path / "root"
    root.mkdir()
    (root / "cifar-10-python.tar.gz").write_text("garbage\n")
    bad = hashlib.md5(b"garbage\n").hexdigest()
    good = ARCHIVES["cifar10"].md5
    with pytest.raises(RunFailed, match=f"MD5 {bad}, not the expected {good}: replace it"):
        download("cifar10", root, progress=False)
    assert main(["data", "download", "cifar10", "--root", str(root)]) == 1
    err = capsys.readouterr().err.strip()
    assert bad in err and good in err and "replace it" in err and "\n" not in err
    assert (root / "cifar-10-python.tar.gz").read_text() == "garbage\n"  # left for the user to replace


def test_a_damaged_archive_in_root_is_replaced_by_the_download(tmp_path, monkeypatch):
    archive, md5 = _fake_archive(tmp_path)
    _patch(monkeypatch, archive.as_uri(), md5)
    root = tmp_path / "root"
    root.mkdir()
    (root / archive.name).write_text("garbage\n")
    assert download("cifar10", root, progress=False).is_dir()


@pytest.mark.parametrize("timeout", ["0", "-1", "nan", "inf"])
def test_timeout_must_be_positive(tmp_path, monkeypatch, capsys, timeout):
    _offline(monkeypatch)
    with pytest.raises(UsageError, match="timeout must be a positive number of seconds"):
        download("cifar10", tmp_path / "root", timeout=float(timeout), progress=False)
    assert main(["data", "download", "cifar10", "--root", str(tmp_path / "root"), "--timeout", timeout]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("rarts: error: --timeout must be a positive number of seconds") and "\n" not in err


def test_an_archive_already_in_root_needs_no_network(tmp_path, monkeypatch):
    archive, md5 = _fake_archive(tmp_path)
    root = tmp_path / "root"
    root.mkdir()
    archive.replace(root / archive.name)
    _patch(monkeypatch, "http://127.0.0.1:9/unreachable.tar.gz", md5)
    assert download("cifar10", root, progress=False).is_dir()


# ---- the search split ---------------------------------------------------------------------------------------------


def test_search_split_halves_are_disjoint_covering_and_stratified():
    labels = torch.arange(1000) % 10
    a, b = search_split(labels, train_portion=0.5, seed=3)
    assert len(a) == len(b) == 500 and len(set(a.tolist()) & set(b.tolist())) == 0
    assert torch.equal(torch.cat([a, b]).sort().values, torch.arange(1000))
    assert torch.bincount(labels[a]).tolist() == [50] * 10
    a2, _ = search_split(labels, train_portion=0.5, seed=3)
    a3, _ = search_split(labels, train_portion=0.5, seed=4)
    assert torch.equal(a, a2) and not torch.equal(a, a3)
    a, b = search_split(labels, train_portion=0.3, seed=0)
    assert (len(a), len(b)) == (300, 700)
    a, b = search_split(1001, train_portion=0.5)  # just a count
    assert (len(a), len(b)) == (500, 501) and len(set(a.tolist()) | set(b.tolist())) == 1001


def test_subset_is_class_balanced_and_inside_the_training_set():
    labels = torch.randint(0, 10, (2000,), generator=torch.Generator().manual_seed(0))
    a, b = search_split(labels, subset=200, seed=1)
    both = torch.cat([a, b])
    assert len(both) == 200 and len(set(both.tolist())) == 200
    assert torch.bincount(labels[both]).tolist() == [20] * 10
    idx = balanced_subset(labels, 25, seed=0)
    assert sorted(torch.bincount(labels[idx]).tolist()) == [2] * 5 + [3] * 5
    for bad in (dict(train_portion=1.0), dict(train_portion=0.0), dict(subset=5000), dict(subset=1)):
        with pytest.raises(UsageError):
            search_split(labels, **bad)


# ---- DeviceLoader -------------------------------------------------------------------------------------------------


def _images(n: int = 40, size: int = 8, seed: int = 0) -> torch.Tensor:
    return torch.randint(1, 256, (n, 3, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def test_every_epoch_visits_each_image_once_in_a_new_order():
    images = _images(10)
    loader = DeviceLoader(images, torch.arange(10), 4, seed=0)
    assert len(loader) == 3 and len(DeviceLoader(images, torch.arange(10), 4, drop_last=True)) == 2
    epochs = [torch.cat([y for _, y in loader]) for _ in range(3)]
    assert all(sorted(e.tolist()) == list(range(10)) for e in epochs)
    assert not torch.equal(epochs[0], epochs[1])
    x, y = next(iter(loader))
    assert x.dtype == torch.float32 and x.shape == (4, 3, 8, 8) and y.dtype == torch.int64


def test_normalisation_without_augmentation():
    images = _images()
    loader = DeviceLoader(images, torch.arange(40), 16, train=False)
    x = torch.cat([x for x, _ in loader])
    mean, std = torch.tensor(CIFAR10_MEAN).view(1, 3, 1, 1), torch.tensor(CIFAR10_STD).view(1, 3, 1, 1)
    torch.testing.assert_close(x * std + mean, images.float() / 255, atol=1e-6, rtol=0)


def test_flip_gives_the_image_or_its_mirror_both_seen():
    images = _images()
    loader = DeviceLoader(images, torch.arange(40), 40, crop_padding=0, **RAW)
    x, y = loader.next_batch()
    src = images[y].float()
    same = (x == src).flatten(1).all(1)
    mirrored = (x == src.flip(3)).flatten(1).all(1)
    assert bool((same | mirrored).all()) and same.any() and mirrored.any()


def test_crop_is_a_window_of_the_zero_padded_image():
    images = _images(size=6)
    loader = DeviceLoader(images, torch.arange(40), 40, flip=False, crop_padding=2, **RAW)
    x, y = loader.next_batch()
    padded = torch.nn.functional.pad(images[y], (2, 2, 2, 2)).float()
    shifts = set()
    for i in range(40):
        found = [
            (dy, dx) for dy in range(5) for dx in range(5) if torch.equal(x[i], padded[i, :, dy : dy + 6, dx : dx + 6])
        ]
        assert found, f"image {i} is no window of its padded source"
        shifts.add(found[0])
    assert len(shifts) > 5  # the offsets vary
    sy, sx, flip = torch.tensor([1, 0]), torch.tensor([2, 4]), torch.tensor([False, True])
    out = crop_and_flip(images, torch.tensor([5, 9]), sy, sx, flip, 2)
    padded = torch.nn.functional.pad(images[[5, 9]], (2, 2, 2, 2))
    assert torch.equal(out[0], padded[0, :, 1:7, 2:8]) and torch.equal(out[1], padded[1, :, 0:6, 4:10].flip(2))


def test_cutout_zeroes_a_clipped_square():
    images = torch.full((200, 3, 32, 32), 255, dtype=torch.uint8)
    loader = DeviceLoader(images, torch.zeros(200), 200, crop_padding=0, flip=False, cutout=16, **RAW)
    x, _ = loader.next_batch()
    cut = x[:, 0] == 0
    assert torch.equal(cut, (x == 0).all(1))  # the same pixels in every channel
    rows, cols = cut.any(2), cut.any(1)
    heights, widths = rows.sum(1), cols.sum(1)
    assert bool(((heights >= 8) & (heights <= 16) & (widths >= 8) & (widths <= 16)).all())
    assert torch.equal(cut.sum((1, 2)), heights * widths)  # a rectangle, not a scatter
    assert bool((heights == 16).any() and (heights < 16).any())
    mask = cutout_mask(images[:1].float(), torch.tensor([0]), torch.tensor([31]), 16)
    assert mask.sum() == 8 * 9 and mask[0, 0, 0, 31] and not mask[0, 0, 8, 31]


def test_same_seed_same_batches_and_channels_last():
    images = _images()
    kwargs = dict(cutout=4, crop_padding=2, seed=7)
    a, b = DeviceLoader(images, torch.arange(40), 8, **kwargs), DeviceLoader(images, torch.arange(40), 8, **kwargs)
    c = DeviceLoader(images, torch.arange(40), 8, **{**kwargs, "seed": 8})
    for _ in range(7):
        (xa, ya), (xb, yb), (xc, _) = a.next_batch(), b.next_batch(), c.next_batch()
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert not torch.equal(xa, xc)
    x, _ = DeviceLoader(images, torch.arange(40), 8, channels_last=True).next_batch()
    assert x.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("taken,where", [(3, (0, 3)), (5, (0, 5)), (12, (2, 2))])  # mid-epoch, at its end, later
def test_resume_from_state_dict_replays_the_same_batches(tmp_path, taken, where):
    images = _images(20)
    make = lambda: DeviceLoader(images, torch.arange(20), 4, cutout=4, seed=5)  # noqa: E731
    first = make()
    for _ in range(taken):
        first.next_batch()
    torch.save(first.state_dict(), tmp_path / "loader.pt")
    expected = [first.next_batch() for _ in range(8)]
    resumed = make()
    resumed.load_state_dict(torch.load(tmp_path / "loader.pt", weights_only=True))
    assert (resumed.epoch, resumed.position) == where
    for (xe, ye), (xr, yr) in zip(expected, [resumed.next_batch() for _ in range(8)]):
        assert torch.equal(xe, xr) and torch.equal(ye, yr)
    with pytest.raises(UsageError, match="batch_size=4"):
        DeviceLoader(images, torch.arange(20), 5).load_state_dict(first.state_dict())


def test_iteration_continues_after_resume_mid_epoch():
    images = _images(20)
    a = DeviceLoader(images, torch.arange(20), 4, seed=1)
    a.next_batch()
    b = DeviceLoader(images, torch.arange(20), 4, seed=1)
    b.load_state_dict(a.state_dict())
    assert [y.tolist() for _, y in a] == [y.tolist() for _, y in b]
    assert len([y for _, y in a]) == 5  # the next iteration is a whole new epoch


def test_ranks_take_disjoint_slices_of_each_global_batch():
    images = _images(10)
    whole = [y for _, y in DeviceLoader(images, torch.arange(10), 8, seed=2)]
    ranks = [[y for _, y in DeviceLoader(images, torch.arange(10), 4, seed=2, rank=r, world_size=2)] for r in range(2)]
    assert len(ranks[0]) == len(ranks[1]) == len(whole) == 2
    for k in range(2):
        assert torch.equal(torch.cat([ranks[0][k], ranks[1][k]]), whole[k])
    assert [len(r[1]) for r in ranks] == [1, 1]  # the short last batch shared out
    with pytest.raises(UsageError):
        DeviceLoader(images, torch.arange(10), 4, rank=2, world_size=2)


def test_from_image_set_takes_the_split_indices():
    data = load_dataset("cifar10-mini", None, "train")
    a, b = search_split(data.labels, seed=0)
    loader = DeviceLoader.from_image_set(data, 64, "cpu", indices=a, seed=0)
    assert loader.num_images == len(a) == 1750 and len(loader) == 28
    x, y = loader.next_batch()
    assert x.shape == (64, 3, 32, 32) and bool(torch.isin(y, data.labels[a]).all())


# ---- the `rarts data info` command --------------------------------------------------------------------------------


def test_info_json_on_fake_cifar10(tmp_path, capsys):
    folder, _ = make_cifar10(tmp_path)
    assert main(["data", "info", "--dataset", "cifar10", "--data-dir", str(folder), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["splits"]["train"]["images"] == 100 and report["splits"]["test"]["images"] == 20
    assert report["splits"]["train"]["per_class"]["truck"] == 10 and report["num_classes"] == 10
    assert abs(report["splits"]["train"]["mean"][0] - 0.5) < 0.01  # uniform random pixels


def test_info_table_and_bad_dataset_dir(tmp_path, capsys):
    assert main(["data", "info", "--dataset", "cifar10-mini"]) == 0
    out = capsys.readouterr().out
    assert "3,500 images" in out and "bundled" in out
    assert main(["data", "info", "--dataset", "cifar10", "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("rarts: error: missing file") and "batches.meta" in err


# ---- image folders ------------------------------------------------------------------------------------------------


def test_folder_dataset_transforms_and_stream_loader(image_root):
    from rarts.data import StreamLoader

    train = load_dataset("folder", str(image_root), "train")
    val = load_dataset("folder", str(image_root), "test")
    assert train.classes == val.classes == ("cat", "dog") and len(train) == 6 and len(val) == 4
    assert num_classes("folder", str(image_root)) == 2
    x, label = train[0]
    assert x.shape == (3, 224, 224) and x.dtype == torch.uint8 and label == 0
    assert val[3][0].shape == (3, 224, 224) and val[3][1] == 1
    loader = StreamLoader(train, 4, "cpu", workers=0, seed=0)
    batches = list(loader)
    assert len(batches) == len(loader) == 2 and batches[0][0].dtype == torch.float32
    assert batches[0][0].shape == (4, 3, 224, 224) and loader.epoch == 1
    small = train.load_all(16)
    assert small.images.shape == (6, 3, 16, 16) and small.class_counts() == [3, 3]
    assert DeviceLoader.from_image_set(small, 3).next_batch()[0].shape == (3, 3, 16, 16)
    with pytest.raises(UsageError, match="2 class folders, imagenet has 1000"):
        load_dataset("imagenet", str(image_root), "train")
    with pytest.raises(UsageError, match="no val/ folder"):
        load_dataset("folder", str(image_root / "train"), "test")


def test_random_resized_crop_stays_inside_the_image():
    from rarts.data.folder import RandomResizedCrop

    crop = RandomResizedCrop(224)
    torch.manual_seed(0)
    for width, height in [(500, 375), (40, 300), (224, 224)]:
        for _ in range(50):
            left, top, w, h = crop.box(width, height)
            assert 0 <= left and left + w <= width and 0 <= top and top + h <= height and w > 0 and h > 0


def test_stream_loader_batches_depend_on_the_seed_not_on_the_workers(image_root):
    from rarts.data import StreamLoader

    train = load_dataset("folder", str(image_root), "train")
    runs = [[x for x, _ in StreamLoader(train, 3, workers=workers, seed=4)] for workers in (2, 2, 0)]
    assert len(runs[0]) == 2 and all(torch.equal(a, b) and torch.equal(a, c) for a, b, c in zip(*runs))
    other = [x for x, _ in StreamLoader(train, 3, workers=0, seed=5)]
    assert not all(torch.equal(a, b) for a, b in zip(runs[0], other))


def test_stream_loader_resumes_within_an_epoch(image_root):
    from rarts.data import StreamLoader

    train = load_dataset("folder", str(image_root), "train")
    whole = StreamLoader(train, 2, workers=0, seed=1)
    expected = [whole.next_batch() for _ in range(7)]  # 3 batches an epoch: into the third epoch
    first = StreamLoader(train, 2, workers=0, seed=1)
    taken = [first.next_batch() for _ in range(4)]
    state = first.state_dict()
    assert (state["epoch"], state["position"]) == (1, 1)
    second = StreamLoader(train, 2, workers=0, seed=1)
    second.load_state_dict(state)
    rest = list(second)  # iterating goes on to the end of epoch 2
    assert len(rest) == 2 and second.state_dict()["epoch"] == 2
    resumed = taken + rest + [second.next_batch()]
    assert len(resumed) == len(expected)
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(resumed, expected))
    with pytest.raises(UsageError, match="batch_size=2, this loader has 3"):
        StreamLoader(train, 3, workers=0).load_state_dict(state)
    old = StreamLoader(train, 2, workers=0, seed=1)  # a state saved before positions: the start of its epoch
    old.load_state_dict({"epoch": 2})
    assert torch.equal(old.next_batch()[0], expected[6][0])


def test_stream_loader_without_a_batch_says_so():
    from rarts.data import StreamLoader

    with pytest.raises(UsageError, match="3 images make no full batch of 4"):
        StreamLoader(_Indexed(3), 4, workers=0, drop_last=True).next_batch()
    with pytest.raises(UsageError, match="make no full batch of 2 on each of 2 processes"):
        list(StreamLoader(_Indexed(3), 2, workers=0, drop_last=True, world_size=2))
    # Without drop_last a rank may hold no image of a small set: its epoch is empty, and says so when asked.
    last = StreamLoader(_Indexed(3), 1, workers=0, rank=3, world_size=4)
    assert list(last) == [] and len(last) == 0
    with pytest.raises(UsageError, match="3 images make no batch of 1 on each of 4 processes"):
        last.next_batch()


class _Indexed(torch.utils.data.Dataset):
    """Image i is a 1x1 image of value i: batches show which images they hold."""

    def __init__(self, n: int):
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        return torch.full((3, 1, 1), i, dtype=torch.uint8), i


@pytest.mark.parametrize("train", [True, False])
def test_stream_loader_shards_each_global_batch_over_the_ranks(train):
    from rarts.data import StreamLoader

    n, batch, world = 23, 4, 2
    loaders = [
        StreamLoader(_Indexed(n), batch, workers=0, train=train, drop_last=train, rank=r, world_size=world)
        for r in range(world)
    ]
    batches = [[y.tolist() for _, y in loader] for loader in loaders]
    assert [len(b) for b in batches] == [len(loader) for loader in loaders]
    seen = [i for rank in batches for b in rank for i in b]
    assert len(seen) == len(set(seen))
    if train:  # equal batches on every rank; the images of the last, partial global batch are left out
        assert [len(b) for b in batches] == [2, 2] and all(len(b) == batch for rank in batches for b in rank)
        whole = [y.tolist() for _, y in StreamLoader(_Indexed(n), batch * world, workers=0, drop_last=True)]
        assert [sorted(a + b) for a, b in zip(*batches)] == [sorted(b) for b in whole]
    else:  # evaluation sees every image once: 23 = 3 global batches of 8, the last cut 4 + 3
        assert sorted(seen) == list(range(n)) and [len(b[-1]) for b in batches] == [4, 3]


def test_folder_info_measures_a_sample(image_root, capsys):
    assert main(["data", "info", "--dataset", "folder", "--data-dir", str(image_root), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["splits"]["test"]["per_class"] == {"cat": 2, "dog": 2}
    assert report["splits"]["train"]["stats_images"] == 6 and abs(report["splits"]["train"]["mean"][1] - 0.5) < 0.05


def _class_folders(root: Path, counts: dict[str, dict[str, int]]) -> Path:
    """root/<split>/<class>/ with counts[split][class] tiny PNG images."""
    from PIL import Image

    for split, classes in counts.items():
        for cls, n in classes.items():
            (root / split / cls).mkdir(parents=True)
            for i in range(n):
                Image.fromarray(np.full((8, 8, 3), 10 * i, dtype=np.uint8)).save(root / split / cls / f"{i}.png")
    return root


DEGENERATE_FOLDERS = {
    "one class": ({"train": {"cat": 6}, "val": {"cat": 2}}, r"train has one class folder \(cat\)"),
    "empty class": ({"train": {"cat": 6, "dog": 0}, "val": {"cat": 2}}, "class folder .*train/dog holds no"),
    "val class not in train": ({"train": {"cat": 6, "dog": 6}, "val": {"cat": 2, "cow": 1}}, "class folder .*val/cow"),
}


@pytest.mark.parametrize("case", list(DEGENERATE_FOLDERS))
def test_degenerate_image_folders_are_refused_by_search_and_training(tmp_path, capsys, case):
    pytest.importorskip("PIL.Image")
    counts, message = DEGENERATE_FOLDERS[case]
    root = _class_folders(tmp_path / "images", counts)
    data = ["--dataset", "folder", "--data-dir", str(root)]
    commands = {"train": ["train", "--genotype", "DARTS_V2", *data, "--preset", "quick", "device=cpu"]}
    if case != "val class not in train":  # a search reads train/ alone
        commands["search"] = ["search", "--method", "random", *data, "--preset", "quick", "device=cpu"]
    for name, argv in commands.items():
        assert main([*argv, "--out", str(tmp_path / name)]) == 2, name
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("rarts: error: "), err
        assert re.search(message, err), err
        assert not (tmp_path / name / "checkpoint.pt").exists()


def test_a_class_of_few_training_images_is_warned_of(tmp_path, capsys):
    pytest.importorskip("PIL.Image")
    root = _class_folders(tmp_path, {"train": {"cat": 5, "dog": 3}, "val": {"cat": 1}})
    train = load_dataset("folder", str(root), "train")
    assert train.class_counts() == [5, 3]
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("rarts: warning: ") and "dog 3" in err and "cat" not in err
    val = load_dataset("folder", str(root), "test")  # the validation split may lack a class: no warning
    assert val.classes == ("cat", "dog") and len(val) == 1 and capsys.readouterr().err == ""
