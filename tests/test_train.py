"""The training loop: learning, exact resume, safe checkpoints, non-finite losses, DDP."""
import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from maskrcnn_edu.training import loop as train
from maskrcnn_edu.training.log import TrainingLog
from maskrcnn_edu.config import coco_r50_fpn, shapes
from maskrcnn_edu.data import CocoDataset, ShapesDataset, collate
from maskrcnn_edu.model import MaskRCNN
from maskrcnn_edu.training import (LAYER_STAGES, NonFiniteLossError, TrainSettings, fit, lr_factor,
                                   set_trainable_layers, trainable_parameter_counts)
from maskrcnn_edu.model import load_checkpoint

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# A small, quick model: the Shapes preset with a thin FPN and few RoIs.
TINY = dict(fpn_channels=32, representation_size=64, mask_layers=(16,), rpn_batch_size_per_image=64,
            box_batch_size_per_image=32, rpn_pre_nms_top_n_train=200, rpn_post_nms_top_n_train=100)


def tiny_model(seed=0, **changes):
    torch.manual_seed(seed)
    return MaskRCNN(shapes(**{**TINY, **changes}))


def quick(**changes):
    base = dict(steps=4, batch_size=2, lr=0.01, warmup_steps=2, checkpoint_every=2, log_every=1)
    return TrainSettings(**{**base, **changes})


def fixed_batch_loss(model, dataset, indices=(0, 1, 2, 3)):
    images, targets = collate([dataset[i] for i in indices])
    torch.manual_seed(123)  # the same anchor/RoI samples every time
    model.train()
    with torch.no_grad():
        return sum(model(images, targets).values()).item()


def test_a_few_steps_on_shapes_reduce_the_loss(tmp_path):
    model, data = tiny_model(), ShapesDataset(64, seed=5)
    before = fixed_batch_loss(model, data)
    settings = quick(steps=25, batch_size=4, lr=0.02, warmup_steps=5, checkpoint_every=100)
    fit(model, data, tmp_path, settings, progress=False)
    assert fixed_batch_loss(model, data) < 0.8 * before


def test_one_step_on_a_tiny_coco_format_sample(tmp_path):
    data = CocoDataset(os.path.join(ROOT, "data/coco_edge_cases/images"),
                       os.path.join(ROOT, "data/coco_edge_cases/annotations.json"))
    model = tiny_model(num_classes=len(data.class_names), class_names=tuple(data.class_names), min_size=64,
                       max_size=96)
    summary = fit(model, data, tmp_path, quick(steps=1, batch_size=2), progress=False)
    assert summary["steps"] == 1 and (tmp_path / "last.pt").exists()


class InterruptAt(torch.utils.data.Dataset):
    """Shapes, but reading item ``stop_after`` raises KeyboardInterrupt, as a Ctrl-C would."""

    def __init__(self, dataset, stop_after):
        self.dataset, self.stop_after, self.reads = dataset, stop_after, 0

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, index):
        if self.reads == self.stop_after:
            raise KeyboardInterrupt
        self.reads += 1
        return self.dataset[index]


def test_resume_is_exact_and_ctrl_c_saves(tmp_path):
    data = ShapesDataset(16, seed=6)
    settings = quick(steps=5, checkpoint_every=100)  # only Ctrl-C and the end write checkpoints
    straight = tiny_model()
    fit(straight, data, tmp_path / "straight", settings, progress=False)

    interrupted = tiny_model()
    with pytest.raises(KeyboardInterrupt):
        fit(interrupted, InterruptAt(data, stop_after=2 * 2), tmp_path / "resumed", settings, progress=False)
    assert load_checkpoint(tmp_path / "resumed" / "last.pt")[1]["step"] == 2
    resumed = tiny_model(seed=99)  # different initial weights: everything must come from the checkpoint
    fit(resumed, data, tmp_path / "resumed", settings, resume=True, progress=False)
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        torch.testing.assert_close(b, a, atol=1e-6, rtol=0, msg=name)


