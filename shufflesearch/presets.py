"""Named ShuffleNet v1 variants: the official layouts and the paper's Table 1 models.

Each preset pins its widths explicitly (from the official code and the paper), so a test
can prove the width rule in `spec` reproduces them rather than trusting it.
"""

from __future__ import annotations

from .spec import GROUP_CHOICES, ShuffleNetSpec, SpecError

_PRESETS: dict[str, ShuffleNetSpec] = {}


def register(name: str, spec: ShuffleNetSpec) -> None:
    """Add a preset; a duplicate name is an error, not a silent overwrite."""
    if name in _PRESETS:
        raise ValueError(f"preset {name!r} is already registered")
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
    for scale in (0.25, 0.5, 1.0):
        for g in GROUP_CHOICES:
            spec = ShuffleNetSpec(groups=g, scale=scale)
            if spec not in known:
                models[f"paper_x{scale:g}_g{g}".replace(".", "_")] = spec
    return models


# (groups, scale): (stem, Stage2, Stage3, Stage4). Official code for g=3 and g=8;
# paper Table 1 for the 1x models of g=1, 2, 4.
_LAYOUTS = {
    (3, 0.5): (12, 120, 240, 480),
    (3, 1.0): (24, 240, 480, 960),
    (3, 1.5): (24, 360, 720, 1440),
    (3, 2.0): (48, 480, 960, 1920),
    (8, 0.5): (16, 192, 384, 768),
    (8, 1.0): (24, 384, 768, 1536),
    (8, 1.5): (24, 576, 1152, 2304),
    (8, 2.0): (48, 768, 1536, 3072),
    (1, 1.0): (24, 144, 288, 576),
    (2, 1.0): (24, 200, 400, 800),
    (4, 1.0): (24, 272, 544, 1088),
}
for (_g, _s), (_stem, *_stages) in sorted(_LAYOUTS.items()):
    register(
        preset_name(_g, _s),
        ShuffleNetSpec(groups=_g, scale=_s, stem_channels=_stem, stage_channels=tuple(_stages)),
    )
