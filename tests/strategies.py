"""Hypothesis strategies shared by the tests: random valid specs."""

from hypothesis import strategies as st

from shufflesearch.spec import BOTTLENECK_CHOICES, GROUP_CHOICES, ShuffleNetSpec


@st.composite
def specs(draw, max_resolution: int = 96, max_repeats: int = 6) -> ShuffleNetSpec:
    """Valid specs from the width rule, small enough to build and trace quickly."""
    return ShuffleNetSpec(
        groups=draw(st.sampled_from(GROUP_CHOICES)),
        scale=draw(st.integers(10, 200)) / 100,
        repeats=tuple(draw(st.lists(st.integers(1, max_repeats), min_size=3, max_size=3))),
        resolution=draw(st.integers(28, max_resolution)),
        num_classes=draw(st.sampled_from([2, 10, 100, 1000])),
        in_channels=draw(st.sampled_from([1, 3])),
        bottleneck_ratio=draw(st.sampled_from(BOTTLENECK_CHOICES)),
        shuffle=draw(st.booleans()),
        stem=draw(st.sampled_from(["imagenet", "small"])),
    )
