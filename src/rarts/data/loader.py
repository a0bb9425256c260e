"""A data loader for small images that keeps the whole set on the device and augments whole batches there.

The images stay one uint8 NCHW tensor on the device; an epoch is a plan drawn once at its start on a seeded
CPU generator (a permutation plus, per image, a crop offset, a flip bit and a cutout centre), copied to the
device in one transfer; a batch is then a slice of that plan, a gather, and a few batched tensor operations.
No worker processes, no per-step iterator, no per-image Python.

Because the plan of an epoch depends only on the generator state at the epoch's start, a checkpoint holds
that state, the epoch and the position within it, and a resumed run replays the exact same batches. The
plan is drawn on the CPU, so a seed gives the same data order on every device.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch

from rarts.data.imageset import CIFAR10_MEAN, CIFAR10_STD, ImageSet
from rarts.errors import UsageError

# Columns of the per-epoch plan, one row per position in the epoch.
_INDEX, _SHIFT_Y, _SHIFT_X, _FLIP, _CENTRE_Y, _CENTRE_X = range(6)

# What a loader state's positions depend on: a state loads only into a loader that agrees on them.
STATE_SHAPE_KEYS = ("num_images", "batch_size", "world_size")


def rank_share(size: int, rank: int, world_size: int) -> tuple[int, int]:
    """Offset and length of rank `rank`'s share of a global batch of `size` images: consecutive shares, the first
    `size % world_size` ranks one image more (DeviceLoader and StreamLoader cut their batches alike)."""
    q, r = divmod(size, world_size)
    return rank * q + min(rank, r), q + (1 if rank < r else 0)


def check_state_shape(state: dict, loader, keys: Sequence[str] = STATE_SHAPE_KEYS) -> None:
    """Refuse a loader state saved with another image count, batch size or number of processes."""
    for key in keys:
        if state[key] != getattr(loader, key):
            raise UsageError(
                f"data loader state was saved with {key}={state[key]}, this loader has {getattr(loader, key)}"
            )


class DeviceLoader:
    """Batches of a whole in-memory image set, shuffled and augmented on `device`.

    images: (N, C, H, W) uint8; labels: (N,) integer. Both are copied to `device` once.
    Each batch is (x, y): x (B, C, H, W) float32, normalised with `mean`/`std` (on the [0, 1] scale),
    in channels_last memory format when asked; y (B,) int64.

    With train=True, every image gets, in this order: a random crop of size H x W from the image zero-padded by
    `crop_padding` on each side; a horizontal flip with probability 1/2 (when `flip`); normalisation; and, when
    cutout > 0, DARTS-style cutout: the pixels of rows [cy - cutout//2, cy + cutout//2) and the same columns
    around a centre (cy, cx) drawn uniformly over the image are set to 0 after normalisation (clipped at the
    borders, so a square near an edge is smaller). With train=False there is no augmentation and no shuffle.

    shuffle: a fresh permutation every epoch (default: same as `train`).
    drop_last: drop the last, incomplete batch.
    rank, world_size: sharding for distributed runs. `batch_size` is per rank; a global batch is
        batch_size * world_size consecutive images of the epoch order, and rank r takes the r-th slice of it.
        Every rank must use the same seed. A short last global batch (drop_last=False) is shared out as evenly
        as possible, so every rank yields the same number of batches; a rank may get an empty one.

    Iterating (`for x, y in loader`) runs to the end of the current epoch; the next iteration starts the next
    epoch. `next_batch()` draws one batch at a time and rolls into a new epoch by itself, for search loops
    that take steps rather than epochs. Both share one position, which `state_dict()` saves.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor | Sequence[int],
        batch_size: int,
        device: torch.device | str = "cpu",
        *,
        train: bool = True,
        shuffle: bool | None = None,
        crop_padding: int = 4,
        flip: bool = True,
        cutout: int = 0,
        mean: Sequence[float] = CIFAR10_MEAN,
        std: Sequence[float] = CIFAR10_STD,
        seed: int = 0,
        drop_last: bool = False,
        channels_last: bool = False,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise UsageError(
                f"DeviceLoader needs uint8 images of shape (N, C, H, W), got {images.dtype} {tuple(images.shape)}"
            )
        labels = torch.as_tensor(labels)
        if labels.shape != images.shape[:1]:
            raise UsageError(f"DeviceLoader: {labels.numel()} labels for {images.shape[0]} images")
        if batch_size < 1 or crop_padding < 0 or cutout < 0:
            raise UsageError("DeviceLoader: batch_size must be >= 1, crop_padding and cutout >= 0")
        if world_size < 1 or not 0 <= rank < world_size:
            raise UsageError(f"DeviceLoader: rank {rank} is not in 0..world_size-1 (world_size {world_size})")
        self.device = torch.device(device)
        self.images = images.to(self.device)
        self.labels = labels.to(self.device, torch.int64)
        self.batch_size = batch_size
        self.train = train
        self.shuffle = train if shuffle is None else shuffle
        self.crop_padding = crop_padding if train else 0
        self.flip = flip and train
        self.cutout = cutout if train else 0
        self.drop_last = drop_last
        self.channels_last = channels_last
        self.rank = rank
        self.world_size = world_size
        self.seed = seed
        c = images.shape[1]
        if len(mean) != c or len(std) != c:
            raise UsageError(f"DeviceLoader: mean and std need {c} values, one per channel")
        mean_t = torch.tensor(mean, dtype=torch.float32, device=self.device).view(1, c, 1, 1)
        std_t = torch.tensor(std, dtype=torch.float32, device=self.device).view(1, c, 1, 1)
        # (x / 255 - mean) / std as one multiply-add.
        self._scale = 1.0 / (255.0 * std_t)
        self._shift = mean_t / std_t

        global_batch = batch_size * world_size
        n = images.shape[0]
        self._num_batches = n // global_batch if drop_last else -(-n // global_batch)
        if self._num_batches == 0:
            raise UsageError(f"DeviceLoader: {n} images make no batch of {global_batch} with drop_last")
        self._generator = torch.Generator().manual_seed(seed)
        self._start_epoch(0)

    @classmethod
    def from_image_set(
        cls,
        data: ImageSet,
        batch_size: int,
        device: torch.device | str = "cpu",
        indices: torch.Tensor | Sequence[int] | None = None,
        **kwargs,
    ) -> DeviceLoader:
        """A loader over `data` (or the images at `indices`, e.g. one half of `search_split`), normalised with the
        set's own mean and std unless given."""
        images, labels = data.images, data.labels
        if indices is not None:
            idx = torch.as_tensor(indices, dtype=torch.int64)
            images, labels = images[idx], labels[idx]
        kwargs.setdefault("mean", data.mean)
        kwargs.setdefault("std", data.std)
        return cls(images, labels, batch_size, device, **kwargs)

    # -- epochs and positions -------------------------------------------------------------------------------

    def __len__(self) -> int:
        """Batches per epoch (the same on every rank)."""
        return self._num_batches

    @property
    def num_images(self) -> int:
        return int(self.images.shape[0])

    @property
    def epoch(self) -> int:
        """The current epoch (0-based). It moves on when a batch is asked for after the epoch is used up."""
        return self._epoch

    @property
    def position(self) -> int:
        """Batches already taken from the current epoch."""
        return self._position

    def _start_epoch(self, epoch: int) -> None:
        self._epoch = epoch
        self._position = 0
        self._epoch_state = self._generator.get_state()
        self._plan = self._draw_plan()

    def _draw_plan(self) -> torch.Tensor:
        """(N, 6) int64 on the device: image index, crop shift y/x, flip bit, cutout centre y/x per position."""
        g = self._generator
        n, _, h, w = self.images.shape
        # Every draw is made whatever the options, so the order of a seed never depends on them.
        order = torch.randperm(n, generator=g)
        shifts = torch.randint(0, 2 * self.crop_padding + 1, (n, 2), generator=g)
        flips = torch.randint(0, 2, (n, 1), generator=g)
        centres = torch.stack([torch.randint(0, h, (n,), generator=g), torch.randint(0, w, (n,), generator=g)], 1)
        if not self.shuffle:
            order = torch.arange(n)
        return torch.cat([order[:, None], shifts, flips, centres], 1).to(self.device, non_blocking=True)

    def _slice(self, k: int) -> tuple[int, int]:
        """Start and end, within the epoch order, of this rank's share of global batch k."""
        start = k * self.batch_size * self.world_size
        offset, length = rank_share(
            min(self.batch_size * self.world_size, self.num_images - start), self.rank, self.world_size
        )
        return start + offset, start + offset + length

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The next batch, starting a new epoch when the current one is used up."""
        if self._position >= self._num_batches:
            self._start_epoch(self._epoch + 1)
        lo, hi = self._slice(self._position)
        self._position += 1
        return self._make_batch(self._plan[lo:hi])

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if self._position >= self._num_batches:
            self._start_epoch(self._epoch + 1)
        while self._position < self._num_batches:
            yield self.next_batch()

    # -- augmentation ---------------------------------------------------------------------------------------

    def _make_batch(self, plan: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        idx = plan[:, _INDEX]
        y = self.labels[idx]
        if self.crop_padding or self.flip:
            flip = plan[:, _FLIP].bool() if self.flip else None
            x = crop_and_flip(self.images, idx, plan[:, _SHIFT_Y], plan[:, _SHIFT_X], flip, self.crop_padding)
        else:
            x = self.images[idx]
        x = x.float().mul_(self._scale).sub_(self._shift)
        if self.cutout:
            # A multiply, not masked_fill_: filling through a broadcast mask is many times slower on the CPU.
            x = x.mul_(~cutout_mask(x, plan[:, _CENTRE_Y], plan[:, _CENTRE_X], self.cutout))
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, y

    # -- checkpointing --------------------------------------------------------------------------------------

    def state_dict(self) -> dict:
        """Epoch, position within it, and the generator state at the epoch's start (loads with weights_only)."""
        return {
            "epoch": self._epoch,
            "position": self._position,
            "generator": self._epoch_state.clone(),
            "num_images": self.num_images,
            "batch_size": self.batch_size,
            "world_size": self.world_size,
        }

    def load_state_dict(self, state: dict) -> None:
        """Continue exactly where the loader that saved `state` stopped."""
        check_state_shape(state, self)
        self._generator.set_state(state["generator"])
        self._start_epoch(int(state["epoch"]))
        self._position = int(state["position"])


def crop_and_flip(
    images: torch.Tensor,
    index: torch.Tensor,
    shift_y: torch.Tensor,
    shift_x: torch.Tensor,
    flip: torch.Tensor | None,
    padding: int,
) -> torch.Tensor:
    """Random crops (and mirror images) of images[index], in one gather from the whole set.

    images: (N, C, H, W); index, shift_y, shift_x, flip: (B,). Image b of the result, (B, C, H, W) with the
    dtype of `images`, is the H x W window with top-left corner (shift_y[b], shift_x[b]) of images[index[b]]
    zero-padded by `padding` on every side (shifts in [0, 2 * padding]), mirrored left-right where flip[b].
    Mirroring the window is the same as reading its columns backwards, so the flip costs nothing extra.
    """
    _, c, h, w = images.shape
    b = index.numel()
    device = images.device
    rows = shift_y.view(b, 1) - padding + torch.arange(h, device=device).view(1, h)
    j = torch.arange(w, device=device).view(1, w)
    if flip is not None:
        j = torch.where(flip.view(b, 1), w - 1 - j, j)
    cols = shift_x.view(b, 1) - padding + j
    inside = ((rows >= 0) & (rows < h)).view(b, 1, h, 1) & ((cols >= 0) & (cols < w)).view(b, 1, 1, w)
    flat = (index.view(b, 1, 1, 1) * c + torch.arange(c, device=device).view(1, c, 1, 1)) * h
    flat = (flat + rows.clamp(0, h - 1).view(b, 1, h, 1)) * w + cols.clamp(0, w - 1).view(b, 1, 1, w)
    return images.reshape(-1)[flat].mul_(inside)


def cutout_mask(x: torch.Tensor, centre_y: torch.Tensor, centre_x: torch.Tensor, length: int) -> torch.Tensor:
    """(B, 1, H, W) bool, True on rows [cy - length//2, cy + length//2) x the same columns around cx."""
    b, _, h, w = x.shape
    half = length // 2
    rows = torch.arange(h, device=x.device).view(1, h)
    cols = torch.arange(w, device=x.device).view(1, w)
    in_rows = (rows >= centre_y.view(b, 1) - half) & (rows < centre_y.view(b, 1) + half)
    in_cols = (cols >= centre_x.view(b, 1) - half) & (cols < centre_x.view(b, 1) + half)
    return (in_rows[:, :, None] & in_cols[:, None, :]).unsqueeze(1)
