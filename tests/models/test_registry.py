import importlib
import inspect

import pytest
import torch

import imgcls
from imgcls.errors import ConfigError, WeightsError
from imgcls.models.registry import get_builder, paper_of, register_model

EXPECTED = {"resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "resnext50_32x4d", "resnext101_32x8d",
            "resnext101_64x4d", "wide_resnet50_2", "wide_resnet101_2", "alexnet", "alexnet_paper"}


def test_list_models_has_the_zoo():
    assert EXPECTED <= set(imgcls.list_models())
    assert imgcls.list_models("resnet1*") == ["resnet101", "resnet152", "resnet18"]


@pytest.mark.parametrize("name", imgcls.list_models())
def test_each_builder_is_a_def_of_its_name_keyword_only_and_documented(name):
    builder = get_builder(name)
    assert builder.__code__.co_name == name  # `grep "def NAME"` finds it
    assert builder.__doc__  # the paper and the configuration
    kinds = {p.kind for p in inspect.signature(builder).parameters.values()}
    assert kinds <= {inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.VAR_KEYWORD}


@pytest.mark.parametrize("module,table", [("resnet", "RESNETS"), ("vgg", "VGGS"), ("densenet", "DENSENETS"),
                                          ("mobilenet", "MOBILENET_V3"), ("efficientnet", "EFFICIENTNET_LITE"),
                                          ("vit", "VITS")])
def test_every_table_row_has_its_builder_in_the_family_file(module, table):
    family = importlib.import_module(f"imgcls.models.{module}")
    for name in getattr(family, table):
        assert get_builder(name) is getattr(family, name)


def test_every_model_cites_a_paper_recorded_in_its_family_file():
    papers = {name: paper_of(name) for name in imgcls.list_models()}  # what docs/models.md prints
    assert all(p.authors and p.title and 1998 <= p.year for p in papers.values())
    assert papers["efficientnet_lite0"].ref == "arXiv:1905.11946" and papers["resnext50_32x4d"].authors.startswith("Xie")
    assert papers["alexnet_paper"].year == 2012 and papers["alexnet"].year == 2014  # the longest prefix wins


def test_unknown_name_suggests_close_matches():
    with pytest.raises(ConfigError, match=r"unknown model 'resnet35'.*resnet34"):
        imgcls.create_model("resnet35")


def test_duplicate_registration_refused():
    with pytest.raises(RuntimeError, match="registered twice"):
        register_model(type("resnet18", (), {"__name__": "resnet18"}))


def test_weights_round_trip_and_wrong_class_count(tmp_path):
    model = imgcls.create_model("resnet18", num_classes=5)
    path = tmp_path / "w.pth"
    torch.save(model.state_dict(), path)
    again = imgcls.create_model("resnet18", num_classes=5, weights=path)
    for k, v in model.state_dict().items():
        assert torch.equal(v, again.state_dict()[k]), k
    with pytest.raises(WeightsError, match=r"w\.pth.*num_classes=7.*fc\.weight"):
        imgcls.create_model("resnet18", num_classes=7, weights=path)
    with pytest.raises(WeightsError, match="no such weight file"):
        imgcls.create_model("resnet18", weights=tmp_path / "missing.pth")
