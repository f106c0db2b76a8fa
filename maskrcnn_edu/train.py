"""The training loop: one readable function, ``fit``, and the few pieces it is made of.

SGD with momentum and weight decay; a linear warm-up, then step or cosine decay; gradient
clipping; AMP on CUDA; which layers train: the model's ``Config.trainable_layers`` by default, or
one of the seed project's stages (``heads``, ``5+``, ``4+``, ``3+``, ``all``), one rule for both
(``set_trainable_layers``, ``trainable_parameter_counts``); tqdm progress with the losses; TensorBoard scalars and images; checkpoints written
atomically every N steps, at the end and on Ctrl-C (``last.pt``; ``best.pt`` by validation mask
AP); exact resume (model, optimizer, schedule, step and every RNG); a non-finite loss stops the run
naming the step and the losses, leaving the last good checkpoint in place.

Run under ``torchrun --nproc_per_node=N`` it trains with DistributedDataParallel (NCCL on GPUs,
gloo on CPU): each rank takes its share of every global batch, rank 0 alone logs and writes.
"""
from __future__ import annotations

import dataclasses
import math
import os
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from .backbone import body_parameter_trains
from .data import collate
from .files import write_json
from .weights import save_checkpoint

__all__ = ["TrainSettings", "fit", "NonFiniteLossError", "set_trainable_layers", "trainable_parameter_counts",
           "parameter_trains", "lr_factor", "step_batches", "LAYER_STAGES"]

# The seed project's stage names (its ResNet stage k, "resk", is torchvision's layer k-1), each as the
# number of ResNet stages that train, counted from the top: the scale of ``Config.trainable_layers``.
# The FPN, RPN and heads always train. "3+" is torchvision's recipe: conv1 and layer1 stay frozen.
LAYER_STAGES = {"heads": 0, "5+": 1, "4+": 2, "3+": 3, "all": 5}

@dataclass(frozen=True)
class TrainSettings:
    """How to train (the model's shape is in its ``Config``). Steps count optimizer updates."""

    steps: int = 1000
    batch_size: int = 4  # images per step, over all processes
    optimizer: str = "sgd"  # "sgd" (with momentum, the paper's) or "adamw"
    lr: float = 0.02
    momentum: float = 0.9
    weight_decay: float = 1e-4
    warmup_steps: int = 100
    warmup_factor: float = 0.001  # the lr starts at lr * warmup_factor
    schedule: str = "cosine"  # "cosine" or "step"
    lr_milestones: tuple = ()  # steps at which "step" multiplies the lr by gamma
    gamma: float = 0.1
    clip_grad_norm: float | None = 10.0
    amp: bool = True  # used on CUDA only
    layers: str | None = None  # None: the model's Config.trainable_layers; or a stage of LAYER_STAGES
    checkpoint_every: int = 200
    eval_every: int = 0  # 0: only at the end (when there is a validation set)
    log_every: int = 10
    num_workers: int = 0
    seed: int = 0

    def __post_init__(self):
        if self.layers is not None and self.layers not in LAYER_STAGES:
            raise ValueError(f"layers must be None (the model's Config.trainable_layers) or one of {list(LAYER_STAGES)}, "
                             f"got {self.layers!r}")
        if self.optimizer not in ("sgd", "adamw"):
            raise ValueError(f"optimizer must be 'sgd' or 'adamw', got {self.optimizer!r}")
        if self.schedule not in ("cosine", "step"):
            raise ValueError(f"schedule must be 'cosine' or 'step', got {self.schedule!r}")
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError(f"steps and batch_size must be positive, got {self.steps} and {self.batch_size}")


class NonFiniteLossError(RuntimeError):
    """A loss became NaN or infinite; the message names the step, the losses and the last checkpoint."""


def parameter_trains(name: str, trainable_layers: int) -> bool:
    """Whether the model's parameter ``name`` trains when the top ``trainable_layers`` ResNet stages do.

    Everything outside the ResNet body (FPN, RPN, heads) trains; inside it, the backbone's rule
    (``backbone.body_parameter_trains``) decides, the same rule that ``Config.trainable_layers`` applies
    when the model is built.
    """
    body = "backbone.body."
    return not name.startswith(body) or body_parameter_trains(name[len(body):], trainable_layers)


