import copy

import pytest
import torch
from torch import nn

from imgcls.models import create_model
from imgcls.models.frozen_bn import fold_batchnorm, folded, unfold_batchnorm


def _with_statistics(model: nn.Module) -> nn.Module:
    """Non-trivial running statistics and affine parameters, as pretrained weights have."""
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.1)
    return model


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2", "efficientnet_lite0"])
def test_folded_model_computes_what_the_frozen_model_computes_and_keeps_its_keys(name):
    torch.manual_seed(0)
    model = _with_statistics(create_model(name, num_classes=5)).eval()
    keys = list(model.state_dict())
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        expected = model(x)
    n = fold_batchnorm(model)
    assert n == sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == folded(model) > 0
    assert list(model.state_dict()) == keys
    with torch.no_grad():
        got = model(x)  # eval mode: the train-mode statistics are the next test's (stochastic depth here)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


def test_gradients_reach_the_convolution_and_the_batchnorm_affine_but_not_the_statistics():
    torch.manual_seed(0)
    model = _with_statistics(nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU()))
    reference = copy.deepcopy(model).eval()
    stats = model[1].running_mean.clone()
    assert fold_batchnorm(model) == 1
    x = torch.randn(2, 3, 8, 8)
    model.train()(x).sum().backward()
    reference(x).sum().backward()
    for p, q in zip(model.parameters(), reference.parameters()):
        torch.testing.assert_close(p.grad, q.grad)
    assert torch.equal(model[1].running_mean, stats)


def test_a_deep_copy_folds_with_its_own_batchnorm():
    """The EMA copy of a folded model must read its own BatchNorm parameters, not the original's."""
    model = _with_statistics(nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4)))
    fold_batchnorm(model)
    twin = copy.deepcopy(model)
    with torch.no_grad():
        twin[1].bias.add_(1.0)
    x = torch.randn(1, 3, 4, 4)
    assert torch.allclose(twin(x), model(x) + 1.0, atol=1e-5)


def test_unfold_restores_the_batchnorm():
    model = _with_statistics(nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4)))
    fold_batchnorm(model)
    unfold_batchnorm(model)
    assert type(model[0]) is nn.Conv2d and type(model[1]) is nn.BatchNorm2d and folded(model) == 0
    model.train()(torch.randn(2, 3, 4, 4))
    assert not torch.equal(model[1].running_mean, torch.zeros(4))  # statistics update again


def test_a_batchnorm_that_does_not_follow_its_convolution_is_left_alone():
    class PreActivation(nn.Module):  # registered conv then bn, but the bn normalises the input
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 3, 1)
            self.bn = nn.BatchNorm2d(3)

        def forward(self, x):
            return self.conv(self.bn(x))

    model = _with_statistics(PreActivation())
    assert fold_batchnorm(model) == 0
    assert type(model.conv) is nn.Conv2d and type(model.bn) is nn.BatchNorm2d
