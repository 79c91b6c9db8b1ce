"""One spec's latency from wherever the user points: the one place a `--target` gets its meaning.

- `local`: measured here (ONNX Runtime or PyTorch eager);
- `ssh://user@host[:port]`: measured on that device;
- `arm64-emulated`: estimated from aarch64 instructions counted under QEMU (never a latency);
- a lookup table (`lut=`, a path or a shipped table's name such as "snapdragon820"): predicted
  from per-block times measured once on its device, or, for an estimated table, from per-block
  instruction counts under emulation (an estimate, never a measurement).

Each returns its own result type (what it is decides how it is read) with `to_dict()`.

>>> from shufflesearch.presets import get_preset
>>> latency_on(get_preset("shufflenet_v1_x0_5_g3"), "local").median_ms  # doctest: +SKIP
1.9
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import UsageError
from ..spec import ShuffleNetSpec

TARGETS = "local, ssh://user@host[:port] or arm64-emulated"


class UnknownTarget(UsageError):
    """A target that is none of `TARGETS`."""


@dataclass(frozen=True)
class TablePrediction:
    """A latency predicted from a lookup table: the sum of its blocks plus a fitted overhead.

    `table_kind` "measured": blocks timed on `target`; "estimated": blocks' instructions counted
    under emulation and converted with device `profile` (`basis` says how). `error` is the
    table's own measured error against whole networks (None if it was never validated).
    """

    spec: ShuffleNetSpec
    predicted_ms: float
    lut: str  # the table's path, or a shipped table's name
    target: str  # where the table's blocks were measured, or "arm64-emulated"
    threads: int
    fit: dict
    table_kind: str = "measured"
    profile: str = ""
    basis: str = ""
    error: dict | None = None

    @property
    def kind(self) -> str:
        return "lut-estimated" if self.table_kind == "estimated" else "lut-predicted"

    def to_dict(self) -> dict[str, Any]:
        data = {"spec": self.spec.to_dict(), "predicted_ms": self.predicted_ms, "kind": self.kind, "lut": self.lut,
                "target": self.target, "threads": self.threads, "fit": self.fit, "error": self.error}  # fmt: skip
        if self.table_kind == "estimated":
            data |= {"estimated": True, "profile": self.profile, "basis": self.basis}
        return data


def predict_from_table(spec: ShuffleNetSpec, lut: str | os.PathLike) -> TablePrediction:
    """`spec`'s latency predicted from a table file or a shipped table's name ("snapdragon820")."""
    from .lut import resolve_table

    table = resolve_table(lut)
    return TablePrediction(spec, table.predict_ms(spec), table.source or str(lut), table.target, table.threads,
                           table.fit, table.kind, table.profile, table.basis, table.measured_error)  # fmt: skip


def latency_on(
    spec: ShuffleNetSpec,
    target: str = "local",
    *,
    lut: str | os.PathLike | None = None,
    backend: str = "onnxruntime",
    threads: int = 1,
    runs: int | None = None,
    warmup: int | None = None,
    python: str = "python3",
    ssh_options: Sequence[str] = (),
    timeout_s: float | None = None,
    profile: str = "snapdragon820",
):
    """`spec`'s latency at batch 1 on `target` (or predicted from `lut`); None means each path's own default.

    Returns a `LatencyResult` (measured), an `EmulatedEstimate` or a `TablePrediction`.
    """
    given = {k: v for k, v in {"runs": runs, "warmup": warmup}.items() if v is not None}
    if lut is not None:
        return predict_from_table(spec, lut)
    if target == "arm64-emulated":
        from .emulated import emulate_spec

        return emulate_spec(spec, profile=profile, **{k: v for k, v in given.items() if k == "runs"})
    if target.startswith("ssh://"):
        from .ssh import measure_remote

        timeout = {} if timeout_s is None else {"timeout_s": timeout_s}
        return measure_remote(spec, target, threads=threads, python=python, ssh_options=list(ssh_options),
                              **timeout, **given)  # fmt: skip
    if target == "local":
        from .measure import measure_latency

        return measure_latency(spec, backend=backend, threads=threads, **given)
    raise UnknownTarget(f"--target={target!r}: use {TARGETS}")
