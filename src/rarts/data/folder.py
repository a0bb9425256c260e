"""Image-folder datasets (custom data, ImageNet): one folder per class, decoded by Pillow, streamed by workers.

Layout: ROOT/train/<class>/<image> and ROOT/val/<class>/<image> (ImageNet's validation set reorganised into
class folders, as is usual). Images are .jpg, .jpeg or .png. Pillow is the optional extra `images`.

The transforms follow the ImageNet recipe DARTS uses. Training: random resized crop to 224 (area 8%-100%,
aspect ratio 3/4-4/3), horizontal flip, colour jitter (brightness, contrast and saturation by factors in
[0.6, 1.4], hue shifted by up to 0.2 of the colour wheel, in random order). Evaluation: shorter side resized
to 256, centre crop 224. They run on PIL images in the DataLoader's worker processes and draw from torch's
random generator, which StreamLoader seeds for each image from (seed, epoch, position); they return uint8
(3, S, S) tensors, so a batch crosses to the device as bytes and is normalised there.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from rarts.data.imageset import IMAGENET_MEAN, IMAGENET_STD, ImageSet
from rarts.data.loader import STATE_SHAPE_KEYS, check_state_shape, rank_share
from rarts.errors import UsageError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
SPLIT_FOLDERS = {"train": "train", "test": "val"}
FEW_IMAGES = 5  # a training class with fewer images than this is warned of


def _pil():
    """Pillow's Image module, or a one-line error saying how to install it."""
    try:
        from PIL import Image
    except ImportError as e:
        raise UsageError("image folders need Pillow: pip install 'rarts[images]'") from e
    return Image


def _uniform(lo: float, hi: float) -> float:
    return lo + (hi - lo) * float(torch.rand(()))


def _randint(lo: int, hi: int) -> int:
    """Uniform integer in [lo, hi]."""
    return int(torch.randint(lo, hi + 1, ()))


class RandomResizedCrop:
    """A crop of random area (share `scale` of the image) and aspect ratio (`ratio`, log-uniform), resized to
    size x size. Ten tries to fit such a crop; otherwise a centre crop with the ratio clamped into range."""

    def __init__(self, size: int = 224, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)):
        self.size, self.scale, self.ratio = size, scale, ratio

    def box(self, width: int, height: int) -> tuple[int, int, int, int]:
        """(left, top, crop width, crop height)."""
        area = width * height
        log_lo, log_hi = math.log(self.ratio[0]), math.log(self.ratio[1])
        for _ in range(10):
            target = area * _uniform(*self.scale)
            aspect = math.exp(_uniform(log_lo, log_hi))
            w = round(math.sqrt(target * aspect))
            h = round(math.sqrt(target / aspect))
            if 0 < w <= width and 0 < h <= height:
                return _randint(0, width - w), _randint(0, height - h), w, h
        aspect = width / height
        if aspect < self.ratio[0]:
            w, h = width, round(width / self.ratio[0])
        elif aspect > self.ratio[1]:
            w, h = round(height * self.ratio[1]), height
        else:
            w, h = width, height
        return (width - w) // 2, (height - h) // 2, w, h

    def __call__(self, img):
        left, top, w, h = self.box(*img.size)
        return img.resize((self.size, self.size), _pil().BILINEAR, box=(left, top, left + w, top + h))


class ColorJitter:
    """Brightness, contrast and saturation scaled by a factor in [1 - b, 1 + b] (and so on), hue rotated by a
    fraction in [-hue, hue] of the colour wheel; the four in a random order."""

    def __init__(self, brightness=0.4, contrast=0.4, saturation=0.4, hue=0.2):
        self.brightness, self.contrast, self.saturation, self.hue = brightness, contrast, saturation, hue

    def __call__(self, img):
        from PIL import ImageEnhance

        for k in torch.randperm(4).tolist():
            if k == 0 and self.brightness:
                img = ImageEnhance.Brightness(img).enhance(_uniform(max(0.0, 1 - self.brightness), 1 + self.brightness))
            elif k == 1 and self.contrast:
                img = ImageEnhance.Contrast(img).enhance(_uniform(max(0.0, 1 - self.contrast), 1 + self.contrast))
            elif k == 2 and self.saturation:
                img = ImageEnhance.Color(img).enhance(_uniform(max(0.0, 1 - self.saturation), 1 + self.saturation))
            elif k == 3 and self.hue:
                img = shift_hue(img, _uniform(-self.hue, self.hue))
        return img


