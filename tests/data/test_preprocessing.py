"""data.Preprocessing: the dict checkpoints and exported files store comes back as the same record, a file
whose preprocessing was changed is one line naming the file and the field, and the record's eval transform
and batch normaliser give torchvision's eval tensor."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from imgcls.data import Preprocessing, eval_transform, load_array
from imgcls.errors import CheckpointError
from imgcls.paths import bundled_photos
from imgcls.weights import get_weight_spec

# what a checkpoint written by `imgcls train` holds (engine.build.preprocessing(...).to_dict())
SAVED = {"resize": 37, "crop": 32, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225],
         "interpolation": "bilinear"}
FIX = "it was changed after imgcls train wrote it"


def test_the_stored_dict_round_trips():
    pre = Preprocessing.from_dict(SAVED, where="best.ckpt", fix=FIX)
    assert pre == Preprocessing(37, 32, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), "bilinear")
    assert pre.to_dict() == SAVED and list(pre.to_dict()) == list(SAVED)  # same keys, same order, lists
    spec = get_weight_spec("efficientnet_lite0.in1k").preprocessing
    assert Preprocessing.from_dict(spec.to_dict(), where="x", fix=FIX) == spec
    with pytest.raises(dataclasses.FrozenInstanceError):
        pre.crop = 64


@pytest.mark.parametrize("change, says", [
    ({"resize": 100000}, "best.ckpt: preprocessing.resize 100000: must be between 1 and 4096 px"),
    ({"crop": "32"}, "best.ckpt: preprocessing.crop '32': must be a whole number of pixels"),
    ({"mean": [0.5, 0.5]}, "best.ckpt: preprocessing.mean [0.5, 0.5]: must be 3 finite numbers, one per RGB channel"),
    ({"std": [1, 0, 1]}, "best.ckpt: preprocessing.std [1, 0, 1]: must be 3 finite numbers, one per RGB channel, "
                         "each above 0"),
    ({"interpolation": "lanczos"}, 'best.ckpt: preprocessing.interpolation "lanczos": must be one of bilinear, '),
    ({"interpolation": None}, "best.ckpt: preprocessing has no interpolation"),
])
def test_a_changed_field_is_one_line_naming_the_file_and_the_field(change, says):
    d = {k: v for k, v in {**SAVED, **change}.items() if v is not None}
    with pytest.raises(CheckpointError) as e:
        Preprocessing.from_dict(d, where="best.ckpt", fix=FIX)
    assert str(e.value).startswith(says) and str(e.value).endswith(f"; {FIX}") and "\n" not in str(e.value)


def test_not_a_dict_is_refused():
    with pytest.raises(CheckpointError, match=r"^m\.onnx: metadata preprocessing \[36, 32\]: must be an object with "
                                              r"resize, crop, mean, std, interpolation; again$"):
        Preprocessing.from_dict([36, 32], where="m.onnx", what="metadata preprocessing", fix="again")


@pytest.mark.parametrize("name", ["resnet50.tv2_in1k", "efficientnet_lite0.in1k"])
def test_eval_transform_and_normalizer_give_torchvisions_eval_tensor(name):
    """The uint8 crop + batch normaliser equals the float pipeline (Resize, CenterCrop, ToTensor, Normalize)."""
    pre = get_weight_spec(name).preprocessing
    photo = load_array(sorted((bundled_photos() / "daisy").glob("*.jpg"))[0])
    crop = pre.eval_transform()(photo)
    reference = eval_transform(resize=pre.resize, crop=pre.crop, mean=pre.mean, std=pre.std,
                               interpolation=pre.interpolation)(photo)
    assert crop.shape == (pre.crop, pre.crop, 3) and crop.dtype == np.uint8
    assert np.array_equal(crop, eval_transform(resize=pre.resize, crop=pre.crop, interpolation=pre.interpolation,
                                               uint8=True)(photo))
    batch = torch.from_numpy(np.stack([crop, crop]))
    for x in (pre.normalizer()(batch), pre.normalize(batch)):
        assert x.shape == (2, 3, pre.crop, pre.crop)
        torch.testing.assert_close(x[1], reference, rtol=0, atol=1e-5)
