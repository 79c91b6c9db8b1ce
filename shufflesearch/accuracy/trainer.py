"""Proxy training: a short, seeded, cached training run that estimates a spec's accuracy.

What to train is the fidelity (`recipe.Fidelity`: images, epochs, resolution, schedule, ...);
this module is how: a seeded, cached run. Data stays in memory as uint8 tensors; augmentation is
batched tensor ops; the model runs channels_last (measured faster on CPU, see
benchmarks/bench_training.py).

>>> from shufflesearch.accuracy.datasets import load_dataset
>>> from shufflesearch.accuracy.recipe import Fidelity
>>> ds = load_dataset("fashion-mnist")
>>> result = train_proxy(ShuffleNetSpec(groups=3, scale=0.25), ds, Fidelity(train_images=2000, epochs=1))
>>> result.status, 0.1 < result.top1 <= 1.0
('ok', True)
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from ..environment import machine_info
from ..memory import check_fits_in_memory
from ..model import build_model
from ..spec import ShuffleNetSpec
from .datasets import ImageDataset, train_subset
from .recipe import DEFAULT_FIDELITY, Fidelity, FidelityError, adapt_spec

__all__ = ["TRAINER_VERSION", "TrainProgress", "TrainResult", "train_proxy"]

# Bump when a change to this file (or recipe.py) changes what a run computes: old cache entries then miss.
TRAINER_VERSION = 1
# A cross-entropy this far above log(classes) means the weights blew up, not a bad batch.
DIVERGENCE_LOSS_FACTOR = 10.0


@dataclass(frozen=True)
class TrainProgress:
    """One progress report: sent after every optimiser step and at each epoch end."""

    epoch: float
    epochs: float
    step: int
    steps: int
    train_loss: float
    images_seen: int
    images_per_s: float
    epoch_end: bool = False
    top1: float | None = None  # at an epoch end: top-1 on the curve subset (what a search prunes on)


@dataclass(frozen=True)
class TrainResult:
    """Outcome of one proxy run. `top1`/`test_loss` are None when the run diverged."""

    top1: float | None
    test_loss: float | None
    curve: list[dict[str, Any]]
    seconds: float
    images_seen: int
    status: Literal["ok", "diverged"]
    spec: dict[str, Any]
    dataset: str
    fidelity: dict[str, Any]
    seed: int
    environment: dict[str, Any] = field(default_factory=dict)
    cpu_seconds: float = 0.0
    cached: bool = False

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainResult:
        return cls(**data)


def train_proxy(
    spec: ShuffleNetSpec,
    dataset: ImageDataset,
    fidelity: Fidelity = DEFAULT_FIDELITY,
    seed: int = 0,
    progress: Callable[[TrainProgress], None] | None = None,
    cache: Any = None,
    threads: int | None = None,
) -> TrainResult:
    """Train `spec` on `dataset` at `fidelity` and return its top-1 on the evaluation (test) split.

    `cache` is a `ResultCache` (or None): a hit returns the stored result with `cached=True`.
    `threads` sets torch's intra-op threads for this run (None: leave as is).
    """
    trained = adapt_spec(spec, dataset, fidelity)
    key = None
    if cache is not None:
        from .cache import result_key

        key = result_key(trained, dataset.fingerprint, fidelity, seed, TRAINER_VERSION)
        hit = cache.get(key)
        if hit is not None:
            return dataclasses.replace(TrainResult.from_dict(hit), cached=True)
    old_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        result = _Run(trained, dataset, fidelity, seed, progress).run()
    finally:
        torch.set_num_threads(old_threads)
    if cache is not None:
        cache.put(key, result.to_dict())
    return result


def environment(bf16: bool) -> dict[str, Any]:
    """Where a run happened (`shufflesearch.environment.machine_info`) and how: travels with every result."""
    return {**machine_info(), "threads": torch.get_num_threads(), "bf16": bf16}


class _Run:
    """One training run; split in steps so each reads on its own."""

    def __init__(
        self, spec: ShuffleNetSpec, dataset: ImageDataset, fid: Fidelity, seed: int, progress: Callable | None
    ) -> None:
        self.spec, self.dataset, self.fid, self.seed, self.progress = spec, dataset, fid, seed, progress
        if fid.bf16 and not (torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()):
            raise FidelityError("bf16=True needs a CPU with native bf16 (e.g. AVX512-BF16 or AMX); use bf16=False")

    def run(self) -> TrainResult:
        fid, spec = self.fid, self.spec
        start, cpu_start = time.perf_counter(), time.process_time()
        gen = torch.Generator().manual_seed(self.seed)
        # Weights, gradients and momentum, and a batch's activations: refused before the data is resized.
        check_fits_in_memory(spec, min(fid.batch_size, fid.train_images), weight_copies=2 + (fid.momentum > 0))
        idx = train_subset(self.dataset.train_labels, min(fid.train_images, len(self.dataset.train_labels)), self.seed)
        x_train = _resize(_as_tensor(self.dataset.train_images)[idx], spec.resolution)
        y_train = _as_tensor(self.dataset.train_labels)[idx]
        mean, std = _channel_stats(x_train)
        x_eval, y_eval = self._eval_split(fid.eval_images)
        x_curve, y_curve = self._eval_split(fid.curve_eval_images) if fid.curve_eval_images else (None, None)

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            model = build_model(spec).to(memory_format=torch.channels_last)
        optimizer = _optimizer(model, fid, _lr_for(spec, fid))
        n = len(y_train)
        batch = min(fid.batch_size, n)
        steps_per_epoch = max(1, n // batch)  # drop the ragged last batch: BN on 3 images is noise
        total_steps = max(1, round(fid.epochs * steps_per_epoch))
        peak = [g["lr"] for g in optimizer.param_groups]
        curve: list[dict[str, Any]] = []
        seen, step, status, loss_sum, loss_count = 0, 0, "ok", 0.0, 0
        limit = DIVERGENCE_LOSS_FACTOR * math.log(spec.num_classes)
        order = torch.randperm(n, generator=gen)
        loop_start = time.perf_counter()
        while step < total_steps:
            elapsed = time.perf_counter() - start
            frac = step / total_steps
            if fid.time_budget_s is not None:
                if elapsed >= fid.time_budget_s:
                    break
                frac = max(frac, elapsed / fid.time_budget_s)
            for group, lr in zip(optimizer.param_groups, peak):
                group["lr"] = lr * _schedule(fid, frac)
            pos = (step % steps_per_epoch) * batch
            if pos == 0 and step:
                order = torch.randperm(n, generator=gen)
            take = order[pos : pos + batch]
            xb = _augment(x_train[take], fid.augment, gen, mean, std)
            model.train()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=fid.bf16):
                loss = F.cross_entropy(model(xb), y_train[take], label_smoothing=fid.label_smoothing)
            value = float(loss.detach())
            if not math.isfinite(value) or value > limit:
                status = "diverged"
                break
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step, seen = step + 1, seen + len(take)
            loss_sum, loss_count = loss_sum + value, loss_count + 1
            speed = seen / max(time.perf_counter() - loop_start, 1e-9)
            epoch_end = step % steps_per_epoch == 0 or step == total_steps
            if epoch_end:
                point = {"epoch": step / steps_per_epoch, "images_seen": seen, "train_loss": loss_sum / loss_count}
                point["top1"] = _evaluate(model, x_curve, y_curve, mean, std, fid)[0] if x_curve is not None else None
                point["seconds"] = time.perf_counter() - start
                curve.append(point)
                loss_sum, loss_count = 0.0, 0
            if self.progress is not None:
                epoch = step / steps_per_epoch
                top1 = curve[-1]["top1"] if epoch_end else None
                self.progress(TrainProgress(epoch, fid.epochs, step, total_steps, value, seen, speed, epoch_end, top1))

        top1 = test_loss = None
        if status == "ok":
            top1, test_loss = _evaluate(model, x_eval, y_eval, mean, std, fid)
            if not math.isfinite(test_loss):  # finite training loss, yet the eval-mode net blew up
                top1, test_loss, status = None, None, "diverged"
            elif curve and curve[-1]["images_seen"] == seen:
                curve[-1]["top1_full"] = top1
        return TrainResult(
            top1=top1,
            test_loss=test_loss,
            curve=curve,
            seconds=time.perf_counter() - start,
            images_seen=seen,
            status=status,
            spec=spec.to_dict(),
            dataset=f"{self.dataset.name}:{self.dataset.fingerprint}",
            fidelity=fid.to_dict(),
            seed=self.seed,
            environment=environment(fid.bf16),
            cpu_seconds=time.process_time() - cpu_start,
        )

    def _eval_split(self, limit: int | None) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = _as_tensor(self.dataset.test_images), _as_tensor(self.dataset.test_labels)
        if limit is not None and limit < len(y):
            # Seed 0, not the run's seed: every run is scored on the same images.
            keep = train_subset(y, limit, 0)
            x, y = x[keep], y[keep]
        return _resize(x, self.spec.resolution), y


def _as_tensor(a: Any) -> torch.Tensor:
    return a if isinstance(a, torch.Tensor) else torch.as_tensor(a)


def _resize(x: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 images resized once up front (antialiased bilinear), kept as uint8 to save memory."""
    if x.shape[-1] == size:
        return x.contiguous()
    out = torch.empty((len(x), x.shape[1], size, size), dtype=torch.uint8)
    for i in range(0, len(x), 2048):  # chunks keep the float copy small
        part = F.interpolate(x[i : i + 2048].float(), size=(size, size), mode="bilinear", antialias=True)
        out[i : i + 2048] = part.round_().clamp_(0, 255).to(torch.uint8)
    return out


