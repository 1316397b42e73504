"""Converting user images (numpy, PIL, torch) to float (N, C, H, W) tensors in [0, 1] and back.

Each `to_tensor` returns the tensor plus a `Restore` callable that turns an upscaled float tensor
back into the kind, layout, dtype and (where it applies) PIL mode of the input.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from PIL import Image

Restore = Callable[[torch.Tensor], object]

# PIL modes converted before upscaling: palette -> RGB(A), bilevel -> L, other colour spaces -> RGB
_PIL_CONVERT = {"1": "L", "CMYK": "RGB", "YCbCr": "RGB", "LAB": "RGB", "HSV": "RGB", "RGBX": "RGB",
                "RGBa": "RGBA", "La": "LA", "PA": "RGBA"}
_PIL_8BIT = ("L", "LA", "RGB", "RGBA")
_PIL_16BIT = ("I;16", "I;16L", "I;16B", "I;16N", "I")


def _channels_ok(c: int, what: str) -> None:
    if c not in (1, 2, 3, 4):
        raise ValueError(f"upscale: {what} must have 1 (gray), 2 (gray+alpha), 3 (RGB) or 4 (RGBA) channels, got {c}")


class NonFiniteOutputError(ValueError):
    """The model output holds NaN/Inf, which an integer image cannot represent."""


def _to_uint(x: torch.Tensor, maximum: int, dtype) -> np.ndarray:
    """Float in [0, 1] (clipped) -> uint array; in place on `x`, which is the upscaler's own result
    (the copies would double the peak memory of a large image)."""
    bad = int(x.numel() - x.isfinite().sum())
    if bad:  # NaN would silently become 0 (black) in the integer cast
        raise NonFiniteOutputError(
            f"upscale: the model output has {bad} NaN/Inf values, which an 8/16-bit image cannot hold (fp16 "
            "overflow: use dtype bf16 or fp32; otherwise NaN/Inf in the model's weights or the input)")
    return x.clamp_(0, 1).mul_(maximum).round_().numpy().astype(dtype)


def numpy_to_tensor(img: np.ndarray) -> tuple[torch.Tensor, Restore]:
    """HW or HWC numpy (uint8, uint16 or float in [0, 1]) -> (1, C, H, W) float32."""
    if img.ndim not in (2, 3):
        raise ValueError(f"upscale: numpy image must be HW or HWC, got shape {img.shape}")
    if img.shape[0] == 0 or img.shape[1] == 0:
        raise ValueError(f"upscale: empty image of shape {img.shape}")
    squeeze = img.ndim == 2
    hwc = img[:, :, None] if squeeze else img
    _channels_ok(hwc.shape[2], "a numpy HWC image")
    dtype = img.dtype
    if dtype == np.uint8:
        maximum = 255
    elif dtype == np.uint16:
        maximum = 65535
    elif np.issubdtype(dtype, np.floating):
        maximum = None
    else:
        raise TypeError(f"upscale: numpy image dtype must be uint8, uint16 or float, got {dtype}")
    x = torch.from_numpy(np.ascontiguousarray(hwc).astype(np.float32)).permute(2, 0, 1)[None]
    if maximum is not None:
        x = x / maximum

    def restore(y: torch.Tensor) -> np.ndarray:
        out = y[0].permute(1, 2, 0)
        arr = out.clamp(0, 1).numpy().astype(dtype) if maximum is None else _to_uint(out, maximum, dtype)
        return arr[:, :, 0] if squeeze else arr

    return x.contiguous(), restore


def pil_to_tensor(img: Image.Image) -> tuple[torch.Tensor, Restore]:
    """PIL image -> (1, C, H, W) float32; palette/bilevel/CMYK... are converted first (see _PIL_CONVERT).

    The result comes back in the converted mode (a palette image returns as RGB or RGBA).
    16-bit gray ("I;16", "I") keeps 16 bits; "F" (float) is taken as [0, 1]. The pixels are used as
    stored: EXIF orientation is applied when reading files (`gansr_ext.data` IO), not here.
    """
    mode = img.mode
    if mode == "P":
        mode = "RGBA" if "transparency" in img.info else "RGB"
    mode = _PIL_CONVERT.get(mode, mode)
    if mode != img.mode:
        img = img.convert(mode)
    if mode in _PIL_8BIT:
        x, restore_np = numpy_to_tensor(np.asarray(img, dtype=np.uint8))
        return x, lambda y: Image.fromarray(restore_np(y))  # mode from shape: L, LA, RGB, RGBA
    if mode in _PIL_16BIT:
        arr = np.clip(np.asarray(img), 0, 65535).astype(np.uint16)
        x, restore_np = numpy_to_tensor(arr)
        as_int32 = mode == "I"  # uint16 arrays become "I;16", int32 arrays "I"
        return x, lambda y: Image.fromarray(restore_np(y).astype(np.int32 if as_int32 else np.uint16))
    if mode == "F":
        x, restore_np = numpy_to_tensor(np.asarray(img, dtype=np.float32))
        return x, lambda y: Image.fromarray(restore_np(y))
    raise ValueError(f"upscale: unsupported PIL image mode {img.mode!r}")


def torch_to_tensor(img: torch.Tensor) -> tuple[torch.Tensor, Restore]:
    """(C, H, W) or (N, C, H, W) float tensor in [0, 1] -> (N, C, H, W) float32 on the CPU.

    The result is returned with the input's shape kind, dtype and device.
    """
    if not img.is_floating_point():
        raise TypeError(f"upscale: tensor images must be float in [0, 1], got dtype {img.dtype}")
    if img.dim() not in (3, 4):
        raise ValueError(f"upscale: tensor image must be (C, H, W) or (N, C, H, W), got shape {tuple(img.shape)}")
    batched = img.dim() == 4
    x = img if batched else img[None]
    _channels_ok(x.shape[1], "a tensor image")
    if x.shape[0] == 0 or x.shape[-1] == 0 or x.shape[-2] == 0:
        raise ValueError(f"upscale: empty tensor image of shape {tuple(img.shape)}")
    dtype, device = img.dtype, img.device

    def restore(y: torch.Tensor) -> torch.Tensor:
        y = y.clamp(0, 1).to(device=device, dtype=dtype)
        return y if batched else y[0]

    return x.detach().to("cpu", torch.float32).contiguous(), restore


def to_tensor(image) -> tuple[torch.Tensor, Restore]:
    """Dispatch on the image kind (numpy array, PIL image, torch tensor)."""
    if isinstance(image, torch.Tensor):
        return torch_to_tensor(image)
    if isinstance(image, np.ndarray):
        return numpy_to_tensor(image)
    if isinstance(image, Image.Image):
        return pil_to_tensor(image)
    raise TypeError(f"upscale: expected a numpy array, PIL image or torch tensor, got {type(image).__name__}")
