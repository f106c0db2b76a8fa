"""The model on a GPU: does it detect what it detects on the CPU, train under AMP, keep pace with
torchvision's, and train under torchrun? One command, each check a section, results to JSON.

    python benchmarks/gpu.py [--json benchmarks/results/gpu.json] [--sections cpu_vs_gpu train_amp ...]
                             [--train-steps 100] [--rounds 5] [--smoke] [--device cuda]

* ``cpu_vs_gpu``: the shipped model's detections (``data/shapes_model/model.pt``) of 50 Shapes
  test images and one photograph (skimage's coffee), on the CPU and on the GPU (cuDNN's default
  TF32 convolutions, then with TF32 off), matched across devices by box IoU; how many match, how
  far their boxes, scores and masks (> 0.5) are apart, and pass/fail checks at tolerances a reader
  could call "the same detections".
* ``train_amp``: ``--train-steps`` steps of the Shapes recipe (``recipes.shapes_schedule``, from
  scratch) through ``fit`` on the GPU, float16 autocast with loss scaling; every step's losses
  (a forward hook), whether they are finite and fall, seconds per step.
* ``pace``: our Mask R-CNN (readable ops, and torchvision's compiled ops) against torchvision's,
  ResNet-50-FPN with the same seeded weights (``inference.build_models``): one training step of
  two photographs under float16 autocast, and inference on one 800 x 1066 photograph (float32,
  TF32 convolutions as cuDNN's default); the models alternate within each of ``--rounds``
  rounds; medians, ratios ours / torchvision.
* ``torchrun``: ``maskrcnn-edu train`` (20 steps of 4 images) launched by
  ``python -m torch.distributed.run --standalone --nproc_per_node=1``: its return code, wall time,
  output's tail, and the process group it ran under (as the process itself reports it).

Each section runs in its own try/except: an error is recorded in the JSON and the next section
runs. The JSON is rewritten after every section, so a run cut short keeps what it finished.
``--smoke`` shrinks everything (2 images, 3 training steps, 1 round, 2 torchrun steps, small
photographs) to check the script itself; ``--device cpu`` (for that check only, on a machine
without a GPU) puts the CPU in the GPU's place: cpu_vs_gpu then compares the CPU with itself,
and torchrun trains on the CPU.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import math
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np
import torch

from maskrcnn_edu.config import shapes
from maskrcnn_edu.data import ShapesDataset
from maskrcnn_edu.evaluation.matching import box_ious, match_by_iou
from maskrcnn_edu.matching import BalancedSampler
from maskrcnn_edu.model import MaskRCNN, load_model
from maskrcnn_edu.training import fit, recipes

from inference import build_models, infer, photo, time_tasks, training_targets  # benchmarks/inference.py
from report import write_report  # benchmarks/report.py

ROOT = Path(__file__).resolve().parent.parent
SHIPPED_MODEL = ROOT / "data" / "shapes_model" / "model.pt"
SECTIONS = ("cpu_vs_gpu", "train_amp", "pace", "torchrun")

# What "the same detections" may honestly mean across devices (float32 on both, but another order
# of summation, and TF32 convolutions by default on the GPU): checked on detections above 0.5.
TOLERANCES = {"box_px": 1.0, "score": 1e-2, "mask_iou": 0.95}

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--json", default="benchmarks/results/gpu.json")
parser.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS), metavar="SECTION",
                    help=f"which sections to run, of {', '.join(SECTIONS)} (default: all)")
parser.add_argument("--train-steps", type=int, default=100, help="train_amp's steps (default 100)")
parser.add_argument("--rounds", type=int, default=5, help="pace's timed rounds (default 5)")
parser.add_argument("--smoke", action="store_true", help="tiny sizes: checks the script, measures nothing")
parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda",
                    help="cuda (default); cpu only to smoke-test the script where there is no GPU")


def synchronize(device: torch.device) -> None:
    """Wait for the GPU's queued work, so that a timer stopped next counts it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def finite_json(value):
    """``value`` with every NaN or infinity written as a string: the package's JSON is strict."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {key: finite_json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_json(item) for item in value]
    return value


# ---------------------------------------------------------------------------------------------
# cpu_vs_gpu
# ---------------------------------------------------------------------------------------------


@contextlib.contextmanager
def tf32(allowed: bool | None):
    """``with tf32(False):`` convolutions and matrix products in full float32 on the GPU;
    ``tf32(None)``: as they are (PyTorch's defaults: TF32 convolutions, float32 products)."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    if allowed is not None:
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = allowed
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def detections_on(model: MaskRCNN, images: list, device: torch.device) -> list[dict]:
    """``model``'s detections of each image, computed on ``device``, back on the CPU, masks > 0.5."""
    model.to(device).eval()
    found = []
    with torch.no_grad():
        for image in images:
            d = model([image.to(device)])[0]
            found.append({"boxes": d["boxes"].cpu().double(), "labels": d["labels"].cpu(),
                          "scores": d["scores"].cpu().double(), "masks": (d["masks"][:, 0] > 0.5).cpu()})
    return found


def mask_iou(a: torch.Tensor, b: torch.Tensor) -> float:
    """IoU of two boolean masks; 1 when both are empty (they agree)."""
    union = int((a | b).sum())
    return int((a & b).sum()) / union if union else 1.0


def compare_image(cpu: dict, gpu: dict) -> tuple[list, list, list]:
    """One image's detections on the two devices, matched one to one (box IoU >= 0.5, same class,
    the GPU's best score first; the two lists' orders may differ) -> ``(pairs, cpu, gpu)``: per
    pair ``(cpu score, gpu score, box diff px, score diff, mask IoU)``, per detection of each
    device ``(score, matched)``."""
    matches = match_by_iou(box_ious(cpu["boxes"], gpu["boxes"]), cpu["labels"], gpu["labels"], gpu["scores"])
    pairs = [(float(cpu["scores"][c]), float(gpu["scores"][g]),
              float((cpu["boxes"][c] - gpu["boxes"][g]).abs().max()),
              abs(float(cpu["scores"][c] - gpu["scores"][g])), mask_iou(cpu["masks"][c], gpu["masks"][g]))
             for c, g in matches.pairs]
    cpu_matched, gpu_matched = (set(matches.pairs[:, k].tolist()) for k in (0, 1))
    return (pairs, [(float(s), i in cpu_matched) for i, s in enumerate(cpu["scores"])],
            [(float(s), i in gpu_matched) for i, s in enumerate(gpu["scores"])])


def spread(values: list[float]) -> dict:
    """``{"max", "median", "min"}`` of ``values``; None each when there are none."""
    if not values:
        return {"max": None, "median": None, "min": None}
    return {"max": max(values), "median": statistics.median(values), "min": min(values)}


def agreement(pairs: list, detections: list, threshold: float) -> dict:
    """How the detections scoring ``threshold`` or more agree across the devices: a pair counts
    when either device scores it so, ``fraction_matched`` is of both devices' detections."""
    pairs = [p for p in pairs if max(p[0], p[1]) >= threshold]
    cpu, gpu = detections
    above = [d for d in cpu + gpu if d[0] >= threshold]
    box, score, iou = (spread([p[k] for p in pairs]) for k in (2, 3, 4))
    return {"detections_cpu": sum(s >= threshold for s, _ in cpu),
            "detections_gpu": sum(s >= threshold for s, _ in gpu),
            "pairs": len(pairs),
            "fraction_matched": sum(m for _, m in above) / len(above) if above else 1.0,
            "box_diff_px": {"max": box["max"], "median": box["median"]},
            "score_diff": {"max": score["max"], "median": score["median"]},
            "mask_iou": {"min": iou["min"], "median": iou["median"]}}


def compare(cpu_found: list[dict], gpu_found: list[dict]) -> dict:
    """Every image's detections on both devices compared, above 0.5 and all, with the checks."""
    pairs, cpu, gpu = [], [], []
    for cpu_image, gpu_image in zip(cpu_found, gpu_found):
        image_pairs, image_cpu, image_gpu = compare_image(cpu_image, gpu_image)
        pairs, cpu, gpu = pairs + image_pairs, cpu + image_cpu, gpu + image_gpu
    above, every = (agreement(pairs, (cpu, gpu), t) for t in (0.5, 0.0))
    return {"above_0.5": above, "all": every, "checks": checks(above)}


def checks(above: dict) -> dict:
    """Pass/fail of the detections above 0.5 at ``TOLERANCES`` (no pairs: nothing to differ)."""
    box, score, iou = above["box_diff_px"]["max"], above["score_diff"]["max"], above["mask_iou"]["min"]
    return {"all_matched": above["fraction_matched"] == 1.0,
            "box_diff_below_tolerance": box is None or box < TOLERANCES["box_px"],
            "score_diff_below_tolerance": score is None or score < TOLERANCES["score"],
            "mask_iou_above_tolerance": iou is None or iou > TOLERANCES["mask_iou"]}


def cpu_vs_gpu(args, device: torch.device, result: dict) -> None:
    """The shipped model's detections on the CPU against those on ``device``, Shapes and a photo."""
    count = 2 if args.smoke else 50
    test_set = ShapesDataset(recipes.SHAPES_TEST_IMAGES, seed=recipes.SHAPES_TEST_SEED)
    groups = {f"shapes ({count} test images)": [test_set[i][0] for i in range(count)],
              "photo (skimage coffee)": [photo("coffee", *((100, 150) if args.smoke else (400, 600)))]}
    model = load_model(SHIPPED_MODEL)
    # TF32 matters on the GPU only; on the CPU both variants would be the same run.
    variants = {"gpu defaults": None, "gpu tf32 off": False}
    if device.type == "cpu":
        variants = {"cpu again": None}
    result["tf32_default"] = {"cudnn": torch.backends.cudnn.allow_tf32,
                              "matmul": torch.backends.cuda.matmul.allow_tf32}
    for group, images in groups.items():
        cpu_found = detections_on(model, images, torch.device("cpu"))
        for variant, allowed in variants.items():
            with tf32(allowed):
                gpu_found = detections_on(model, images, device)
            result[f"{group}, {variant}"] = compared = compare(cpu_found, gpu_found)
            above = compared["above_0.5"]
            print(f"  {group}, {variant}: matched {above['fraction_matched']:.3f} above 0.5, "
                  f"box diff max {above['box_diff_px']['max']}, score diff max {above['score_diff']['max']}")


# ---------------------------------------------------------------------------------------------
# train_amp
# ---------------------------------------------------------------------------------------------


def mean_total(steps: list[dict]) -> float:
    """The mean over ``steps`` of each step's summed losses."""
    return statistics.mean(sum(losses.values()) for losses in steps)


def train_amp(args, device: torch.device, result: dict) -> None:
    """The Shapes recipe for ``--train-steps`` steps from scratch on ``device`` (AMP on CUDA)."""
    steps = 3 if args.smoke else args.train_steps
    settings = recipes.shapes_schedule(steps=steps)
    torch.manual_seed(0)
    model = MaskRCNN(shapes())
    losses, stamps = result.setdefault("losses", []), []

    def record(module, inputs, output):
        # float() waits for the GPU: the step's time then includes its own work, not the queue's.
        if module.training:
            losses.append({key: float(value.detach()) for key, value in output.items()})
            stamps.append(time.perf_counter())

    result.update(steps=steps, amp=settings.amp and device.type == "cuda",
                  settings=dataclasses.asdict(settings))
    model.register_forward_hook(record)
    with tempfile.TemporaryDirectory() as out_dir:
        start = time.perf_counter()
        fit(model, recipes.shapes_training_set(), out_dir, settings, device=device, progress=False)
        # the whole fit: its data loader's start and checkpoint write included
        result["seconds_per_step"] = (time.perf_counter() - start) / steps
    gaps = np.diff(stamps)  # forward to forward: one whole step, after the first
    result["median_seconds_between_steps"] = float(np.median(gaps)) if len(gaps) else None
    window = min(20, len(losses) // 2) or 1
    result["all_finite"] = all(math.isfinite(v) for step in losses for v in step.values())
    result["mean_total_first"] = mean_total(losses[:window])
    result["mean_total_last"] = mean_total(losses[-window:])
    result["loss_falls"] = result["mean_total_last"] < result["mean_total_first"]
    print(f"  {steps} steps, {result['seconds_per_step']:.3f} s/step; total loss of the first {window} "
          f"{result['mean_total_first']:.3f}, of the last {window} {result['mean_total_last']:.3f}")


# ---------------------------------------------------------------------------------------------
# pace
# ---------------------------------------------------------------------------------------------


def amp_train_step(model, images, targets) -> None:
    """``inference.train_step`` on the images' device under float16 autocast (on CUDA): every model
    samples with the same seeded generator, made on that device (a CUDA randperm refuses a CPU one)."""
    device = images[0].device
    model.train()
    generator = torch.Generator(device).manual_seed(0)
    if isinstance(model, MaskRCNN):
        model.rpn.sampler.generator = model.roi_heads.sampler.generator = generator
    else:
        model.rpn.fg_bg_sampler = BalancedSampler(256, 0.5, generator)
        model.roi_heads.fg_bg_sampler = BalancedSampler(512, 0.25, generator)
    with torch.autocast(device.type, dtype=torch.float16, enabled=device.type == "cuda"):
        losses = model(images, targets)
    sum(losses.values()).backward()  # no optimizer step, as inference.train_step: the pace is the point
    model.zero_grad(set_to_none=True)


def resize_inputs(models: dict, min_size: int, max_size: int) -> None:
    """Every model resizes its inputs to ``min_size`` / ``max_size`` (800 / 1333 as built): the
    smoke run's small photographs stay small."""
    for name, model in models.items():
        if isinstance(model, MaskRCNN):
            model.config = model.config.replace(min_size=min_size, max_size=max_size)
        else:
            model.transform.min_size, model.transform.max_size = (min_size,), max_size


def pace(args, device: torch.device, result: dict) -> None:
    """Training steps (AMP) and inference, ours against torchvision's, same weights and images."""
    models = {name: model.to(device) for name, model in build_models().items()}
    scale = 0.2 if args.smoke else 1.0  # of the photos' sizes, inference.py's
    if args.smoke:  # small inputs, and two models, not three: a third of the time, the same code
        models.pop("ours (torchvision ops)")
        resize_inputs(models, 160, 214)
    size = (round(800 * scale), round(1066 * scale))
    image = photo("coffee", *size).to(device)
    cpu_images = [photo("astronaut", round(800 * scale), round(800 * scale)),
                  photo("chelsea", round(600 * scale), round(800 * scale))]
    targets = [{key: value.to(device) for key, value in t.items()} for t in training_targets(cpu_images)]
    images = [i.to(device) for i in cpu_images]

    def synced(step):
        return lambda model: (step(model), synchronize(device))

    tasks = {f"inference, 1 image {size[0]}x{size[1]}": synced(lambda model: infer(model, image)),
             "training step (float16 autocast), 2 images":
                 synced(lambda model: amp_train_step(model, images, targets))}
    rounds = 1 if args.smoke else args.rounds
    timed = time_tasks(models, tasks, rounds)
    for rows in timed.values():  # steps (or images) a second, beside the milliseconds
        for row in rows.values():
            row["per_second"] = round(1000 / row["ms"], 3) if row["ms"] else None
    result.update(rounds=rounds, timings=timed)


# ---------------------------------------------------------------------------------------------
# torchrun
# ---------------------------------------------------------------------------------------------

# Run by torchrun in place of `-m maskrcnn_edu`: the package's own __main__, then one line saying
# which process group it trained under (the command itself does not say).
TORCHRUN_ENTRY = '''
import atexit
import runpy

import torch.distributed as dist


def say_backend():
    backend = dist.get_backend() if dist.is_available() and dist.is_initialized() else "none"
    print(f"process group backend: {backend}", flush=True)


atexit.register(say_backend)
runpy.run_module("maskrcnn_edu", run_name="__main__", alter_sys=True)
'''


def tail(text, characters: int = 3000) -> str:
    """The end of a process's output (bytes, as a timeout may leave it, or text)."""
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    return (text or "")[-characters:]


def torchrun(args, device: torch.device, result: dict) -> None:
    """``maskrcnn-edu train`` under ``torch.distributed.run``, one process, into a fresh folder."""
    steps = 2 if args.smoke else 20
    with tempfile.TemporaryDirectory() as tmp:
        entry, out = Path(tmp) / "maskrcnn_edu_train.py", Path(tmp) / "run"
        entry.write_text(TORCHRUN_ENTRY)
        # --standalone: a rendezvous on a free local port, not a fixed one another job may hold.
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1",
                   str(entry), "train", "--steps", str(steps), "--batch-size", "4", "--out", str(out),
                   "--device", device.type]
        result["command"] = " ".join(command)
        start = time.perf_counter()
        limit = 120 if args.smoke else 300
        try:
            done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=limit)
            result.update(returncode=done.returncode, output_tail=tail(done.stdout + done.stderr))
        except subprocess.TimeoutExpired as timeout:
            result.update(returncode=None, timed_out=True,
                          output_tail=tail(timeout.stdout) + tail(timeout.stderr))
        result["wall_s"] = round(time.perf_counter() - start, 2)
        result["checkpoint_written"] = (out / "last.pt").exists()
    said = [line for line in result["output_tail"].splitlines() if line.startswith("process group backend:")]
    result["backend"] = said[-1].split(":", 1)[1].strip() if said else None
    print(f"  return code {result['returncode']} in {result['wall_s']} s, process group: {result['backend']}")


