import pytest
import torch
from torch import nn

import imgcls
from imgcls.engine.transfer import TransferPolicy
from imgcls.errors import ConfigError
from imgcls.models.heads import stack_head


def _trainable(model):
    return {n for n, p in model.named_parameters() if p.requires_grad}


def test_parse():
    assert TransferPolicy.parse("last:layer4, fc") == TransferPolicy("last", ("layer4", "fc"))
    assert str(TransferPolicy.parse("last:layer4,fc")) == "last:layer4,fc"
    assert TransferPolicy.parse("head+").caches_features
    with pytest.raises(ConfigError, match="unknown --transfer"):
        TransferPolicy.parse("top")
    with pytest.raises(ConfigError, match="needs module names"):
        TransferPolicy.parse("last:")


def test_head_trains_only_the_classifier():
    model = TransferPolicy("head").apply(imgcls.create_model("resnet18", num_classes=3))
    assert _trainable(model) == {"fc.weight", "fc.bias"}
    alex = TransferPolicy("head").apply(imgcls.create_model("alexnet", num_classes=3))
    assert _trainable(alex) == {"classifier.6.weight", "classifier.6.bias"}


def test_last_trains_the_named_modules_and_insists_on_the_classifier():
    model = TransferPolicy.parse("last:layer4,fc").apply(imgcls.create_model("resnet18", num_classes=3))
    assert all(n.startswith(("layer4.", "fc.")) for n in _trainable(model))
    assert "layer4.1.bn2.weight" in _trainable(model)
    with pytest.raises(ConfigError, match="leaves the classifier 'fc' frozen"):
        TransferPolicy.parse("last:layer4").apply(imgcls.create_model("resnet18", num_classes=3))
    with pytest.raises(ConfigError, match="no module 'layer9'"):
        TransferPolicy.parse("last:layer9,fc").apply(imgcls.create_model("resnet18", num_classes=3))


def test_head_plus_stacks_a_new_layer_on_the_original_classifier():
    model = imgcls.create_model("resnet18", num_classes=1000)
    original = model.fc
    policy = TransferPolicy("head+")
    stack_head(model, 5)  # the head's structure is the model's (models/heads.py); what trains is the policy's
    policy.apply(model)
    assert model.fc[0] is original and model.fc[1].in_features == 1000 and model.fc[1].out_features == 5
    assert _trainable(model) == {"fc.1.weight", "fc.1.bias"}
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, 5)


def test_frozen_batchnorm_keeps_its_running_statistics():
    torch.manual_seed(0)
    model = imgcls.create_model("resnet18", num_classes=3)
    policy = TransferPolicy.parse("last:layer4,fc")
    policy.apply(model)
    before = {k: v.clone() for k, v in model.state_dict().items() if "running" in k}
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    policy.set_train_mode(model)
    assert model.layer4.training and not model.layer1.training and not model.bn1.training
    for _ in range(2):
        loss = nn.functional.cross_entropy(model(torch.randn(4, 3, 64, 64) * 3 + 1), torch.tensor([0, 1, 2, 0]))
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = model.state_dict()
    frozen = [k for k in before if not k.startswith("layer4")]
    assert frozen and all(torch.equal(before[k], after[k]) for k in frozen)
    assert not torch.equal(before["layer4.0.bn1.running_mean"], after["layer4.0.bn1.running_mean"])


def test_frozen_dropout_is_off_but_dropout_inside_the_trained_part_is_on():
    alex = imgcls.create_model("alexnet", num_classes=3)
    TransferPolicy("head").apply(alex)
    TransferPolicy("head").set_train_mode(alex)
    assert not alex.classifier[0].training and alex.classifier[6].training
    last = TransferPolicy.parse("last:classifier")
    last.apply(alex)
    last.set_train_mode(alex)
    assert alex.classifier[0].training and not alex.features.training


def test_backbone_and_head_swap_and_restore():
    model = imgcls.create_model("resnet18", num_classes=3).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        want = model(x)
        with TransferPolicy("head").backbone_and_head(model) as (backbone, head):
            feats = backbone(x)
            assert feats.shape == (2, 512)
            got = head(feats)
    assert torch.allclose(got, want) and isinstance(model.fc, nn.Linear)
    with pytest.raises(ConfigError):
        with TransferPolicy("full").backbone_and_head(model):
            pass


@pytest.mark.parametrize("name", imgcls.list_models())
def test_every_model_tells_the_policies_its_classifier_and_stages(name):
    with torch.device("meta"):  # no memory, no init cost: only the module tree matters here
        model = imgcls.create_model(name, num_classes=3)
    head = TransferPolicy("head").apply(model)
    cls = model.classifier_name
    assert _trainable(head) == {f"{cls}.weight", f"{cls}.bias"}
    top_stage = model.stage_names[-1]
    last = TransferPolicy("last", (top_stage, cls)).apply(model)
    stage_params = {f"{top_stage}.{n}" for n, _ in model.get_submodule(top_stage).named_parameters()}
    assert _trainable(last) == stage_params | {f"{cls}.weight", f"{cls}.bias"}
