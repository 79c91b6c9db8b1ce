"""A training run's full state in one file, so a killed run resumes where its last epoch ended.

The file holds only tensors and plain containers (torch.save, loadable with
`torch.load(weights_only=True)`, which unpickles no arbitrary objects): the model's and the
optimiser's state dicts, the gradient scaler's, the data-order generator's state and the
current order, the step, the images seen, the learning curve and the time spent. It is
written atomically at every epoch end, so a kill leaves the previous epoch's file whole.

Its `identity` (spec, recipe, seed, dataset fingerprint, trainer version, device kind) must
match the run that resumes it: another run's file is refused in one line, never half-used.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import torch

from ..atomic import write_atomically
from ..errors import UsageError

__all__ = ["FORMAT", "TrainingStateMismatch", "load_state", "run_identity", "save_state"]

FORMAT = 1


class TrainingStateMismatch(UsageError):
    """The state file belongs to another run (or is no training state at all)."""


def run_identity(spec: dict, fidelity: dict, seed: int, dataset: str, version: int, device_kind: str) -> str:
    """What a state file must have been written for, as one canonical JSON string."""
    fields = {"spec": spec, "fidelity": fidelity, "seed": seed, "dataset": dataset, "trainer_version": version,
              "device": device_kind}  # fmt: skip
    return json.dumps(fields, sort_keys=True)


def save_state(path: str | Path, identity: str, state: dict[str, Any]) -> Path:
    """Write `state` (tensors and plain containers) with `identity`, atomically."""
    buffer = io.BytesIO()
    torch.save({"format": FORMAT, "identity": identity, **state}, buffer)
    return write_atomically(path, buffer.getvalue())


def load_state(path: str | Path, identity: str) -> dict[str, Any] | None:
    """The state stored at `path` for the run `identity`; None when there is no file yet.

    Tensors come back on the CPU; the caller moves them where they train.
    """
    path = Path(path)
    if not path.exists():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a foreign or damaged file: torch raises many kinds
        reason = " ".join(str(exc).split())[:200]
        raise TrainingStateMismatch(
            f"{path} is not a training state file ({reason}); delete it or name another"
        ) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT or not isinstance(state.get("identity"), str):
        raise TrainingStateMismatch(f"{path} is not a training state file of this version; delete it or name another")
    if state["identity"] != identity:
        raise TrainingStateMismatch(f"{path} was written for another run ({_first_difference(state['identity'], identity)}); "
                                    "delete it to start over, or name another file")  # fmt: skip
    return state


def _first_difference(stored: str, wanted: str) -> str:
    old, new = json.loads(stored), json.loads(wanted)
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if a == b:
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            sub = next(k for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k))
            return f"{key}.{sub} {a.get(sub)!r} there, {b.get(sub)!r} here"
        return f"{key} {a!r} there, {b!r} here"
    return "an unknown difference"