def _channel_stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    xf = x.float()
    return xf.mean(dim=(0, 2, 3)).view(1, -1, 1, 1), xf.std(dim=(0, 2, 3)).clamp_min(1.0).view(1, -1, 1, 1)


def _augment(x: torch.Tensor, kind: str, gen: torch.Generator, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """Normalise a uint8 batch; random shift (zero-padded, 1/8 of the side) and flip, batched."""
    xf = (x.float() - mean) / std
    if kind != "none":
        n, _, s, _ = xf.shape
        pad = max(1, s // 8)
        padded = F.pad(xf, (pad, pad, pad, pad))
        oy, ox = (torch.randint(0, 2 * pad + 1, (n, 1), generator=gen) for _ in range(2))
        ar = torch.arange(s)
        rows, cols = (oy + ar)[:, :, None], (ox + ar)[:, None, :]
        xf = padded.permute(0, 2, 3, 1)[torch.arange(n)[:, None, None], rows, cols].permute(0, 3, 1, 2)
        if kind == "crop-flip":
            flip = torch.rand(n, generator=gen) < 0.5
            xf = torch.where(flip[:, None, None, None], xf.flip(3), xf)
    return xf.contiguous(memory_format=torch.channels_last)


def _lr_for(spec: ShuffleNetSpec, fid: Fidelity) -> float:
    if not fid.lr_width_exponent:
        return fid.lr
    reference = spec.replace(scale=1.0).stage_channels[-1]
    return fid.lr * (reference / spec.stage_channels[-1]) ** fid.lr_width_exponent


def _optimizer(model: nn.Module, fid: Fidelity, lr: float) -> torch.optim.Optimizer:
    # Weight decay on conv/FC weights only: decaying BN scales and biases hurts small nets.
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": fid.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.SGD(groups, lr=lr, momentum=fid.momentum, nesterov=fid.nesterov and fid.momentum > 0)


def _schedule(fid: Fidelity, frac: float) -> float:
    """LR multiplier at training fraction `frac` in [0, 1]: linear warm-up, then the decay."""
    frac = min(max(frac, 0.0), 1.0)
    warm = fid.warmup_fraction
    if frac < warm:
        start = 0.04 if fid.schedule == "onecycle" else 0.0
        return start + (1 - start) * (frac + 1e-3) / warm
    t = (frac - warm) / max(1e-9, 1 - warm)
    if fid.schedule == "linear":
        return 1 - t
    return 0.5 * (1 + math.cos(math.pi * t))


@torch.no_grad()
def _evaluate(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, fid: Fidelity
) -> tuple[float, float]:
    """Top-1 and mean cross-entropy (no smoothing) over (x, y)."""
    model.eval()
    correct, loss = 0, 0.0
    for i in range(0, len(y), 500):
        xb = ((x[i : i + 500].float() - mean) / std).contiguous(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=fid.bf16):
            logits = model(xb).float()
        correct += int((logits.argmax(1) == y[i : i + 500]).sum())
        loss += float(F.cross_entropy(logits, y[i : i + 500], reduction="sum"))
    return correct / len(y), loss / len(y)
