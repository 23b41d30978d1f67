from __future__ import annotations

import sys
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


@pytest.fixture(scope="session")
def shared() -> Path:
    if not (SHARED / "DESIGN.md").is_file():
        pytest.skip(f"../shared is absent ({SHARED}): clone the project next to its shared/ folder to run this")
    return SHARED


@pytest.fixture(scope="session")
def parity(shared):
    sys.path.insert(0, str(shared / "tools"))
    import parity as module

    return module


@pytest.fixture(scope="session")
def parity_fixture(parity) -> dict:
    return parity.load_fixture()
