"""The Upscaler's compute dtype: names and defaults (`resolve_dtype`) and the bf16 probe of dtype "auto".

dtype "auto": fp16 on CUDA; on a CPU with native bf16 (AVX512-BF16 or AMX) bf16 when the model's bf16
output on a fixed probe image stays within BF16_MIN_PSNR dB of its fp32 output (checked once per
Upscaler, two 16x16 forwards: `probe_bf16`), else fp32. Measured on Real-ESRGAN x4plus: 47.1 dB on the
probe, 48.4 dB (RGB, 8-bit output, at most 11 levels of 255) on a natural 32x32 image
(tests/data/ncnn_reference); speed: python/bench_upscale.py, bench/results/.
"""

from __future__ import annotations

import copy
import math
import warnings

import torch
import torch.nn.functional as F
from torch import nn

BF16_MIN_PSNR = 40.0  # dB, bf16 vs fp32 output on the probe: the bound dtype="auto" keeps on a CPU

_DTYPES = {"fp32": torch.float32, "float32": torch.float32, "float": torch.float32,
           "fp16": torch.float16, "float16": torch.float16, "half": torch.float16,
           "bf16": torch.bfloat16, "bfloat16": torch.bfloat16}


def cpu_has_native_bf16() -> bool:
    """AVX512-BF16 or AMX-BF16: bf16 convolutions run natively (elsewhere oneDNN emulates them, slower
    than fp32). torch's own query where it has one, else the Linux CPU flags."""
    query = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    if all(callable(q) for q in query):
        return any(q() for q in query)
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_dtype(dtype, device: torch.device) -> torch.dtype | str:
    """None -> fp16 on CUDA, fp32 elsewhere; "auto" -> fp16 on CUDA, on a CPU with native bf16 the string
    "probe" (the Upscaler measures bf16 against fp32), else fp32; fp16 on a CPU is refused with a
    warning (-> fp32)."""
    if dtype is None or dtype == "auto":
        if device.type == "cuda":
            return torch.float16
        return "probe" if dtype == "auto" and device.type == "cpu" and cpu_has_native_bf16() else torch.float32
    if isinstance(dtype, str):
        if dtype.lower() not in _DTYPES:
            raise ValueError(f"Upscaler: dtype must be 'auto' or one of {sorted(set(_DTYPES))}, got {dtype!r}")
        dtype = _DTYPES[dtype.lower()]
    if dtype not in (torch.float32, torch.float16, torch.bfloat16):
        raise ValueError(f"Upscaler: dtype must be float32, float16 or bfloat16, got {dtype}")
    if dtype == torch.float16 and device.type == "cpu":
        warnings.warn("Upscaler: fp16 is not supported for inference on the CPU (many CPU kernels have no "
                      "half-precision version); using fp32 instead (bf16 works on the CPU)", stacklevel=3)
        return torch.float32
    return dtype


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def dtype_reason(asked, device: torch.device, dtype: torch.dtype) -> str:
    """What the Upscaler reports as `dtype_reason` when nothing was probed."""
    if asked != "auto":
        return dtype_name(dtype)
    why = "CUDA" if device.type == "cuda" else "no native bf16 on this CPU"
    return f"auto: {why} -> {dtype_name(dtype)}"


def _probe_image(channels: int, side: int = 16) -> torch.Tensor:
    """Fixed image-like input for the bf16 check: smooth random field plus a little fine texture."""
    g = torch.Generator().manual_seed(0)
    smooth = F.interpolate(torch.rand(1, channels, side // 4, side // 4, generator=g), size=(side, side),
                           mode="bicubic", align_corners=False)
    return (smooth + 0.05 * torch.rand(1, channels, side, side, generator=g)).clamp(0, 1)


def output_psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR (dB, peak 1) between two model outputs clamped to [0, 1]; NaN in either gives NaN."""
    mse = F.mse_loss(a.float().clamp(0, 1), b.float().clamp(0, 1))
    if not bool(torch.isfinite(a).all() and torch.isfinite(b).all()):
        return math.nan
    return math.inf if mse == 0 else float(-10 * torch.log10(mse))


def probe_bf16(model: nn.Module) -> tuple[bool, str]:
    """dtype "auto" on a native-bf16 CPU, for an fp32 CPU model: (bf16 output within BF16_MIN_PSNR of
    fp32's on the probe image, the reason). A copy is probed: casting the model there and back loses bits;
    the caller casts the same fp32 weights the same way when the answer is yes."""
    probe = _probe_image(int(getattr(model, "in_ch", 3)))
    bf16 = copy.deepcopy(model).to(torch.bfloat16)
    with torch.inference_mode():
        quality = output_psnr(model(probe), bf16(probe.bfloat16()))
    del bf16
    ok = quality >= BF16_MIN_PSNR
    chosen = torch.bfloat16 if ok else torch.float32
    reason = (f"auto: native bf16 CPU, bf16 output {quality:.1f} dB from fp32 on the probe, "
              f"{'>=' if ok else 'below'} {BF16_MIN_PSNR:g} dB -> {dtype_name(chosen)}")
    return ok, reason