def shift_hue(img, fraction: float):
    """Rotate the hue of an RGB PIL image by `fraction` of a full turn (HSV hue is stored as 0-255)."""
    Image = _pil()
    h, s, v = img.convert("HSV").split()
    hue = (np.asarray(h, dtype=np.int16) + int(round(fraction * 255))) % 256
    return Image.merge("HSV", (Image.fromarray(hue.astype(np.uint8), "L"), s, v)).convert("RGB")


class TrainTransform:
    """Random resized crop, horizontal flip, colour jitter: the ImageNet training recipe."""

    def __init__(self, size: int = 224, jitter: ColorJitter | None = None):
        self.crop = RandomResizedCrop(size)
        self.jitter = jitter if jitter is not None else ColorJitter()

    def __call__(self, img):
        img = self.crop(img)
        if float(torch.rand(())) < 0.5:
            img = img.transpose(_pil().FLIP_LEFT_RIGHT)
        return self.jitter(img)


class EvalTransform:
    """Shorter side resized to `resize` (aspect kept), then the centre `crop` x `crop`."""

    def __init__(self, resize: int = 256, crop: int = 224):
        self.resize, self.crop = resize, crop

    def __call__(self, img):
        return centre_crop(resize_shorter(img, self.resize), self.crop)


def resize_shorter(img, size: int):
    w, h = img.size
    if w <= h:
        new = (size, max(1, int(size * h / w)))
    else:
        new = (max(1, int(size * w / h)), size)
    return img if new == (w, h) else img.resize(new, _pil().BILINEAR)


def centre_crop(img, size: int):
    w, h = img.size
    left, top = int(round((w - size) / 2)), int(round((h - size) / 2))
    return img.crop((left, top, left + size, top + size))


def to_uint8_tensor(img) -> torch.Tensor:
    """An RGB PIL image as a (3, H, W) uint8 tensor."""
    return torch.from_numpy(np.array(img, dtype=np.uint8)).permute(2, 0, 1).contiguous()


class ImageFolder(torch.utils.data.Dataset):
    """Images in root/<class>/<file>; item i is (uint8 tensor (3, S, S), int label).

    classes: the class names to use, in label order (the validation split passes the training split's, so
        labels agree); by default the sorted sub-folder names, at least two, each holding an image (anything else
        is a UsageError naming the folder: a network cannot learn a class it never sees, nor learn from one class).
    transform: PIL image -> PIL image (TrainTransform, EvalTransform), or None for the image as it is.
    """

    def __init__(self, root: str | Path, transform=None, classes: Sequence[str] | None = None, name: str = "folder"):
        self.root = Path(root).expanduser()
        if not self.root.is_dir():
            raise UsageError(f"image folder {self.root} does not exist")
        found = sorted(d.name for d in self.root.iterdir() if d.is_dir() and not d.name.startswith("."))
        defines_classes = classes is None  # the validation split, given the training classes, may lack some
        if classes is None:
            classes = found
        else:
            unknown = sorted(set(found) - set(classes))
            if unknown:
                raise UsageError(
                    f"class folder {self.root / unknown[0]} is not among the training classes: add it to train/ "
                    "or remove it"
                )
        if not classes:
            raise UsageError(f"{self.root} has no class folders (expected {self.root}/<class>/<image>)")
        if len(classes) == 1:
            raise UsageError(f"{self.root} has one class folder ({classes[0]}): a classifier needs at least two")
        self.classes = tuple(classes)
        self.name = name
        self.transform = transform
        self.samples: list[tuple[str, int]] = []
        for label, cls in enumerate(self.classes):
            folder = self.root / cls
            files = (
                sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS) if folder.is_dir() else []
            )
            if not files and defines_classes:  # a class the network would never see an image of
                raise UsageError(f"class folder {folder} holds no .jpg, .jpeg or .png images: add some or remove it")
            self.samples.extend((str(p), label) for p in files)
        if not self.samples:
            raise UsageError(f"{self.root} holds no .jpg, .jpeg or .png images in its class folders")
        self.mean, self.std = IMAGENET_MEAN, IMAGENET_STD

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def labels(self) -> torch.Tensor:
        return torch.tensor([label for _, label in self.samples], dtype=torch.int64)

    def class_counts(self) -> list[int]:
        return torch.bincount(self.labels, minlength=len(self.classes)).tolist()

    def open(self, i: int):
        """The i-th image as an RGB PIL image; a file Pillow cannot read is a UsageError naming it."""
        Image = _pil()
        path = self.samples[i][0]
        try:
            with Image.open(path) as img:
                return img.convert("RGB")
        except (OSError, ValueError) as e:
            raise UsageError(f"cannot read image {path} ({' '.join(str(e).split())})") from e

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        img = self.open(i)
        if self.transform is not None:
            img = self.transform(img)
        return to_uint8_tensor(img), self.samples[i][1]

    def load_all(self, size: int, split: str = "train") -> ImageSet:
        """Every image, shorter side resized to `size` and centre-cropped to size x size, as an in-memory
        ImageSet, for small image folders that a DeviceLoader can hold whole."""
        images = torch.empty(len(self), 3, size, size, dtype=torch.uint8)
        for i in range(len(self)):
            images[i] = to_uint8_tensor(centre_crop(resize_shorter(self.open(i), size), size))
        return ImageSet(self.name, split, images, self.labels, self.classes, self.mean, self.std, str(self.root))