def _trainable_layers(model: torch.nn.Module, layers: str | None) -> int:
    """A stage name, or ``None`` for the model's own ``config.trainable_layers``, as a count of ResNet stages."""
    if layers is not None:
        if layers not in LAYER_STAGES:
            raise ValueError(f"layers must be None or one of {list(LAYER_STAGES)}, got {layers!r}")
        return LAYER_STAGES[layers]
    config = getattr(model, "config", None)
    if config is None:
        raise ValueError("layers=None means the model's config.trainable_layers, but this model has no config: "
                         f"name a stage, one of {list(LAYER_STAGES)}")
    return config.trainable_layers


def set_trainable_layers(model: torch.nn.Module, layers: str | None = None) -> int:
    """Freeze every parameter that the stage ``layers`` does not train; returns how many parameters train.

    ``layers`` is a stage of ``LAYER_STAGES`` (``"heads"``, ``"5+"``, ``"4+"``, ``"3+"``, ``"all"``) or
    ``None``: the model's ``config.trainable_layers`` (3 for ``coco_r50_fpn()``, 5 for ``shapes()``).
    """
    trainable_layers = _trainable_layers(model, layers)
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(parameter_trains(name, trainable_layers))
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def trainable_parameter_counts(model: torch.nn.Module) -> dict[str, int]:
    """How many parameters (numbers, not tensors) each stage of ``LAYER_STAGES`` trains; ``model`` is unchanged."""
    return {stage: sum(p.numel() for name, p in model.named_parameters() if parameter_trains(name, count))
            for stage, count in LAYER_STAGES.items()}


def lr_factor(step: int, settings: TrainSettings) -> float:
    """The multiplier of the base lr at ``step``: linear warm-up, then cosine or step decay."""
    if step < settings.warmup_steps:
        alpha = step / settings.warmup_steps
        return settings.warmup_factor * (1 - alpha) + alpha
    if settings.schedule == "step":
        return settings.gamma ** sum(step >= m for m in settings.lr_milestones)
    progress = (step - settings.warmup_steps) / max(1, settings.steps - settings.warmup_steps)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def _epoch_batches(num_items: int, batch_size: int, seed: int, epoch: int, group_ids: Tensor | None) -> list[Tensor]:
    """The batches of one epoch, in order: shuffled items, batched within their group, batches shuffled."""
    order = torch.randperm(num_items, generator=torch.Generator().manual_seed(seed + epoch))
    if group_ids is None:
        return list(order.split(batch_size))
    # Aspect-ratio grouping: a batch holds images of one group (wide or tall), so padding wastes little.
    batches = [b for g in torch.unique(group_ids) for b in order[group_ids[order] == g].split(batch_size)]
    shuffle = torch.randperm(len(batches), generator=torch.Generator().manual_seed(seed + epoch + 1_000_003))
    return [batches[i] for i in shuffle]


def step_batches(num_items: int, batch_size: int, seed: int, start_step: int, rank: int = 0, world_size: int = 1,
                 group_ids: Tensor | None = None):
    """Dataset indices for every step from ``start_step`` on: a pure function of (seed, step).

    Epoch ``e`` shuffles the items with the seed ``seed + e`` and cuts them into batches (within
    each group of ``group_ids [num_items]``, if given); step ``s`` is the ``s``-th batch of the
    concatenated epochs. So resuming at step ``s`` sees exactly the batches an uninterrupted run
    would. Under DDP the global batch is split: rank ``r`` takes items ``r, r + world_size, ...``.
    """
    steps_per_epoch = len(_epoch_batches(num_items, batch_size, seed, 0, group_ids))
    epoch, position = divmod(start_step, steps_per_epoch)
    while True:
        batches = _epoch_batches(num_items, batch_size, seed, epoch, group_ids)
        for batch in batches[position:]:
            yield batch[rank::world_size].tolist()
        epoch, position = epoch + 1, 0


