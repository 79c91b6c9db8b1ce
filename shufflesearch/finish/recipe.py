"""The finishing recipe: the study's proxy recipe, run long on the whole training set. Pure data, no torch.

>>> from shufflesearch.accuracy.recipe import Fidelity
>>> finish_fidelity(Fidelity(train_images=2000, epochs=2), 60_000, epochs=30).to_dict()["train_images"]
60000
"""

from __future__ import annotations

from ..accuracy.recipe import Fidelity

# Long enough that a small ShuffleNet on Fashion-MNIST or CIFAR-10 is near its plateau, not a proxy any more.
FINISH_EPOCHS = 30


def finish_fidelity(study: Fidelity, train_size: int, *, epochs: float = FINISH_EPOCHS, resolution: int | None = None,
                    augment: str | None = None, train_images: int | None = None,
                    eval_images: int | None = None) -> Fidelity:  # fmt: skip
    """`study`'s recipe (schedule, lr, stem, precision, ...) with the whole training set, `epochs` and no time
    budget, scored on the test split (the study chose on validation images, which this run trains on).

    `resolution`/`augment` None keep the study's; `train_images` None is the whole training
    set (`train_size`); `eval_images` None scores the whole test split.
    """
    return study.replace(
        train_images=min(train_images or train_size, train_size),
        epochs=float(epochs),
        resolution=study.resolution if resolution is None else resolution,
        augment=study.augment if augment is None else augment,
        eval_images=eval_images,
        scored_on="test",  # the choice is made: it is reported on the test split, trained on every training image
        time_budget_s=None,  # a deadline would make the result depend on this machine's speed
    )


__all__ = ["FINISH_EPOCHS", "finish_fidelity"]
