import math

import pytest
import torch
from torch import nn

import imgcls
from imgcls.engine.config import OptimConfig
from imgcls.engine.optim import LRSchedule, build_optimizer, param_groups, resolved_lr
from imgcls.errors import ConfigError


def test_groups_skip_decay_on_norms_and_biases_and_scale_the_backbone():
    model = imgcls.create_model("resnet18", num_classes=3)
    groups = param_groups(model.named_parameters(), lr=0.1, weight_decay=1e-4, head_prefix="fc", backbone_lr_mult=0.1)
    by_id = {id(p): g for g in groups for p in g["params"]}
    assert by_id[id(model.fc.weight)]["lr"] == 0.1 and by_id[id(model.fc.weight)]["weight_decay"] == 1e-4
    assert by_id[id(model.fc.bias)]["weight_decay"] == 0.0
    assert by_id[id(model.conv1.weight)]["lr"] == pytest.approx(0.01)
    assert by_id[id(model.bn1.weight)]["weight_decay"] == 0.0
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))


def test_frozen_parameters_are_left_out_and_all_frozen_is_an_error():
    lin = nn.Linear(2, 2)
    lin.weight.requires_grad_(False)
    groups = param_groups(lin.named_parameters(), lr=1.0, weight_decay=0.0)
    assert [len(g["params"]) for g in groups] == [1]
    lin.bias.requires_grad_(False)
    with pytest.raises(ConfigError, match="every parameter is frozen"):
        param_groups(lin.named_parameters(), lr=1.0, weight_decay=0.0)


def _lrs(kind, total=100, **kw):
    opt = build_optimizer(OptimConfig(), [{"params": [nn.Parameter(torch.zeros(1))], "lr": 1.0, "base_lr": 1.0,
                                            "weight_decay": 0.0}])
    sched = LRSchedule(opt, kind=kind, total_steps=total, steps_per_epoch=10, **kw)
    out = []
    for _ in range(total):
        out.append(sched.get_last_lr()[0])
        sched.step()
    return out, sched, opt


def test_schedules():
    cos, _, _ = _lrs("cosine", warmup_steps=10)
    assert cos[0] == pytest.approx(1 / 11) and cos[9] == pytest.approx(10 / 11) and cos[10] == pytest.approx(1.0)
    assert cos[55] == pytest.approx(0.5 * (1 + math.cos(math.pi * 45 / 90)))
    step, _, _ = _lrs("step", step_size=3, gamma=0.5)
    assert (step[29], step[30], step[60]) == (1.0, 0.5, 0.25)
    one, _, _ = _lrs("onecycle")
    assert one[0] == pytest.approx(1 / 25) and max(one) == pytest.approx(1.0) and one[-1] < 1e-3
    const, _, _ = _lrs("constant")
    assert set(const) == {1.0}
    poly, _, _ = _lrs("poly", warmup_steps=10)
    assert poly[9] == pytest.approx(10 / 11) and poly[10] == pytest.approx(1.0)
    assert poly[55] == pytest.approx((1 - 45 / 90) ** 0.9) and poly[-1] > 0


def test_schedule_state_resumes_at_the_same_rate():
    _, sched, opt = _lrs("cosine", total=50)
    state = sched.state_dict()
    opt2 = build_optimizer(OptimConfig(), [{"params": [nn.Parameter(torch.zeros(1))], "lr": 1.0, "base_lr": 1.0,
                                             "weight_decay": 0.0}])
    again = LRSchedule(opt2, kind="cosine", total_steps=50, steps_per_epoch=10)
    again.load_state_dict(state)
    assert again.get_last_lr() == sched.get_last_lr()


def test_default_lr_follows_the_linear_scaling_rule():
    assert resolved_lr(OptimConfig(), 256) == pytest.approx(0.1)
    assert resolved_lr(OptimConfig(optimizer="adamw"), 64) == 1e-3