# ---------------------------------------------------------------------------------------------
# The command
# ---------------------------------------------------------------------------------------------


def machine(device: torch.device) -> dict:
    """The accelerator the results were measured on, for the report."""
    if device.type != "cuda":
        return {"device": "cpu (smoke test of the script: no GPU)"}
    return {"device": torch.cuda.get_device_name(device), "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version()}


def run_section(name: str, args, device: torch.device) -> dict:
    """One section -> its results, with ``error`` and ``traceback`` where it failed (what it had
    recorded until then stays), its wall time and, on CUDA, its peak GPU memory."""
    result = {}
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    try:
        SECTION_RUNS[name](args, device, result)
    except Exception as error:  # recorded, and the next section runs
        result.update(error=f"{type(error).__name__}: {error}", traceback=traceback.format_exc()[-4000:])
        print(f"  {name} failed: {result['error']}")
    result["section_s"] = round(time.perf_counter() - start, 2)
    if device.type == "cuda":
        result["peak_gpu_memory_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 3)
        torch.cuda.empty_cache()
    return result


SECTION_RUNS = {"cpu_vs_gpu": cpu_vs_gpu, "train_amp": train_amp, "pace": pace, "torchrun": torchrun}


def main() -> None:
    args = parser.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # progress shows (and survives a kill) line by line
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("benchmarks/gpu.py: no CUDA device here (--device cpu only smoke-tests the script)")
    device = torch.device(args.device)
    details = {**machine(device), "smoke": args.smoke, "sections": args.sections, "tolerances": TOLERANCES}
    results = {}
    for name in args.sections:
        print(f"[{name}]", flush=True)
        results[name] = run_section(name, args, device)
        write_report(args.json, finite_json(results), **details)  # after every section: a timeout keeps them


if __name__ == "__main__":
    main()
