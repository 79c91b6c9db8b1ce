"""Zero-cost scores: formula checks on tiny nets, known properties on ShuffleNet.

Random tensors here are test inputs for the arithmetic, never a dataset.
"""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from shufflesearch.accuracy.zero_cost import (
    ZERO_COST_SCORES,
    ZeroCostError,
    grad_norm_score,
    naswot_score,
    relu_code_kernel,
    score_correlations,
    synflow_score,
    zero_cost_scores,
)
from shufflesearch.complexity import count_complexity
from shufflesearch.model import ShuffleUnit, build_model
from shufflesearch.spec import ShuffleNetSpec

SMALL = ShuffleNetSpec(groups=3, scale=0.25, stem="small", resolution=28, in_channels=1, num_classes=10)
SHALLOW = SMALL.replace(repeats=(1, 2, 1))  # same unit kinds in fewer repeats: keeps the file fast


def _batch(n=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 28, 28, generator=g), torch.randint(0, 10, (n,), generator=g)


def test_every_score_is_finite_and_deterministic_for_a_seed():
    images, labels = _batch()
    first = zero_cost_scores(SHALLOW, images, labels, seed=0)
    again = zero_cost_scores(SHALLOW, images, labels, seed=0)
    other_seed = zero_cost_scores(SHALLOW, images, labels, names=["synflow", "grad_norm"], seed=1)
    assert list(first.scores) == list(ZERO_COST_SCORES) == list(first.seconds)
    assert all(math.isfinite(v) for v in first.scores.values())
    assert first.scores == again.scores
    assert (first.batch_size, first.seed) == (8, 0)
    # The seed drives the initialisation, so the weight-dependent scores move with it.
    assert other_seed.scores["synflow"] != first.scores["synflow"]
    assert other_seed.scores["grad_norm"] != first.scores["grad_norm"]


def test_scores_leave_the_model_and_global_rng_untouched():
    torch.manual_seed(123)
    model = build_model(SHALLOW).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    images, labels = _batch()
    rng_state = torch.get_rng_state()
    synflow_score(model, (1, 28, 28))
    grad_norm_score(model, images, labels)
    naswot_score(model, images)
    zero_cost_scores(SHALLOW, images, labels)
    assert not model.training
    assert all(p.grad is None for p in model.parameters())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert torch.equal(torch.get_rng_state(), rng_state)


def test_synflow_equals_layers_times_flow_on_a_linear_chain():
    # Tanaka et al.'s conservation law: in a chain without nonlinearity every layer's summed
    # |theta * dR/dtheta| equals R = 1^T |W3| |W2| |W1| 1, so the score is 3 R. The BatchNorm
    # (odd running statistics) must be bypassed, as in the zero-cost variant.
    torch.manual_seed(0)
    bn = nn.BatchNorm1d(5).eval()
    bn.running_mean.fill_(3.0)
    bn.running_var.fill_(0.1)
    net = nn.Sequential(nn.Linear(4, 5, bias=False), bn, nn.Linear(5, 3, bias=False), nn.Linear(3, 2, bias=False))
    w1, w2, w3 = (net[i].weight.detach().double().abs() for i in (0, 2, 3))
    flow = (w3 @ w2 @ w1 @ torch.ones(4, dtype=torch.float64)).sum().item()
    assert synflow_score(net, (4,)) == pytest.approx(3 * flow, rel=1e-12)


def test_synflow_of_a_wider_net_exceeds_a_narrower_one():
    narrow = synflow_score(build_model(SMALL), (1, 28, 28))
    wide = synflow_score(build_model(SMALL.replace(scale=0.5)), (1, 28, 28))
    assert math.isfinite(wide)
    assert wide > narrow > 0


def test_grad_norm_matches_the_analytic_gradient_of_a_linear_classifier():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(6, 4, bias=False))
    x, y = torch.randn(5, 6), torch.tensor([0, 1, 2, 3, 1])
    w = net[1].weight.detach()
    # d mean CE / dW = (softmax(x W^T) - onehot(y))^T x / N
    grad = (F.softmax(x @ w.T, dim=1) - F.one_hot(y, 4).float()).T @ x / len(x)
    assert grad_norm_score(net, x, y) == pytest.approx(grad.norm().item(), rel=1e-5)


