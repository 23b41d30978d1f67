"""ImageNet's per-channel mean and std (RGB, pixel values in [0, 1]): the normalisation torchvision's
weights were trained with and imgcls's default. A module of its own, without torch, so that the
training config (and with it `imgcls train --help`) can name them without importing data/transforms."""

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
