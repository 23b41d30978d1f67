"""Keys, shapes, parameter counts and logits equal torchvision's (../shared/fixtures)."""
import pytest
import torch

import imgcls
from tests.conftest import SHARED

_FIXTURE = SHARED / "fixtures" / "torchvision_parity.json"
_OURS = [n for n in imgcls.list_models()]


def _fixture_names() -> list[str]:
    if not _FIXTURE.is_file():
        return ["<fixture absent>"]
    import json

    return sorted(n for n in json.loads(_FIXTURE.read_text())["models"] if n in _OURS)


@pytest.mark.parametrize("name", _fixture_names())
def test_matches_torchvision(name, parity, parity_fixture):
    entry = parity_fixture["models"][name]
    model = imgcls.create_model(name).eval()
    assert parity.keys_and_shapes(model.state_dict()) == entry["keys"]
    assert sum(p.numel() for p in model.parameters()) == entry["params"]
    model.load_state_dict(parity.fill(model.state_dict()), strict=True)
    with torch.no_grad():
        err = parity.compare(model(parity.probe_input()), entry)
    assert err <= 1e-4


def test_every_fixture_model_is_registered(parity_fixture):
    missing = sorted(set(parity_fixture["models"]) - set(_OURS))
    assert not missing, f"torchvision models in the fixture without an imgcls builder: {missing}"