def test_a_kill_during_a_checkpoint_write_keeps_the_previous_one(tmp_path):
    """Write checkpoints in a loop in another process and SIGKILL it at random moments."""
    path = tmp_path / "last.pt"
    writer = textwrap.dedent(f"""
        import torch
        from maskrcnn_edu import MaskRCNN, shapes
        from maskrcnn_edu.weights import save_checkpoint
        model = MaskRCNN(shapes())
        step = 0
        while True:
            step += 1
            save_checkpoint({str(path)!r}, model, step=step, padding=torch.zeros(2_000_000))
    """)
    rng = random.Random(0)
    for _ in range(3):
        process = subprocess.Popen([sys.executable, "-c", writer])
        deadline = time.time() + 60
        while not path.exists() and time.time() < deadline:
            time.sleep(0.05)
        time.sleep(rng.uniform(0.05, 0.6))
        process.send_signal(signal.SIGKILL)
        process.wait()
        model, checkpoint = load_checkpoint(path)  # the last complete write loads
        assert checkpoint["step"] >= 1


def test_non_finite_loss_stops_with_a_clear_message(tmp_path, monkeypatch):
    model, data = tiny_model(), ShapesDataset(16, seed=7)
    forward = model.forward
    calls = {"n": 0}

    def poisoned(images, targets=None):
        losses = forward(images, targets)
        calls["n"] += 1
        if calls["n"] == 4:  # step index 3 (0-based)
            losses["loss_mask"] = losses["loss_mask"] * float("nan")
        return losses

    monkeypatch.setattr(model, "forward", poisoned)
    message = r"step 3: the loss is not finite \(.*loss_mask=nan.*\).*last good checkpoint is .*last.pt"
    with pytest.raises(NonFiniteLossError, match=message):
        fit(model, data, tmp_path, quick(steps=6, checkpoint_every=2), progress=False)
    assert load_checkpoint(tmp_path / "last.pt")[1]["step"] == 2


def test_lr_schedule_and_layer_stages():
    settings = TrainSettings(steps=100, warmup_steps=10, warmup_factor=0.001, schedule="step",
                             lr_milestones=(50, 80))
    assert lr_factor(0, settings) == pytest.approx(0.001)
    assert lr_factor(10, settings) == 1.0 and lr_factor(60, settings) == pytest.approx(0.1)
    assert lr_factor(90, settings) == pytest.approx(0.01)
    cosine = TrainSettings(steps=100, warmup_steps=0)
    assert lr_factor(50, cosine) == pytest.approx(0.5)
    assert lr_factor(100, cosine) == pytest.approx(0.0, abs=1e-12)
    model = tiny_model()
    set_trainable_layers(model, "heads")
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(not n.startswith("backbone.body.") for n in trainable)
    set_trainable_layers(model, "4+")
    assert any(n.startswith("backbone.body.layer3.") for n, p in model.named_parameters() if p.requires_grad)
    assert not any(n.startswith("backbone.body.layer2.")
                   for n, p in model.named_parameters() if p.requires_grad)


# --- best.pt: only when a validation chose it ------------------------------------------------------------


def scripted_evaluation(mask_aps):
    """An ``evaluate_fn`` that returns the given mask APs in turn (and records the steps it ran at)."""
    calls = []

    def evaluate(model, dataset):
        ap = mask_aps[len(calls)]
        calls.append(ap)
        return {kind: {"AP": ap, "AP50": ap, "AP75": ap} for kind in ("bbox", "segm")}

    return evaluate


def test_no_best_checkpoint_when_only_the_end_was_validated(tmp_path):
    model, data = tiny_model(), ShapesDataset(8, seed=5)
    summary = fit(model, data, tmp_path, quick(steps=2), val_dataset=ShapesDataset(2, seed=9),
                  evaluate_fn=scripted_evaluation([0.3]), progress=False)
    assert (tmp_path / "last.pt").exists() and not (tmp_path / "best.pt").exists()
    assert summary["best"] is None and summary["best_ap"] == 0.3
    best = json.loads((tmp_path / "best_metrics.json").read_text())
    assert best["checkpoint"] == "last.pt" and best["step"] == 2 and best["segm"]["AP"] == 0.3


@pytest.mark.parametrize("mask_aps, best_step", [([0.5, 0.3, 0.4], 1), ([0.2, 0.5, 0.7], 3)])
def test_best_checkpoint_holds_the_best_validation(tmp_path, mask_aps, best_step):
    model, data = tiny_model(), ShapesDataset(8, seed=5)
    summary = fit(model, data, tmp_path, quick(steps=3, eval_every=1), val_dataset=ShapesDataset(2, seed=9),
                  evaluate_fn=scripted_evaluation(mask_aps), progress=False)
    assert summary["best"] == str(tmp_path / "best.pt") and summary["best_ap"] == max(mask_aps)
    best = load_checkpoint(tmp_path / "best.pt")[1]
    assert best["step"] == best_step and best["best_ap"] == max(mask_aps)
    assert json.loads((tmp_path / "best_metrics.json").read_text())["checkpoint"] == "best.pt"