def _rng_state() -> dict:
    """Every RNG the step may use, in types that ``torch.load(weights_only=True)`` accepts."""
    name, keys, position, has_gauss, cached = np.random.get_state()
    numpy_state = (name, torch.from_numpy(keys.astype(np.int64)), int(position), int(has_gauss), float(cached))
    state = {"torch": torch.get_rng_state(), "numpy": numpy_state, "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    name, keys, position, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), position, has_gauss, cached))
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _distributed() -> tuple[int, int]:
    """(rank, world size); starts the process group when run under torchrun."""
    if not dist.is_available():
        return 0, 1
    if not dist.is_initialized() and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _finite_everywhere(loss, world_size: int) -> bool:
    """Whether the loss is finite on every process (all must stop together, or the others would wait forever)."""
    finite = torch.isfinite(loss.detach()).float().reshape(1)
    if world_size > 1:
        dist.all_reduce(finite, op=dist.ReduceOp.MIN)
    return bool(finite.item())


def _batch_to(images, targets, device):
    images = [img.to(device, non_blocking=True) for img in images]
    targets = [{k: (v.to(device, non_blocking=True) if torch.is_tensor(v) else v) for k, v in t.items()} for t in targets]
    return images, targets


class _Loader:
    """Batches for the steps ``start..``, loaded by a DataLoader (workers optional)."""

    def __init__(self, dataset, settings: TrainSettings, start_step: int, rank: int, world_size: int, group_ids=None):
        batches = step_batches(len(dataset), settings.batch_size, settings.seed, start_step, rank, world_size, group_ids)
        # Its own generator: creating the iterator must not draw from the global RNG, which a
        # resumed run restores and which the model's samplers and the augmentations use.
        self.loader = torch.utils.data.DataLoader(
            dataset, batch_sampler=batches, collate_fn=collate, num_workers=settings.num_workers,
            generator=torch.Generator().manual_seed(settings.seed + start_step),
        )

    def __iter__(self):
        return iter(self.loader)


def _checkpoint(path: Path, model, optimizer, scheduler, scaler, step: int, settings: TrainSettings, **extra) -> Path:
    return save_checkpoint(
        path, model, optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict(), scaler=scaler.state_dict(),
        step=step, settings=dataclasses.asdict(settings), rng=_rng_state(), **extra,
    )


def fit(model, train_dataset, out_dir, settings: TrainSettings = TrainSettings(), val_dataset=None,
        resume: bool = False, device: str | torch.device = "cpu", evaluate_fn=None, progress: bool = True,
        group_ids: Tensor | None = None) -> dict:
    """Train ``model`` on ``train_dataset``; checkpoints and logs go to ``out_dir``. Returns a summary.

    ``resume=True`` continues from ``out_dir/last.pt`` exactly where it stopped. ``evaluate_fn(model,
    dataset) -> metrics`` (default: COCO evaluation) scores ``val_dataset`` for ``best.pt``.
    ``group_ids [len(train_dataset)]`` batches images of a group together (aspect-ratio grouping).
    """
    rank, world_size = _distributed()
    out_dir = Path(out_dir)
    device = torch.device(device)
    model.to(device)
    set_trainable_layers(model, settings.layers)
    parameters = [p for p in model.parameters() if p.requires_grad]
    if settings.optimizer == "sgd":
        optimizer = torch.optim.SGD(parameters, lr=settings.lr, momentum=settings.momentum, weight_decay=settings.weight_decay)
    else:
        optimizer = torch.optim.AdamW(parameters, lr=settings.lr, weight_decay=settings.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, settings))
    use_amp = settings.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler(device.type, enabled=use_amp)

    start_step, best_ap = 0, -1.0
    torch.manual_seed(settings.seed + rank)
    if resume:
        checkpoint = torch.load(out_dir / "last.pt", map_location=device, weights_only=True)
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        scheduler.load_state_dict(checkpoint["scheduler"])
        scaler.load_state_dict(checkpoint["scaler"])
        start_step, best_ap = checkpoint["step"], checkpoint.get("best_ap", -1.0)
        _set_rng_state(checkpoint["rng"])

    network = DistributedDataParallel(model) if world_size > 1 else model
    writer = _tensorboard(out_dir) if rank == 0 else None
    last_path = out_dir / "last.pt"
    step = start_step
    bar = tqdm(total=settings.steps, initial=start_step, disable=not progress or rank != 0, desc="train")
    model.train()
    try:
        for images, targets in _Loader(train_dataset, settings, start_step, rank, world_size, group_ids):
            if step >= settings.steps:
                break
            images, targets = _batch_to(images, targets, device)
            with torch.autocast(device.type, enabled=use_amp):
                losses = network(images, targets)
            loss = sum(losses.values())
            if not _finite_everywhere(loss, world_size):
                values = ", ".join(f"{k}={v.item():.4g}" for k, v in losses.items())
                kept = f"the last good checkpoint is {last_path}" if last_path.exists() else "no checkpoint was written yet"
                raise NonFiniteLossError(f"step {step}: the loss is not finite ({values}); stopping, {kept}")
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if settings.clip_grad_norm:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(parameters, settings.clip_grad_norm)
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            step += 1
            bar.update(1)
            if rank == 0:
                _log_step(bar, writer, step, losses, scheduler, settings)
                if step % settings.checkpoint_every == 0 or step == settings.steps:
                    _checkpoint(last_path, model, optimizer, scheduler, scaler, step, settings, best_ap=best_ap)
            if val_dataset is not None and (step == settings.steps or (settings.eval_every and step % settings.eval_every == 0)):
                best_ap = _validate(model, val_dataset, evaluate_fn, writer, step, best_ap, out_dir, rank,
                                    (optimizer, scheduler, scaler, settings))
                model.train()
    except KeyboardInterrupt:
        if rank == 0:
            _checkpoint(last_path, model, optimizer, scheduler, scaler, step, settings, best_ap=best_ap)
            print(f"\ninterrupted at step {step}: saved {last_path}; continue with resume=True (--resume)")
        raise
    finally:
        bar.close()
        if writer is not None:
            writer.close()
    return {"steps": step, "best_ap": best_ap, "last": str(last_path)}


