"""What a training run reports, on rank 0: a progress bar with the losses, the learning rate and
an ETA, and TensorBoard's scalars (losses, lr, validation APs) and, given a drawing callback, a few
validation images with their detections."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Callable

import torch
from tqdm.auto import tqdm

if TYPE_CHECKING:  # annotations only
    from .loop import TrainSettings

__all__ = ["TrainingLog"]


class TrainingLog:
    """Rank 0's reports: the progress bar (losses, lr, ETA) and TensorBoard. Other ranks report nothing."""

    def __init__(self, out_dir: Path, settings: TrainSettings, start_step: int, enabled: bool, progress: bool,
                 draw_detections: Callable | None = None):
        self.settings = settings
        self.draw_detections = draw_detections
        # smoothing=0: the ETA divides by the mean step time of the whole run. (tqdm's default, an
        # average that forgets within a few steps, made the ETA swing 3x on a busy CPU, where a step
        # takes 0.3 s or, when another process takes a core, 4 to 7 s.)
        self.bar = tqdm(total=settings.steps, initial=start_step, disable=not (progress and enabled),
                        desc="train", smoothing=0.0)
        self.writer = _tensorboard(out_dir) if enabled else None

    def step(self, step: int, losses: dict, lr: float) -> None:
        self.bar.update(1)
        if self.writer is None:
            return
        values = {k: v.item() for k, v in losses.items()}
        self.bar.set_postfix(loss=f"{sum(values.values()):.3f}", mask=f"{values.get('loss_mask', 0):.3f}",
                             lr=f"{lr:.4f}")
        if step % self.settings.log_every == 0 or step == self.settings.steps:
            for name, value in values.items():
                self.writer.add_scalar(f"loss/{name}", value, step)
            self.writer.add_scalar("loss/total", sum(values.values()), step)
            self.writer.add_scalar("lr", lr, step)

    def validation(self, step: int, metrics: dict, model, dataset) -> None:
        for kind in ("bbox", "segm"):
            for name in ("AP", "AP50", "AP75"):
                if metrics[kind][name] is not None:  # None: no object in the validation set
                    self.writer.add_scalar(f"val/{kind}_{name}", metrics[kind][name], step)
        if self.draw_detections is not None:
            _log_images(self.writer, model, dataset, step, self.draw_detections)

    def close(self) -> None:
        self.bar.close()
        if self.writer is not None:
            self.writer.close()


def _tensorboard(out_dir: Path):
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(str(out_dir / "tensorboard"))


def _log_images(writer, model, dataset, step, draw_detections: Callable, count: int = 4):
    """A few validation images with their detections drawn, for TensorBoard's image tab."""
    import matplotlib.pyplot as plt  # here: training needs matplotlib only when it is given a drawing

    model.eval()
    device = next(model.parameters()).device
    with torch.no_grad():
        for i in range(min(count, len(dataset))):
            image = dataset[i][0]
            detections = model([image.to(device)])[0]
            fig, ax = plt.subplots(figsize=(3, 3))
            class_names = getattr(model.config, "class_names", None) or None
            draw_detections(ax, image, {k: v.cpu() for k, v in detections.items()}, class_names)
            ax.set_axis_off()
            writer.add_figure(f"val/detections_{i}", fig, step)
            plt.close(fig)
