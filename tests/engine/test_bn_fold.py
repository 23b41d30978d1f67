"""--bn-fold: BatchNorm folded into its convolution (models.frozen_bn), resolved by the plan."""
import pytest
import torch

import imgcls
from imgcls.engine import plan, train
from imgcls.engine.checkpoint import load_checkpoint
from imgcls.models.frozen_bn import folded
from tests.conftest import stop_after_step
from tests.engine.test_trainer import tiny_config


def _pretrained(tmp_path):
    torch.manual_seed(3)
    torch.save(imgcls.create_model("resnet18", num_classes=1000).state_dict(), tmp_path / "pre.pth")
    return str(tmp_path / "pre.pth")


def test_a_full_fine_tune_of_pretrained_weights_on_the_cpu_folds_every_batchnorm(tiny_folder, tmp_path):
    p = plan(tiny_config(tiny_folder, tmp_path / "runs", weights=_pretrained(tmp_path)))
    assert p.config.model.bn_fold == "all" and folded(p.model) == 20  # resnet18's 20 BatchNorm layers
    line = next(n for n in p.notes if n.startswith("speed settings on cpu"))
    assert ("channels_last (--no-channels-last), BatchNorm statistics frozen at the pretrained values and folded "
            "into 20 convolutions (--bn-fold none trains on batch statistics), eager (--compile)") in line


def test_last_folds_only_the_frozen_part_and_from_scratch_nothing(tiny_folder, tmp_path):
    p = plan(tiny_config(tiny_folder, tmp_path / "runs", weights=_pretrained(tmp_path), transfer="last:layer4,fc",
                         feature_views=0))
    assert p.config.model.bn_fold == "frozen" and folded(p.model) == 15  # all but layer4's 5
    assert not any(isinstance(m, torch.nn.BatchNorm2d) and type(m) is not torch.nn.BatchNorm2d
                   for m in p.model.layer4.modules())
    p = plan(tiny_config(tiny_folder, tmp_path / "runs"))
    assert p.config.model.bn_fold == "frozen" and folded(p.model) == 0
    p = plan(tiny_config(tiny_folder, tmp_path / "runs", weights=_pretrained(tmp_path), bn_fold="none"))
    assert folded(p.model) == 0


def test_a_folded_run_resumes_bit_exactly_and_an_older_run_resumes_unfolded(tiny_folder, tmp_path, monkeypatch):
    kw = dict(epochs=3, save_every=2, weights=_pretrained(tmp_path))
    full = train(tiny_config(tiny_folder, tmp_path / "a", **kw)).run_dir
    stop_after_step(monkeypatch, 5, "killed")
    with pytest.raises(RuntimeError, match="killed"):
        train(tiny_config(tiny_folder, tmp_path / "b", **kw))
    monkeypatch.undo()
    last = tmp_path / "b" / "exp1" / "last.ckpt"
    resumed = train(tiny_config(tiny_folder, tmp_path / "b", **kw, resume=str(last))).run_dir
    a, b = (load_checkpoint(r / "last.ckpt")["model"] for r in (full, resumed))
    assert all(torch.equal(a[k], b[k]) for k in a)
    # the BatchNorm statistics stayed the pretrained ones
    assert torch.equal(a["bn1.running_var"], torch.load(tmp_path / "pre.pth", weights_only=True)["bn1.running_var"])
    # a checkpoint of an imgcls that did not fold (no bn_fold in its config) resumes as it ran
    state = load_checkpoint(full / "last.ckpt")
    del state["config"]["model"]["bn_fold"]
    torch.save(state, tmp_path / "old.ckpt")
    p = plan(tiny_config(tiny_folder, tmp_path / "c", **{**kw, "epochs": 4}, resume=str(tmp_path / "old.ckpt")))
    assert p.config.model.bn_fold == "none" and folded(p.model) == 0
