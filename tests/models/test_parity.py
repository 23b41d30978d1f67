"""Keys, shapes, parameter counts and logits equal torchvision's (../shared/fixtures).

The logits are compared under `parity.fill_live`, whose weights keep activations alive through any
depth: a swapped colour order, a stem padding off by one, a missing dilation or a BN eps off by 10x
moves them by 1e-2 .. 1 (relative), far above the 1e-4 tolerance. The older `fill` fixture only
proved where each weight goes (its logits barely depend on the input), so it no longer gates.
"""
import json

import pytest
import torch

import imgcls
from tests.conftest import SHARED

_LIVE = SHARED / "fixtures" / "torchvision_parity_live.json"
_OURS = imgcls.list_models()


def _fixture_names() -> list[str]:
    if not _LIVE.is_file():
        return ["<fixture absent>"]
    return sorted(n for n in json.loads(_LIVE.read_text())["models"] if n in _OURS)


@pytest.fixture(scope="session")
def live_fixture(parity) -> dict:
    return parity.load_fixture(parity.LIVE_FIXTURE)


@pytest.mark.parametrize("name", _fixture_names())
def test_matches_torchvision(name, parity, live_fixture):
    entry = live_fixture["models"][name]
    model = imgcls.create_model(name).eval()
    assert parity.keys_and_shapes(model.state_dict()) == entry["keys"]
    assert sum(p.numel() for p in model.parameters()) == entry["params"]
    model.load_state_dict(parity.fill_live(model.state_dict()), strict=True)
    with torch.no_grad():
        err = parity.compare(model(parity.probe_input()), entry)
    assert err <= 1e-4


def test_live_logits_depend_on_the_input(parity, live_fixture):
    """The proof is only as strong as the input's effect: zeroing it must move the logits a lot."""
    model = imgcls.create_model("resnet50").eval()
    model.load_state_dict(parity.fill_live(model.state_dict()), strict=True)
    with torch.no_grad():
        probe = model(parity.probe_input())
        zero = model(torch.zeros_like(parity.probe_input()))
    assert (probe - zero).abs().max() / probe.abs().max() > 1e-2


def test_every_fixture_model_is_registered(live_fixture):
    missing = sorted(set(live_fixture["models"]) - set(_OURS))
    assert not missing, f"torchvision models in the fixture without an imgcls builder: {missing}"