def load_folder(name: str, data_dir: str | Path | None, split: str) -> ImageFolder:
    """The `split` of an image-folder dataset under `data_dir` (train/ and val/), with the recipe's transforms."""
    if data_dir is None:
        raise UsageError(f"{name} needs --data-dir: a folder holding train/ and val/, one sub-folder per class")
    root = Path(data_dir).expanduser()
    folder = root / SPLIT_FOLDERS[split]
    if not folder.is_dir():
        raise UsageError(f"--data-dir {root} has no {SPLIT_FOLDERS[split]}/ folder")
    classes = None
    if split != "train" and (root / "train").is_dir():
        classes = sorted(d.name for d in (root / "train").iterdir() if d.is_dir() and not d.name.startswith("."))
    transform = TrainTransform() if split == "train" else EvalTransform()
    data = ImageFolder(folder, transform=transform, classes=classes, name=name)
    if split == "train":
        few = [f"{cls} {n}" for cls, n in zip(data.classes, data.class_counts()) if n < FEW_IMAGES]
        if few:
            print(
                f"rarts: warning: {folder} has classes of fewer than {FEW_IMAGES} images: {', '.join(few)}",
                file=sys.stderr,
            )
    return data


def available_workers() -> int:
    """Decoding processes for an image folder by default: the cores this process may run on (its CPU affinity,
    where the system has one), shared among the processes torchrun started on the machine; at least one. More
    would only contend for the cores, and torch's DataLoader warns of them."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    local_processes = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1))
    return max(1, cores // local_processes)


class _Positions(torch.utils.data.Sampler):
    """The (image index, augmentation seed) pairs a StreamLoader hands its DataLoader for the rest of an epoch,
    read from two int64 tensors a chunk at a time (a list of pairs for all of ImageNet would take 190 MB)."""

    def __init__(self, indices: torch.Tensor, seeds: torch.Tensor) -> None:
        self.indices, self.seeds = indices, seeds

    def __iter__(self) -> Iterator[tuple[int, int]]:
        for start in range(0, len(self.indices), 4096):
            yield from zip(self.indices[start : start + 4096].tolist(), self.seeds[start : start + 4096].tolist())

    def __len__(self) -> int:
        return len(self.indices)


class _SeededItems(torch.utils.data.Dataset):
    """dataset[index], with torch's CPU generator seeded by the item's own seed while its transform runs (and given
    back afterwards; no other generator is touched, so with workers=0 the main process's draws go on as before):
    an image's augmentation depends on (run seed, epoch, position) alone, not on which worker decodes it or on
    where a resumed epoch restarted."""

    def __init__(self, dataset: torch.utils.data.Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, item: tuple[int, int]):
        index, seed = item
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(seed)  # torch.manual_seed would reseed the CUDA generators too
            return self.dataset[index]


class StreamLoader:
    """Batches of an ImageFolder decoded by `workers` DataLoader processes (None: available_workers()),
    normalised on `device`.

    Yields (x, y): x (B, 3, S, S) float32 normalised with `mean`/`std` (channels_last when asked), y (B,) int64.
    Each epoch's order (shuffled when train=True) and every image's augmentation seed are drawn from (seed,
    epoch); an image's transform runs under its own seed, so the batches do not depend on the number of workers,
    and a loader restored with `load_state_dict` in the middle of an epoch goes on with the batches the saved
    one would have produced.
    rank, world_size: each global batch (batch_size x world_size images of the shared epoch order) is cut into
    world_size shares, one per rank (as DeviceLoader does); every image is seen once per epoch, on one rank.
    `next_batch()` draws one batch at a time and starts the next epoch by itself; iterating goes on from the
    current position to the end of the epoch.
    """

    def __init__(
        self,
        dataset: torch.utils.data.Dataset,
        batch_size: int,
        device: torch.device | str = "cpu",
        *,
        train: bool = True,
        workers: int | None = None,
        seed: int = 0,
        drop_last: bool = False,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        channels_last: bool = False,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if batch_size < 1 or world_size < 1 or not 0 <= rank < world_size:
            raise UsageError(f"StreamLoader: batch_size={batch_size}, rank={rank}, world_size={world_size}")
        self.dataset, self.batch_size = dataset, batch_size
        self.workers = available_workers() if workers is None else workers
        self.device = torch.device(device)
        self.train, self.seed, self.drop_last, self.channels_last = train, seed, drop_last, channels_last
        self.rank, self.world_size = rank, world_size
        self.epoch = 0
        self.position = 0  # batches already taken from the current epoch
        n, per_global = len(dataset), batch_size * world_size
        if drop_last:
            self._num_batches = n // per_global
        else:  # the last global batch's share of this rank may be empty
            full, rest = divmod(n, per_global)
            self._num_batches = full + (1 if rank_share(rest, rank, world_size)[1] > 0 else 0)
        # The DataLoader draws its workers' base seed from this generator, not from torch's global one (which
        # drop-path draws from); the transforms reseed per image, so its value does not matter.
        self._generator = torch.Generator().manual_seed(seed)
        self._scale = (1.0 / (255.0 * torch.tensor(std, device=self.device))).view(1, -1, 1, 1)
        self._shift = (torch.tensor(mean, device=self.device) / torch.tensor(std, device=self.device)).view(1, -1, 1, 1)
        self._iterator: Iterator | None = None

    def __len__(self) -> int:
        """Batches per epoch on this rank."""
        return self._num_batches

    @property
    def num_images(self) -> int:
        return len(self.dataset)

    def _epoch_items(self) -> tuple[torch.Tensor, torch.Tensor]:
        """This rank's image indices of the current epoch, in order, and their augmentation seeds."""
        n, batch, per_global = self.num_images, self.batch_size, self.batch_size * self.world_size
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch * 1_009)
        order = torch.randperm(n, generator=g) if self.train else torch.arange(n)
        seeds = torch.randint(0, 2**62, (n,), generator=g)
        full, rest = divmod(n, per_global)
        # Positions in the epoch order: this rank's share of each full global batch, then of the last one.
        positions = ((torch.arange(full) * per_global + self.rank * batch)[:, None] + torch.arange(batch)).reshape(-1)
        if rest and not self.drop_last:
            offset, length = rank_share(rest, self.rank, self.world_size)
            positions = torch.cat([positions, full * per_global + offset + torch.arange(length)])
        return order[positions], seeds[positions]

    def _epoch_iterator(self) -> Iterator:
        from torch.utils.data import DataLoader

        if self._num_batches == 0 and self.drop_last:
            self._no_batch()
        indices, seeds = self._epoch_items()
        skip = self.position * self.batch_size
        loader = DataLoader(
            _SeededItems(self.dataset),
            batch_size=self.batch_size,
            sampler=_Positions(indices[skip:], seeds[skip:]),
            num_workers=self.workers,
            pin_memory=self.device.type == "cuda",
            drop_last=self.drop_last,
            generator=self._generator,
        )
        for x, y in loader:
            self.position += 1
            yield self._to_device(x, y)
        self.epoch += 1
        self.position = 0

    def _to_device(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = x.to(self.device, non_blocking=True).float().mul_(self._scale).sub_(self._shift)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, y.to(self.device, torch.int64, non_blocking=True)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The rest of the current epoch (all of it unless a batch has been taken or a state loaded)."""
        self._iterator = None
        return self._epoch_iterator()

    def _no_batch(self):
        raise UsageError(
            f"{self.num_images} images make no {'full ' if self.drop_last else ''}batch of {self.batch_size}"
            + (f" on each of {self.world_size} processes" if self.world_size > 1 else "")
        )

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self._num_batches == 0:  # there is no batch to wait for
            self._no_batch()
        while True:
            if self._iterator is None:
                self._iterator = self._epoch_iterator()
            try:
                return next(self._iterator)
            except StopIteration:
                self._iterator = None

    def state_dict(self) -> dict:
        """Epoch and batches taken from it, with what the positions depend on (loads with weights_only)."""
        return {
            "epoch": self.epoch,
            "position": self.position,
            "num_images": self.num_images,
            "batch_size": self.batch_size,
            "world_size": self.world_size,
        }

    def load_state_dict(self, state: dict) -> None:
        """Continue where the loader that saved `state` stopped (a state of epoch alone starts that epoch)."""
        check_state_shape(state, self, [key for key in STATE_SHAPE_KEYS if key in state])  # older states: epoch only
        self.epoch = int(state["epoch"])
        self.position = int(state.get("position", 0))
        self._iterator = None
