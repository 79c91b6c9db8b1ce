"""Image tensors for training: uint8 data resized once or per batch, per-channel statistics, batched augmentation.

Everything here is batched tensor ops on whatever device the tensors live on, so a GPU run
augments on the GPU; random draws come from the run's own generator (on that device).

A split small enough (`RESIZE_UP_FRONT_BYTES` once resized) is resized once, up front; a larger
one (`train --resolution 512` asks 7.3 GiB for 30k images) stays at its own size and each batch
is resized as it is drawn (`RunImages`): the pixels are the same either way (each image is resized
on its own), only the memory differs.

>>> import torch
>>> x = torch.full((2, 1, 28, 28), 128, dtype=torch.uint8)
>>> tuple(resize_images(x, 48).shape)
(2, 1, 48, 48)
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F

__all__ = [
    "RESIZE_UP_FRONT_BYTES",
    "RunImages",
    "as_tensor",
    "augment",
    "channel_stats",
    "resize_images",
    "split_bytes",
]

# A split whose resized uint8 images take more than this is resized per batch, not held resized.
RESIZE_UP_FRONT_BYTES = 256 * 2**20
# Resizing goes through float32 copies of this many values at a time (64 MB), whatever the image size.
CHUNK_VALUES = 2**24


def as_tensor(a: Any) -> torch.Tensor:
    return a if isinstance(a, torch.Tensor) else torch.as_tensor(a)


def resize_images(x: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 images resized (antialiased bilinear, each image on its own), kept as uint8 to save memory."""
    if x.shape[-1] == size:
        return x.contiguous()
    out = torch.empty((len(x), x.shape[1], size, size), dtype=torch.uint8, device=x.device)
    step = _chunk(x.shape[1], max(size, x.shape[-1]), 2048)
    for i in range(0, len(x), step):  # chunks keep the float copy small
        part = F.interpolate(x[i : i + step].float(), size=(size, size), mode="bilinear", antialias=True)
        out[i : i + step] = part.round_().clamp_(0, 255).to(torch.uint8)
    return out


def _chunk(channels: int, size: int, most: int) -> int:
    return max(1, min(most, CHUNK_VALUES // (channels * size * size)))


def split_bytes(count: int, channels: int, source: int, size: int) -> int:
    """What `RunImages` holds for `count` images of `source` px trained at `size` px (uint8)."""
    resized = count * channels * size * size
    return resized if resized <= RESIZE_UP_FRONT_BYTES else count * channels * source * source


class RunImages:
    """One split of a run (uint8, on its device) at `size` px: resized up front if small, else per batch.

    `stats=True` also computes the per-channel mean and std (0-255 units) of the resized images, on
    the CPU (every device normalises with the same numbers).
    """

    def __init__(self, x: torch.Tensor, size: int, device: torch.device | str = "cpu", stats: bool = False) -> None:
        self.size, self.up_front = size, len(x) * x.shape[1] * size * size <= RESIZE_UP_FRONT_BYTES
        if self.up_front:
            x = resize_images(x, size)
        if stats:
            self.mean, self.std = (t.to(device) for t in (channel_stats(x) if self.up_front else self._stats(x)))
        self.x = x.contiguous().to(device)

    def __len__(self) -> int:
        return len(self.x)

    def take(self, index: torch.Tensor) -> torch.Tensor:
        """The images at `index` (a tensor on the split's device), resized."""
        return self.x[index] if self.up_front else resize_images(self.x[index], self.size)

    def chunks(self, most: int) -> Iterator[tuple[int, torch.Tensor]]:
        """(start, resized images) in order, at most `most` at a time (fewer for large images)."""
        step = most if self.up_front else _chunk(self.x.shape[1], self.size, most)
        for i in range(0, len(self.x), step):
            part = self.x[i : i + step]
            yield i, part if self.up_front else resize_images(part, self.size)

    def _stats(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`channel_stats` of the resized images, summed in float64 chunk by chunk (no resized copy of them all)."""
        total = torch.zeros(x.shape[1], dtype=torch.float64)
        squares = torch.zeros_like(total)
        step = _chunk(x.shape[1], self.size, 2048)
        for i in range(0, len(x), step):
            part = resize_images(x[i : i + step], self.size).double()
            total += part.sum(dim=(0, 2, 3))
            squares += part.square().sum(dim=(0, 2, 3))
        n = len(x) * self.size * self.size
        mean = total / n
        var = ((squares - n * mean.square()) / max(1, n - 1)).clamp_min(0.0)
        return mean.float().view(1, -1, 1, 1), var.sqrt().float().clamp_min(1.0).view(1, -1, 1, 1)


def channel_stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    xf = x.float()
    return xf.mean(dim=(0, 2, 3)).view(1, -1, 1, 1), xf.std(dim=(0, 2, 3)).clamp_min(1.0).view(1, -1, 1, 1)


def augment(x: torch.Tensor, kind: str, gen: torch.Generator, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """Normalise a uint8 batch; random shift (zero-padded, 1/8 of the side) and flip, batched."""
    xf = (x.float() - mean) / std
    if kind != "none":
        n, _, s, _ = xf.shape
        pad = max(1, s // 8)
        padded = F.pad(xf, (pad, pad, pad, pad))
        dev = xf.device
        oy, ox = (torch.randint(0, 2 * pad + 1, (n, 1), generator=gen, device=dev) for _ in range(2))
        ar = torch.arange(s, device=dev)
        rows, cols = (oy + ar)[:, :, None], (ox + ar)[:, None, :]
        xf = padded.permute(0, 2, 3, 1)[torch.arange(n, device=dev)[:, None, None], rows, cols].permute(0, 3, 1, 2)
        if kind == "crop-flip":
            flip = torch.rand(n, generator=gen, device=dev) < 0.5
            xf = torch.where(flip[:, None, None, None], xf.flip(3), xf)
    return xf.contiguous(memory_format=torch.channels_last)
