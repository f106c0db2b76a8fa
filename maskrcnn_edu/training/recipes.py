"""The training recipes: the schedule and data behind the shipped Shapes model, and torchvision's
COCO recipe. ``maskrcnn-edu train`` and the chapters take them from here."""
from __future__ import annotations

from .loop import TrainSettings, cpu_has_native_bf16

__all__ = ["SHAPES_TRAIN_SEED", "SHAPES_VAL_SEED", "SHAPES_TEST_SEED", "SHAPES_TRAIN_IMAGES",
           "SHAPES_VAL_IMAGES", "SHAPES_TEST_IMAGES", "SHAPES_STEPS", "SHAPES_BATCH", "SHAPES_LR",
           "SHAPES_TRAIN_MAX_SHAPES", "shapes_training_set", "shapes_schedule", "coco_schedule"]

# The recipe behind the shipped Shapes model (data/shapes_model/): `maskrcnn-edu train` with no arguments.
# data/shapes_model/README.md tabulates the search that chose it.
SHAPES_TRAIN_SEED, SHAPES_VAL_SEED, SHAPES_TEST_SEED = 1, 2, 3
SHAPES_TRAIN_IMAGES, SHAPES_VAL_IMAGES, SHAPES_TEST_IMAGES = 20000, 50, 200
SHAPES_STEPS, SHAPES_BATCH, SHAPES_LR = 850, 8, 0.003  # AdamW: from scratch it beats SGD in the CPU budget
# Training images hold up to 8 shapes (the test images up to 4): more objects, and more occlusions,
# per image cost little more per step and teach more.
SHAPES_TRAIN_MAX_SHAPES = 8


def _given(value, default, name: str):
    """``value``, or ``default`` when it is None; a zero or negative value is an error, never the default."""
    if value is None:
        return default
    if value <= 0:
        raise ValueError(f"{name} must be positive, got {value}")
    return value


def shapes_training_set(variant: str = "edu"):
    """The Shapes training images of the recipe: ``ShapesDataset(20000, seed=1, max_shapes=8)``."""
    from ..data import ShapesDataset  # here: the recipe's constants need no dataset code

    return ShapesDataset(SHAPES_TRAIN_IMAGES, seed=SHAPES_TRAIN_SEED, max_shapes=SHAPES_TRAIN_MAX_SHAPES,
                         variant=variant)


def shapes_schedule(steps=None, batch_size=None, lr=None, seed: int = 0):
    """The Shapes recipe: 850 AdamW steps at lr 3e-3 (from scratch it learns several times faster
    than SGD in a CPU budget: segm AP50 0.72 after 250 steps, where SGD at lr 0.02 reached 0.60
    after 600), 50 warm-up steps, cosine decay, convolutions in channels-last order (about 10 %
    faster on a CPU), and bfloat16 autocast where the CPU computes in bf16 natively (about 1.4x
    the steps a second; ``loop.cpu_has_native_bf16``). Elsewhere the same steps run in float32,
    about 1.4 times as long. ``data/shapes_model/README.md`` has the search that chose it."""
    return TrainSettings(steps=_given(steps, SHAPES_STEPS, "steps"),
                         batch_size=_given(batch_size, SHAPES_BATCH, "batch_size"),
                         optimizer="adamw", lr=_given(lr, SHAPES_LR, "lr"), weight_decay=1e-4,
                         warmup_steps=50, checkpoint_every=100, seed=seed, channels_last=True,
                         cpu_bf16=cpu_has_native_bf16())


def coco_schedule(num_images: int, batch_size: int, steps=None, lr=None, seed: int = 0):
    """torchvision's reference recipe: lr 0.02 per 16 images, 26 epochs, x0.1 at epochs 16 and 22,
    1000 warm-up steps."""
    batch_size = _given(batch_size, None, "batch_size")
    steps_per_epoch = max(1, num_images // batch_size)
    return TrainSettings(
        steps=_given(steps, 26 * steps_per_epoch, "steps"), batch_size=batch_size,
        lr=_given(lr, 0.02 * batch_size / 16, "lr"),
        warmup_steps=1000, schedule="step", lr_milestones=(16 * steps_per_epoch, 22 * steps_per_epoch),
        checkpoint_every=1000, eval_every=steps_per_epoch, num_workers=4, seed=seed,
    )
