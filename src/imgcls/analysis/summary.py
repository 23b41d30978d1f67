"""The per-layer table of a model: kernel/stride/padding, output size, parameters and FLOPs.

Convolution and pooling rows show their output size as N = (W - F + 2P)/S + 1; transposed
convolutions (the learnable upsampling of FCN) as N = (W - 1)*S - 2P + F, its inverse.

FLOPs are counted by torch's own `torch.utils.flop_counter` and reported as multiply-adds (MACs),
the unit of the ResNet paper's Table 1 ("3.6 x 10^9 FLOPs" for ResNet-34 are multiply-adds).
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from imgcls.errors import ConfigError, summary_of


def _cpu_attention_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


# torch has no formula for CPU's fused attention kernel; count it as its other attention kernels.
_EXTRA_FORMULAS = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_attention_flops}

# Leaf modules that change nothing a reader of the table needs (their cost is not counted anyway).
_QUIET = (nn.ReLU, nn.ReLU6, nn.GELU, nn.SiLU, nn.Hardswish, nn.Hardsigmoid, nn.Sigmoid, nn.Dropout,
          nn.Identity, nn.Flatten)


def conv_output_size(size: int, kernel: int, stride: int = 1, pad_before: int = 0, pad_after: int | None = None,
                     dilation: int = 1, ceil_mode: bool = False) -> int:
    """N = (W - F + 2P) / S + 1, rounded down (up with `ceil_mode`), as PyTorch computes it."""
    pad_after = pad_before if pad_after is None else pad_after
    span = size + pad_before + pad_after - dilation * (kernel - 1) - 1
    n = (math.ceil if ceil_mode else math.floor)(span / stride) + 1
    if ceil_mode and (n - 1) * stride >= size + pad_before:  # the last window must start inside the input
        n -= 1
    return n


def _is_leaf(m: nn.Module) -> bool:
    # nn.MultiheadAttention uses its `out_proj` child's weights without calling it: one row, not two
    return next(m.children(), None) is None or isinstance(m, nn.MultiheadAttention)


def _pair(v) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _geometry(m: nn.Module) -> tuple[int, int, int, int, int, bool] | None:
    """(kernel, stride, pad_before, pad_after, dilation, ceil_mode) along H, for conv and pool layers."""
    if isinstance(m, nn.Conv2d):
        pad = getattr(m, "pad", None)  # PaddedConv2d's asymmetric padding
        before, after = pad if pad is not None else (_pair(m.padding)[0],) * 2
        return _pair(m.kernel_size)[0], _pair(m.stride)[0], before, after, _pair(m.dilation)[0], False
    if isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)):
        k = _pair(m.kernel_size)[0]
        s = _pair(m.stride if m.stride is not None else m.kernel_size)[0]
        p = _pair(m.padding)[0]
        d = _pair(getattr(m, "dilation", 1))[0]
        return k, s, p, p, d, bool(m.ceil_mode)
    return None


@dataclass
class LayerRow:
    name: str
    kind: str
    out_shape: tuple[int, ...]
    params: int
    macs: int
    kernel: str = ""  # "k/s/p", e.g. "7/2/3"
    formula: str = ""  # the output-size arithmetic along H, for conv and pool layers


@dataclass
class ModelSummary:
    model: str
    input_shape: tuple[int, int, int]
    rows: list[LayerRow] = field(default_factory=list)
    total_params: int = 0
    trainable_params: int = 0
    total_macs: int = 0

    @property
    def gmacs(self) -> float:
        return self.total_macs / 1e9

    def to_dict(self) -> dict:
        return asdict(self) | {"gmacs": self.gmacs}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def to_text(self) -> str:
        head = ("Layer", "Type", "k/s/p", "Output (CxHxW)", "Params", "MACs", "Size: N = (W - F + 2P)/S + 1")
        body = [(r.name, r.kind, r.kernel, "x".join(map(str, r.out_shape)), f"{r.params:,}",
                 _human(r.macs), r.formula) for r in self.rows]
        widths = [max(len(str(c)) for c in col) for col in zip(head, *body)]
        right = {4, 5}
        fmt = lambda cells: "  ".join(  # noqa: E731
            (c.rjust(w) if i in right else c.ljust(w)) for i, (c, w) in enumerate(zip(cells, widths))).rstrip()
        rule = "-" * len(fmt(head))
        c, h, w = self.input_shape
        transposed = any(r.kind == "ConvTranspose2d" for r in self.rows)
        lines = [f"{self.model}  input {c}x{h}x{w}", rule, fmt(head), rule, *map(fmt, body), rule,
                 *([TRANSPOSED_NOTE] if transposed else []),
                 f"Total params:     {self.total_params:,}",
                 f"Trainable params: {self.trainable_params:,}",
                 f"Multiply-adds:    {self.gmacs:.2f} G (the papers' 'FLOPs'; {2 * self.gmacs:.2f} GFLOP counting "
                 "multiply and add separately)"]
        return "\n".join(lines)


TRANSPOSED_NOTE = ("ConvTranspose2d rows: N = (W - 1)*S - 2P + D*(F - 1) + output_padding + 1, "
                   "i.e. (W - 1)*S - 2P + F with no dilation or output padding")


def _human(n: int) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= scale:
            return f"{n / scale:.2f}{unit}"
    return str(n)


def _formula(geom: tuple[int, int, int, int, int, bool], size: int, out: int) -> str:
    k, s, before, after, d, ceil = geom
    f = k if d == 1 else d * (k - 1) + 1
    pad = f"2*{before}" if before == after else f"{before}+{after}"
    num = size - f + before + after
    exact = "" if num % s == 0 else (" (rounded up)" if ceil else " (rounded down)")
    return f"({size} - {f} + {pad})/{s} + 1 = {out}{exact}"


def _transposed(m: nn.ConvTranspose2d, size: int, out: int) -> tuple[str, str]:
    """(k/s/p, formula) of a transposed convolution along H: N = (W - 1)*S - 2P + D*(F - 1) + output
    padding + 1, which is (W - 1)*S - 2P + F for an undilated kernel and no output padding; with
    F = 2S and P = S/2 (FCN's bilinear upsampling) N = S * W."""
    k, s, p, d, extra = (_pair(v)[0] for v in (m.kernel_size, m.stride, m.padding, m.dilation, m.output_padding))
    f = k if d == 1 else d * (k - 1) + 1
    plus = f" + {extra}" if extra else ""
    return f"{k}/{s}/{p}", f"({size} - 1)*{s} - 2*{p} + {f}{plus} = {out}"


def summarize(model: nn.Module, input_size: int | tuple[int, int] = 224, *, in_chans: int = 3,
              depth: int | None = None, name: str | None = None) -> ModelSummary:
    """Run one image through `model` (eval mode, no grad) and tabulate every layer it used.

    `depth=None` lists every leaf layer except activations and dropout; `depth=k` groups rows at the
    k-th level of module names (e.g. depth 1 gives ResNet's stem layers and its four stages; a module
    that never runs as a whole, such as a segmentation model's backbone, shows its parts that did).
    """
    h, w = _pair(input_size)
    name = name or type(model).__name__
    root = type(model).__name__
    names = {m: n for n, m in model.named_modules() if n}
    summary = ModelSummary(model=name, input_shape=(in_chans, h, w))
    records: list[tuple[str, nn.Module, tuple, tuple]] = []
    current: list[tuple[str, nn.Module, tuple]] = []

    def candidate(n: str, m: nn.Module) -> bool:
        # a row unless a module above it at the grouping level ran (see _grouped)
        level = n.count(".") + 1
        is_leaf = _is_leaf(m)
        if is_leaf and isinstance(m, _QUIET):
            return False
        return is_leaf if depth is None else level >= depth or is_leaf

    def pre_hook(m, args):
        if _is_leaf(m) and args and isinstance(args[0], torch.Tensor):
            current[:] = [(names[m], m, tuple(args[0].shape[1:]))]

    def post_hook(m, args, out):
        if isinstance(m, nn.MultiheadAttention):
            out = out[0]  # (output, attention weights)
        if candidate(names[m], m) and isinstance(out, torch.Tensor):
            in_shape = tuple(args[0].shape[1:]) if args and isinstance(args[0], torch.Tensor) else ()
            records.append((names[m], m, in_shape, tuple(out.shape[1:])))

    handles = [m.register_forward_pre_hook(pre_hook) for m in names] + \
              [m.register_forward_hook(post_hook) for m in names]
    was_training = model.training
    model.eval()
    # nn.MultiheadAttention's inference fast path is one fused op the counter cannot see into:
    # take its op-by-op path (same result) while counting
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with torch.no_grad(), FlopCounterMode(display=False, depth=None, custom_mapping=_EXTRA_FORMULAS) as counter:
            model(torch.zeros(1, in_chans, h, w))
    except ValueError as e:  # a model's own check of its input size (LeNet-5, ViT), which names the fix
        raise ConfigError(f"{name} cannot take a {in_chans}x{h}x{w} input: {e}") from None
    except RuntimeError as e:
        raise ConfigError(_too_small_message(name, (in_chans, h, w), current, model, e)) from None
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
        torch.backends.mha.set_fastpath_enabled(fastpath)

    flops = counter.get_flop_counts()
    seen: set[int] = set()
    for n, m, in_shape, out_shape in _grouped(records, depth):
        first = id(m) not in seen
        seen.add(id(m))
        geom = _geometry(m) if _is_leaf(m) else None
        row = LayerRow(name=n, kind=type(m).__name__, out_shape=out_shape,
                       params=sum(p.numel() for p in m.parameters()) if first else 0,
                       macs=sum(flops.get(f"{root}.{n}", {}).values()) // 2 if first else 0)
        if isinstance(m, nn.ConvTranspose2d) and len(in_shape) == 3:
            row.kernel, row.formula = _transposed(m, in_shape[1], out_shape[1])
        elif geom is not None and len(in_shape) == 3:
            k, s, before, after = geom[:4]
            row.kernel = f"{k}/{s}/{before}" if before == after else f"{k}/{s}/{before},{after}"
            row.formula = _formula(geom, in_shape[1], out_shape[1])
        summary.rows.append(row)
    summary.total_params = sum(p.numel() for p in model.parameters())
    summary.trainable_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    summary.total_macs = counter.get_total_flops() // 2
    return summary


def _grouped(records: list[tuple[str, nn.Module, tuple, tuple]], depth: int | None) -> list:
    """The records that are rows at `depth`: a module at that level, or a leaf above it; where a module
    at that level never ran as a whole (a segmentation model's backbone, run stage by stage), the
    outermost of its parts that did."""
    if depth is None:
        return records
    ran = {n for n, *_ in records}

    def inside_a_row(name: str) -> bool:
        parts = name.split(".")
        return any(".".join(parts[:i]) in ran for i in range(depth, len(parts)))

    return [r for r in records if not inside_a_row(r[0])]


def _too_small_message(name: str, shape: tuple[int, int, int], current: list, model: nn.Module,
                       error: RuntimeError) -> str:
    c, h, w = shape
    minimum = getattr(model, "min_input_size", None)
    hint = f"; use at least {minimum[0]}x{minimum[1]}" if minimum else ""
    if not current:
        return f"{name} cannot take a {c}x{h}x{w} input: {summary_of(error, limit=300)}{hint}"
    layer, module, in_shape = current[0]
    where = f"{layer} ({type(module).__name__}), whose input is {'x'.join(map(str, in_shape))}"
    if any(s <= 1 for s in in_shape[1:]) or "size" in str(error).lower():
        return f"input {c}x{h}x{w} is too small for {name}: the feature map vanished at {where}{hint}"
    return f"{name} cannot take a {c}x{h}x{w} input: it failed at {where}: {summary_of(error, limit=300)}{hint}"
