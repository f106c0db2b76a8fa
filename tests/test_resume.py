"""Resuming a run: only what the checkpoint recorded continues; anything else is refused, clearly."""
import dataclasses

import pytest
import torch

from maskrcnn_edu import MaskRCNN, shapes
from maskrcnn_edu.data import ShapesDataset
from maskrcnn_edu.training import TrainSettings, fit

TINY = dict(fpn_channels=32, representation_size=64, mask_layers=(16,), rpn_batch_size_per_image=64,
            box_batch_size_per_image=32, rpn_pre_nms_top_n_train=200, rpn_post_nms_top_n_train=100)
SETTINGS = TrainSettings(steps=2, batch_size=2, lr=0.01, warmup_steps=1, checkpoint_every=100)


def tiny_model(**changes):
    torch.manual_seed(0)
    return MaskRCNN(shapes(**{**TINY, **changes}))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    fit(tiny_model(), ShapesDataset(8, seed=5), out, SETTINGS, progress=False)
    return out


@pytest.mark.parametrize("change", [dict(lr=0.02), dict(batch_size=4), dict(seed=1), dict(optimizer="adamw")])
def test_resume_with_other_settings_is_refused_naming_them(trained, change):
    settings = dataclasses.replace(SETTINGS, steps=3, **change)
    (name, value), = change.items()
    with pytest.raises(ValueError, match=rf"continues a run with other settings \({name} "):
        fit(tiny_model(), ShapesDataset(8, seed=5), trained, settings, resume=True, progress=False)
    assert torch.load(trained / "last.pt", weights_only=True)["step"] == 2  # nothing ran, nothing written


def test_resume_may_run_longer(trained, tmp_path):
    out = tmp_path / "longer"
    out.mkdir()
    (out / "last.pt").write_bytes((trained / "last.pt").read_bytes())
    summary = fit(tiny_model(), ShapesDataset(8, seed=5), out, dataclasses.replace(SETTINGS, steps=3),
                  resume=True, progress=False)
    assert summary["steps"] == 3
    assert torch.load(out / "last.pt", weights_only=True)["settings"]["steps"] == 3


def test_resume_with_another_config_is_one_clear_error(trained):
    with pytest.raises(ValueError, match="was trained with another model config \\(fpn_channels") as error:
        fit(tiny_model(fpn_channels=64), ShapesDataset(8, seed=5), trained, SETTINGS, resume=True,
            progress=False)
    assert "size mismatch" not in str(error.value)


def test_resume_from_a_truncated_checkpoint_names_the_file(trained, tmp_path):
    out = tmp_path / "truncated"
    out.mkdir()
    (out / "last.pt").write_bytes((trained / "last.pt").read_bytes()[:5000])
    with pytest.raises(ValueError, match=f"{out / 'last.pt'} is not a readable checkpoint"):
        fit(tiny_model(), ShapesDataset(8, seed=5), out, SETTINGS, resume=True, progress=False)


def test_a_folder_that_cannot_take_the_checkpoints_is_refused_before_the_first_step(tmp_path):
    """A directory named last.pt would make the first checkpoint fail, after the training it saves."""
    (tmp_path / "last.pt").mkdir()
    model = tiny_model()
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    with pytest.raises(OSError, match="last.pt: something other than a file has that name"):
        fit(model, ShapesDataset(8, seed=5), tmp_path, SETTINGS, progress=False)
    assert all(torch.equal(before[name], tensor) for name, tensor in model.state_dict().items())


def test_a_folder_that_cannot_be_made_is_refused_naming_it(tmp_path):
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(OSError, match="cannot write the run's files into .*file/run"):
        fit(tiny_model(), ShapesDataset(8, seed=5), tmp_path / "file" / "run", SETTINGS, progress=False)
