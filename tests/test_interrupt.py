"""Ctrl-C during training: the run stops at the end of the step, saves, and resumes exactly.

Each run is a subprocess that sends itself SIGINT at a chosen moment, as a terminal's Ctrl-C does
(a KeyboardInterrupt in the test process itself would stop pytest).
"""
import subprocess
import sys
import textwrap
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent

RUN = textwrap.dedent("""
    import hashlib, os, signal, sys
    import torch
    from maskrcnn_edu import MaskRCNN, shapes
    from maskrcnn_edu.data import ShapesDataset
    from maskrcnn_edu.training import TrainSettings, fit

    out, mode = sys.argv[1], sys.argv[2]
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = MaskRCNN(shapes(fpn_channels=32, representation_size=64, mask_layers=(16,),
                            rpn_batch_size_per_image=64, box_batch_size_per_image=32,
                            rpn_pre_nms_top_n_train=200, rpn_post_nms_top_n_train=100))
    settings = TrainSettings(steps=6, batch_size=2, lr=0.01, warmup_steps=2, checkpoint_every=100)
    ctrl_c = lambda: os.kill(os.getpid(), signal.SIGINT)
    if mode in ("mid-step", "twice"):
        calls = []
        def third_box_head(module, inputs, output):  # the third step, after the backbone's BatchNorm moved
            calls.append(1)
            if len(calls) == 3:
                ctrl_c()
        model.roi_heads.box_head.register_forward_hook(third_box_head)
    if mode == "twice":  # a second Ctrl-C lands while the checkpoint is being written
        import maskrcnn_edu.weights as weights
        real_save = torch.save
        def save_interrupted(*args, **kwargs):
            ctrl_c()
            return real_save(*args, **kwargs)
        weights.torch.save = save_interrupted
    try:
        fit(model, ShapesDataset(32, seed=5), out, settings, progress=False, resume=mode == "resume")
    except KeyboardInterrupt:
        print("stopped")
        sys.exit(0)
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(tensor.detach().float().numpy().tobytes())
    print("weights", digest.hexdigest())
""")


def run(out: Path, mode: str) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-c", RUN, str(out), mode], cwd=ROOT, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def test_ctrl_c_mid_step_stops_after_the_step_and_resumes_to_the_uninterrupted_weights(tmp_path):
    plain = run(tmp_path / "plain", "plain").stdout.split()[-1]
    stopped = run(tmp_path / "stopped", "mid-step")
    assert stopped.stdout.split("\n")[-2:] == ["stopped", ""] and "interrupted at step 3" in stopped.stdout
    assert "Ctrl-C: stopping after this step, then saving" in stopped.stderr
    checkpoint = torch.load(tmp_path / "stopped" / "last.pt", weights_only=True)
    assert checkpoint["step"] == 3  # the interrupted step finished before the save
    resumed = run(tmp_path / "stopped", "resume").stdout.split()[-1]
    assert resumed == plain


def test_a_second_ctrl_c_while_saving_waits_for_the_checkpoint(tmp_path):
    stopped = run(tmp_path / "twice", "twice")
    assert stopped.stdout.split("\n")[-2:] == ["stopped", ""] and "interrupted at step 3" in stopped.stdout
    assert "Ctrl-C: saving the checkpoint, please wait" in stopped.stderr
    assert "Traceback" not in stopped.stderr
    checkpoint = torch.load(tmp_path / "twice" / "last.pt", weights_only=True)
    assert checkpoint["step"] == 3 and "model" in checkpoint and "optimizer" in checkpoint
