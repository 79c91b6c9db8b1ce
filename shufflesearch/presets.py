"""Named ShuffleNet v1 variants: the official layouts and the paper's Table 1 models.

Each preset pins its widths explicitly (`paper.OFFICIAL_LAYOUTS`: the official code and the
paper), so a test can prove the width rule in `spec` reproduces them rather than trusting it.
"""

from __future__ import annotations

from .errors import UsageError
from .paper import OFFICIAL_LAYOUTS, TABLE2_TOP1_ERROR_PCT
from .spec import ShuffleNetSpec, SpecError

__all__ = ["get_preset", "list_presets", "paper_models", "preset_name", "register"]

_PRESETS: dict[str, ShuffleNetSpec] = {}


def register(name: str, spec: ShuffleNetSpec) -> None:
    """Add a preset; a duplicate name is an error, not a silent overwrite."""
    if name in _PRESETS:
        raise UsageError(f"preset {name!r} is already registered")
    _PRESETS[name] = spec


def preset_name(groups: int, scale: float) -> str:
    """'shufflenet_v1_x0_5_g8' for groups=8, scale=0.5."""
    return f"shufflenet_v1_x{scale:.1f}_g{groups}".replace(".", "_")


def get_preset(name: str) -> ShuffleNetSpec:
    try:
        return _PRESETS[name]
    except KeyError:
        import difflib

        close = difflib.get_close_matches(name, _PRESETS, n=1, cutoff=0.6)
        hint = f"nearest: {close[0]}" if close else f"known: {', '.join(sorted(_PRESETS))}"
        raise SpecError(f"unknown preset {name!r}; {hint}") from None


def list_presets() -> dict[str, ShuffleNetSpec]:
    return dict(_PRESETS)


def paper_models() -> dict[str, ShuffleNetSpec]:
    """The named presets plus the paper's Table 2 models (every group count at 0.25x, 0.5x, 1x; our width
    rule), each spec once: a search queues them and a report compares against them by these names."""
    models = list_presets()
    known = set(models.values())
    for g, scale in sorted(TABLE2_TOP1_ERROR_PCT, key=lambda gs: (gs[1], gs[0])):  # 0.25x first, then by groups
        spec = ShuffleNetSpec(groups=g, scale=scale)
        if spec not in known:
            models[f"paper_x{scale:g}_g{g}".replace(".", "_")] = spec
    return models


for (_g, _s), (_stem, *_stages) in sorted(OFFICIAL_LAYOUTS.items()):
    register(
        preset_name(_g, _s),
        ShuffleNetSpec(groups=_g, scale=_s, stem_channels=_stem, stage_channels=tuple(_stages)),
    )
