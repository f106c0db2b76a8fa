"""``maskrcnn-edu train`` on any COCO-format set (``--ann-file``, ``--image-dir``, ``--layers``,
``--init``) and from ImageNet weights (``--backbone-weights``)."""
import json
import os
import shutil

import pytest
import torch
import torchvision

from maskrcnn_edu.cli import build_parser, main
from maskrcnn_edu.config import coco_r50_fpn
from maskrcnn_edu.model import MaskRCNN
from maskrcnn_edu.training import LAYER_STAGES
from maskrcnn_edu.weights import load_imagenet_body

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLE_SET = os.path.join(ROOT, "data/shapes_sample")
SHIPPED_MODEL = os.path.join(ROOT, "data/shapes_model/model.pt")


def _imagenet_file(tmp_path, depth: str = "resnet50"):
    """A randomly initialised torchvision ResNet saved as torchvision's ImageNet files are, with
    BatchNorm statistics that are not the defaults (so a load that skipped them would show)."""
    torch.manual_seed(0)
    resnet = getattr(torchvision.models, depth)(weights=None)
    for module in resnet.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-1, 1)
            module.running_var.uniform_(0.5, 2)
            module.weight.data.uniform_(0.5, 1.5)
    path = tmp_path / f"{depth}.pth"
    torch.save(resnet.state_dict(), path)
    return path, resnet.state_dict()


def test_imagenet_weights_load_into_every_body_tensor_and_nothing_else(tmp_path):
    path, saved = _imagenet_file(tmp_path)
    torch.manual_seed(1)
    model = MaskRCNN(coco_r50_fpn())
    fpn_before = {k: v.clone() for k, v in model.backbone.fpn.state_dict().items()}
    load_imagenet_body(model, path)
    body = model.backbone.body.state_dict()
    counters = {k for k in saved if k.endswith("num_batches_tracked")}  # frozen BatchNorm has none
    assert set(body) == {k for k in saved if not k.startswith("fc.")} - counters
    for key, value in body.items():
        assert torch.equal(value, saved[key]), key
    assert all(torch.equal(v, fpn_before[k]) for k, v in model.backbone.fpn.state_dict().items())


def test_imagenet_weights_of_another_depth_or_another_kind_of_file_are_refused(tmp_path):
    model = MaskRCNN(coco_r50_fpn())
    wrong_depth, _ = _imagenet_file(tmp_path, "resnet18")
    with pytest.raises(ValueError, match="another ResNet depth"):
        load_imagenet_body(model, wrong_depth)
    not_resnet = tmp_path / "other.pth"
    torch.save({"weight": torch.zeros(3)}, not_resnet)
    with pytest.raises(ValueError, match="not a torchvision ResNet state dict"):
        load_imagenet_body(model, not_resnet)


def test_the_coco_recipe_refuses_random_weights_and_says_where_the_file_is(capsys):
    argv = ["train", "--dataset", "coco", "--ann-file", os.path.join(SAMPLE_SET, "annotations.json"),
            "--image-dir", os.path.join(SAMPLE_SET, "images"), "--out", "/nonexistent/run"]
    assert main(argv) == 1
    error = capsys.readouterr().err
    assert "--backbone-weights" in error and "resnet50-0676ba61.pth" in error and "--init" in error


def test_the_layer_choices_are_the_training_stages():
    train = build_parser()._subparsers._group_actions[0].choices["train"]
    layers = next(action for action in train._actions if action.dest == "layers")
    assert tuple(layers.choices) == tuple(LAYER_STAGES)


@pytest.fixture(scope="module")
def own_set(tmp_path_factory):
    """The Shapes sample as "one's own" COCO-format set, its categories renamed."""
    folder = tmp_path_factory.mktemp("own")
    shutil.copytree(os.path.join(SAMPLE_SET, "images"), folder / "images")
    annotations = json.loads(open(os.path.join(SAMPLE_SET, "annotations.json")).read())
    for category, name in zip(annotations["categories"], ("tile", "coin", "sail")):
        category["name"] = name
    (folder / "annotations.json").write_text(json.dumps(annotations))
    return folder


def test_fine_tuning_the_heads_on_a_coco_format_set_keeps_the_body_and_names_its_classes(own_set, tmp_path):
    out = tmp_path / "run"
    argv = ["train", "--dataset", "coco", "--ann-file", str(own_set / "annotations.json"),
            "--image-dir", str(own_set / "images"), "--config", "shapes", "--init", SHIPPED_MODEL,
            "--layers", "heads", "--steps", "2", "--batch-size", "2", "--out", str(out)]
    assert main(argv) == 0
    trained = MaskRCNN.from_checkpoint(out / "last.pt")
    shipped = MaskRCNN.from_checkpoint(SHIPPED_MODEL)
    assert trained.config.class_names == ("background", "tile", "coin", "sail")
    for (name, after), before in zip(trained.backbone.body.state_dict().items(),
                                     shipped.backbone.body.state_dict().values()):
        assert torch.equal(after, before), name
    head = "roi_heads.box_head.fc6.weight"
    assert not torch.equal(trained.state_dict()[head], shipped.state_dict()[head])


def test_backbone_weights_start_the_body_from_the_file(own_set, tmp_path):
    path, saved = _imagenet_file(tmp_path, "resnet18")  # the Shapes config's body
    out = tmp_path / "run"
    argv = ["train", "--dataset", "coco", "--ann-file", str(own_set / "annotations.json"),
            "--image-dir", str(own_set / "images"), "--config", "shapes", "--backbone-weights", str(path),
            "--layers", "heads", "--steps", "1", "--batch-size", "2", "--out", str(out)]
    assert main(argv) == 0
    body = MaskRCNN.from_checkpoint(out / "last.pt").backbone.body.state_dict()
    assert all(torch.equal(value, saved[key]) for key, value in body.items())


def test_a_frozen_stage_keeps_its_batchnorm_statistics_in_training_mode():
    from maskrcnn_edu.config import shapes
    from maskrcnn_edu.training import set_trainable_layers

    model = MaskRCNN(shapes())  # BatchNorm that trains ("bn"), every stage trainable
    set_trainable_layers(model, "4+")  # layer3 and layer4 train; conv1, layer1, layer2 do not
    model.train()
    body = model.backbone.body
    assert not body.bn1.training and not body.layer2[0].bn1.training
    assert body.layer3[0].bn1.training and body.layer4[0].bn1.training
    before = body.layer2[0].bn1.running_mean.clone()
    model([torch.rand(3, 64, 64)], [{"boxes": torch.tensor([[4.0, 4, 40, 40]]), "labels": torch.tensor([1]),
                                     "masks": torch.ones(1, 64, 64, dtype=torch.uint8)}])
    assert torch.equal(body.layer2[0].bn1.running_mean, before)