# --- a steady ETA ------------------------------------------------------------------------------------------


def test_the_eta_divides_by_the_mean_step_time_of_the_run(tmp_path):
    """Ten steps of 0.3 s, then one of 6 s (another process took a core): the ETA uses the mean, 0.82 s.

    (tqdm's default average forgets within a few steps: it took 2.0 s a step here, 2.5 times the mean.)
    """
    log = TrainingLog(tmp_path, quick(steps=100), start_step=0, enabled=True, progress=True)
    clock = [0.0]
    log.bar._time = lambda: clock[0]  # tqdm reads its clock through this attribute
    log.bar.start_t = log.bar.last_print_t = 0.0
    losses = {"loss_mask": torch.tensor(1.0)}
    for step, seconds in enumerate([0.3] * 10 + [6.0], start=1):
        clock[0] += seconds
        log.step(step, losses, lr=0.01)
    meter = log.bar.format_dict
    rate = meter["rate"] or (meter["n"] - meter["initial"]) / meter["elapsed"]  # tqdm's own rule for the ETA
    log.close()
    assert (100 - 11) / rate == pytest.approx((100 - 11) * (10 * 0.3 + 6.0) / 11, rel=1e-6)


# --- which parameters train: one rule for Config.trainable_layers and the stages ------------------------


def tiny_coco_model():
    """The COCO preset (trainable_layers=3, frozen BatchNorm) on a body and images small enough for a test."""
    torch.manual_seed(0)
    return MaskRCNN(coco_r50_fpn(num_classes=4, backbone="resnet18", min_size=128, max_size=128, **TINY))


def trainable_groups(model):
    """The top-level groups (``backbone.body.conv1``, ``backbone.body.layer1``, ..., ``rpn``) -> whether
    all train."""
    groups = {}
    for name, p in model.named_parameters():
        parts = name.split(".")
        depth = 3 if name.startswith("backbone.body.") else 2 if name.startswith("backbone.") else 1
        group = ".".join(parts[:depth])
        groups.setdefault(group, set()).add(p.requires_grad)
    return {group: flags == {True} for group, flags in groups.items() if len(flags) == 1}


def test_the_coco_preset_trains_what_torchvisions_recipe_trains(tmp_path):
    """Default settings follow the model's Config: conv1 and layer1 frozen, layer2..4 and the rest train."""
    model, data = tiny_coco_model(), ShapesDataset(8, seed=5)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    fit(model, data, tmp_path, quick(steps=1), progress=False)
    groups = trainable_groups(model)
    assert not groups["backbone.body.conv1"] and not groups["backbone.body.layer1"]
    assert all(groups[f"backbone.body.layer{k}"] for k in (2, 3, 4))
    assert groups["backbone.fpn"] and groups["rpn"] and groups["roi_heads"]
    for name, p in model.named_parameters():
        assert torch.equal(p, before[name]) != p.requires_grad, f"{name}: requires_grad {p.requires_grad}"


def test_the_shapes_preset_trains_everything():
    model = tiny_model()
    set_trainable_layers(model)  # None: the model's Config.trainable_layers, 5 for shapes()
    assert all(p.requires_grad for p in model.parameters())


def test_heads_stage_trains_only_fpn_rpn_and_heads(tmp_path):
    model, data = tiny_coco_model(), ShapesDataset(8, seed=5)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    fit(model, data, tmp_path, quick(steps=1, layers="heads"), progress=False)
    trainable = {n.split(".")[0] + ("." + n.split(".")[1] if n.startswith("backbone.") else "")
                 for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"backbone.fpn", "rpn", "roi_heads"}
    assert all(torch.equal(p, before[n])
               for n, p in model.named_parameters() if n.startswith("backbone.body."))


