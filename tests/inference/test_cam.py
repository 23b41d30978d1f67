"""Grad-CAM: the map points where the evidence is (a model trained here on quadrant-coded images), the
default layer of every family gives a map of its declared stage, the overlay covers the centre crop the
model saw, and `imgcls cam` / `imgcls eval --cam` write their files or refuse in one line."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from imgcls.data import Preprocessing
from imgcls.errors import ConfigError
from imgcls.inference import Explainer, GradCAM, Predictor
from imgcls.inference.cam import UniqueNames, crop_box, jet
from imgcls.models import create_model
from tests.conftest import error_line, run_cli

COLOURS = torch.tensor([[1.0, 0.1, 0.1], [0.1, 1.0, 0.1], [0.1, 0.2, 1.0]])  # one per class


def quadrant_images(n: int, *, size: int = 32, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(images [n, 3, size, size], class, quadrant 0..3 = TL, TR, BL, BR): noise, a grey blob in two other
    quadrants, and a blob of the class's colour somewhere inside one random quadrant: only that blob
    tells the class."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, size, size, generator=g) * 0.3
    labels = torch.randint(0, len(COLOURS), (n,), generator=g)
    quads = torch.randint(0, 4, (n,), generator=g)
    half, blob = size // 2, size // 4
    for i in range(n):
        others = [q for q in range(4) if q != quads[i]]
        for q, colour in [(others[int(j)], torch.tensor([0.6, 0.6, 0.6])) for j in torch.randperm(3, generator=g)[:2]] + \
                         [(int(quads[i]), COLOURS[labels[i]])]:
            y0, x0 = (q // 2) * half, (q % 2) * half
            dy, dx = (int(v) for v in torch.randint(1, half - blob, (2,), generator=g))
            x[i, :, y0 + dy:y0 + dy + blob, x0 + dx:x0 + dx + blob] = colour[:, None, None]
    return x, labels, quads


class TinyCNN(nn.Module):
    cam_layer = "features"

    def __init__(self, classes: int = 3) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 32, 3, stride=2, padding=1),
                                      nn.ReLU(), nn.Conv2d(32, 32, 3, padding=1), nn.ReLU())
        self.fc = nn.Linear(32, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x).mean((2, 3)))


def quadrant_of(cam: torch.Tensor) -> int:
    h, w = cam.shape
    y, x = divmod(int(cam.argmax()), w)
    return 2 * (y >= h // 2) + (x >= w // 2)


@pytest.fixture(scope="module")
def quadrant_model() -> TinyCNN:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny convolutions: a second thread only adds overhead
    torch.manual_seed(0)
    model = TinyCNN()
    x, y, _ = quadrant_images(384)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(12):
        for i in range(0, len(x), 32):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[i:i + 32]), y[i:i + 32]).backward()
            opt.step()
    opt.zero_grad(set_to_none=True)
    torch.set_num_threads(threads)
    return model.eval()


def test_the_cam_maximum_is_in_the_quadrant_that_decides_the_class(quadrant_model):
    x, y, quads = quadrant_images(48, seed=1)  # unseen images
    logits, maps, targets = GradCAM(quadrant_model)(x)
    assert (logits.argmax(1) == y).float().mean() >= 0.9, "the model did not learn the task: the test says nothing"
    assert maps.shape == (48, 16, 16) and (maps >= 0).all() and torch.equal(targets, logits.argmax(1))
    right = [quadrant_of(m) == int(q) for m, q, ok in zip(maps, quads, logits.argmax(1) == y) if ok]
    assert sum(right) == len(right), f"CAM maximum outside the deciding quadrant in {len(right) - sum(right)} images"
    assert all(p.grad is None for p in quadrant_model.parameters())  # no gradient left on the weights


def test_the_overlay_shows_the_centre_crop_and_the_map_lands_on_the_blob(quadrant_model):
    """A 48 x 32 photo, preprocessing resize 32 / crop 32: the model sees columns 8..40; the heatmap
    over the shown region peaks where the blob is in that region (and a transposed or flipped map fails)."""
    x, y, quads = quadrant_images(16, seed=2)
    i = next(i for i in range(16) if int(quads[i]) == 1)  # top-right: transposing would move it to bottom-left
    photo = np.zeros((32, 48, 3), np.uint8)
    photo[:, 8:40] = (x[i].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    pre = Preprocessing(32, 32, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), "bilinear")
    assert crop_box(48, 32, pre) == (8, 0, 40, 32)
    result = Explainer(Predictor(quadrant_model, ["red", "green", "blue"], pre, device="cpu")).explain(
        Image.fromarray(photo), "photo.png")
    assert result.prediction.label == ["red", "green", "blue"][int(y[i])]
    assert result.image.size == (32, 32) and np.array_equal(np.asarray(result.image), photo[:, 8:40])
    heat = result.heatmap()
    assert heat.shape == (32, 32) and heat.max() == pytest.approx(1.0)
    assert quadrant_of(torch.from_numpy(heat)) == 1
    png = result.overlay()
    assert png.width == 32 and png.height > 32  # the caption strip below


def test_a_class_to_explain_and_its_probability(quadrant_model):
    x, y, _ = quadrant_images(4, seed=3)
    _, maps, targets = GradCAM(quadrant_model)(x, target=2)
    assert targets.tolist() == [2, 2, 2, 2]
    pre = Preprocessing(32, 32, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), "bilinear")
    explainer = Explainer(Predictor(quadrant_model, ["red", "green", "blue"], pre, device="cpu"))
    image = Image.fromarray((x[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8))
    result = explainer.explain(image, target="blue", topk=3)
    probs = dict(zip(result.prediction.labels, result.prediction.probs))
    assert result.target == "blue" and result.target_prob == pytest.approx(probs["blue"], abs=1e-6)
    if result.prediction.label != "blue":
        assert result.caption_lines()[1].startswith("Grad-CAM of blue")
    with pytest.raises(ConfigError, match=r"--class 'bleu': not a class of this model; did you mean blue\? its classes: red, green, blue"):
        explainer.explain(image, target="bleu")


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2", "googlenet", "alexnet", "efficientnet_lite0", "lenet5"])
def test_the_default_layer_is_the_models_last_stage(name):
    model = create_model(name, num_classes=4)
    size = 32 if name == "lenet5" else 64  # LeNet-5 takes exactly 32 x 32
    info = model.feature_info[-1]
    _, maps, _ = GradCAM(model)(torch.randn(2, 3, size, size))
    side = -(-size // info.reduction)  # padded layers: ceil(S / reduction); unpadded ones trim a border
    assert maps.shape[0] == 2 and maps.shape[1] == maps.shape[2] and side - 3 <= maps.shape[1] <= side
    assert GradCAM(model).layer == model.last_stage


def test_vit_tokens_are_laid_back_on_the_patch_grid():
    model = create_model("vit_b_32", num_classes=3, image_size=64)
    nn.init.normal_(model.get_classifier().weight)  # torchvision's ViT head starts at zero: no gradient at all
    cam = GradCAM(model)
    assert cam.layer == "encoder.layers.encoder_layer_11.ln_1"
    _, maps, _ = cam(torch.randn(1, 3, 64, 64))
    assert maps.shape == (1, 2, 2) and maps.max() > 0
    with pytest.raises(ConfigError, match="the logits do not depend on its output"):
        GradCAM(model, "encoder.layers.encoder_layer_11")(torch.randn(1, 3, 64, 64))  # the class token only


def test_an_unknown_or_unusable_layer_is_one_line_with_the_choices():
    model = create_model("resnet18", num_classes=3)
    with pytest.raises(ConfigError) as e:
        GradCAM(model, "layer5")
    assert str(e.value).startswith("--layer 'layer5': ResNet has no such module; did you mean layer")
    assert "its stages: relu, layer1, layer2, layer3, layer4" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(ConfigError, match=r"--layer fc: its output is \[1, 3\], not a feature map"):
        GradCAM(model, "fc")(torch.randn(1, 3, 32, 32))
    _, maps, _ = GradCAM(model, "layer3.1.conv2")(torch.randn(1, 3, 64, 64))  # any module name works
    assert maps.shape == (1, 4, 4)


def test_helpers():
    assert jet(np.array([[0.0, 1.0]])).tolist() == [[[0, 0, 127], [127, 0, 0]]]
    unique = UniqueNames()
    assert [unique(s) for s in ["a/x.jpg", "b/x.jpg", "x.png", "y.jpg"]] == ["x", "x-2", "x-3", "y"]


@pytest.fixture
def trained(tiny_run):
    return tiny_run


def test_cam_command_writes_overlays_and_maps(trained, tmp_path, capsys):
    data, ckpt = trained
    files = sorted((data / "class_1").glob("*.jpg"))[:2]
    (tmp_path / "notes.jpg").write_text("hello")
    code = run_cli(["cam", ckpt, *files, tmp_path / "notes.jpg", "-o", tmp_path / "out", "--save-npy", "--topk", "2"])
    out = capsys.readouterr().out.splitlines()
    assert code == 1  # one unreadable file, the others done
    assert out[-1].startswith(f"{tmp_path / 'notes.jpg'}: error: ") and "looks like text" in out[-1]
    for f, line in zip(files, out):
        png, npy = tmp_path / "out" / f"{f.stem}.cam.png", tmp_path / "out" / f"{f.stem}.cam.npy"
        assert line.endswith(f"-> {png}") and line.count("%") == 2
        left, _, right, _ = crop_box(*Image.open(f).size, Predictor.from_checkpoint(ckpt).preprocessing)
        assert Image.open(png).width == right - left  # the crop the model saw, at the photo's resolution
        assert np.load(npy).shape == (1, 1)  # resnet18 at 32 px: a 1x1 layer4 map
    assert run_cli(["cam", ckpt, files[0], "-o", tmp_path / "o2", "--layer", "layer2"]) == 0
    capsys.readouterr()
    assert run_cli(["cam", ckpt, files[0], "--layer", "layr2"]) == 2
    assert "did you mean layer2" in error_line(capsys, only=True)
    assert run_cli(["cam", ckpt, files[0], "--class", "class_9"]) == 2
    assert error_line(capsys, only=True).startswith("imgcls: error: --class 'class_9': not a class of this model")
    assert not (ckpt.parent / "cam").exists()  # refused before any work


def test_eval_cam_adds_a_grid_of_the_worst_mistakes(trained, tmp_path, capsys):
    data, ckpt = trained
    assert run_cli(["eval", ckpt, data, "-o", tmp_path / "ev", "--workers", "0", "--cam", "3", "--wrong", "1"]) == 0
    text = capsys.readouterr().out
    import json

    report = json.loads((tmp_path / "ev" / "report.json").read_text())
    wrong = report["n"] - report["top1_correct"]
    if not wrong:
        pytest.skip("the 1-epoch model made no mistake: nothing to draw")
    k = min(3, wrong)
    grid = Image.open(tmp_path / "ev" / "wrong_cam.png")
    assert "wrong_cam.png" in text and len(report["most_confident_wrong"]) == 1  # --wrong 1 still lists one
    assert grid.size[0] == k * 256 + (k + 1) * 6  # k tiles of 256 px in one row, 6 px gaps


def test_cam_of_a_weights_name_needs_an_output_folder(tmp_path, capsys):
    from imgcls.paths import bundled_photos
    from tests.conftest import error_line, run_cli

    photo = sorted((bundled_photos() / "daisy").glob("*.jpg"))[0]
    assert run_cli(["cam", "efficientnet_lite0.in1k", photo]) == 2
    assert error_line(capsys, only=True) == ("imgcls: error: efficientnet_lite0.in1k is not a file, so there is no "
                                             "folder beside it for the overlays; name one with -o DIR")
