"""torchvision's segmentation models: keys, shapes, parameter counts and output maps equal torchvision's
(../shared/fixtures/torchvision_seg_parity.json, ../shared/tools/seg_parity.py).

Each model is built as the fixture's were (21 classes, `aux_loss=True` where the model has an
auxiliary head), filled with `parity.fill_live` and run in eval mode at every input size the fixture
records (160x224; also 97x131, odd, for fcn_resnet50 and lraspp_mobilenet_v3_large): "out" and
"aux" must match to a relative error of 1e-4. Under fill_live a BGR input, a stem padding off by one,
a missing dilation, align_corners flipped or a skipped residual moves them by 7e-2 .. 1.3.
"""
import json

import pytest
import torch

from imgcls.models import create_model, list_models
from tests.conftest import SHARED

_FIXTURE = SHARED / "fixtures" / "torchvision_seg_parity.json"
_NOT_BUILDER_ARGS = ("weights", "weights_backbone")  # torchvision's download switches, None in the fixture


def _fixture_names() -> list[str]:
    if not _FIXTURE.is_file():
        return ["<fixture absent>"]
    return sorted(json.loads(_FIXTURE.read_text())["models"])


@pytest.fixture(scope="session")
def seg_parity(parity):
    import seg_parity as module  # ../shared/tools, on sys.path through the parity fixture

    return module


@pytest.fixture(scope="session")
def seg_fixture(seg_parity) -> dict:
    return seg_parity.load_fixture()


@pytest.mark.parametrize("name", _fixture_names())
def test_matches_torchvision(name, parity, seg_parity, seg_fixture):
    entry = seg_fixture["models"][name]
    args = {k: v for k, v in entry["args"].items() if k not in _NOT_BUILDER_ARGS}
    model = create_model(name, **args).eval()
    assert parity.keys_and_shapes(model.state_dict()) == entry["keys"]
    assert sum(p.numel() for p in model.parameters()) == entry["params"]
    model.load_state_dict(parity.fill_live(model.state_dict()), strict=True)
    assert entry["outputs"]
    for size in entry["outputs"]:
        h, w = map(int, size.split("x"))
        with torch.no_grad():
            outputs = model(seg_parity.probe_input_seg(h, w))
        errors = seg_parity.compare_seg(outputs, entry)  # raises with every error above 1e-4
        assert max(e for err in errors.values() for e in err.values()) <= 1e-4


def test_every_fixture_model_is_registered_for_segmentation(seg_fixture):
    missing = sorted(set(seg_fixture["models"]) - set(list_models(task="segmentation")))
    assert not missing, f"torchvision segmentation models in the fixture without an imgcls builder: {missing}"
