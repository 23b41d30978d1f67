"""Layer 2: from a folder of photos to tensors — decoding, datasets, transforms. No model code."""
from imgcls.data.dataset import ImageFolder, find_classes, save_class_indices, scan_folder
from imgcls.data.decode import IMAGE_EXTENSIONS, load_image
from imgcls.data.transforms import (IMAGENET_MEAN, IMAGENET_STD, CenterCrop, Compose, RandomHorizontalFlip,
                                    RandomResizedCrop, Resize, ToTensorNormalize, eval_transform, train_transform)

__all__ = ["ImageFolder", "find_classes", "save_class_indices", "scan_folder", "IMAGE_EXTENSIONS", "load_image",
           "IMAGENET_MEAN", "IMAGENET_STD", "CenterCrop", "Compose", "RandomHorizontalFlip", "RandomResizedCrop",
           "Resize", "ToTensorNormalize", "eval_transform", "train_transform"]
