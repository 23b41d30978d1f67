"""Layer 2: from a folder of photos to tensors — decoding, datasets, transforms. No model code."""
from imgcls.data.dataset import ImageFolder, find_bad_images, find_classes, list_images, save_class_indices, scan_folder
from imgcls.data.loader import SeededItems, SeededSampler, default_workers, make_loader
from imgcls.data.split import Split, make_split, write_split
from imgcls.data.parts import DatasetParts, open_dataset, open_parts, read_split
from imgcls.data.decode import IMAGE_EXTENSIONS, load_array, load_image
from imgcls.data.names import safe_name
from imgcls.data.preprocessing import Preprocessing
from imgcls.data.transforms import (IMAGENET_MEAN, IMAGENET_STD, BatchNormalizer, CenterCrop, ColorJitter, Compose, RandomHorizontalFlip,
                                    RandomResizedCrop, Resize, ToTensorNormalize, ToUint8, eval_transform,
                                    normalize_batch, train_transform)

__all__ = ["ImageFolder", "find_classes", "DatasetParts", "open_dataset", "open_parts", "Split", "make_split", "read_split", "write_split", "save_class_indices", "scan_folder", "list_images", "IMAGE_EXTENSIONS", "load_array", "load_image",
           "IMAGENET_MEAN", "IMAGENET_STD", "BatchNormalizer", "CenterCrop", "ColorJitter", "Compose", "RandomHorizontalFlip", "RandomResizedCrop",
           "Resize", "ToTensorNormalize", "ToUint8", "eval_transform", "normalize_batch", "train_transform",
           "default_workers", "make_loader", "SeededItems", "SeededSampler", "find_bad_images", "safe_name", "Preprocessing"]
