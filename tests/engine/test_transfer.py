import copy

import pytest
import torch
from torch import nn

import imgcls
from imgcls.engine.transfer import FrozenSplit, Tail, TransferPolicy, split_network
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


# -- last: the frozen prefix run once, the tail trained on its maps ------------------------------

@pytest.mark.parametrize("name, spec, first", [
    ("resnet18", "last:layer4,fc", "layer4"),
    ("resnet18", "last:layer4.1,fc", "layer4.1"),  # inside a Sequential: layer4.0 joins the prefix
    ("mobilenet_v2", "last:features.17,features.18,classifier", "features.17"),
])
def test_the_tail_on_the_prefix_maps_is_the_whole_network(name, spec, first):
    torch.manual_seed(0)
    model, policy = imgcls.create_model(name, num_classes=3), TransferPolicy.parse(spec)
    policy.apply(model)
    x = torch.randn(4, 3, 32, 32)
    split = split_network(model, policy, x)
    assert isinstance(split, FrozenSplit) and split.first == first
    twin, start = copy.deepcopy(model), copy.deepcopy(model.state_dict())
    trunk, tail = split.trunk(model), Tail(model, split, policy)
    with torch.no_grad():
        maps = trunk(x)
    assert maps.shape[1:] == split.map_shape
    # one training step each, the whole network on the images and the tail on the maps (dropout drawn
    # alike, trainable BatchNorm on batch statistics): the same update of the same tensors
    for net, inp, params in ((twin, x, twin.parameters()), (tail, maps, model.parameters())):
        policy.set_train_mode(twin)
        tail.train()
        opt = torch.optim.SGD([p for p in params if p.requires_grad], lr=0.1)
        torch.manual_seed(1)
        nn.functional.cross_entropy(net(inp), torch.tensor([0, 1, 2, 0])).backward()
        opt.step()
    a, b = twin.state_dict(), model.state_dict()
    assert a.keys() == b.keys() and all(torch.allclose(a[k].float(), b[k].float(), atol=1e-6) for k in a)
    moved = {k for k in a if not torch.equal(b[k], start[k])}
    assert moved and all(k.startswith((first, *policy.modules)) for k in moved)
    tail.eval()
    with torch.no_grad():
        torch.testing.assert_close(tail(trunk(x)), model.eval()(x), rtol=1e-5, atol=1e-5)


class _Chain(nn.Module):
    """a -> c -> b -> fc, and what may break the chain: a skip from a's output past c, or a transform of
    the input before a."""
    classifier_name = "fc"

    def __init__(self, *, skip: bool = False, scale_input: bool = False) -> None:
        super().__init__()
        self.a, self.c, self.b = nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(4, 4, 1), nn.Conv2d(4, 4, 1)
        self.fc = nn.Linear(4, 2)
        self.skip, self.scale_input = skip, scale_input

    def forward(self, x):
        h = self.a(x * 2 if self.scale_input else x)
        out = self.b(self.c(h))
        return self.fc((out + h if self.skip else out).mean((2, 3)))


def test_a_skip_across_the_split_or_a_transformed_input_means_no_split():
    policy, x = TransferPolicy.parse("last:b,fc"), torch.randn(2, 3, 8, 8)
    assert split_network(policy.apply(_Chain()), policy, x) == FrozenSplit(("a", "c"), "b", (4, 8, 8))
    for kw in ({"skip": True}, {"scale_input": True}):
        why = split_network(policy.apply(_Chain(**kw)), policy, x)
        assert isinstance(why, str) and "differ from the network's in training mode" in why
    first = TransferPolicy.parse("last:a,b,fc")
    assert split_network(first.apply(_Chain()), first, x) == "nothing frozen runs before a"


def test_a_module_shared_across_the_split_means_no_split():
    model = imgcls.create_model("resnet18", num_classes=3)
    policy = TransferPolicy.parse("last:layer4.0.conv2,layer4.1,fc")
    policy.apply(model)
    assert split_network(model, policy, torch.randn(2, 3, 32, 32)) == ("layer4.0.relu runs both before and after "
                                                                        "layer4.0.conv2")


def test_finding_the_split_changes_nothing_of_the_model_or_the_random_state():
    model = imgcls.create_model("mobilenet_v2", num_classes=3)
    policy = TransferPolicy.parse("last:features.18,classifier")
    policy.apply(model)
    before, x = copy.deepcopy(model.state_dict()), torch.randn(2, 3, 32, 32)
    state = torch.random.get_rng_state()
    assert isinstance(split_network(model, policy, x), FrozenSplit)
    assert torch.equal(state, torch.random.get_rng_state())
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