@pytest.mark.parametrize("trainable_layers", range(6))
def test_freezing_matches_torchvisions_rule(trainable_layers):
    """The same ResNet parameters train as in torchvision's resnet_fpn_backbone, for every count 0..5."""
    from torchvision.models.detection.backbone_utils import resnet_fpn_backbone

    theirs = resnet_fpn_backbone(backbone_name="resnet18", weights=None, norm_layer=torch.nn.BatchNorm2d,
                                 trainable_layers=trainable_layers)
    expected = {n[len("body."):] for n, p in theirs.named_parameters()
                if n.startswith("body.") and p.requires_grad}
    model = MaskRCNN(shapes(trainable_layers=trainable_layers))  # norm="bn": bn1 has parameters to freeze
    ours = {n[len("backbone.body."):] for n, p in model.named_parameters()
            if n.startswith("backbone.body.") and p.requires_grad}
    assert ours == expected
    stage = {0: "heads", 1: "5+", 2: "4+", 3: "3+", 5: "all"}.get(trainable_layers)
    if stage is not None:  # the stage of the same count applies the same rule
        set_trainable_layers(model, "heads" if stage != "heads" else "all")
        set_trainable_layers(model, stage)
        assert {n[len("backbone.body."):] for n, p in model.named_parameters()
                if n.startswith("backbone.body.") and p.requires_grad} == expected


def test_trainable_parameter_counts_per_stage():
    model = tiny_coco_model()
    counts = trainable_parameter_counts(model)
    assert list(counts) == list(LAYER_STAGES)
    assert counts["all"] == sum(p.numel() for p in model.parameters())
    assert counts["heads"] < counts["5+"] < counts["4+"] < counts["3+"] < counts["all"]
    flags = [p.requires_grad for p in model.parameters()]
    for stage, count in counts.items():
        trained = set_trainable_layers(model, stage)
        assert trained == count == sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert set_trainable_layers(model) == counts["3+"]  # the COCO preset is stage "3+"
    assert [p.requires_grad for p in model.parameters()] == flags


def test_bad_layers_name_raises():
    with pytest.raises(ValueError, match=r"layers must be None .*'heads'.*got '6\+'"):
        TrainSettings(layers="6+")


# --- DDP: two gloo processes with one image each take the same step as one process with both ----------

# Per-image loss terms must weigh the same in both set-ups: no random sampling (take every
# anchor and RoI), no "ignore" band, the same number of RoIs and positives per image, and no batch
# statistics (frozen BatchNorm).
DDP_CONFIG = dict(norm="frozen_bn", rpn_fg_iou_thresh=0.5, rpn_bg_iou_thresh=0.5,
                  rpn_batch_size_per_image=10**6, rpn_positive_fraction=1.0, rpn_post_nms_top_n_train=40,
                  box_batch_size_per_image=10**6, box_positive_fraction=1.0, box_fg_iou_thresh=0.99,
                  box_bg_iou_thresh=0.99)


class TwoObjectShapes(torch.utils.data.Dataset):
    """Shapes images that hold exactly two objects."""

    def __init__(self):
        source = ShapesDataset(200, seed=8)
        self.items = [source[i] for i in range(200) if len(source[i][1]["labels"]) == 2][:2]

    def __len__(self):
        return 2

    def __getitem__(self, i):
        return self.items[i]


def _ddp_worker(rank, world_size, init_file, out_dirs, result_file):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    torch.set_num_threads(1)
    model = tiny_model(**DDP_CONFIG)
    settings = quick(steps=3, batch_size=2, amp=False, checkpoint_every=1)
    fit(model, TwoObjectShapes(), out_dirs[rank], settings, progress=False)
    if rank == 0:
        torch.save(model.state_dict(), result_file)
    dist.destroy_process_group()


def test_ddp_two_processes_take_the_same_step_as_one(tmp_path):
    single = tiny_model(**DDP_CONFIG)
    settings = quick(steps=3, batch_size=2, checkpoint_every=1)
    fit(single, TwoObjectShapes(), tmp_path / "single", settings, progress=False)

    out_dirs = [str(tmp_path / "rank0"), str(tmp_path / "rank1")]
    mp.spawn(_ddp_worker, args=(2, str(tmp_path / "init"), out_dirs, str(tmp_path / "ddp.pt")), nprocs=2,
             join=True)
    ddp_weights = torch.load(tmp_path / "ddp.pt")
    for name, value in single.state_dict().items():
        torch.testing.assert_close(ddp_weights[name], value, atol=1e-5, rtol=0, msg=name)
    assert (tmp_path / "rank0" / "last.pt").exists()
    assert not os.path.exists(out_dirs[1]) or not os.listdir(out_dirs[1])  # rank 1 wrote nothing


