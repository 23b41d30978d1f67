"""imgcls.lazy: a package's public names imported when first read, meaning what an eager import gave them."""
from __future__ import annotations

import sys
import types

import pytest

import imgcls


@pytest.fixture
def package(tmp_path, monkeypatch):
    """A package `lazypkg` whose public `fit` is also the name of its submodule, as engine's is."""
    root = tmp_path / "lazypkg"
    root.mkdir()
    (root / "__init__.py").write_text('from imgcls.lazy import lazy_exports\n\n'
                                      '__all__ = lazy_exports(__name__, {"lazypkg.fit": ["fit", ("go", "fit")]})\n')
    (root / "fit.py").write_text("import lazypkg.other\n\n\ndef fit():\n    return 'fitted'\n")
    (root / "other.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield
    for name in [m for m in sys.modules if m == "lazypkg" or m.startswith("lazypkg.")]:
        del sys.modules[name]


def test_names_are_imported_when_first_read(package):
    import lazypkg

    assert "lazypkg.fit" not in sys.modules and lazypkg.__all__ == ["fit", "go"]
    assert lazypkg.go() == "fitted" and "lazypkg.fit" in sys.modules
    assert lazypkg.other.__name__ == "lazypkg.other"  # a submodule, as an eager package would hold it
    with pytest.raises(AttributeError, match="has no attribute 'missing'"):
        lazypkg.missing  # noqa: B018


def test_a_name_shared_with_its_submodule_stays_the_function(package):
    import lazypkg.fit  # the import system binds the submodule to lazypkg.fit; the public name must win

    from lazypkg import fit
    assert not isinstance(fit, types.ModuleType) and fit() == "fitted"


def test_the_public_api_keeps_its_names():
    from imgcls.engine import fit, plan
    from imgcls.inference import evaluate
    from imgcls.weights import create_model_with_weights

    assert imgcls.create_model is create_model_with_weights
    assert [f.__module__ for f in (fit, plan, evaluate, imgcls.train, imgcls.Predictor)] == [
        "imgcls.engine.fit", "imgcls.engine.plan", "imgcls.inference.evaluate", "imgcls.engine.fit",
        "imgcls.inference.predictor"]
    assert set(imgcls.__all__) >= {"create_model", "list_models", "register_model", "train", "Config", "Predictor"}
