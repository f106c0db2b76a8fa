"""The training loop: one readable function, ``fit``, and the named steps it is made of.

``fit`` starts the run (``_start``: the model on its device, the optimizer from
``_build_optimizer``, and a checkpoint to continue from if asked, ``_restore``), then repeats
``_train_step`` (forward, loss check, backward, clip, update), logs (``log.TrainingLog``), saves (``_save``;
on Ctrl-C ``_save_interrupted``) and validates (``_maybe_validate``) until the last step.

SGD with momentum and weight decay (or AdamW); a linear warm-up, then step or cosine decay;
gradient clipping; AMP on CUDA; which layers train: the model's ``Config.trainable_layers`` by
default, or one of the seed project's stages (``heads``, ``5+``, ``4+``, ``3+``, ``all``), one rule
for both (``set_trainable_layers``, ``trainable_parameter_counts``); tqdm progress with the losses
and an ETA from the mean step time, TensorBoard scalars and images (``log.py``); checkpoints
written atomically every N steps, at the end and on Ctrl-C (``last.pt``; ``best.pt`` when a
validation before the end picks it by mask AP); exact resume (model, optimizer, schedule, step and
every RNG); a non-finite loss stops the run naming the step and the losses, leaving the last good
checkpoint in place.

Reproducible on a CPU: the same call, from the same initial weights and with the same number of
threads (``torch.get_num_threads()``), gives the same weights, bit for bit. Different thread counts
split the sums differently and drift apart in the last bits, then further.

Run under ``torchrun --nproc_per_node=N`` it trains with DistributedDataParallel (NCCL on GPUs,
gloo on CPU): each rank takes its share of every global batch, rank 0 alone logs and writes.
"""
from __future__ import annotations

import dataclasses
import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor
from torch.nn.parallel import DistributedDataParallel

from ..backbone import body_parameter_trains
from ..data import collate
from ..distributed import rank_and_world_size
from ..files import write_json
from ..weights import load_file, save_checkpoint
from .folder import check_writable
from .interrupt import any_rank_asks, ctrl_c_between_steps
from .log import TrainingLog

__all__ = ["TrainSettings", "fit", "NonFiniteLossError", "set_trainable_layers", "trainable_parameter_counts",
           "parameter_trains", "lr_factor", "step_batches", "LAYER_STAGES", "cpu_has_native_bf16"]

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
    amp: bool = True  # float16 autocast with loss scaling; used on CUDA only
    # bfloat16 autocast on a CPU: convolutions and matrix products in bf16, weights, optimizer and
    # losses in float32. About 1.4x the steps a second where the CPU has native bf16
    # (``cpu_has_native_bf16``), much slower where it has not; no loss scaling needed (bf16 has
    # float32's range).
    cpu_bf16: bool = False
    # Convolution weights (and so activations) in NHWC order: faster with oneDNN on CPU.
    channels_last: bool = False
    layers: str | None = None  # None: the model's Config.trainable_layers; or a stage of LAYER_STAGES
    checkpoint_every: int = 200
    eval_every: int = 0  # 0: only at the end (when there is a validation set)
    log_every: int = 10
    num_workers: int = 0
    seed: int = 0

    def __post_init__(self):
        if self.layers is not None and self.layers not in LAYER_STAGES:
            raise ValueError(f"layers must be None (the model's Config.trainable_layers) or one of "
                             f"{list(LAYER_STAGES)}, got {self.layers!r}")
        if self.optimizer not in ("sgd", "adamw"):
            raise ValueError(f"optimizer must be 'sgd' or 'adamw', got {self.optimizer!r}")
        if self.schedule not in ("cosine", "step"):
            raise ValueError(f"schedule must be 'cosine' or 'step', got {self.schedule!r}")
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError(f"steps and batch_size must be positive, got {self.steps} and {self.batch_size}")


class NonFiniteLossError(RuntimeError):
    """A loss became NaN or infinite; the message names the step, the losses and the last checkpoint."""


