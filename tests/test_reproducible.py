"""Training on a CPU is reproducible: the same run, twice, gives the same weights, bit for bit."""
import hashlib
import os
import subprocess
import sys
import textwrap

import torch

from maskrcnn_edu import cli
from maskrcnn_edu.training import recipes

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# A few steps of a thin Shapes model from seeded initial weights, with two intra-op threads (where
# sums split across threads would show any order-dependent reduction); prints a hash of the weights.
SHORT_RUN = textwrap.dedent("""
    import hashlib, sys, tempfile
    import torch
    from maskrcnn_edu.config import shapes
    from maskrcnn_edu.data import ShapesDataset
    from maskrcnn_edu.model import MaskRCNN
    from maskrcnn_edu.training import TrainSettings, fit

    torch.set_num_threads(2)
    torch.manual_seed(0)
    model = MaskRCNN(shapes(fpn_channels=32, representation_size=64, mask_layers=(16,)))
    settings = TrainSettings(steps=4, batch_size=2, optimizer="adamw", lr=1e-3, warmup_steps=2,
                             checkpoint_every=100)
    with tempfile.TemporaryDirectory() as out:
        fit(model, ShapesDataset(32, seed=1), out, settings, progress=False)
    weights = model.state_dict()
    print(hashlib.sha256(b"".join(weights[k].numpy().tobytes() for k in sorted(weights))).hexdigest())
""")


def weights_hash(state_dict):
    return hashlib.sha256(b"".join(state_dict[k].numpy().tobytes() for k in sorted(state_dict))).hexdigest()


def test_two_processes_train_the_same_weights():
    """Each process starts with a different default RNG state: only the seeds may decide the result."""
    environment = {**os.environ, "OMP_NUM_THREADS": "2"}
    hashes = [subprocess.run([sys.executable, "-c", SHORT_RUN], cwd=ROOT, env=environment,
                             capture_output=True, text=True, check=True).stdout.split()[-1]
              for _ in range(2)]
    assert hashes[0] == hashes[1]


def test_the_train_command_twice_gives_the_same_weights(tmp_path, monkeypatch):
    """``maskrcnn-edu train`` twice, in one process: the global RNG is in another state the second time."""
    monkeypatch.setattr(recipes, "SHAPES_VAL_IMAGES", 2)  # a quick validation
    hashes = []
    for run in ("a", "b"):
        assert cli.main(["train", "--steps", "1", "--batch-size", "2", "--out", str(tmp_path / run)]) == 0
        hashes.append(weights_hash(torch.load(tmp_path / run / "last.pt", weights_only=True)["model"]))
    assert hashes[0] == hashes[1]
