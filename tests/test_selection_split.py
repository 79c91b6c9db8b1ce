"""The selection split: trials are scored on validation images held out of the training set, the
test split is left for the finished choice, and every record says which split a number is on."""

from __future__ import annotations

import pytest
import torch

from shufflesearch.accuracy.datasets import DatasetError, validation_split
from shufflesearch.accuracy.measured_fidelity import measured_fidelity
from shufflesearch.accuracy.recipe import DEFAULT_FIDELITY, Fidelity, FidelityError, describe_recipe, split_of
from shufflesearch.accuracy.trainer import _Run, train_proxy
from shufflesearch.finish.recipe import finish_fidelity
from shufflesearch.report.canvas import top1_label
from shufflesearch.report.provenance import provenance_frame
from shufflesearch.spec import ShuffleNetSpec

TINY_SPEC = ShuffleNetSpec(groups=2, scale=0.25, repeats=(1, 1, 1))
TINY = Fidelity(train_images=256, epochs=1, batch_size=64, resolution=None, stem="auto", eval_images=200,
                curve_eval_images=100, validation_images=600)  # fmt: skip


def test_the_carve_out_is_seeded_class_balanced_and_disjoint_from_the_rest():
    labels = torch.arange(1000) % 10
    held, rest = validation_split(labels, 100)
    again, _ = validation_split(labels, 100)
    assert torch.equal(held, again)  # the same images for every run: no run's seed enters
    assert torch.bincount(labels[held]).tolist() == [10] * 10
    assert not set(held.tolist()) & set(rest.tolist()) and len(held) + len(rest) == 1000
    assert len(validation_split(labels, 5000)[0]) == 200  # a small training set gives at most a fifth
    with pytest.raises(DatasetError, match="too few to hold out"):
        validation_split(torch.tensor([0, 1, 0]), 10)


def test_a_run_never_trains_on_the_images_it_is_scored_on(fashion):
    runs = [_Run(TINY_SPEC.replace(resolution=28, stem="small"), fashion, TINY, seed, None) for seed in (0, 1, 2)]
    held = set(runs[0].held.tolist())
    assert len(held) == 600
    for run in runs:
        assert set(run.held.tolist()) == held  # every seed is scored on the same held-out images
        assert not held & set(run.train_indices().tolist())
    assert runs[0].train_indices().tolist() != runs[1].train_indices().tolist()  # the seed draws the training images
    on_test = _Run(TINY_SPEC.replace(resolution=28, stem="small"), fashion, TINY.replace(scored_on="test"), 0, None)
    assert on_test.held is None and len(on_test.pool) == len(fashion.train_labels)


def test_the_result_says_which_split_it_was_scored_on(fashion):
    validation = train_proxy(TINY_SPEC, fashion, TINY)
    test = train_proxy(TINY_SPEC, fashion, TINY.replace(scored_on="test"))
    assert (validation.scored_on, validation.scored_images) == ("validation", 200)
    assert (test.scored_on, test.scored_images) == ("test", 200)
    assert validation.top1 != test.top1 or validation.test_loss != test.test_loss  # other images, other score
    assert validation.to_dict()["fidelity"]["scored_on"] == "validation"


def test_the_split_is_a_checked_recipe_field():
    assert DEFAULT_FIDELITY.scored_on == "validation"
    with pytest.raises(FidelityError, match="scored_on='train' must be one of validation, test"):
        Fidelity(scored_on="train")
    with pytest.raises(FidelityError, match="validation_images=0"):
        Fidelity(validation_images=0)


def test_a_finished_choice_is_trained_on_everything_and_reported_on_test():
    finished = finish_fidelity(DEFAULT_FIDELITY, 60_000)
    assert finished.scored_on == "test" and finished.train_images == 60_000


def test_a_validation_number_is_never_labelled_test():
    recipe = DEFAULT_FIDELITY.to_dict()
    assert split_of(recipe) == "validation" and split_of({"epochs": 2.0}) == "test"  # stored before splits: test
    assert "validation images held out" in describe_recipe(recipe) and "test" not in describe_recipe(recipe)
    assert "validation images" in top1_label("fashion-mnist", scored_on="validation")
    record = {"state": "complete", "recipe": recipe, "seed": 0, "dataset": "fashion-mnist:abc", "split": "validation"}
    frame = provenance_frame({"s": [record]}, {})
    assert frame.split[0].startswith("validation (5000 images held out") and "test (" not in frame.split[0]
    # Each split's fidelity was measured on its own: neither is quoted for the other.
    assert "validation split" in measured_fidelity("fashion-mnist", recipe).name
    assert measured_fidelity("fashion-mnist", {**recipe, "validation_images": 4000}) is None
    on_test = measured_fidelity("fashion-mnist", {**recipe, "scored_on": "test"})
    old = {k: v for k, v in recipe.items() if k not in ("scored_on", "validation_images")}  # as stored before
    assert "test split" in on_test.name and measured_fidelity("fashion-mnist", old) == on_test
