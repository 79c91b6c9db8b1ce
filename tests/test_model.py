import pytest
import torch
from hypothesis import given, settings
from strategies import specs
from torch import nn

from shufflesearch.complexity import count_complexity
from shufflesearch.errors import MachineError
from shufflesearch.memory import TooLargeForThisMachine, memory_floor_bytes
from shufflesearch.model import ShuffleUnit, build_model, channel_shuffle
from shufflesearch.presets import get_preset
from shufflesearch.spec import ShuffleNetSpec


def test_channel_shuffle_permutation_is_the_official_one():
    x = torch.arange(6.0).reshape(1, 6, 1, 1)
    # Official code: view C as (C/g, g), swap axes. Channel k of the output is input (k % (C/g)) * g + k // (C/g).
    assert channel_shuffle(x, 2).flatten().tolist() == [0, 2, 4, 1, 3, 5]
    # ... which is the inverse of the paper's (g, C/g) transpose.
    paper = x.reshape(1, 2, 3, 1, 1).transpose(1, 2).reshape(1, 6, 1, 1)
    assert paper.flatten().tolist() == [0, 3, 1, 4, 2, 5]
    assert channel_shuffle(paper, 2).flatten().tolist() == list(range(6))
    assert torch.equal(channel_shuffle(x, 1), x)


def _units(model):
    return [m for m in model.modules() if isinstance(m, ShuffleUnit)]


def test_unit_layout_follows_paper_and_official_code():
    spec = get_preset("shufflenet_v1_x1_0_g3")
    model = build_model(spec)
    units = _units(model)
    assert len(units) == sum(spec.repeats) == 16
    for unit in units:
        # pw conv, BN, ReLU, depthwise conv, BN: no ReLU after the depthwise conv.
        assert [type(m) for m in unit.branch_main_1] == [nn.Conv2d, nn.BatchNorm2d, nn.ReLU, nn.Conv2d, nn.BatchNorm2d]
        dw = unit.branch_main_1[3]
        assert dw.groups == dw.in_channels == dw.out_channels == dw.weight.shape[0]
        assert [type(m) for m in unit.branch_main_2] == [nn.Conv2d, nn.BatchNorm2d]
        assert isinstance(unit.branch_proj, nn.AvgPool2d if unit.stride == 2 else nn.Identity)
    first = units[0]
    assert first.branch_main_1[0].groups == 1, "Stage2's first pointwise conv is not grouped"
    assert all(u.branch_main_1[0].groups == 3 for u in units[1:])
    assert all(u.branch_main_2[0].groups == 3 for u in units)
    # Stride-2 units: main branch gives out - in channels; bottleneck is out // 4 (not (out - in) // 4).
    assert first.branch_main_2[0].out_channels == 240 - 24 and first.branch_main_1[0].out_channels == 60
    assert all(m.bias is None for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))


def test_stride_two_unit_concatenates_pooled_shortcut_first():
    unit = ShuffleUnit(12, 48, 12, stride=2, groups=3, group_first_conv=True, shuffle=True).eval()
    x = torch.rand(1, 12, 8, 8)
    out = unit(x)
    assert out.shape == (1, 48, 4, 4)
    assert torch.allclose(out[:, :12], nn.AvgPool2d(3, 2, 1)(x))


def test_stride_one_unit_adds_the_input_then_relu():
    unit = ShuffleUnit(48, 48, 12, stride=1, groups=3, group_first_conv=True, shuffle=True).eval()
    x = torch.randn(1, 48, 5, 5)
    with torch.no_grad():
        branch = unit.branch_main_2(channel_shuffle(unit.branch_main_1(x), 3))
        assert torch.allclose(unit(x), torch.relu(branch + x))


def test_shuffle_flag_changes_the_function_for_grouped_nets():
    spec = ShuffleNetSpec(groups=4, scale=0.5, resolution=32, stem="small", num_classes=10)
    torch.manual_seed(0)
    with_shuffle = build_model(spec).eval()
    without = build_model(spec.replace(shuffle=False)).eval()
    without.load_state_dict(with_shuffle.state_dict())
    for m in with_shuffle.modules():  # zero-initialised gammas would hide the branches
        if isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
    without.load_state_dict(with_shuffle.state_dict())
    x = torch.randn(2, 3, 32, 32)
    assert not torch.allclose(with_shuffle(x), without(x))


