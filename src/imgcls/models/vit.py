"""Vision Transformer: Dosovitskiy et al., "An Image is Worth 16x16 Words: Transformers for Image
Recognition at Scale" (2020, arXiv:2010.11929).

The image is cut into P x P patches, each linearly embedded (`conv_proj`, a stride-P conv); a
learned class token is prepended, learned position embeddings added, and a stack of pre-norm
Transformer encoder blocks (LayerNorm, multi-head self-attention, LayerNorm, GELU MLP, each with a
residual) runs over the sequence; the class token's final state feeds the head. Module names are
torchvision's (`class_token`, `conv_proj`, `encoder.pos_embedding`,
`encoder.layers.encoder_layer_N.{ln_1, self_attention, ln_2, mlp.0, mlp.3}`, `encoder.ln`,
`heads.head`), and attention is `nn.MultiheadAttention`, so the official weights load with
`strict=True`.

Input size. A model built with `image_size=S` takes exactly S x S inputs (S a multiple of P): the
number of position embeddings is (S / P)^2 + 1. To use weights trained at another size, build at
the size you want; the weight loaders (`create_model(..., weights=)`,
`imgcls.weights.load_pretrained`) resample the file's position-embedding grid bicubically
(`interpolate_pos_embedding`, as torchvision's `interpolate_embeddings`), leaving the class
token's embedding untouched.

Stages. A ViT has no feature maps, only token sequences; its `feature_info` names every encoder
block (`encoder.layers.encoder_layer_N`, `hidden_dim` channels, reduction = the patch size), and
`forward_stages` / `to_feature_map` turn each block's [N, 1 + (S/P)^2, D] output into the map
[N, D, S/P, S/P]: the class token dropped, the patch tokens laid back on their grid (row-major,
as `conv_proj` flattened them). The last stage is the final block's output, before the encoder's
closing LayerNorm. Grad-CAM cannot use it: the head reads only the class token, so the logits do
not depend on the patch tokens there. `cam_layer` therefore names the last block's `ln_1`, the
input of the last attention, through which the class token reads the patches.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from imgcls.models.base import ClassifierMixin, FeatureInfo, Paper
from imgcls.models.layers import linear_classifier
from imgcls.models.registry import register_model


def interpolate_pos_embedding(state_dict: dict[str, torch.Tensor], image_size: int, patch_size: int, *,
                              mode: str = "bicubic") -> dict[str, torch.Tensor]:
    """`state_dict` with `encoder.pos_embedding` resampled to an (image_size / patch_size)^2 grid.

    The first embedding (the class token's) is kept as is; the rest are reshaped to their square
    grid, interpolated (align_corners=True, as torchvision) and flattened back. A state dict
    whose grid already fits is returned unchanged.
    """
    key = "encoder.pos_embedding"
    pos = state_dict[key]
    n, seq_len, dim = pos.shape
    if n != 1:
        raise ValueError(f"{key} should be [1, L, D], got {list(pos.shape)}")
    new_side = image_size // patch_size
    if seq_len == new_side ** 2 + 1:
        return state_dict
    side = math.isqrt(seq_len - 1)
    if side * side != seq_len - 1:
        raise ValueError(f"{key} has {seq_len - 1} patch embeddings, not a square grid")
    cls_pos, grid = pos[:, :1], pos[:, 1:]
    grid = grid.permute(0, 2, 1).reshape(1, dim, side, side)
    grid = F.interpolate(grid, size=new_side, mode=mode, align_corners=True)
    grid = grid.reshape(1, dim, new_side * new_side).permute(0, 2, 1)
    return {**state_dict, key: torch.cat([cls_pos, grid], dim=1)}


class MLPBlock(nn.Sequential):
    """Linear to mlp_dim, GELU, dropout, Linear back, dropout (keys `mlp.0`, `mlp.3`)."""

    def __init__(self, dim: int, mlp_dim: int, dropout: float) -> None:
        super().__init__(nn.Linear(dim, mlp_dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(mlp_dim, dim),
                         nn.Dropout(dropout))
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.normal_(m.bias, std=1e-6)


class EncoderBlock(nn.Module):
    """Pre-norm Transformer block: x + attn(LN(x)), then x + MLP(LN(x))."""

    def __init__(self, *, num_heads: int, dim: int, mlp_dim: int, dropout: float, attention_dropout: float) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(dim, eps=1e-6)
        self.self_attention = nn.MultiheadAttention(dim, num_heads, dropout=attention_dropout, batch_first=True)
        self.dropout = nn.Dropout(dropout)
        self.ln_2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = MLPBlock(dim, mlp_dim, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.ln_1(x)
        y, _ = self.self_attention(y, y, y, need_weights=False)
        x = x + self.dropout(y)
        return x + self.mlp(self.ln_2(x))


class Encoder(nn.Module):
    """Position embeddings (one per patch plus the class token), the blocks, a final LayerNorm."""

    def __init__(self, seq_len: int, num_layers: int, *, dim: int, dropout: float, **block_kw) -> None:
        super().__init__()
        self.pos_embedding = nn.Parameter(torch.empty(1, seq_len, dim).normal_(std=0.02))  # BERT's init
        self.dropout = nn.Dropout(dropout)
        self.layers = nn.Sequential()
        for i in range(num_layers):
            self.layers.add_module(f"encoder_layer_{i}", EncoderBlock(dim=dim, dropout=dropout, **block_kw))
        self.ln = nn.LayerNorm(dim, eps=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ln(self.layers(self.dropout(x + self.pos_embedding)))


class VisionTransformer(ClassifierMixin, nn.Module):
    """Patch embedding, class token, Transformer encoder, `heads.head` on the class token."""

    classifier_name = "heads.head"
    fixed_input_size = True  # min_input_size is image_size (see the module docstring)

    def __init__(self, *, image_size: int, patch_size: int, num_layers: int, num_heads: int, hidden_dim: int,
                 mlp_dim: int, num_classes: int = 1000, dropout: float = 0.0, attention_dropout: float = 0.0) -> None:
        super().__init__()
        if image_size % patch_size:
            raise ValueError(f"image_size {image_size} is not a multiple of the patch size {patch_size}")
        self.num_classes = num_classes
        self.image_size = image_size
        self.patch_size = patch_size
        self.min_input_size = (image_size, image_size)
        self.conv_proj = nn.Conv2d(3, hidden_dim, patch_size, stride=patch_size)
        self.feature_info = tuple(FeatureInfo(f"encoder.layers.encoder_layer_{i}", hidden_dim, self.conv_proj.stride[0])
                                  for i in range(num_layers))
        self.class_token = nn.Parameter(torch.zeros(1, 1, hidden_dim))
        self.encoder = Encoder((image_size // patch_size) ** 2 + 1, num_layers, dim=hidden_dim, dropout=dropout,
                               num_heads=num_heads, mlp_dim=mlp_dim, attention_dropout=attention_dropout)
        self.num_features = hidden_dim
        self.heads = nn.Sequential()
        self.heads.add_module("head", linear_classifier(hidden_dim, num_classes))

        fan_in = 3 * patch_size * patch_size
        nn.init.trunc_normal_(self.conv_proj.weight, std=math.sqrt(1 / fan_in))
        nn.init.zeros_(self.conv_proj.bias)
        if num_classes > 0:  # a zero head: every class starts equally likely (the paper's fine-tuning recipe)
            nn.init.zeros_(self.heads.head.weight)
            nn.init.zeros_(self.heads.head.bias)

    def remap_state_dict(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Called by the weight loaders before loading: position embeddings resized to this model's grid."""
        if "encoder.pos_embedding" not in state_dict:
            return state_dict
        return interpolate_pos_embedding(state_dict, self.image_size, self.patch_size)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The encoder's output sequence, [N, 1 + (S/P)^2, hidden_dim]; position 0 is the class token."""
        h, w = x.shape[-2:]
        if (h, w) != self.min_input_size:
            raise ValueError(f"this ViT was built for {self.image_size}x{self.image_size} inputs and got {h}x{w}; "
                             f"build it with image_size={h} (a multiple of {self.patch_size}) or resize the input")
        x = self.conv_proj(x).flatten(2).transpose(1, 2)  # [N, D, S/P, S/P] -> [N, (S/P)^2, D]
        x = torch.cat([self.class_token.expand(x.shape[0], -1, -1), x], dim=1)
        return self.encoder(x)

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return self.heads(x[:, 0])

    @property
    def cam_layer(self) -> str:
        """The last block's `ln_1`: the deepest tokens the class token still reads (see the module docstring)."""
        return f"{self.last_stage}.ln_1"

    def to_feature_map(self, output: torch.Tensor) -> torch.Tensor:
        """Encoder tokens [N, 1 + h*w, D] (a block's output or its gradient) as the map [N, D, h, w]."""
        side = self.image_size // self.patch_size
        n, seq_len, dim = output.shape
        if seq_len != 1 + side * side:
            raise ValueError(f"expected the class token and {side}x{side} patch tokens, got {seq_len} tokens")
        return output[:, 1:].transpose(1, 2).reshape(n, dim, side, side)


# name: (patch size, layers, heads, hidden width, MLP width); the paper's Table 1 ("B" = Base)
VITS: dict[str, tuple[int, int, int, int, int]] = {
    "vit_b_16": (16, 12, 12, 768, 3072),
    "vit_b_32": (32, 12, 12, 768, 3072),
}


# the papers of this file's builders, by name prefix (the longest wins), cited by docs/models.md
PAPERS: dict[str, Paper] = {
    "vit": Paper("Dosovitskiy et al.",
                 "An Image is Worth 16x16 Words: Transformers for Image Recognition at Scale",
                 2020, "arXiv:2010.11929"),
}


def _vit(name: str, *, num_classes: int, image_size: int = 224, dropout: float = 0.0,
         attention_dropout: float = 0.0) -> VisionTransformer:
    patch, layers, heads, dim, mlp = VITS[name]
    return VisionTransformer(image_size=image_size, patch_size=patch, num_layers=layers, num_heads=heads,
                             hidden_dim=dim, mlp_dim=mlp, num_classes=num_classes, dropout=dropout,
                             attention_dropout=attention_dropout)


@register_model
def vit_b_16(*, num_classes: int = 1000, **kw) -> VisionTransformer:
    """ViT-B/16 (Dosovitskiy et al. 2020, Table 1): takes image_size x image_size inputs (default 224)."""
    return _vit("vit_b_16", num_classes=num_classes, **kw)


@register_model
def vit_b_32(*, num_classes: int = 1000, **kw) -> VisionTransformer:
    """ViT-B/32 (Dosovitskiy et al. 2020, Table 1): takes image_size x image_size inputs (default 224)."""
    return _vit("vit_b_32", num_classes=num_classes, **kw)