def parameter_trains(name: str, trainable_layers: int) -> bool:
    """Whether the model's parameter ``name`` trains when the top ``trainable_layers`` stages do.

    Everything outside the ResNet body (FPN, RPN, heads) trains; inside it, the backbone's rule
    (``backbone.body_parameter_trains``) decides, the same rule that ``Config.trainable_layers`` applies
    when the model is built.
    """
    body = "backbone.body."
    return not name.startswith(body) or body_parameter_trains(name[len(body):], trainable_layers)


def _trainable_layers(model: torch.nn.Module, layers: str | None) -> int:
    """A stage name, or ``None`` for the model's ``config.trainable_layers``, as a count of ResNet stages."""
    if layers is not None:
        if layers not in LAYER_STAGES:
            raise ValueError(f"layers must be None or one of {list(LAYER_STAGES)}, got {layers!r}")
        return LAYER_STAGES[layers]
    config = getattr(model, "config", None)
    if config is None:
        raise ValueError("layers=None means the model's config.trainable_layers, but this model has no "
                         f"config: name a stage, one of {list(LAYER_STAGES)}")
    return config.trainable_layers


def set_trainable_layers(model: torch.nn.Module, layers: str | None = None) -> int:
    """Freeze the parameters that the stage ``layers`` does not train -> how many parameters train.

    ``layers`` is a stage of ``LAYER_STAGES`` (``"heads"``, ``"5+"``, ``"4+"``, ``"3+"``, ``"all"``) or
    ``None``: the model's ``config.trainable_layers`` (3 for ``coco_r50_fpn()``, 5 for ``shapes()``).
    """
    trainable_layers = _trainable_layers(model, layers)
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(parameter_trains(name, trainable_layers))
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def trainable_parameter_counts(model: torch.nn.Module) -> dict[str, int]:
    """How many parameters (numbers, not tensors) each stage of ``LAYER_STAGES`` trains.

    ``model`` is unchanged.
    """
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


def _epoch_batches(num_items: int, batch_size: int, seed: int, epoch: int,
                   group_ids: Tensor | None) -> list[Tensor]:
    """One epoch's batches, in order: shuffled items, batched within their group, batches shuffled."""
    order = torch.randperm(num_items, generator=torch.Generator().manual_seed(seed + epoch))
    if group_ids is None:
        return list(order.split(batch_size))
    # Aspect-ratio grouping: a batch holds images of one group (wide or tall), so padding wastes little.
    batches = [b for g in torch.unique(group_ids) for b in order[group_ids[order] == g].split(batch_size)]
    shuffle = torch.randperm(len(batches),
                             generator=torch.Generator().manual_seed(seed + epoch + 1_000_003))
    return [batches[i] for i in shuffle]


def step_batches(num_items: int, batch_size: int, seed: int, start_step: int, rank: int = 0,
                 world_size: int = 1, group_ids: Tensor | None = None):
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
    numpy_state = (name, torch.from_numpy(keys.astype(np.int64)), int(position), int(has_gauss),
                   float(cached))
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


def _finite_everywhere(loss, world_size: int) -> bool:
    """Whether the loss is finite on every process: all stop together, or the others would wait forever."""
    finite = torch.isfinite(loss.detach()).float().reshape(1)
    if world_size > 1:
        dist.all_reduce(finite, op=dist.ReduceOp.MIN)
    return bool(finite.item())


def _batch_to(images, targets, device):
    images = [img.to(device, non_blocking=True) for img in images]
    targets = [{k: (v.to(device, non_blocking=True) if torch.is_tensor(v) else v) for k, v in t.items()}
               for t in targets]
    return images, targets


class _Loader:
    """Batches for the steps ``start..``, loaded by a DataLoader (workers optional)."""

    def __init__(self, dataset, settings: TrainSettings, start_step: int, rank: int, world_size: int,
                 group_ids=None):
        batches = step_batches(len(dataset), settings.batch_size, settings.seed, start_step, rank, world_size,
                               group_ids)
        # Its own generator: creating the iterator must not draw from the global RNG, which a
        # resumed run restores and which the model's samplers and the augmentations use.
        self.loader = torch.utils.data.DataLoader(
            dataset, batch_sampler=batches, collate_fn=collate, num_workers=settings.num_workers,
            generator=torch.Generator().manual_seed(settings.seed + start_step),
        )

    def __iter__(self):
        return iter(self.loader)