class _FunctionalRelu(nn.Module):
    def forward(self, x):
        return F.relu(x)


@pytest.mark.parametrize("relu", [nn.ReLU(), nn.ReLU(inplace=True), _FunctionalRelu()])
def test_naswot_is_the_log_determinant_of_the_hamming_kernel(relu):
    # Codes (x > 0): c0 = 1100, c1 = 1010, c2 = 0001; N_A = 4, Hamming 01 = 2, 02 = 3, 12 = 3,
    # so K_H = [[4, 2, 1], [2, 4, 1], [1, 1, 4]] and det = 4*15 - 2*7 + 1*(-2) = 44.
    x = torch.tensor([[0.5, 2.0, -1.0, -0.1], [3.0, -2.0, 0.2, -4.0], [-1.0, -0.3, -2.0, 1.5]])
    kernel = relu_code_kernel(relu, x)
    assert kernel.tolist() == [[4, 2, 1], [2, 4, 1], [1, 1, 4]]
    assert naswot_score(relu, x) == pytest.approx(math.log(44), rel=1e-12)


def test_naswot_ranks_more_distinct_activation_patterns_higher():
    torch.manual_seed(0)
    x = torch.randn(16, 16)
    layer = nn.Linear(16, 256)
    nn.init.zeros_(layer.bias)
    distinct = nn.Sequential(layer, nn.ReLU())
    # The same weights with a large bias switch most units on for every sample: codes agree more.
    biased_layer = nn.Linear(16, 256)
    biased_layer.load_state_dict(layer.state_dict())
    nn.init.constant_(biased_layer.bias, 0.5)
    mostly_on = nn.Sequential(biased_layer, nn.ReLU())
    assert math.isfinite(naswot_score(mostly_on, x))
    assert naswot_score(distinct, x) > naswot_score(mostly_on, x)
    # Two samples sharing a code make K_H singular: the lowest possible score.
    assert naswot_score(distinct, torch.cat([x[:4], x[:1]])) == -math.inf


def test_naswot_sees_every_relu_of_shufflenet_functional_and_module():
    # K_H[i, i] = N_A, the number of ReLU inputs per sample. Count them independently with hooks:
    # nn.ReLU inputs, plus the F.relu inside each unit, whose input has the size of branch_main_2's output.
    model = build_model(SMALL)
    sizes = []
    hooks = [
        m.register_forward_pre_hook(lambda m, a: sizes.append(a[0][0].numel()))
        for m in model.modules()
        if isinstance(m, nn.ReLU)
    ]
    hooks += [
        u.branch_main_2.register_forward_hook(lambda m, a, out: sizes.append(out[0].numel()))
        for u in model.modules()
        if isinstance(u, ShuffleUnit)
    ]
    images, _ = _batch(n=2)
    with torch.no_grad():
        model(images)
    for h in hooks:
        h.remove()
    assert len(sizes) == 1 + 2 * sum(SMALL.repeats)
    kernel = relu_code_kernel(model, images)
    assert kernel.diagonal().tolist() == [sum(sizes)] * 2


def test_uint8_images_are_scaled_and_normalised_per_channel():
    images, labels = _batch()
    pixels = (images * 255).round().to(torch.uint8)
    x = pixels.float() / 255
    x = (x - x.mean()) / x.std()  # one channel
    from_uint8 = zero_cost_scores(SHALLOW, pixels, labels, names=["grad_norm", "naswot"])
    from_float = zero_cost_scores(SHALLOW, x, labels, names=["grad_norm", "naswot"])
    assert from_uint8.scores == pytest.approx(from_float.scores, rel=1e-5)


def test_unknown_score_name_lists_the_valid_ones():
    images, labels = _batch(n=2)
    with pytest.raises(ValueError, match="valid names: synflow, grad_norm, naswot") as err:
        zero_cost_scores(SMALL, images, labels, names=["synflow", "snip"])
    assert isinstance(err.value, ZeroCostError)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("images", "labels", "match"),
    [
        (torch.rand(4, 3, 28, 28), torch.zeros(4, dtype=torch.long), "must be N x 1 x 28 x 28"),
        (torch.rand(1, 1, 28, 28), torch.zeros(1, dtype=torch.long), "at least 2"),
        (torch.rand(4, 1, 28, 28), torch.tensor([0, 1, 2, 10]), r"must lie in \[0, 9\]"),
        (torch.rand(4, 1, 28, 28), torch.zeros(4), "integer tensor"),
    ],
)
def test_bad_batches_are_rejected_with_the_fix(images, labels, match):
    with pytest.raises(ZeroCostError, match=match):
        zero_cost_scores(SMALL, images, labels)


