"""`same(a, b)`: is what ckpt.load returned what torch.load returned? Types, values, tensor
dtypes, shapes, strides, storage offsets and bytes (bit for bit: NaNs equal themselves),
and sharing: two places holding one object in torch's result hold one object in ckpt's."""

from __future__ import annotations

import math
from typing import Any, Dict, List


def _tensor_bytes(t: Any) -> bytes:
    """The bytes of the tensor's whole storage (not a copy of the view: an expanded tensor may
    claim gigabytes over four bytes)."""
    import torch

    if t.device.type == "meta":
        return b""
    s = t.detach().untyped_storage()
    return torch.empty(0, dtype=torch.uint8).set_(s).numpy().tobytes()


def differences(a: Any, b: Any) -> List[str]:
    """Every place where `a` (ckpt) and `b` (torch) differ, as `path: what`."""
    out: List[str] = []
    seen_a: Dict[int, int] = {}
    seen_b: Dict[int, int] = {}
    _walk(a, b, "root", out, seen_a, seen_b)
    return out


def _walk(a: Any, b: Any, path: str, out: List[str], seen_a: Dict[int, int], seen_b: Dict[int, int]) -> None:
    if len(out) > 20:
        return
    # Sharing: the n-th distinct container met in one is the n-th in the other.
    if isinstance(b, (dict, list, set)) or type(b).__name__ in ("Tensor", "Parameter", "ndarray", "Namespace", "DictConfig", "ListConfig"):
        ia, ib = seen_a.get(id(a)), seen_b.get(id(b))
        if ia is not None or ib is not None:
            if ia != ib:
                out.append(f"{path}: shared in one result, not in the other")
            return
        seen_a[id(a)] = seen_b[id(b)] = len(seen_a)
    if type(a) is not type(b):
        out.append(f"{path}: type {type(a).__module__}.{type(a).__qualname__} != {type(b).__module__}.{type(b).__qualname__}")
        return
    name = type(b).__name__
    if name in ("Tensor", "Parameter"):
        if (a.dtype, tuple(a.shape), a.stride(), a.storage_offset(), a.requires_grad, a.device) != (
            b.dtype, tuple(b.shape), b.stride(), b.storage_offset(), b.requires_grad, b.device
        ):
            out.append(f"{path}: tensor {a.dtype} {tuple(a.shape)} {a.stride()} @{a.storage_offset()} != {b.dtype} {tuple(b.shape)} {b.stride()} @{b.storage_offset()}")
        elif _tensor_bytes(a) != _tensor_bytes(b):
            out.append(f"{path}: tensor bytes differ")
        elif a.is_quantized:
            import torch

            if a.qscheme() != b.qscheme():
                out.append(f"{path}: qscheme {a.qscheme()} != {b.qscheme()}")
            elif a.qscheme() == torch.per_tensor_affine:
                if (a.q_scale(), a.q_zero_point()) != (b.q_scale(), b.q_zero_point()):
                    out.append(f"{path}: quantizer differs")
            elif not (torch.equal(a.q_per_channel_scales(), b.q_per_channel_scales())
                      and torch.equal(a.q_per_channel_zero_points(), b.q_per_channel_zero_points())
                      and a.q_per_channel_axis() == b.q_per_channel_axis()):
                out.append(f"{path}: per-channel quantizer differs")
        return
    if name == "ndarray":
        if (a.dtype, a.shape, a.strides) != (b.dtype, b.shape, b.strides) or a.tobytes() != b.tobytes():
            out.append(f"{path}: array {a.dtype} {a.shape} != {b.dtype} {b.shape}")
        return
    if name in ("DictConfig", "ListConfig"):
        from omegaconf import OmegaConf

        _walk(OmegaConf.to_container(a, resolve=False), OmegaConf.to_container(b, resolve=False), path + "(content)", out, {}, {})
        return
    if isinstance(b, dict):
        if list(a.keys()) != list(b.keys()):
            out.append(f"{path}: keys {list(a)[:6]} != {list(b)[:6]}")
            return
        if hasattr(b, "default_factory") and a.default_factory is not b.default_factory:
            out.append(f"{path}: default_factory differs")
        for k in b:
            _walk(a[k], b[k], f"{path}[{k!r}]", out, seen_a, seen_b)
        return
    if isinstance(b, (list, tuple)):
        if len(a) != len(b):
            out.append(f"{path}: length {len(a)} != {len(b)}")
            return
        for i, (x, y) in enumerate(zip(a, b)):
            _walk(x, y, f"{path}[{i}]", out, seen_a, seen_b)
        return
    if name == "Namespace":
        _walk(vars(a), vars(b), path + ".__dict__", out, seen_a, seen_b)
        return
    if isinstance(b, float):
        if not (a == b or (math.isnan(a) and math.isnan(b))) or math.copysign(1, a) != math.copysign(1, b):
            out.append(f"{path}: {a!r} != {b!r}")
        return
    if isinstance(b, complex):
        _walk(a.real, b.real, path + ".real", out, seen_a, seen_b)
        _walk(a.imag, b.imag, path + ".imag", out, seen_a, seen_b)
        return
    try:
        equal = bool(a == b)
    except Exception as e:  # noqa: BLE001 - a value that cannot be compared is a difference
        out.append(f"{path}: cannot compare: {e}")
        return
    if not equal:
        out.append(f"{path}: {a!r:.80} != {b!r:.80}")
