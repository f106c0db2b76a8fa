"""Training: the loop (``fit``) and its settings, its reports (``log``), and the recipes
(``recipes``) of the shipped Shapes model and of torchvision's COCO schedule. Training draws
nothing itself: ``fit`` takes a drawing callback for TensorBoard's images."""
from .loop import (
    LAYER_STAGES,
    NonFiniteLossError,
    TrainSettings,
    cpu_has_native_bf16,
    fit,
    lr_factor,
    parameter_trains,
    set_trainable_layers,
    step_batches,
    trainable_parameter_counts,
)
from .recipes import coco_schedule, shapes_schedule, shapes_training_set

__all__ = [
    "TrainSettings", "fit", "NonFiniteLossError", "set_trainable_layers", "trainable_parameter_counts",
    "parameter_trains", "lr_factor", "step_batches", "LAYER_STAGES", "cpu_has_native_bf16",
    "shapes_schedule", "coco_schedule", "shapes_training_set",
]
