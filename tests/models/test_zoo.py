"""Every registered model answers the ClassifierMixin questions and trains; family-specific contracts."""
import re

import pytest
import torch
from torch import nn

import imgcls
from imgcls.analysis import summarize
from imgcls.models.densenet import remap_legacy_densenet_keys
from imgcls.models.googlenet import GoogLeNetOutputs
from imgcls.models.vit import interpolate_pos_embedding

# ViTs take exactly their image_size: build them at the smallest grid to keep this test cheap
SMALL = {"vit_b_16": {"image_size": 32}, "vit_b_32": {"image_size": 32}}


@pytest.mark.parametrize("name", imgcls.list_models())
def test_model_contract(name):
    torch.manual_seed(0)
    kw = SMALL.get(name, {})
    model = imgcls.create_model(name, num_classes=3, **kw)
    x = torch.randn(2, 3, *model.min_input_size)

    # train mode: forward + backward reach every parameter (GoogLeNet's aux heads included: they
    # run in training mode and their logits are part of the output)
    out = model.train()(x)
    outs = tuple(out) if isinstance(out, tuple) else (out,)
    assert all(o.shape == (2, 3) for o in outs)
    sum(o.sum() for o in outs).backward()
    no_grad = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not no_grad
    assert torch.isfinite(sum(p.grad.sum() for p in model.parameters()))  # a NaN or inf anywhere shows here

    head = model.get_classifier()
    assert isinstance(head, nn.Linear) and head is model.get_submodule(model.classifier_name)
    assert (head.in_features, head.out_features) == (model.num_features, 3)
    for stage in model.stage_names:
        model.get_submodule(stage)

    model.eval()
    with torch.no_grad():
        assert len(model.forward_stages(x)) == len(model.stage_names) > 0
        model.reset_classifier(7)
        assert model(x).shape == (2, 7)
        new_head = model.get_classifier()
        assert new_head is not head and new_head is model.get_submodule(model.classifier_name)
        assert isinstance(new_head, nn.Linear) and new_head.out_features == 7
        model.reset_classifier(0)
        assert model(x).shape == (2, model.num_features)

    # a model built headless returns the pooled features; shapes only, on the meta device (free)
    with torch.device("meta"):
        headless = imgcls.create_model(name, num_classes=0, **kw)
        feats = headless(torch.empty(2, 3, *headless.min_input_size))
    assert headless.num_features == model.num_features and feats.shape == (2, model.num_features)


def test_loader_hooks_are_part_of_the_contract():
    # what the weight loaders call on any model: the identity and no extra heads unless a family says otherwise
    with torch.device("meta"):
        plain, googlenet = imgcls.create_model("resnet18"), imgcls.create_model("googlenet")
    state = {"fc.bias": torch.zeros(1000)}
    assert plain.remap_state_dict(state) is state and plain.extra_head_names == ()
    assert googlenet.extra_head_names == ("aux1.fc2", "aux2.fc2")


# ---------------------------------------------------------------------------------------------
# MobileNetV1: the width multiplier
# ---------------------------------------------------------------------------------------------

# the paper's Table 6 (MobileNet-224): alpha -> (million parameters, million multiply-adds)
MOBILENET_V1_TABLE6 = {1.0: (4.2, 569), 0.75: (2.6, 325), 0.5: (1.3, 149), 0.25: (0.5, 41)}


@pytest.mark.parametrize("alpha", MOBILENET_V1_TABLE6)
def test_mobilenet_v1_width_multiplier(alpha):
    model = imgcls.create_model("mobilenet_v1", width_mult=alpha).eval()
    with torch.no_grad():
        maps = model.forward_stages(torch.randn(1, 3, 224, 224))
    widths = [int(c * alpha) for c in (64, 128, 256, 512, 1024)]
    assert [tuple(m.shape[1:]) for m in maps] == [(w, s, s) for w, s in zip(widths, (112, 56, 28, 14, 7))]
    assert model.num_features == model.fc.in_features == int(1024 * alpha)
    params, macs = MOBILENET_V1_TABLE6[alpha]
    summary = summarize(model)
    assert round(summary.total_params / 1e6, 1) == params and round(summary.total_macs / 1e6) == macs