@dataclass
class _Run:
    """What the loop updates and a checkpoint holds: the model, its optimizer and schedule, the step."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler  # loss scaling for float16 AMP; disabled (a no-op) without it
    device: torch.device
    step: int = 0  # optimizer updates done
    best_ap: float = -1.0  # the best validation mask AP so far; -1: no validation yet

    @property
    def parameters(self) -> list[Tensor]:
        """The parameters that train (the optimizer's), in its order."""
        return [p for group in self.optimizer.param_groups for p in group["params"]]


def fit(model, train_dataset, out_dir, settings: TrainSettings = TrainSettings(), val_dataset=None,
        resume: bool = False, device: str | torch.device = "cpu", evaluate_fn=None, progress: bool = True,
        group_ids: Tensor | None = None, draw_detections: Callable | None = None) -> dict:
    """Train ``model`` on ``train_dataset``; checkpoints and logs go to ``out_dir``. Returns a summary.

    ``resume=True`` continues from ``out_dir/last.pt`` exactly where it stopped. ``evaluate_fn(model,
    dataset) -> metrics`` (default: COCO evaluation) scores ``val_dataset`` for ``best.pt``, which is
    written only when a validation before the end chose it (or a later one improved on it).
    ``group_ids [len(train_dataset)]`` batches images of a group together (aspect-ratio grouping).
    ``draw_detections(ax, image, detections, class_names)`` (``visualize.draw_detections``, as the
    command line passes it) draws a few validation images for TensorBoard's image tab; without it
    TensorBoard gets the scalars only. Training draws through this callback and never imports
    drawing code.
    """
    rank, world_size = rank_and_world_size(start=True)
    out_dir, last_path = Path(out_dir), Path(out_dir) / "last.pt"
    run = _start(model, settings, torch.device(device), rank, out_dir, resume)
    network = DistributedDataParallel(model) if world_size > 1 else model
    log = TrainingLog(out_dir, settings, run.step, rank == 0, progress, draw_detections)
    batches = iter(_Loader(train_dataset, settings, run.step, rank, world_size, group_ids))
    model.train()
    with ctrl_c_between_steps() as stop_requested:
        try:
            while run.step < settings.steps:
                images, targets = _batch_to(*next(batches), run.device)
                lr = run.optimizer.param_groups[0]["lr"]  # this step's rate (the scheduler then moves on)
                losses = _train_step(network, run, images, targets, settings, world_size, last_path)
                log.step(run.step, losses, lr)
                if rank == 0 and (run.step % settings.checkpoint_every == 0 or run.step == settings.steps):
                    _save(last_path, run, settings)
                _maybe_validate(run, val_dataset, evaluate_fn, settings, log, out_dir, rank)
                if any_rank_asks(stop_requested(), world_size):
                    raise KeyboardInterrupt
        except KeyboardInterrupt:  # Ctrl-C between steps, or raised by the data (a notebook's interrupt)
            if rank == 0:
                _save_interrupted(last_path, run, settings)
            raise
        finally:
            log.close()
    return _summary(run, out_dir)


def _summary(run: _Run, out_dir: Path) -> dict:
    """What ``fit`` returns: the steps taken, the best validation mask AP, the checkpoints' paths."""
    best = out_dir / "best.pt"
    return {"steps": run.step, "best_ap": run.best_ap, "last": str(out_dir / "last.pt"),
            "best": str(best) if best.exists() else None}


def _start(model, settings: TrainSettings, device: torch.device, rank: int, out_dir: Path,
           resume: bool) -> _Run:
    """Everything before the first step: the run's folder checked (``folder.check_writable``), the
    model on ``device``, its trainable layers, the optimizer, the seeded RNG and, with ``resume``,
    the state of ``out_dir/last.pt`` to continue from."""
    if rank == 0:
        check_writable(out_dir)
    model.to(device)
    if settings.channels_last:
        # 4-d weights only; the results are the same up to rounding.
        model.to(memory_format=torch.channels_last)
    set_trainable_layers(model, settings.layers)
    run = _build_optimizer(model, settings, device)
    torch.manual_seed(settings.seed + rank)  # the anchor and RoI samplers (and augmentations) draw from it
    if resume:
        _restore(run, out_dir / "last.pt", settings)
    return run


def _build_optimizer(model, settings: TrainSettings, device: torch.device) -> _Run:
    """SGD with momentum (or AdamW) over the trainable parameters, the lr schedule, the AMP loss scaler."""
    parameters = [p for p in model.parameters() if p.requires_grad]
    if settings.optimizer == "sgd":
        optimizer = torch.optim.SGD(parameters, lr=settings.lr, momentum=settings.momentum,
                                    weight_decay=settings.weight_decay)
    else:
        # fused: one pass over all the parameters, not a loop of small ops per tensor (on the CPU
        # PyTorch's default): 11 of a Shapes step's 270 ms, against 24.
        optimizer = torch.optim.AdamW(parameters, lr=settings.lr, weight_decay=settings.weight_decay,
                                      fused=True)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, settings))
    scaler = torch.amp.GradScaler(device.type, enabled=settings.amp and device.type == "cuda")
    return _Run(model, optimizer, scheduler, scaler, device)


