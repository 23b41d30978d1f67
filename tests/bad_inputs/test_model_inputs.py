"""Segmentation models asked for what they cannot be: one line naming the model, value and fix, exit 2."""
import pytest

from tests.conftest import error_line, run_cli


@pytest.mark.parametrize("argv, message", [
    (["summary", "fcn8s", "--model-kw", "backbone=vit_b_16"],
     "fcn8s on vit_b_16 reads the backbone's deepest stage at stride 32; VisionTransformer's "
     "encoder.layers.encoder_layer_11 is at stride 16 (FCN needs stages at strides 8, 16 and 32: "
     "a backbone without dilation)"),
    (["summary", "fcn16s", "--model-kw", "backbone=resnet50", "--model-kw",
      "replace_stride_with_dilation=[false,true,true]"], "ResNet's layer4 is at stride 8"),
    (["summary", "fcn8s", "--model-kw", "backbone=resnt18"], "unknown model 'resnt18'; did you mean resnet18"),
    (["summary", "fcn8s", "--model-kw", "backbone=fcn32s"],
     "backbone 'fcn32s' is a segmentation model; a backbone is a classifier (see `imgcls models`)"),
    (["summary", "fcn8s_efficientnet_lite0", "--num-classes", "0"],
     "fcn8s on efficientnet_lite0 needs num_classes >= 1 (one score map per class, the background included), got 0"),
    (["summary", "lraspp_mobilenet_v3_large", "--model-kw", "aux_loss=true"], "does not take the option(s)"),
])
def test_segmentation_model_refusals_are_one_line(argv, message, capsys):
    assert run_cli(argv) == 2
    assert message in error_line(capsys, only=True)
