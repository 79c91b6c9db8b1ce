"""Proxy training: a short, seeded, cached training run that estimates a spec's accuracy.

What to train is the fidelity (`recipe.Fidelity`: images, epochs, resolution, schedule, ...);
this module is how: a seeded, cached run on a device (`devices.resolve_device`). Data stays
in memory as uint8 tensors (on a GPU: in its memory, moved there once), resized once up front,
or per batch where the resized split would be large (`images.RunImages`); the memory check
counts those images. Augmentation is batched tensor ops; the model runs channels_last
(measured faster on CPU, see benchmarks/bench_training.py).

On a GPU the loop never waits for the device inside a step: the loss is summed where it is
computed and read back every `GPU_SYNC_EVERY` steps and at epoch ends, which is when the
divergence check runs and progress is reported. On the CPU reading it is free, so every
step is checked and reported, as before devices existed.

>>> from shufflesearch.accuracy.datasets import load_dataset
>>> from shufflesearch.accuracy.recipe import Fidelity
>>> ds = load_dataset("fashion-mnist")
>>> result = train_proxy(ShuffleNetSpec(groups=3, scale=0.25), ds, Fidelity(train_images=2000, epochs=1))
>>> result.status, 0.1 < result.top1 <= 1.0
('ok', True)
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..environment import machine_info
from ..memory import TooLargeForThisMachine, check_fits_in_memory
from ..model import build_model
from ..spec import ShuffleNetSpec
from .datasets import ImageDataset, train_subset, validation_split
from .devices import check_precision, cuda_kernels, device_info, device_kind, resolve_device
from .evaluate import count_correct, eval_indices
from .images import RunImages, split_bytes
from .images import as_tensor as _as_tensor
from .images import augment as _augment
from .recipe import BATCH_MIN, DEFAULT_FIDELITY, Fidelity, FidelityError, adapt_spec, lr_multiplier, peak_lr
from .train_result import TrainProgress, TrainResult, cached_result
from .train_state import load_state, run_identity, save_state

__all__ = ["GPU_SYNC_EVERY", "TRAINER_VERSION", "TrainProgress", "TrainResult", "train_proxy"]

# Bump when a change to this file (or recipe.py) changes what a run computes: old cache entries then miss.
TRAINER_VERSION = 1
# A cross-entropy this far above log(classes) means the weights blew up, not a bad batch.
DIVERGENCE_LOSS_FACTOR = 10.0
# On a GPU the loss is read back (checked, reported) every this many steps: each read waits for the device.
GPU_SYNC_EVERY = 50
_AUTOCAST = {"bf16": torch.bfloat16, "fp16": torch.float16}
# Evaluation runs this many images at a time up to 112 px, fewer above (the activations grow with the area).
EVAL_CHUNK = 500


def train_proxy(
    spec: ShuffleNetSpec,
    dataset: ImageDataset,
    fidelity: Fidelity = DEFAULT_FIDELITY,
    seed: int = 0,
    progress: Callable[[TrainProgress], None] | None = None,
    cache: Any = None,
    threads: int | None = None,
    device: str = "cpu",
    keep_weights: bool = False,
    state_file: str | Path | None = None,
) -> TrainResult:
    """Train `spec` on `dataset` at `fidelity` and return its top-1 on the split the recipe scores on
    (`fidelity.scored_on`: validation images held out of the training set, or the test split).

    `cache` is a `ResultCache` (or None): a hit returns the stored result with `cached=True`.
    Its key holds the device's kind for a GPU run (`cache.result_key` says why). A cached result
    has no weights, so with `keep_weights=True` the run trains anyway (and refreshes the entry).
    `threads` sets torch's intra-op threads for this run (None: leave as is).
    `device`: "cpu", "cuda", "cuda:N", "mps" or "auto", checked before any work.
    `state_file`: the run's full state is written there at every epoch end, and a run that finds
    the file (written by this same run: spec, recipe, seed, dataset) resumes from it, ending
    with the weights and metrics of an uninterrupted run. On a GPU such a run uses deterministic
    kernels (no cuDNN benchmark), so it equals another run with a state file, bit for bit, not
    necessarily a faster run without one. With `fidelity.time_budget_s` a resumed run is not
    bit-identical: where it stops and how it anneals depend on the clock. The file stays after
    the run, so running again only re-evaluates.
    """
    where = resolve_device(device)
    trained = adapt_spec(spec, dataset, fidelity)
    key = None
    if cache is not None:
        from .cache import result_key

        key = result_key(trained, dataset.fingerprint, fidelity, seed, TRAINER_VERSION, where)
        hit = None if keep_weights else cached_result(cache, key)  # a damaged entry: a miss, trained again
        if hit is not None:
            return hit
    old_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        with cuda_kernels(where, reproducible=state_file is not None):
            result = _Run(trained, dataset, fidelity, seed, progress, where, state_file).run(keep_weights)
    except torch.OutOfMemoryError:
        raise TooLargeForThisMachine(f"{trained.label} at batch {fidelity.batch_size} does not fit in the memory of "
                                     f"{where}; lower the batch size or train a smaller net") from None  # fmt: skip
    finally:
        torch.set_num_threads(old_threads)
    if cache is not None:
        cache.put(key, result.to_dict())
    return result


def environment(bf16: bool | str = False, device: str = "cpu") -> dict[str, Any]:
    """Where a run happened (`shufflesearch.environment.machine_info`) and how: travels with every result.

    `bf16` is the run's precision ("fp32", "bf16", "fp16"; True/False as before precisions had names).
    """
    precision = bf16 if isinstance(bf16, str) else ("bf16" if bf16 else "fp32")
    return {**machine_info(), "threads": torch.get_num_threads(), "bf16": precision == "bf16", "precision": precision,
            **device_info(device)}  # fmt: skip


class _Run:
    """One training run; split in steps so each reads on its own."""

    def __init__(
        self,
        spec: ShuffleNetSpec,
        dataset: ImageDataset,
        fid: Fidelity,
        seed: int,
        progress: Callable | None,
        device: str = "cpu",
        state_file: str | Path | None = None,
    ) -> None:
        self.spec, self.dataset, self.fid, self.seed, self.progress = spec, dataset, fid, seed, progress
        self.device, self.state_file = torch.device(device), state_file
        self.name = device
        check_precision(fid.precision, self.device)
        # Reading the loss is free on the CPU and a wait for the device on a GPU.
        self.sync_every = 1 if self.device.type == "cpu" else GPU_SYNC_EVERY
        labels = _as_tensor(dataset.train_labels)
        # Validation images are held out of what the run may train on; the test split holds out nothing.
        if fid.scored_on == "validation":
            self.held, self.pool = validation_split(labels, fid.validation_images)
        else:
            self.held, self.pool = None, torch.arange(len(labels))
        self.n = min(fid.train_images, len(self.pool))
        self.batch = min(fid.batch_size, self.n)
        if self.batch < BATCH_MIN:  # the recipe asks for 2 or more: the dataset has fewer
            raise FidelityError(f"{dataset.name} has {self.n} training image: a training batch needs at least "
                                f"{BATCH_MIN} (BatchNorm normalises a batch by its own statistics)")  # fmt: skip
        self.eval_chunk = EVAL_CHUNK if spec.resolution <= 112 else max(1, EVAL_CHUNK * 112**2 // spec.resolution**2)
        if self.device.type == "cpu":
            # Weights, gradients and momentum, a batch's activations and the images the run holds:
            # refused before any is resized (on a GPU an out-of-memory error says it instead).
            check_fits_in_memory(spec, self.batch, 2 + (fid.momentum > 0), self._data_bytes())

    def run(self, keep_weights: bool = False) -> TrainResult:
        fid, spec, dev = self.fid, self.spec, self.device
        start, cpu_start = time.perf_counter(), time.process_time()
        gen = torch.Generator(device=dev).manual_seed(self.seed)
        idx = self.train_indices()
        x_train = RunImages(_as_tensor(self.dataset.train_images)[idx], spec.resolution, dev, stats=True)
        y_train = _as_tensor(self.dataset.train_labels)[idx].to(dev)
        mean, std = x_train.mean, x_train.std
        x_eval, y_eval = self._eval_split(fid.eval_images)
        x_curve, y_curve = self._eval_split(fid.curve_eval_images) if fid.curve_eval_images else (None, None)

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            model = build_model(spec).to(dev, memory_format=torch.channels_last)
        optimizer = _optimizer(model, fid, peak_lr(spec, fid), fused=dev.type == "cuda")
        scaler = torch.amp.GradScaler(dev.type, enabled=fid.precision == "fp16")
        n, batch = self.n, self.batch
        steps_per_epoch = max(1, n // batch)  # drop the ragged last batch: BN on 3 images is noise
        total_steps = max(1, round(fid.epochs * steps_per_epoch))
        peak = [g["lr"] for g in optimizer.param_groups]
        curve: list[dict[str, Any]] = []
        seen, step, status, loss_sum, loss_count = 0, 0, "ok", 0.0, 0
        limit = DIVERGENCE_LOSS_FACTOR * math.log(spec.num_classes)
        order = torch.randperm(n, generator=gen, device=dev)
        identity = run_identity(spec.to_dict(), fid.to_dict(), self.seed, self._dataset_name(), TRAINER_VERSION,
                                device_kind(self.name))  # fmt: skip
        spent = {"seconds": 0.0, "loop_seconds": 0.0, "cpu_seconds": 0.0}
        saved = load_state(self.state_file, identity) if self.state_file is not None else None
        if saved is not None:
            model.load_state_dict(saved["model"])
            optimizer.load_state_dict(saved["optimizer"])
            if saved["scaler"]:
                scaler.load_state_dict(saved["scaler"])
            gen.set_state(saved["generator"])
            order, step, seen, curve = saved["order"].to(dev), saved["step"], saved["images_seen"], saved["curve"]
            spent = {k: saved[k] for k in spent}
            start, cpu_start = start - spent["seconds"], cpu_start - spent["cpu_seconds"]
        loop_start = time.perf_counter() - spent["loop_seconds"]
        # On a GPU: this epoch's loss sum and the worst loss since the last read, kept on the device.
        gpu_sum = torch.zeros((), device=dev)
        gpu_worst = torch.zeros((), device=dev)
        read_sum, read_step = 0.0, step
        value = float("nan")
        while step < total_steps:
            elapsed = time.perf_counter() - start
            frac = step / total_steps
            if fid.time_budget_s is not None:
                if elapsed >= fid.time_budget_s:
                    break
                frac = max(frac, elapsed / fid.time_budget_s)
            for group, lr in zip(optimizer.param_groups, peak):
                group["lr"] = lr * lr_multiplier(fid, frac)
            pos = (step % steps_per_epoch) * batch
            if pos == 0 and step:
                order = torch.randperm(n, generator=gen, device=dev)
            take = order[pos : pos + batch]
            xb = _augment(x_train.take(take), fid.augment, gen, mean, std)
            model.train()
            with _autocast(dev, fid.precision):
                loss = F.cross_entropy(model(xb), y_train[take], label_smoothing=fid.label_smoothing)
            if self.sync_every == 1:  # checked before the step is taken
                value = float(loss.detach())
                if not math.isfinite(value) or value > limit:
                    status = "diverged"
                    break
                loss_sum, loss_count = loss_sum + value, loss_count + 1
            else:
                detached = loss.detach().float()
                gpu_sum += detached
                gpu_worst = torch.maximum(gpu_worst, detached)  # NaN wins, so a NaN loss is seen at the next read
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            step, seen = step + 1, seen + len(take)
            epoch_end = step % steps_per_epoch == 0 or step == total_steps
            if self.sync_every > 1:
                if not (epoch_end or step % self.sync_every == 0):
                    continue
                total, worst = torch.stack([gpu_sum, gpu_worst]).tolist()  # the one wait for the device
                if not math.isfinite(worst) or worst > limit:
                    status = "diverged"
                    break
                value = (total - read_sum) / max(1, step - read_step)
                read_sum, read_step = total, step
                gpu_worst.zero_()
                if epoch_end:
                    loss_sum, loss_count = total, step - (step - 1) // steps_per_epoch * steps_per_epoch
                    gpu_sum.zero_()
                    read_sum = 0.0
            speed = seen / max(time.perf_counter() - loop_start, 1e-9)
            if epoch_end:
                point = {"epoch": step / steps_per_epoch, "images_seen": seen, "train_loss": loss_sum / loss_count}
                point["top1"] = point["loss"] = None
                if x_curve is not None:  # what a search prunes on: the curve subset's top-1, or its loss
                    point["top1"], _, point["loss"] = self._evaluate(model, x_curve, y_curve, mean, std)
                point["seconds"] = time.perf_counter() - start
                curve.append(point)
                loss_sum, loss_count = 0.0, 0
                if self.state_file is not None:
                    now = time.perf_counter()
                    spent = {"seconds": now - start, "loop_seconds": now - loop_start,
                             "cpu_seconds": time.process_time() - cpu_start}  # fmt: skip
                    save_state(self.state_file, identity, {
                        "model": _on_cpu(model.state_dict()), "optimizer": optimizer.state_dict(),
                        "scaler": scaler.state_dict(), "generator": gen.get_state(), "order": order.cpu(),
                        "step": step, "images_seen": seen, "curve": curve, **spent,
                    })  # fmt: skip
            if self.progress is not None:
                epoch = step / steps_per_epoch
                top1, loss = (curve[-1]["top1"], curve[-1]["loss"]) if epoch_end else (None, None)
                self.progress(TrainProgress(epoch, fid.epochs, step, total_steps, value, seen, speed, epoch_end, top1,
                                            loss))  # fmt: skip

        top1 = top5 = test_loss = None
        if status == "ok":
            top1, top5, test_loss = self._evaluate(model, x_eval, y_eval, mean, std)
            if not math.isfinite(test_loss):  # finite training loss, yet the eval-mode net blew up
                top1, top5, test_loss, status = None, None, None, "diverged"
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
            dataset=self._dataset_name(),
            fidelity=fid.to_dict(),
            seed=self.seed,
            environment=environment(fid.precision, self.name),
            cpu_seconds=time.process_time() - cpu_start,
            top5=top5,
            device=self.name,
            input_mean=mean.flatten().tolist(),
            input_std=std.flatten().tolist(),
            scored_images=len(y_eval),
            weights=_on_cpu(model.state_dict()) if keep_weights and status == "ok" else None,
        )

    def train_indices(self) -> torch.Tensor:
        """The training images this run trains on: a seeded class-balanced subset of those not held out."""
        return self.pool[train_subset(_as_tensor(self.dataset.train_labels)[self.pool], self.n, self.seed)]

    def _dataset_name(self) -> str:
        return f"{self.dataset.name}:{self.dataset.fingerprint}"

    def _eval_split(self, limit: int | None) -> tuple[RunImages, torch.Tensor]:
        """The scored split (validation or test), or `limit` class-balanced images of it."""
        if self.held is None:
            x, y = _as_tensor(self.dataset.test_images), _as_tensor(self.dataset.test_labels)
        else:
            x, y = _as_tensor(self.dataset.train_images)[self.held], _as_tensor(self.dataset.train_labels)[self.held]
        keep = eval_indices(y, limit)  # seed 0, not the run's seed: every run is scored on the same images
        if keep is not None:
            x, y = x[keep], y[keep]
        return RunImages(x, self.spec.resolution, self.device), y.to(self.device)

    def _data_bytes(self) -> int:
        """The images the run holds (`images.split_bytes`), and the float copy the training statistics
        take of a split resized up front, or a few float copies of a batch of them."""
        fid = self.fid
        test = len(self.dataset.test_labels) if self.held is None else len(self.held)
        c, s, r = self.dataset.in_channels, self.dataset.image_size, self.spec.resolution
        train = split_bytes(self.n, c, s, r)
        stats = 4 * train if train == self.n * c * r * r else 0
        held = train + split_bytes(min(fid.eval_images or test, test), c, s, r)
        held += split_bytes(min(fid.curve_eval_images, test), c, s, r)
        return held + max(stats, 3 * 4 * max(self.batch, self.eval_chunk) * c * r * r)

    @torch.no_grad()
    def _evaluate(
        self, model: nn.Module, x: RunImages, y: torch.Tensor, mean: torch.Tensor, std: torch.Tensor
    ) -> tuple[float, float, float]:
        """Top-1, top-5 and mean cross-entropy (no smoothing) over (x, y); one read back from the device."""
        model.eval()
        dev = y.device
        exact = torch.float32 if dev.type == "mps" else torch.float64  # MPS has no float64
        correct1 = torch.zeros((), dtype=torch.int64, device=dev)
        correct5 = torch.zeros((), dtype=torch.int64, device=dev)
        loss = torch.zeros((), dtype=exact, device=dev)
        for i, images in x.chunks(self.eval_chunk):
            xb = ((images.float() - mean) / std).contiguous(memory_format=torch.channels_last)
            with _autocast(dev, self.fid.precision):
                logits = model(xb).float()
            yb = y[i : i + len(images)]
            top1, top5 = count_correct(logits, yb)
            correct1 += top1
            correct5 += top5
            loss += F.cross_entropy(logits, yb, reduction="sum").to(exact)
        c1, c5, total = torch.stack([correct1.to(exact), correct5.to(exact), loss]).tolist()
        return int(c1) / len(y), int(c5) / len(y), total / len(y)


def _autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    return torch.autocast(device.type, dtype=_AUTOCAST.get(precision, torch.bfloat16), enabled=precision != "fp32")


def _on_cpu(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Plain contiguous CPU copies (channels_last strides would not survive safetensors)."""
    return {k: v.detach().to("cpu", copy=True).contiguous() for k, v in state.items()}


def _optimizer(model: nn.Module, fid: Fidelity, lr: float, fused: bool = False) -> torch.optim.Optimizer:
    # Weight decay on conv/FC weights only: decaying BN scales and biases hurts small nets.
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": fid.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    # fused (CUDA): one kernel per step, and the fp16 scaler's inf check stays on the GPU instead of a host sync.
    return torch.optim.SGD(groups, lr=lr, momentum=fid.momentum, nesterov=fid.nesterov and fid.momentum > 0,
                           fused=fused or None)  # fmt: skip