def test_tensorboard_logs_the_lr_each_step_used(tmp_path):
    """The lr logged with a step's losses is the one that step used (warm-up starts at lr * warmup_factor)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from maskrcnn_edu.training import lr_factor

    settings = quick(steps=3)
    fit(tiny_model(), ShapesDataset(8, seed=5), tmp_path, settings, progress=False)
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    logged = {e.step: e.value for e in events.Scalars("lr")}
    # Logged at step s + 1 (steps done), the rate of update s.
    expected = {s + 1: settings.lr * lr_factor(s, settings) for s in range(settings.steps)}
    assert logged == pytest.approx(expected)


def test_validation_during_training_does_not_change_the_weights(tmp_path):
    """Validation draws random numbers (a DataLoader); ``fit`` keeps them away from the training's."""
    data, val = ShapesDataset(16, seed=5), ShapesDataset(2, seed=6)
    plain, validated = tiny_model(), tiny_model()
    fit(plain, data, tmp_path / "plain", quick(steps=4, eval_every=0), progress=False)
    fit(validated, data, tmp_path / "validated", quick(steps=4, eval_every=2), val_dataset=val,
        progress=False)
    for (name, a), b in zip(plain.state_dict().items(), validated.state_dict().values()):
        assert torch.equal(a, b), name


def test_channels_last_trains_the_same_model_up_to_rounding(tmp_path):
    data = ShapesDataset(16, seed=5)
    plain, nhwc = tiny_model(), tiny_model()
    fit(plain, data, tmp_path / "plain", quick(steps=1), progress=False)
    fit(nhwc, data, tmp_path / "nhwc", quick(steps=1, channels_last=True), progress=False)
    stem = nhwc.backbone.body.conv1.weight
    assert stem.is_contiguous(memory_format=torch.channels_last)
    assert not plain.backbone.body.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    for (name, a), b in zip(plain.state_dict().items(), nhwc.state_dict().values()):
        torch.testing.assert_close(a, b, atol=2e-4, rtol=1e-3, msg=name)
    # A channels_last checkpoint loads as any other.
    reloaded, _ = load_checkpoint(tmp_path / "nhwc" / "last.pt")
    torch.testing.assert_close(reloaded.state_dict()["backbone.body.conv1.weight"], stem.detach())


def test_cpu_bf16_runs_the_convolutions_in_bf16_and_keeps_float32_weights(tmp_path):
    data = ShapesDataset(16, seed=5)
    plain, mixed = tiny_model(), tiny_model()
    seen = []
    mixed.backbone.body.conv1.register_forward_hook(lambda module, inputs, output: seen.append(output.dtype))
    fit(plain, data, tmp_path / "plain", quick(steps=1, warmup_steps=0), progress=False)
    fit(mixed, data, tmp_path / "bf16", quick(steps=1, warmup_steps=0, cpu_bf16=True), progress=False)
    assert seen == [torch.bfloat16]  # the one training forward ran its convolutions in bf16
    assert all(p.dtype == torch.float32 for p in mixed.parameters())
    # The same step, from the same start, in float32 and in bf16: the same update up to bf16's rounding
    # (bf16 keeps ~3 significant digits of every product, so the step's direction survives).
    moved = [(b - a).abs().max().item() for a, b in zip(tiny_model().parameters(), plain.parameters())]
    differ = [(b - a).abs().max().item() for a, b in zip(plain.parameters(), mixed.parameters())]
    assert max(moved) > 1e-3 and max(differ) < 0.5 * max(moved)
    with torch.no_grad():  # outside training nothing is autocast: evaluation stays float32
        mixed.eval()
        assert mixed([data[0][0]])[0]["boxes"].dtype == torch.float32
    again = tiny_model()  # and bf16 training is as reproducible as float32's: the same call, the same weights
    fit(again, data, tmp_path / "bf16-again", quick(steps=1, warmup_steps=0, cpu_bf16=True), progress=False)
    for (name, a), b in zip(mixed.state_dict().items(), again.state_dict().values()):
        assert torch.equal(a, b), name


def test_cpu_has_native_bf16_reads_the_cpu_flags(monkeypatch, tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    real_path = train.Path

    def fake_path(name):
        return cpuinfo if name == "/proc/cpuinfo" else real_path(name)

    monkeypatch.setattr(train, "Path", fake_path)
    cpuinfo.write_text("flags\t\t: fpu sse avx2 avx512f avx512_bf16\n")
    assert train.cpu_has_native_bf16()
    cpuinfo.write_text("flags\t\t: fpu sse avx2 avx512f\n")
    assert not train.cpu_has_native_bf16()
    cpuinfo.unlink()
    assert not train.cpu_has_native_bf16()