# Settings a resumed run may change: how long it runs, and what it reports and when. Any other
# would silently make the rest of the run another recipe than the one its checkpoint records.
RESUMABLE_CHANGES = ("steps", "checkpoint_every", "eval_every", "log_every", "num_workers")


def _check_resumable(checkpoint: dict, run: _Run, settings: TrainSettings, path: Path) -> None:
    """Refuse to continue ``checkpoint`` with another model config or other training settings."""
    config = run.model.config.to_dict()
    changed = sorted(k for k in set(config) | set(checkpoint["config"])
                     if config.get(k) != checkpoint["config"].get(k))
    if changed:
        raise ValueError(f"{path} was trained with another model config ({', '.join(changed)} differ): "
                         "resume with the config it was trained with, or train into a fresh folder")
    saved, asked = checkpoint.get("settings", {}), dataclasses.asdict(settings)
    changed = [f"{k} {saved[k]!r} -> {asked[k]!r}" for k in asked
               if k in saved and k not in RESUMABLE_CHANGES and _as_saved(asked[k]) != _as_saved(saved[k])]
    if changed:
        raise ValueError(f"{path} continues a run with other settings ({'; '.join(changed)}): resume with "
                         "the settings it was started with (only the steps may change), or train into a "
                         "fresh folder")


def _as_saved(value):
    """A setting as a checkpoint stores it (tuples come back from torch.load as lists)."""
    return list(value) if isinstance(value, tuple) else value