# ---------------------------------------------------------------------------------------------
# DenseNet: legacy key names of the old torchvision files
# ---------------------------------------------------------------------------------------------

def test_densenet_legacy_keys_round_trip(tmp_path):
    from imgcls.weights import load_pretrained

    model = imgcls.create_model("densenet121", num_classes=5)
    state = model.state_dict()
    # what torchvision's pre-2018 files hold: "norm.1"/"conv.2" names, no num_batches_tracked
    legacy = {re.sub(r"(denselayer\d+\.(?:norm|relu|conv))([12])\.", r"\1.\2.", k): v
              for k, v in state.items() if not k.endswith("num_batches_tracked")}
    assert "features.denseblock1.denselayer1.norm.1.weight" in legacy
    assert "features.denseblock4.denselayer16.conv.2.weight" in legacy
    assert "features.transition1.norm.weight" in legacy  # transitions never had numbered names

    remapped = remap_legacy_densenet_keys(legacy)
    assert set(remapped) == set(state)
    assert remap_legacy_densenet_keys(state).keys() == state.keys()  # current names pass unchanged

    path = tmp_path / "densenet121-legacy.pth"
    torch.save(legacy, path)
    again = imgcls.create_model("densenet121", num_classes=5, weights=path)  # strict load
    for k, v in state.items():
        assert torch.equal(v, again.state_dict()[k]) or k.endswith("num_batches_tracked"), k

    nn.init.zeros_(again.classifier.weight)
    report = load_pretrained(again, legacy)  # the other loader applies the same remapping
    assert not report.missing and not report.unexpected and not report.skipped_shape
    assert torch.equal(again.classifier.weight, model.classifier.weight)


def test_densenet_memory_efficient_gives_the_same_gradients():
    torch.manual_seed(0)
    plain = imgcls.create_model("densenet121", num_classes=3)
    saving = imgcls.create_model("densenet121", num_classes=3, memory_efficient=True)
    saving.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 32, 32)
    for m in (plain, saving):
        m(x).square().sum().backward()
    grads = [(a.grad, b.grad) for a, b in zip(plain.parameters(), saving.parameters())]
    assert all(torch.allclose(a, b, rtol=1e-4, atol=1e-6) for a, b in grads)


# ---------------------------------------------------------------------------------------------
# ViT: position embeddings for another image size
# ---------------------------------------------------------------------------------------------

def test_vit_position_embeddings_follow_the_image_size(tmp_path):
    torch.manual_seed(0)
    src = imgcls.create_model("vit_b_32", num_classes=4)  # 224: 7x7 patches + the class token
    nn.init.normal_(src.encoder.pos_embedding)
    path = tmp_path / "vit_b_32.pth"
    torch.save(src.state_dict(), path)

    dst = imgcls.create_model("vit_b_32", num_classes=4, image_size=160, weights=path)  # 5x5 patches
    old, new = src.encoder.pos_embedding.detach(), dst.encoder.pos_embedding.detach()
    assert new.shape == (1, 1 + 5 * 5, 768)
    assert torch.equal(new[:, 0], old[:, 0])  # the class token's embedding is untouched
    old_grid, new_grid = old[0, 1:].reshape(7, 7, 768), new[0, 1:].reshape(5, 5, 768)
    for (i, j), (k, m) in (((0, 0), (0, 0)), ((0, -1), (0, -1)), ((-1, -1), (-1, -1)), ((2, 2), (3, 3))):
        assert torch.allclose(new_grid[i, j], old_grid[k, m], atol=1e-5)  # grid points that coincide
    assert torch.equal(dst.conv_proj.weight, src.conv_proj.weight)
    with torch.no_grad():
        assert dst.eval()(torch.randn(1, 3, 160, 160)).shape == (1, 4)
    with pytest.raises(ValueError, match=r"built for 160x160 inputs and got 224x224.*image_size=224"):
        dst(torch.randn(1, 3, 224, 224))

    same = {"encoder.pos_embedding": old}
    assert interpolate_pos_embedding(same, 224, 32) is same


