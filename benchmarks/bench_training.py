"""Training throughput of the proxy trainer vs a plain eager NCHW fp32 loop, side by side.

Same spec, same data, same batch size and threads, measured in interleaved rounds so that
load from other processes hits every variant alike; the median round is reported.

- plain:        NCHW fp32, per-image Python augmentation stacked into a batch (DataLoader style)
- nchw-batched: NCHW fp32 with the trainer's batched tensor augmentation (isolates the layout)
- trainer:      `train_proxy` itself (channels_last, batched augmentation, data in memory)
- trainer-bf16: the same with bf16 autocast (only if the CPU has native bf16)
- trainer-2x1proc: two single-thread trainer processes at once, summed (how `run_fidelity(workers=2)`
  and a parallel search use the two cores)

With `--device cuda` (or cuda:N, mps) it compares the trainer on this machine's CPU with the
trainer on the GPU at fp32, bf16 and fp16 (grad scaler) instead; a GPU run is timed between its
first and last loss read-back (every `GPU_SYNC_EVERY` steps), so the GPU has finished the work timed.

Run: .venv/bin/python benchmarks/bench_training.py [--groups 3 --scale 1.0 --rounds 5 --json]
     .venv/bin/python benchmarks/bench_training.py --device cuda --steps 300 --threads 16
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import time

import torch
import torch.nn.functional as F

from shufflesearch.accuracy.datasets import load_dataset
from shufflesearch.accuracy.devices import resolve_device
from shufflesearch.accuracy.images import augment as _augment
from shufflesearch.accuracy.images import channel_stats as _channel_stats
from shufflesearch.accuracy.images import resize_images as _resize
from shufflesearch.accuracy.recipe import DEFAULT_FIDELITY, Fidelity, adapt_spec
from shufflesearch.accuracy.trainer import GPU_SYNC_EVERY, train_proxy
from shufflesearch.accuracy.trainer import environment as train_environment
from shufflesearch.model import build_model
from shufflesearch.spec import ShuffleNetSpec


def _plain_batch(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """What a per-sample Dataset + default collate does: one crop and flip per image in Python."""
    s, pad = x.shape[-1], max(1, x.shape[-1] // 8)
    out = []
    for img in x:
        img = F.pad((img.float() - mean[0]) / std[0], (pad, pad, pad, pad))
        oy, ox = (int(torch.randint(0, 2 * pad + 1, (1,), generator=gen)) for _ in range(2))
        img = img[:, oy : oy + s, ox : ox + s]
        if torch.rand(1, generator=gen) < 0.5:
            img = img.flip(2)
        out.append(img)
    return torch.stack(out)


def _time_eager(spec, x, y, fid, steps, batched: bool) -> float:
    """Images/s of `steps` SGD steps in NCHW fp32 after one warm-up step."""
    torch.manual_seed(0)
    model = build_model(spec).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True)
    mean, std = _channel_stats(x)
    gen = torch.Generator().manual_seed(0)
    b = fid.batch_size
    t0 = 0.0
    for i in range(steps + 1):
        if i == 1:
            t0 = time.perf_counter()
        take = torch.randint(0, len(y), (b,), generator=gen)
        if batched:
            xb = _augment(x[take], fid.augment, gen, mean, std).contiguous()  # back to NCHW
        else:
            xb = _plain_batch(x[take], mean, std, gen)
        loss = F.cross_entropy(model(xb), y[take], label_smoothing=fid.label_smoothing)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return steps * b / (time.perf_counter() - t0)


def _time_trainer(spec, ds, fid, steps, device: str = "cpu") -> float:
    """Images/s of `train_proxy` between its first and last progress report (model build and eval excluded)."""
    marks = []
    images = (steps + 1) * fid.batch_size
    run = fid.replace(train_images=images, epochs=1, eval_images=10, curve_eval_images=0)
    train_proxy(spec, ds, run, seed=0, device=device,
                progress=lambda p: marks.append((time.perf_counter(), p.images_seen)))  # fmt: skip
    if len(marks) < 2:
        raise SystemExit(f"--steps {steps} gives one progress report on {device}; use more than {GPU_SYNC_EVERY}")
    (t1, n1), (t2, n2) = marks[0], marks[-1]
    return (n2 - n1) / (t2 - t1)


def _trainer_one_thread(spec, fid, steps) -> float:
    torch.set_num_threads(1)
    return _time_trainer(spec, load_dataset("fashion-mnist"), fid, steps)


def _time_two_processes(spec, fid, steps) -> float:
    """Summed images/s of two single-thread trainer processes running at once (as `workers=2`)."""
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(2) as pool:
        return sum(pool.starmap(_trainer_one_thread, [(spec, fid, steps)] * 2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--groups", type=int, default=3)
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="cpu (the layout study), or a GPU: cuda, cuda:N, mps")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    device = resolve_device(args.device)
    torch.set_num_threads(args.threads)
    ds = load_dataset("fashion-mnist")
    fid: Fidelity = DEFAULT_FIDELITY
    spec = adapt_spec(ShuffleNetSpec(groups=args.groups, scale=args.scale), ds, fid)
    if device != "cpu":
        _compare_devices(args, spec, ds, fid, device)
        return
    x, y = _resize(ds.train_images[:4096], spec.resolution), ds.train_labels[:4096]
    variants = {
        "plain": lambda: _time_eager(spec, x, y, fid, args.steps, batched=False),
        "nchw-batched": lambda: _time_eager(spec, x, y, fid, args.steps, batched=True),
        "trainer": lambda: _time_trainer(spec, ds, fid, args.steps),
    }
    if args.threads == 2:
        variants["trainer-2x1proc"] = lambda: _time_two_processes(spec, fid, args.steps)
    if torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported():
        variants["trainer-bf16"] = lambda: _time_trainer(spec, ds, fid.replace(bf16=True), args.steps)
    speeds: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(args.rounds):
        for name, measure in variants.items():
            speeds[name].append(measure())
    median = {k: statistics.median(v) for k, v in speeds.items()}
    result = {
        "spec": spec.label,
        "batch_size": fid.batch_size,
        "images_per_s": median,
        "ratio_vs_plain": {k: v / median["plain"] for k, v in median.items()},
        "environment": train_environment(False),
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"{spec.label}, batch {fid.batch_size}, {args.threads} threads, median of {args.rounds} rounds")
    for name, value in median.items():
        print(f"  {name:13s} {value:8.1f} images/s   x{value / median['plain']:.2f} vs plain")


def _compare_devices(args, spec, ds, fid: Fidelity, device: str) -> None:
    """The trainer on this machine's CPU against the trainer on `device`, fp32 and mixed precision."""
    cpu_steps = max(GPU_SYNC_EVERY // 10, min(args.steps, 40))  # the CPU reports every step: fewer suffice
    variants = {"trainer-cpu": lambda: _time_trainer(spec, ds, fid, cpu_steps, "cpu")}
    for precision in ("fp32", "bf16", "fp16"):
        variants[f"trainer-{device}-{precision}"] = lambda p=precision: _time_trainer(
            spec, ds, fid.replace(precision=p), args.steps, device
        )
    speeds: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(args.rounds):
        for name, measure in variants.items():
            try:
                speeds[name].append(measure())
            except Exception as exc:  # e.g. bf16 on a GPU without it: report, keep the others
                speeds[name].append(float("nan"))
                print(f"  {name}: {' '.join(str(exc).split())[:160]}")
    median = {k: statistics.median(v) for k, v in speeds.items()}
    result = {
        "spec": spec.label,
        "batch_size": fid.batch_size,
        "threads": args.threads,
        "images_per_s": median,
        "ratio_vs_cpu": {k: v / median["trainer-cpu"] for k, v in median.items()},
        "environment": train_environment(False, device),
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"{spec.label}, batch {fid.batch_size}, CPU {args.threads} threads, median of {args.rounds} rounds")
    for name, value in median.items():
        print(f"  {name:24s} {value:9.1f} images/s   x{value / median['trainer-cpu']:.2f} vs this CPU")


if __name__ == "__main__":
    main()
