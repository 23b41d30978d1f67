"""Test-time augmentation in predict and eval: averaged probabilities of torchvision's multi-crop views."""
import pytest
import torch
from torch import nn

from imgcls.cli import main
from imgcls.data import Preprocessing
from imgcls.inference import Predictor, evaluate
from tests.conftest import make_tiny_folder, train_tiny

PRE = Preprocessing(resize=37, crop=32, mean=(0.5,) * 3, std=(0.25,) * 3)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return train_tiny(tmp_path_factory.mktemp("tta"))


def flip_invariant() -> nn.Module:
    """Logits from the per-column mean made symmetric: f(x) == f(mirror(x)) exactly."""
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 4, 3, padding=1)

    class Symmetric(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.fc = conv, nn.Linear(4, 3)

        def forward(self, x):
            y = self.conv(x) + self.conv(x.flip(-1)).flip(-1)
            return self.fc(y.relu().mean((2, 3)))

    return Symmetric().eval()


def test_flip_tta_of_a_flip_invariant_model_is_the_identity(tmp_path):
    data = make_tiny_folder(tmp_path / "d", classes=2, per_class=3)
    files = sorted(data.rglob("*.jpg"))
    model, classes = flip_invariant(), ["a", "b", "c"]
    plain = Predictor(model, classes, PRE, device="cpu").predict(files, topk=3)
    flipped = Predictor(model, classes, PRE, device="cpu", tta="flip").predict(files, topk=3)
    for a, b in zip(plain, flipped):
        assert a.labels == b.labels and b.probs == pytest.approx(a.probs, abs=1e-6)
    # a model that is not flip-invariant does change under the flip views
    other = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 3)).eval()
    p1 = Predictor(other, classes, PRE, device="cpu").predict(files, topk=3)
    p2 = Predictor(other, classes, PRE, device="cpu", tta="flip").predict(files, topk=3)
    assert any(a.probs != pytest.approx(b.probs, abs=1e-4) for a, b in zip(p1, p2))


def test_tta_averages_the_views_probabilities(trained):
    data, ckpt = trained
    path = sorted((data / "class_1").glob("*.jpg"))[0]
    predictor = Predictor.load(ckpt, tta="flip,crops")
    from imgcls.data import load_array

    views = torch.from_numpy(predictor.transform(load_array(path)))
    with torch.no_grad():
        logits = predictor.model(predictor.preprocessing.normalize(views))
    want = (logits / predictor.temperature).softmax(1).mean(0)
    got = predictor.predict([path], topk=3)[0]
    assert got.probs == pytest.approx(sorted(want.tolist(), reverse=True), abs=1e-5)


def test_eval_and_predict_take_tta(trained, tmp_path, capsys):
    data, ckpt = trained
    plain, _ = evaluate(ckpt, data, out_dir=tmp_path / "a", workers=0, progress=False)
    tta, _ = evaluate(ckpt, data, out_dir=tmp_path / "b", workers=0, progress=False, tta="flip,crops")
    assert tta.n == plain.n == 36 and tta.confidence is not None
    assert main(["predict", str(ckpt), str(data / "class_0"), "--tta", "flip", "--csv"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 1 + 12 * 3
    assert main(["eval", str(ckpt), str(data), "--tta", "mirror", "-o", str(tmp_path / "c")]) == 2
    assert "--tta 'mirror': use flip, crops or flip,crops" in capsys.readouterr().err
