"""Downloading the official CIFAR archives: checksum verified, extracted safely, failing fast when offline."""

from __future__ import annotations

import hashlib
import math
import shutil
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from rarts.errors import RunFailed, UsageError


@dataclass(frozen=True)
class Archive:
    url: str
    md5: str
    filename: str  # the archive's file name in --root
    folder: str  # the folder the archive unpacks to
    files: tuple[str, ...]  # what that folder must hold


ARCHIVES = {
    "cifar10": Archive(
        url="https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        md5="c58f30108f718f92721af3b95e74349a",
        filename="cifar-10-python.tar.gz",
        folder="cifar-10-batches-py",
        files=(
            "batches.meta",
            "data_batch_1",
            "data_batch_2",
            "data_batch_3",
            "data_batch_4",
            "data_batch_5",
            "test_batch",
        ),
    ),
    "cifar100": Archive(
        url="https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
        md5="eb9058c3a382ffc7106e4002c42a8d85",
        filename="cifar-100-python.tar.gz",
        folder="cifar-100-python",
        files=("meta", "train", "test"),
    ),
}

CONNECT_TIMEOUT_S = 10.0


def md5sum(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def check_timeout(timeout: float, name: str = "timeout") -> None:
    """A positive, finite number of seconds (0 would make the socket non-blocking, a negative one is refused)."""
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout < math.inf:
        raise UsageError(f"{name} must be a positive number of seconds, got {timeout}")


def fetch(
    url: str, dest: Path, timeout: float = CONNECT_TIMEOUT_S, progress: bool = True, advice: str | None = None
) -> None:
    """Stream `url` into `dest` through a temporary file; any network failure is a one-line RunFailed.

    `timeout` bounds the connection and every read, so an offline machine or a stalled server fails
    within that many seconds instead of hanging. `advice` replaces the default hint after the reason.
    """
    from tqdm import tqdm

    tmp = dest.with_name(dest.name + ".part")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(tmp, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(
                total=total, unit="B", unit_scale=True, desc=dest.name, disable=not progress, file=sys.stderr
            ) as bar:
                while block := response.read(1 << 20):
                    out.write(block)
                    bar.update(len(block))
    except (urllib.error.URLError, OSError, ValueError) as e:
        tmp.unlink(missing_ok=True)
        reason = getattr(e, "reason", None) or e
        if advice is None:
            advice = (
                f"offline? copy {dest.name} into {dest.parent} and run again, or pass --data-dir to an existing copy"
            )
        raise RunFailed(f"could not download {url} ({' '.join(str(reason).split())}); {advice}") from e
    tmp.replace(dest)


def _check_members(archive: Path, tar: tarfile.TarFile, root: Path) -> list[tarfile.TarInfo]:
    """Every member must be a plain file or folder that lands inside `root`."""
    root = root.resolve()
    members = tar.getmembers()
    for m in members:
        if not (m.isfile() or m.isdir()):
            raise UsageError(f"{archive}: refusing member {m.name!r}, which is a link or a special file")
        target = (root / m.name).resolve()
        if Path(m.name).is_absolute() or (target != root and root not in target.parents):
            raise UsageError(f"{archive}: refusing member {m.name!r}, which would land outside {root}")
    return members


def extract(archive: Path, root: Path, folder: str, files: tuple[str, ...]) -> Path:
    """Unpack `archive` into a scratch folder under `root`, check it, then move `folder` into place."""
    scratch = Path(tempfile.mkdtemp(prefix=".extract-", dir=root))
    try:
        try:
            with tarfile.open(archive, "r:*") as tar:
                members = _check_members(archive, tar, scratch)
                if hasattr(tarfile, "data_filter"):
                    tar.extractall(scratch, members, filter="data")
                else:
                    tar.extractall(scratch, members)
        except (tarfile.TarError, EOFError, OSError) as e:
            raise UsageError(f"{archive} is not a readable tar archive ({' '.join(str(e).split())})") from e
        for name in files:
            if not (scratch / folder / name).is_file():
                raise UsageError(f"{archive} does not hold {folder}/{name}")
        final = root / folder
        if final.exists():
            shutil.rmtree(final)
        (scratch / folder).replace(final)
        return final
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def download(name: str, root: str | Path, timeout: float = CONNECT_TIMEOUT_S, progress: bool = True) -> Path:
    """Download, verify and unpack the CIFAR archive `name` ('cifar10' or 'cifar100') into `root`.

    Returns the batches folder (pass it as --data-dir). A complete folder already there is kept; an archive
    already in `root` with the right MD5 is used without downloading, which is how an offline machine
    gets the data: copy the archive there.
    """
    if name not in ARCHIVES:
        raise UsageError(f"unknown archive {name!r}: choose from {', '.join(ARCHIVES)}")
    check_timeout(timeout)
    spec = ARCHIVES[name]
    root = Path(root).expanduser()
    root.mkdir(parents=True, exist_ok=True)
    final = root / spec.folder
    if all((final / f).is_file() for f in spec.files):
        return final
    archive = root / spec.filename
    existing = md5sum(archive) if archive.is_file() else None
    if existing != spec.md5:
        advice = None
        if existing is not None:  # a damaged or wrong copy: the download would have replaced it
            advice = (
                f"the {spec.filename} already in {root} has MD5 {existing}, not the expected {spec.md5}: "
                f"replace it with a good copy and run again"
            )
        fetch(spec.url, archive, timeout=timeout, progress=progress, advice=advice)
    digest = md5sum(archive)
    if digest != spec.md5:
        archive.unlink()
        raise UsageError(f"{archive}: MD5 {digest} is not the expected {spec.md5}; deleted it, run again")
    return extract(archive, root, spec.folder, spec.files)