def _restore(run: _Run, path: Path, settings: TrainSettings) -> None:
    """Continue from the checkpoint ``path``: weights, optimizer, schedule, scaler, step, best AP and RNGs."""
    checkpoint = load_file(path, map_location=run.device)
    if not isinstance(checkpoint, dict) or "optimizer" not in checkpoint:
        raise ValueError(f"{path} is not a training checkpoint to resume from (it has no optimizer state)")
    _check_resumable(checkpoint, run, settings, path)
    run.model.load_state_dict(checkpoint["model"])
    run.optimizer.load_state_dict(checkpoint["optimizer"])
    run.scheduler.load_state_dict(checkpoint["scheduler"])
    run.scaler.load_state_dict(checkpoint["scaler"])
    run.step, run.best_ap = checkpoint["step"], checkpoint.get("best_ap", -1.0)
    _set_rng_state(checkpoint["rng"])


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes in bfloat16 natively (x86's AVX512-BF16 or AMX), so that
    ``TrainSettings.cpu_bf16`` makes training faster, not slower. Read from Linux's /proc/cpuinfo;
    False where that cannot be read."""
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def _autocast(run: _Run, settings: TrainSettings):
    """float16 autocast on CUDA with AMP, bfloat16 on a CPU with ``cpu_bf16``, otherwise none."""
    if run.device.type == "cpu":
        return torch.autocast("cpu", dtype=torch.bfloat16, enabled=settings.cpu_bf16)
    return torch.autocast(run.device.type, enabled=run.scaler.is_enabled())


def _train_step(network, run: _Run, images, targets, settings: TrainSettings, world_size: int,
                last_path: Path) -> dict:
    """One optimizer update: losses (under autocast with AMP), backward, clipping, step -> the losses."""
    with _autocast(run, settings):
        losses = network(images, targets)
    loss = sum(losses.values())
    if not _finite_everywhere(loss, world_size):
        values = ", ".join(f"{k}={v.item():.4g}" for k, v in losses.items())
        kept = (f"the last good checkpoint is {last_path}" if last_path.exists()
                else "no checkpoint was written yet")
        raise NonFiniteLossError(f"step {run.step}: the loss is not finite ({values}); stopping, {kept}")
    run.optimizer.zero_grad(set_to_none=True)
    run.scaler.scale(loss).backward()
    if settings.clip_grad_norm:
        run.scaler.unscale_(run.optimizer)  # clip the true gradients, not the scaled ones
        torch.nn.utils.clip_grad_norm_(run.parameters, settings.clip_grad_norm)
    run.scaler.step(run.optimizer)
    run.scaler.update()
    run.scheduler.step()
    run.step += 1
    return losses


def _save(path: Path, run: _Run, settings: TrainSettings, **extra) -> Path:
    """A checkpoint from which ``_restore`` continues exactly (rank 0 writes it, atomically)."""
    return save_checkpoint(
        path, run.model, optimizer=run.optimizer.state_dict(), scheduler=run.scheduler.state_dict(),
        scaler=run.scaler.state_dict(), step=run.step, settings=dataclasses.asdict(settings),
        rng=_rng_state(), best_ap=run.best_ap, **extra,
    )


def _save_interrupted(path: Path, run: _Run, settings: TrainSettings) -> None:
    """Ctrl-C: save the run so far (``_save``) and say how to continue it."""
    _save(path, run, settings)
    print(f"\ninterrupted at step {run.step}: saved {path}; continue with resume=True (--resume)")


def _maybe_validate(run: _Run, dataset, evaluate_fn, settings: TrainSettings, log, out_dir: Path,
                    rank: int) -> None:
    """At the end and every ``eval_every`` steps: score ``dataset``, log it, keep the best model.

    ``best.pt`` (and ``best_metrics.json``) are written when the mask AP improves, except at a
    validation that ends the run with none before it: then the only candidate is ``last.pt`` itself,
    and ``best_metrics.json`` says so instead of a second copy of the weights.
    """
    end = run.step == settings.steps
    if dataset is None or not (end or (settings.eval_every and run.step % settings.eval_every == 0)):
        return
    metrics = _evaluate(run.model, dataset, evaluate_fn)
    # A set without a single object has no AP (None): it cannot choose a best checkpoint.
    mask_ap = metrics["segm"]["AP"] if metrics["segm"]["AP"] is not None else -1.0
    validated_before = run.best_ap > -1
    improved = mask_ap > run.best_ap
    run.best_ap = max(run.best_ap, mask_ap)
    if rank == 0:
        log.validation(run.step, metrics, run.model, dataset)
        if improved and (validated_before or not end):
            _save(out_dir / "best.pt", run, settings, metrics=metrics)
            write_json(out_dir / "best_metrics.json", {"step": run.step, "checkpoint": "best.pt", **metrics})
        elif improved:
            write_json(out_dir / "best_metrics.json", {"step": run.step, "checkpoint": "last.pt", **metrics})
    run.model.train()


def _evaluate(model, dataset, evaluate_fn) -> dict:
    """Metrics ``{"bbox": ..., "segm": ...}`` from ``evaluate_fn(model, dataset)``, by default COCO's."""
    if evaluate_fn is None:
        from ..evaluation.coco import coco_evaluate

        def evaluate_fn(m, d):
            return coco_evaluate(m, d, progress=False)[0]

    # Validation must not move the random state that training draws from (samplers, augmentation):
    # a run with validations trains exactly the weights of a run without.
    devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        return evaluate_fn(model, dataset)