def _tensorboard(out_dir: Path):
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(str(out_dir / "tensorboard"))


def _log_step(bar, writer, step, losses, scheduler, settings):
    values = {k: v.item() for k, v in losses.items()}
    bar.set_postfix(loss=f"{sum(values.values()):.3f}", mask=f"{values.get('loss_mask', 0):.3f}", lr=f"{scheduler.get_last_lr()[0]:.4f}")
    if step % settings.log_every == 0 or step == settings.steps:
        for name, value in values.items():
            writer.add_scalar(f"loss/{name}", value, step)
        writer.add_scalar("loss/total", sum(values.values()), step)
        writer.add_scalar("lr", scheduler.get_last_lr()[0], step)


def _validate(model, dataset, evaluate_fn, writer, step, best_ap, out_dir, rank, state):
    """Score ``dataset``; on rank 0 log it and write ``best.pt`` when the mask AP improved."""
    if evaluate_fn is None:
        from .coco_eval import coco_evaluate

        def evaluate_fn(m, d):
            return coco_evaluate(m, d, progress=False)[0]

    metrics = evaluate_fn(model, dataset)
    mask_ap = metrics["segm"]["AP"]
    if rank == 0:
        for kind in ("bbox", "segm"):
            for name in ("AP", "AP50", "AP75"):
                writer.add_scalar(f"val/{kind}_{name}", metrics[kind][name], step)
        _log_images(writer, model, dataset, step)
        if mask_ap > best_ap:
            optimizer, scheduler, scaler, settings = state
            _checkpoint(out_dir / "best.pt", model, optimizer, scheduler, scaler, step, settings, best_ap=mask_ap, metrics=metrics)
            write_json(out_dir / "best_metrics.json", {"step": step, **metrics})
    return max(best_ap, mask_ap)


def _log_images(writer, model, dataset, step, count: int = 4):
    """A few validation images with their detections drawn, for TensorBoard's image tab."""
    import matplotlib.pyplot as plt

    from .visualize import draw_detections

    model.eval()
    device = next(model.parameters()).device
    with torch.no_grad():
        for i in range(min(count, len(dataset))):
            image = dataset[i][0]
            detections = model([image.to(device)])[0]
            fig, ax = plt.subplots(figsize=(3, 3))
            draw_detections(ax, image, {k: v.cpu() for k, v in detections.items()}, getattr(model.config, "class_names", None) or None)
            ax.set_axis_off()
            writer.add_figure(f"val/detections_{i}", fig, step)
            plt.close(fig)
