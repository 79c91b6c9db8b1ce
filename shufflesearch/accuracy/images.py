"""Image tensors for training: uint8 data resized once, per-channel statistics, batched augmentation.

Everything here is batched tensor ops on whatever device the tensors live on, so a GPU run
augments on the GPU; random draws come from the run's own generator (on that device).

>>> import torch
>>> x = torch.full((2, 1, 28, 28), 128, dtype=torch.uint8)
>>> tuple(resize_images(x, 48).shape)
(2, 1, 48, 48)
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

__all__ = ["as_tensor", "augment", "channel_stats", "resize_images"]


def as_tensor(a: Any) -> torch.Tensor:
    return a if isinstance(a, torch.Tensor) else torch.as_tensor(a)


def resize_images(x: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 images resized once up front (antialiased bilinear), kept as uint8 to save memory."""
    if x.shape[-1] == size:
        return x.contiguous()
    out = torch.empty((len(x), x.shape[1], size, size), dtype=torch.uint8)
    for i in range(0, len(x), 2048):  # chunks keep the float copy small
        part = F.interpolate(x[i : i + 2048].float(), size=(size, size), mode="bilinear", antialias=True)
        out[i : i + 2048] = part.round_().clamp_(0, 255).to(torch.uint8)
    return out


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
