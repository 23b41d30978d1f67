"""Pretrained weights: where they come from, how they are fetched, read, and fitted to a model.

One module per job, each usable alone:

- `specs`: `WeightSpec` records in one table (torchvision URLs, sha256 prefixes, preprocessing,
  published top-1); `get_weight_spec`, `list_weights`, and `spec_preprocessing`, the one source
  of a weight's eval preprocessing.
- `fetch`: `resolve_weights("resnet18")` turns a registry name, a spec or a path into a local
  file, cached under `default_weights_dir()` and downloaded (resumably, hash checked) when
  missing; offline, it says in one line where to put the file by hand.
- `reader`: `read_state_dict(path)`, the one safe reader (`weights_only=True` or safetensors) of
  plain state dicts, imgcls / Lightning checkpoints and DDP / torch.compile prefixes.
- `loader`: `load_pretrained(model, state)` -> `LoadReport` (strict except a classifier of
  another shape), `load_weights(model, "resnet18")` chaining the three, `build_pretrained(arch,
  state)`, the one way a network is built with pretrained weights (its head reset or stacked), and
  `create_model_with_weights`, the public `imgcls.create_model(name, num_classes, weights=...)`.

Our models use torchvision's module names (see `imgcls.models.resnet`), so the official files
load without any key renaming.
"""
from imgcls.weights.fetch import default_weights_dir, download, file_sha256, hash_matches, resolve_weights
from imgcls.weights.loader import (LoadReport, Pretrained, build_pretrained, create_model_with_weights, create_network,
                                   load_pretrained, load_strict, load_weights)
from imgcls.weights.reader import is_torch_file, read_state_dict, unreadable_reason
from imgcls.weights.specs import (IMAGENET_MEAN, IMAGENET_STD, WEIGHTS, WeightSpec, get_weight_spec,
                                  imagenet_categories, imagenet_preprocessing, list_weights, spec_categories,
                                  spec_preprocessing)

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "WEIGHTS", "WeightSpec", "get_weight_spec", "imagenet_preprocessing",
           "imagenet_categories", "spec_categories", "list_weights", "spec_preprocessing", "default_weights_dir",
           "download", "file_sha256", "hash_matches",
           "resolve_weights", "is_torch_file", "read_state_dict", "unreadable_reason", "LoadReport", "load_pretrained", "load_strict",
           "load_weights", "Pretrained", "build_pretrained", "create_network",
           "create_model_with_weights"]