@pytest.mark.parametrize("resolution", [28, 33, 64, 224])
@pytest.mark.parametrize("stem", ["imagenet", "small"])
def test_forward_at_any_resolution(resolution, stem):
    spec = ShuffleNetSpec(groups=8, scale=0.25, resolution=resolution, stem=stem, num_classes=10, in_channels=1)
    out = build_model(spec).eval()(torch.zeros(2, 1, resolution, resolution))
    assert out.shape == (2, 10)


@settings(max_examples=60)
@given(specs(max_resolution=64))
def test_parameter_count_equals_closed_form(spec):
    model = build_model(spec)
    assert sum(p.numel() for p in model.parameters()) == count_complexity(spec).params


@settings(max_examples=40, deadline=None)
@given(specs(max_resolution=64))
def test_memory_floor_never_exceeds_what_a_forward_pass_holds(spec):
    """A floor, so refusing on it never refuses a network that would fit: below the real weights plus the
    largest activation of one image, and not far below (the 1x1 convolutions dominate)."""
    model = build_model(spec).eval()
    largest = [spec.in_channels * spec.resolution**2]
    for module in model.modules():
        if not list(module.children()):
            module.register_forward_hook(lambda m, i, out: largest.append(out.numel()))
    with torch.no_grad():
        model(torch.zeros(1, spec.in_channels, spec.resolution, spec.resolution))
    params = count_complexity(spec).params
    floor = memory_floor_bytes(spec) / 4
    assert 0.5 * params <= floor <= params + max(largest)


def test_a_network_too_large_for_memory_is_refused_before_allocating(monkeypatch):
    import shufflesearch.memory as memory

    big = ShuffleNetSpec(groups=1, stage_channels=(16384, 32768, 65536), repeats=(16, 16, 16))
    assert count_complexity(big).params * 4 > 160 * 2**30
    assert memory._available_bytes() is None or memory._available_bytes() > 2**20  # read from /proc/meminfo here
    monkeypatch.setattr(memory, "_available_bytes", lambda: 64 * 2**30)  # the same answer on a 1 TB machine
    with pytest.raises(
        TooLargeForThisMachine,
        match=r"needs at least 16\d\.\d GiB to run one image; this machine has 64\.0 GiB available: lower",
    ):
        build_model(big)
    monkeypatch.setattr(memory, "_available_bytes", lambda: 2**20)  # 1 MiB: even a small net is refused
    with pytest.raises(TooLargeForThisMachine, match=r"0\.0 GiB available") as refused:
        build_model(get_preset("shufflenet_v1_x0_5_g3"))
    # A valid spec this machine cannot hold is the machine's limit, not a typo: exit 1, not 2.
    assert isinstance(refused.value, MachineError) and refused.value.exit_code == 1
    monkeypatch.setattr(memory, "_available_bytes", lambda: None)  # unknown: no refusal on a guess
    build_model(get_preset("shufflenet_v1_x0_5_g3"))


@settings(max_examples=25, deadline=None)
@given(specs(max_resolution=64))
def test_the_model_builds_exactly_the_units_of_the_plan(spec):
    from shufflesearch.arch import plan

    units, model = list(plan(spec).units()), build_model(spec).eval()
    assert len(units) == len(model.features) == sum(spec.repeats)
    for u, module in zip(units, model.features):
        first, depthwise, last = module.branch_main_1[0], module.branch_main_1[3], module.branch_main_2[0]
        assert (first.in_channels, first.out_channels, first.groups) == (u.c_in, u.mid, u.first_groups)
        assert (depthwise.stride[0], last.out_channels, last.groups) == (u.stride, u.branch_out, u.groups)
        assert module.shuffle == u.shuffle
    with torch.no_grad():
        x = model.maxpool(model.first_conv(torch.zeros(1, spec.in_channels, spec.resolution, spec.resolution)))
        assert x.shape[-1] == plan(spec).stem.out_size
        for u, module in zip(units, model.features):
            assert x.shape[-1] == u.in_size
            x = module(x)
            assert tuple(x.shape[1:]) == (u.c_out, u.out_size, u.out_size)
