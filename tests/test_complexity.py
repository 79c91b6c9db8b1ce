import pytest
from hypothesis import given, settings
from strategies import specs

from shufflesearch.complexity import count_complexity, count_macs
from shufflesearch.complexity.fvcore_check import fvcore_count
from shufflesearch.paper import TABLE1_COMPLEXITY_MFLOPS as TABLE1  # MFLOPs = multiply-adds, 1x models, 224 px
from shufflesearch.presets import list_presets
from shufflesearch.spec import ShuffleNetSpec


@pytest.mark.parametrize("groups", sorted(TABLE1))
def test_1x_models_agree_with_paper_table1(groups):
    mflops = count_complexity(ShuffleNetSpec(groups=groups, scale=1.0)).mflops
    assert abs(mflops - TABLE1[groups]) <= 1.5


def test_known_totals_from_formula():
    # Stem conv by hand: 24 filters of 3x3x3 at 112x112.
    spec = ShuffleNetSpec(groups=3, scale=1.0)
    cost = count_complexity(spec)
    assert cost.layers[0].macs == 24 * 3 * 9 * 112 * 112
    assert cost.layers[-1].macs == 960 * 1000  # FC, no bias
    # Stage2's first pointwise conv is ungrouped: 24 -> 60 at 56x56.
    assert cost.layers[1].macs == 24 * 60 * 56 * 56
    # Params = weights + BN gamma/beta; model bytes also hold the BN running statistics.
    bn_channels = sum(la.out_channels for la in cost.layers if la.op != "fc")
    assert cost.model_bytes == 4 * (cost.params + 2 * bn_channels)
    assert sum(s.macs for s in cost.stages) == cost.macs == 137_460_672
    assert [s.name for s in cost.stages] == ["stem", "stage2", "stage3", "stage4", "head"]
    assert [(s.out_channels, s.out_size) for s in cost.stages[:4]] == [(24, 56), (240, 28), (480, 14), (960, 7)]


def test_scaling_is_roughly_quadratic():
    ratios = [count_complexity(ShuffleNetSpec(groups=g, scale=2.0)).macs / count_complexity(ShuffleNetSpec(groups=g)).macs
              for g in (3, 8)]  # fmt: skip
    assert all(3.5 < r < 4.0 for r in ratios)


@settings(max_examples=200)
@given(specs(max_resolution=512, max_repeats=16))
def test_fast_total_equals_per_layer_sum(spec):
    assert count_macs(spec) == count_complexity(spec).macs


@pytest.mark.parametrize("name", sorted(list_presets()))
def test_fvcore_agrees_on_every_preset_layer_by_layer(name):
    spec = list_presets()[name]
    check, cost = fvcore_count(spec), count_complexity(spec)
    assert check.macs == cost.macs
    assert check.by_module == {la.name: la.macs for la in cost.layers}


@pytest.mark.slow
@settings(max_examples=100)
@given(specs(max_resolution=64))
def test_fvcore_agrees_on_random_specs(spec):
    check, cost = fvcore_count(spec), count_complexity(spec)
    assert check.by_module == {la.name: la.macs for la in cost.layers}
    assert check.macs == cost.macs


def test_batch_norm_and_pooling_are_reported_beside_the_budget():
    spec = ShuffleNetSpec(groups=3, scale=0.5)
    cost = count_complexity(spec)
    assert cost.other_ops["batch_norm"] == sum(la.out_channels * la.out_size**2 for la in cost.layers[:-1])
    assert cost.other_ops["add"] > 0 and cost.other_ops["pooling"] > 0
    assert cost.macs == sum(la.macs for la in cost.layers)


def test_fvcore_handles_and_closed_form_other_ops_come_from_the_policy_table():
    from shufflesearch.complexity import MACS, OTHER_OPS, POLICY
    from shufflesearch.complexity.fvcore_check import _handles, _zero

    handles = _handles()
    assert handles.keys() == POLICY.keys()
    assert {op for op, h in handles.items() if h is not _zero} == {op for op, r in POLICY.items() if r.into == MACS}
    assert OTHER_OPS == ("batch_norm", "relu", "pooling", "add")  # the keys `complexity` and JSON show
    assert tuple(count_complexity(ShuffleNetSpec(groups=3, scale=0.5)).other_ops) == OTHER_OPS