SPECS = [SMALL.replace(scale=s) for s in (0.25, 0.5, 0.75, 1.0)]


def test_score_correlations_on_a_hand_made_case():
    acc = [0.1, 0.2, 0.3, 0.4]
    table = [
        {"synflow": 1.0, "grad_norm": 1.0, "naswot": 4.0},
        {"synflow": 2.0, "grad_norm": 3.0, "naswot": 3.0},
        {"synflow": 3.0, "grad_norm": 2.0, "naswot": 2.0},
        {"synflow": 9.0, "grad_norm": 4.0, "naswot": 1.0},
    ]
    rho = score_correlations(SPECS, acc, table)
    assert list(rho) == ["synflow", "grad_norm", "naswot", "params", "mflops"]
    assert rho["synflow"] == pytest.approx(1.0)  # monotone
    assert rho["naswot"] == pytest.approx(-1.0)  # reversed
    # One swapped pair: 1 - 6 * sum d^2 / (n (n^2 - 1)) = 1 - 6 * 2 / 60.
    assert rho["grad_norm"] == pytest.approx(0.8)
    # Baselines come from the specs: width grows with the accuracy here.
    params = [count_complexity(s).params for s in SPECS]
    assert params == sorted(params)
    assert rho["params"] == pytest.approx(1.0) and rho["mflops"] == pytest.approx(1.0)
    assert score_correlations(SPECS, acc[::-1], table)["params"] == pytest.approx(-1.0)


def test_score_correlations_is_nan_safe():
    acc = [0.1, 0.2, float("nan"), 0.4]
    table = [
        {"a": 1.0, "b": 1.0, "c": 5.0},
        {"a": 2.0, "b": float("nan"), "c": 5.0},
        {"a": 0.0, "b": 2.0, "c": 5.0},
        {"a": 3.0, "c": 5.0},
    ]
    rho = score_correlations(SPECS, acc, table)
    assert rho["a"] == pytest.approx(1.0)  # the NaN-accuracy row is dropped, leaving a monotone triple
    assert np.isnan(rho["b"])  # NaN, missing or NaN-accuracy rows leave 1 usable pair
    assert np.isnan(rho["c"])  # constant score
    assert rho["params"] == pytest.approx(1.0)
    # -inf (a singular naswot) is kept and ranks lowest.
    assert score_correlations(SPECS, [1, 2, 3, 4], [{"n": -math.inf}, {"n": 1}, {"n": 2}, {"n": 3}])[
        "n"
    ] == pytest.approx(1.0)


def test_score_correlations_rejects_mismatched_inputs():
    with pytest.raises(ZeroCostError, match="one accuracy and one score row per spec"):
        score_correlations(SPECS, [0.1, 0.2], [{}] * 4)
    with pytest.raises(ZeroCostError, match="reserved"):
        score_correlations(SPECS, [0.1, 0.2, 0.3, 0.4], [{"params": 1.0}] * 4)


def test_zero_cost_scores_on_the_reported_spec():
    spec = ShuffleNetSpec(groups=3, scale=0.5, stem="small", resolution=28, in_channels=1, num_classes=10)
    images, labels = _batch(n=8, seed=1)
    result = zero_cost_scores(spec, images, labels)
    smaller = zero_cost_scores(spec.replace(scale=0.25), images, labels)
    assert all(math.isfinite(v) and v > 0 for v in result.scores.values())
    assert all(s >= 0 for s in result.seconds.values())
    # NASWOT: log|K_H| <= N log N_A (Hadamard's inequality, K_H is positive definite with diagonal N_A).
    n_a = relu_code_kernel(build_model(spec), images)[0, 0].item()
    assert result.scores["naswot"] <= 8 * math.log(n_a)
    assert result.scores["synflow"] > smaller.scores["synflow"]