# ---------------------------------------------------------------------------------------------
# GoogLeNet: what forward returns in each mode
# ---------------------------------------------------------------------------------------------

def test_googlenet_output_contract():
    torch.manual_seed(0)
    model = imgcls.create_model("googlenet", num_classes=5, dropout=0.0, dropout_aux=0.0)
    x = torch.randn(2, 3, 64, 64)
    taps = {}
    for name in ("inception4a", "inception4d"):
        model.get_submodule(name).register_forward_hook(lambda m, i, o, name=name: taps.__setitem__(name, o))

    out = model.train()(x)
    assert isinstance(out, GoogLeNetOutputs) and out._fields == ("logits", "aux_logits2", "aux_logits1")
    assert all(o.shape == (2, 5) for o in out)
    # aux_logits1 is the head on inception4a, aux_logits2 the one on inception4d (torchvision's order)
    assert torch.allclose(out.aux_logits1, model.aux1(taps["inception4a"]), atol=1e-5)
    assert torch.allclose(out.aux_logits2, model.aux2(taps["inception4d"]), atol=1e-5)
    # the paper's loss: main + 0.3 * each auxiliary; every head gets its gradient
    ce = nn.CrossEntropyLoss()
    y = torch.tensor([0, 4])
    (ce(out.logits, y) + 0.3 * ce(out.aux_logits2, y) + 0.3 * ce(out.aux_logits1, y)).backward()
    assert model.aux1.fc2.weight.grad is not None and model.aux2.fc2.weight.grad is not None

    # eval: the logits alone; the auxiliary heads do not run and get no gradient
    model.zero_grad(set_to_none=True)
    logits = model.eval()(x)
    assert isinstance(logits, torch.Tensor) and logits.shape == (2, 5)
    logits.sum().backward()
    assert all(p.grad is None for p in [*model.aux1.parameters(), *model.aux2.parameters()])
    assert model.fc.weight.grad is not None

    model.reset_classifier(7)
    assert [m.out_features for m in (model.fc, model.aux1.fc2, model.aux2.fc2)] == [7, 7, 7]
    assert all(o.shape == (2, 7) for o in model.train()(x))


def test_googlenet_without_aux_heads_loads_a_file_that_has_them(tmp_path):
    full = imgcls.create_model("googlenet")
    torch.save(full.state_dict(), tmp_path / "googlenet.pth")
    bare = imgcls.create_model("googlenet", aux_logits=False, weights=tmp_path / "googlenet.pth")
    assert bare.aux1 is None and not any(k.startswith("aux") for k in bare.state_dict())
    assert isinstance(bare.train()(torch.randn(2, 3, 32, 32)), torch.Tensor)
    headless = imgcls.create_model("googlenet", num_classes=0)  # nothing for aux heads to predict
    assert headless.aux1 is None and headless.train()(torch.randn(2, 3, 32, 32)).shape == (2, 1024)


def test_googlenet_transform_input_maps_imagenet_normalised_to_minus_one_one():
    model = imgcls.create_model("googlenet", transform_input=True)
    raw = torch.rand(1, 3, 4, 4)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    assert torch.allclose(model._transform_input((raw - mean) / std), (raw - 0.5) / 0.5, atol=1e-6)


def test_lenet5_takes_grayscale_32x32_only():
    model = imgcls.create_model("lenet5", num_classes=10, in_chans=1)
    assert sum(p.numel() for p in model.parameters()) == 61_706
    assert model(torch.randn(2, 1, 32, 32)).shape == (2, 10)
    with pytest.raises(ValueError, match=r"32x32.*got 28x28.*pad"):
        model(torch.randn(2, 1, 28, 28))
