import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import specs

from shufflesearch.paper import OFFICIAL_LAYOUTS
from shufflesearch.presets import get_preset, list_presets, preset_name, register
from shufflesearch.spec import GROUP_CHOICES, ShuffleNetSpec, SpecError, derive_stage_channels, derive_stem_channels

# The official code's layouts (megvii ShuffleNetV1) and the paper's Table 1 1x widths: (stem, stages).
OFFICIAL = {gs: (stem, tuple(stages)) for gs, (stem, *stages) in OFFICIAL_LAYOUTS.items()}


@pytest.mark.parametrize(("groups", "scale"), sorted(OFFICIAL))
def test_width_rule_reproduces_official_layouts(groups, scale):
    stem, stages = OFFICIAL[groups, scale]
    assert derive_stem_channels(groups, scale) == stem
    assert derive_stage_channels(groups, scale) == stages
    spec = ShuffleNetSpec(groups=groups, scale=scale)
    assert spec == get_preset(preset_name(groups, scale))


def test_preset_names_and_registry():
    assert set(list_presets()) == {preset_name(g, s) for g, s in OFFICIAL}
    assert "shufflenet_v1_x0_5_g8" in list_presets()
    with pytest.raises(ValueError, match="already registered"):
        register("shufflenet_v1_x1_0_g3", ShuffleNetSpec())
    with pytest.raises(SpecError, match="nearest: shufflenet_v1_x1_0_g8"):
        get_preset("shufflenet_v1_x1_0_g9")


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"groups": 5}, "groups=5 is not supported.*nearest valid: 4"),
        ({"groups": 16}, "nearest valid: 8"),
        ({"scale": 0}, "scale=0 must lie in.*nearest valid: 0.1"),
        ({"scale": -1.0}, "nearest valid: 0.1"),
        ({"scale": math.inf}, "scale=inf"),
        ({"repeats": (4, 0, 4)}, r"repeats\[1\]=0 .*nearest valid: 1"),
        ({"repeats": (4, 8)}, "must give 3 unit counts"),
        ({"resolution": 16}, "resolution=16 .*nearest valid: 28"),
        ({"num_classes": 1}, "num_classes=1"),
        ({"bottleneck_ratio": 0.3}, "nearest valid: 0.25"),
        ({"stem": "tiny"}, "stem='tiny'"),
        ({"stage_channels": (240, 480, 961)}, r"stage_channels\[2\]=961.*nearest valid: 960"),
        ({"stage_channels": (240, 240, 960)}, "must exceed its input width 240"),
        ({"stage_channels": (242, 480, 960), "groups": 1}, "bottleneck 242"),
        (
            {"stem_channels": 25},
            "stem_channels=25: the concat branch 240-25=215 .*multiple of groups=3; nearest valid: 24",
        ),
        ({"repeats": "abc"}, "repeats='abc' has the wrong type"),
        ({"scale": "big"}, "scale='big' has the wrong type"),
    ],
)
def test_invalid_specs_name_value_rule_and_fix(kwargs, fragment):
    with pytest.raises(SpecError, match=fragment):
        ShuffleNetSpec(**kwargs)


@given(st.sampled_from(GROUP_CHOICES), st.floats(0.1, 4.0))
def test_width_rule_always_gives_a_valid_spec(groups, scale):
    spec = ShuffleNetSpec(groups=groups, scale=scale)
    stem, widths = spec.stem_channels, spec.stage_channels
    assert all(c % (4 * groups) == 0 for c in widths)
    assert (widths[0] - stem) % groups == 0 and stem < widths[0] < widths[1] < widths[2]


@given(specs(max_resolution=2048, max_repeats=16))
def test_json_round_trip(spec):
    again = ShuffleNetSpec.from_json(spec.to_json())
    assert again == spec and again.to_json() == spec.to_json()
    assert json.loads(spec.to_json())["stage_channels"] == list(spec.stage_channels)


@settings(max_examples=300)
@given(st.dictionaries(st.sampled_from(["groups", "scale", "repeats", "resolution", "num_classes", "stem",
                                        "bottleneck_ratio", "stage_channels", "stem_channels", "in_channels",
                                        "shuffle", "extra"]),
                       st.one_of(st.none(), st.integers(-5, 3000), st.floats(allow_nan=True), st.text(max_size=4),
                                 st.lists(st.integers(-2, 2000), max_size=4), st.booleans())))  # fmt: skip
def test_any_json_object_gives_a_spec_or_a_spec_error(data):
    try:
        spec = ShuffleNetSpec.from_dict(data)
    except SpecError as exc:
        assert "\n" not in str(exc) and str(exc)
    else:
        assert ShuffleNetSpec.from_json(spec.to_json()) == spec


def test_unknown_keys_and_bad_json_are_spec_errors():
    with pytest.raises(SpecError, match="unknown spec key 'width'"):
        ShuffleNetSpec.from_dict({"width": 3})
    with pytest.raises(SpecError, match="not valid JSON"):
        ShuffleNetSpec.from_json("{groups: 3")
    with pytest.raises(SpecError, match="JSON object"):
        ShuffleNetSpec.from_json("[1, 2]")


@pytest.mark.parametrize("text", ["[" * 200_000, '{"groups": ' * 200_000, "[" * 200_000 + "]" * 200_000])
def test_deeply_nested_json_is_a_spec_error(text):
    with pytest.raises(SpecError, match="nested too deeply"):
        ShuffleNetSpec.from_json(text)


def test_replace_rederives_widths_unless_given():
    spec = ShuffleNetSpec(groups=3, scale=1.0)
    assert spec.replace(groups=8).stage_channels == (384, 768, 1536)
    assert spec.replace(resolution=160).stage_channels == (240, 480, 960)
    assert spec.replace(scale=0.5, stem_channels=24).stem_channels == 24
