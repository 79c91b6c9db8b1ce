"""Training-free accuracy scores of a spec, computed on one minibatch at initialisation.

These are the zero-cost proxies of the NAS literature, a cheap pre-filter, not an accuracy:
published re-evaluations find most rank networks no better than counting parameters, so
`score_correlations` always reports #params and MFLOPs beside them.

- ``synflow`` (Tanaka et al. 2020; zero-cost variant of Abdelfattah et al. 2021): every
  parameter made non-negative, batch norm bypassed (their ``bn=False`` measure), float64
  so the product of |weights| cannot overflow, an all-ones input of batch 1; the score is
  sum |theta * dR/dtheta| over conv and linear weights, with R = sum of the logits.
- ``grad_norm`` (Abdelfattah et al. 2021): cross-entropy loss on the minibatch, batch norm
  in train mode; the score is the sum over conv and linear layers of ||dL/dW||_2.
- ``naswot`` (Mellor et al. 2021, "Neural Architecture Search without Training"): the
  binary code of a sample is the sign pattern (x > 0) of the input of every ReLU; with
  N_A code bits, K_H[i, j] = N_A - hamming(c_i, c_j) and the score is log|K_H|. Batch norm
  in train mode, as in their code.

Capturing every ReLU: ShuffleNet applies ReLU both as ``nn.ReLU`` modules (stem,
``branch_main_1``) and as ``F.relu`` inside ``ShuffleUnit.forward``, and ``channel_shuffle``
reads ``x.shape``, which stops torch.fx tracing. A ``TorchFunctionMode`` sees every call of
``F.relu`` / ``torch.relu`` / ``Tensor.relu`` (``nn.ReLU`` calls ``F.relu``) once, needs no
global monkeypatch (the mode stack is thread-local) and works on any ``nn.Module``.

Every score runs on a deep copy of the seeded network, so batch-norm statistics, gradients
and signs of the caller's weights are never touched.

>>> import torch
>>> from shufflesearch.spec import ShuffleNetSpec
>>> spec = ShuffleNetSpec(groups=3, scale=0.25, stem="small", resolution=28, in_channels=1, num_classes=10)
>>> images, labels = torch.rand(8, 1, 28, 28), torch.arange(8) % 10  # random: API demo only
>>> result = zero_cost_scores(spec, images, labels, names=("naswot",))
>>> sorted(result.scores)
['naswot']
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from ..complexity import count_complexity
from ..errors import UsageError
from ..model import build_model
from ..spec import ShuffleNetSpec

ZERO_COST_SCORES = ("synflow", "grad_norm", "naswot")
BASELINES = ("params", "mflops")  # computed from the spec by score_correlations
_RELU_FUNCS = frozenset({F.relu, torch.relu, torch.relu_, torch.Tensor.relu, torch.Tensor.relu_})
_WEIGHTED_LAYERS = (nn.Conv2d, nn.Linear)  # the layers both papers sum over


class ZeroCostError(UsageError):
    """Bad input to a zero-cost score: unknown name, wrong tensor shape or labels."""


@dataclass(frozen=True)
class ZeroCostResult:
    """Scores of one spec (higher = predicted better) and the wall time of each, in seconds."""

    scores: dict[str, float]
    seconds: dict[str, float]
    batch_size: int
    seed: int

    def to_dict(self) -> dict:
        return {
            "scores": dict(self.scores),
            "seconds": dict(self.seconds),
            "batch_size": self.batch_size,
            "seed": self.seed,
        }


def zero_cost_scores(
    spec: ShuffleNetSpec,
    images: torch.Tensor,
    labels: torch.Tensor,
    names: Sequence[str] = ZERO_COST_SCORES,
    seed: int = 0,
    device: str = "cpu",
) -> ZeroCostResult:
    """Score a freshly initialised network for `spec` (initialised from `seed`) on one minibatch, on `device`.

    `images` is N x C x H x W matching `spec.in_channels` and `spec.resolution`; float images
    are used as given, uint8 images are scaled to [0, 1] and normalised per channel with the
    minibatch's own mean and std. `labels` are N class indices (used by grad_norm).

    >>> from shufflesearch.spec import ShuffleNetSpec
    >>> spec = ShuffleNetSpec(groups=3, scale=0.25, stem="small", resolution=28, in_channels=1, num_classes=10)
    >>> r = zero_cost_scores(spec, torch.rand(4, 1, 28, 28), torch.tensor([0, 1, 2, 3]), names=["synflow"])
    >>> r.scores["synflow"] > 0
    True
    """
    from .devices import resolve_device

    names = _check_names(names)
    dev = torch.device(resolve_device(device))
    x, y = _prepare_batch(spec, images, labels)
    x, y = x.to(dev), y.to(dev)
    with torch.random.fork_rng(devices=[]):  # seed the init without moving the caller's RNG
        torch.manual_seed(seed)
        model = build_model(spec).to(dev)
    scorers = {
        "synflow": lambda: synflow_score(model, tuple(x.shape[1:])),
        "grad_norm": lambda: grad_norm_score(model, x, y),
        "naswot": lambda: naswot_score(model, x),
    }
    scores, seconds = {}, {}
    for name in names:
        start = time.perf_counter()
        scores[name] = scorers[name]()
        seconds[name] = time.perf_counter() - start
    return ZeroCostResult(scores=scores, seconds=seconds, batch_size=int(x.shape[0]), seed=seed)


def synflow_score(model: nn.Module, input_shape: tuple[int, ...]) -> float:
    """Synaptic flow of `model` (Tanaka et al. 2020), batch norm bypassed; `model` is left untouched.

    >>> synflow_score(nn.Sequential(nn.Flatten(), nn.Linear(4, 2, bias=False)), (4,)) >= 0
    True
    """
    net = copy.deepcopy(model)
    if next(net.parameters()).device.type == "mps":
        net = net.cpu()  # MPS has no float64; one image of batch 1 costs little on the CPU
    net = net.double()
    _bypass_batchnorm(net)
    with torch.no_grad():
        for p in net.parameters():
            p.abs_()
    net.zero_grad(set_to_none=True)
    net(torch.ones((1, *input_shape), dtype=torch.float64, device=next(net.parameters()).device)).sum().backward()
    total = sum(
        (m.weight * m.weight.grad).abs().sum().item()
        for m in net.modules()
        if isinstance(m, _WEIGHTED_LAYERS) and m.weight.grad is not None
    )
    return float(total)


def grad_norm_score(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    """Sum of per-layer L2 norms of the cross-entropy gradient (train-mode batch norm); `model` untouched."""
    net = copy.deepcopy(model).train()
    net.zero_grad(set_to_none=True)
    F.cross_entropy(net(images), labels).backward()
    total = sum(
        m.weight.grad.norm().item()
        for m in net.modules()
        if isinstance(m, _WEIGHTED_LAYERS) and m.weight.grad is not None
    )
    return float(total)


def naswot_score(model: nn.Module, images: torch.Tensor) -> float:
    """log|K_H| of the ReLU binary codes of the minibatch (Mellor et al. 2021); `model` untouched.

    -inf when two samples share a code, e.g. duplicate images (K_H singular). Needs a batch of at least 2.
    """
    kernel = relu_code_kernel(model, images)
    sign, logdet = np.linalg.slogdet(kernel.double().cpu().numpy())
    return float(logdet) if sign > 0 else -math.inf


def relu_code_kernel(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """K_H = N_A - Hamming distance between the ReLU codes of every pair of samples (float64, N x N)."""
    net = copy.deepcopy(model).train()
    recorder = _ReluCodeRecorder(images.shape[0], images.device)
    with torch.no_grad(), recorder:
        net(images)
    if recorder.relus == 0:
        raise ZeroCostError(f"{type(model).__name__} calls no ReLU; naswot needs ReLU activations (use another score)")
    return recorder.kernel


class _ReluCodeRecorder(TorchFunctionMode):
    """Accumulates c c^T + (1 - c)(1 - c)^T (= N_A - Hamming) over every ReLU input seen while active."""

    def __init__(self, batch_size: int, device: torch.device | None = None) -> None:
        super().__init__()
        self.exact = torch.float32 if device is not None and device.type == "mps" else torch.float64  # MPS: no float64
        self.kernel = torch.zeros(batch_size, batch_size, dtype=self.exact, device=device)
        self.relus = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in _RELU_FUNCS:
            codes = ((args[0] if args else kwargs["input"]) > 0).flatten(1)
            # With s = 2c - 1 in {-1, 1}: s s^T = N_A - 2 H, so c c^T + (1-c)(1-c)^T = (N_A + s s^T) / 2,
            # one matmul; float32 sums of +-1 are exact below 2**24 bits per sample.
            dtype = torch.float32 if codes.shape[1] < 2**24 else torch.float64
            signs = codes.to(dtype) * 2 - 1
            self.kernel += (codes.shape[1] + (signs @ signs.T).to(self.exact)) / 2
            self.relus += 1
        return func(*args, **kwargs)


def _bypass_batchnorm(net: nn.Module) -> None:
    for name, child in net.named_children():
        if isinstance(child, nn.modules.batchnorm._BatchNorm):
            setattr(net, name, nn.Identity())
        else:
            _bypass_batchnorm(child)


def score_correlations(
    specs: Sequence[ShuffleNetSpec], proxy_top1: Sequence[float], score_table: Sequence[dict[str, float]]
) -> dict[str, float]:
    """Spearman rank correlation of every score, and of #params and MFLOPs, with `proxy_top1`.

    `score_table[i]` holds the scores of `specs[i]` (e.g. `zero_cost_scores(...).scores`).
    Pairs where the score or the accuracy is NaN are dropped; a correlation with fewer than
    3 pairs left, or over constant values, is NaN.

    >>> from shufflesearch.spec import ShuffleNetSpec
    >>> specs = [ShuffleNetSpec(groups=3, scale=s) for s in (0.5, 1.0, 1.5)]
    >>> score_correlations(specs, [0.5, 0.6, 0.7], [{"synflow": 1.0}, {"synflow": 2.0}, {"synflow": 3.0}])
    {'synflow': 1.0, 'params': 1.0, 'mflops': 1.0}
    """
    from scipy.stats import spearmanr

    if not len(specs) == len(proxy_top1) == len(score_table):
        raise ZeroCostError(
            f"got {len(specs)} specs, {len(proxy_top1)} accuracies and {len(score_table)} score rows; "
            "pass one accuracy and one score row per spec"
        )
    names = list(dict.fromkeys(name for row in score_table for name in row))
    reserved = [n for n in names if n in BASELINES]
    if reserved:
        raise ZeroCostError(
            f"score name {reserved[0]!r} is reserved for the baseline computed from the spec; rename it"
        )
    columns = {name: [row.get(name, math.nan) for row in score_table] for name in names}
    costs = [count_complexity(spec) for spec in specs]
    columns["params"] = [c.params for c in costs]
    columns["mflops"] = [c.mflops for c in costs]
    accuracy = np.asarray(proxy_top1, dtype=float)
    result = {}
    for name, values in columns.items():
        score = np.asarray(values, dtype=float)
        keep = ~(np.isnan(score) | np.isnan(accuracy))  # -inf (e.g. singular naswot) still ranks lowest
        a, s = accuracy[keep], score[keep]
        if len(a) < 3 or np.unique(a).size < 2 or np.unique(s).size < 2:
            result[name] = math.nan
        else:
            result[name] = float(spearmanr(s, a).statistic)
    return result


def _check_names(names: Sequence[str]) -> tuple[str, ...]:
    if isinstance(names, str):
        names = (names,)
    names = tuple(dict.fromkeys(names))
    if not names:
        raise ZeroCostError(f"names is empty; pass one or more of {', '.join(ZERO_COST_SCORES)}")
    for name in names:
        if name not in ZERO_COST_SCORES:
            raise ZeroCostError(f"unknown zero-cost score {name!r}; valid names: {', '.join(ZERO_COST_SCORES)}")
    return names


def _prepare_batch(
    spec: ShuffleNetSpec, images: torch.Tensor, labels: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    want = (spec.in_channels, spec.resolution, spec.resolution)
    if not isinstance(images, torch.Tensor) or images.dim() != 4 or tuple(images.shape[1:]) != want:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ZeroCostError(
            f"images of shape {shape} must be N x {want[0]} x {want[1]} x {want[2]} to match the spec; resize them"
        )
    n = images.shape[0]
    if n < 2:
        raise ZeroCostError(f"batch of {n} image(s) is too small: train-mode batch norm and naswot need at least 2")
    if not isinstance(labels, torch.Tensor) or labels.shape != (n,) or labels.is_floating_point():
        raise ZeroCostError(f"labels must be an integer tensor of shape ({n},), one class index per image")
    if labels.min() < 0 or labels.max() >= spec.num_classes:
        raise ZeroCostError(
            f"labels span [{labels.min()}, {labels.max()}]; they must lie in [0, {spec.num_classes - 1}]"
        )
    if images.dtype == torch.uint8:
        x = images.float() / 255
        mean = x.mean(dim=(0, 2, 3), keepdim=True)
        std = x.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-6)  # a blank channel stays finite
        x = (x - mean) / std
    elif images.is_floating_point():
        x = images.float()
    else:
        raise ZeroCostError(f"images have dtype {images.dtype}; pass float images or uint8 pixels")
    return x, labels.long()


def score_on_dataset(
    spec: ShuffleNetSpec,
    dataset,
    fidelity=None,
    batch_size: int = 64,
    names: Sequence[str] = ZERO_COST_SCORES,
    seed: int = 0,
    device: str = "cpu",
) -> tuple[ShuffleNetSpec, ZeroCostResult]:
    """Zero-cost scores of `spec` as the proxy trainer would train it on `dataset`.

    The spec is adapted like the trainer adapts it (channels, classes, resolution, stem) and
    scored on a seeded, class-balanced minibatch of training images.
    """
    from .datasets import train_subset
    from .recipe import DEFAULT_FIDELITY, adapt_spec

    trained = adapt_spec(spec, dataset, fidelity or DEFAULT_FIDELITY)
    keep = train_subset(dataset.train_labels, batch_size, seed)
    images = dataset.train_images[keep].float()
    if images.shape[-1] != trained.resolution:
        images = F.interpolate(images, size=trained.resolution, mode="bilinear", antialias=True, align_corners=False)
    return trained, zero_cost_scores(trained, images / 255.0, dataset.train_labels[keep], names, seed, device)
