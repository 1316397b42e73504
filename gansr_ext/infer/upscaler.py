"""`Upscaler`: run a super-resolution generator on images of any size, kind and channel layout.

Compared with Real-ESRGAN's `RealESRGANer`:
- tiles overlap and are blended with linear ramps (no seams; exact when the overlap covers the
  receptive field, see `tiling.py`);
- the image and the output stay in CPU memory, only the current batch of tiles goes to the device,
  so images far larger than GPU memory work; `tile="auto"` sizes tiles from free GPU memory;
- fp16 asked for on a CPU falls back to fp32 with a warning instead of failing in a kernel;
- gray, gray+alpha, RGBA, palette and 16-bit images are handled by every entry point.

Pre-padding (`pre_pad`, default 10 as the official Real-ESRGAN/Real-CUGAN ncnn tools): the image is
reflect-padded by `pre_pad` input pixels on every side before the network and `pre_pad * scale` output
pixels are cropped after, so the border pixels see image-like context instead of the convs' zero padding.
The receptive field of an RRDBNet is large: without it the outer ~40 input pixels of Real-ESRGAN x4plus
differ from the official output by up to 240 levels of 255; with it, by at most 1. Real-ESRGAN's Python
tool pads only the right and bottom (its `pre_pad`); 0 turns pre-padding off. It is applied to the whole
image before tiling, so tiled == untiled still holds.

Where things live: this module is the API (`Upscaler`, its defaults and size checks, channel
handling); `precision.py` resolves the dtype ("auto": fp16 on CUDA, bf16 on a native-bf16 CPU when a
probe says its output stays close to fp32's); `stitch.py` pads the image and runs a tile plan of
`tiling.py`, blending the tiles' outputs; `convert.py` turns numpy/PIL/tensor images into tensors and back.
"""

from __future__ import annotations

import math
import os
import warnings

import torch
from torch import nn

from ..data import imresize
from ..ops._common import fused_mode, resolve_fused
from . import tiling
from .convert import to_tensor
from .precision import dtype_reason, probe_bf16, resolve_dtype
# re-exported: `gansr upscale` (cli.py) and python/bench_upscale.py import them from here
from .precision import BF16_MIN_PSNR, cpu_has_native_bf16, output_psnr  # noqa: F401
from .stitch import pad_to_multiple, reflect_pad, run_tiled

DEFAULT_OVERLAP = 16  # context pixels per tile side never used for output (exactness margin)
DEFAULT_FEATHER = 8  # half-width of the blending ramp around each tile boundary
DEFAULT_CPU_TILE = 256
DEFAULT_PRE_PAD = 10  # as the official ncnn tools (module docstring)
# The whole output is held in CPU memory as float32 (plus the 8/16-bit copy written): 256 megapixels
# (e.g. 16000 x 16000; a 4K frame x4 is 133) is about 3 GB for RGB. Larger asks are refused with
# ImageTooLargeError unless the limit is raised (max_output_pixels / `gansr upscale --max-pixels`).
DEFAULT_MAX_OUTPUT_PIXELS = 256_000_000
ALPHA_MODES = ("bicubic", "model")
# ITU-R BT.601 luma, what PIL's convert("L") uses: turns a 3-channel model output back to gray
_LUMA = (0.299, 0.587, 0.114)


class ImageTooLargeError(ValueError):
    """The output of an image would exceed the Upscaler's pixel budget (`max_output_pixels`)."""


def check_outscale(outscale) -> None:
    """ValueError unless `outscale` is None or a finite positive number."""
    if outscale is None:
        return
    if isinstance(outscale, bool) or not isinstance(outscale, (int, float)) or not (
            math.isfinite(outscale) and outscale > 0):
        raise ValueError(f"upscale: outscale must be a finite positive number, got {outscale!r}")


def _to_gray(x: torch.Tensor) -> torch.Tensor:
    w = torch.tensor(_LUMA, dtype=x.dtype).view(1, 3, 1, 1)
    return (x * w).sum(1, keepdim=True)


def _load_model(model_or_path) -> nn.Module:
    if isinstance(model_or_path, nn.Module):
        return model_or_path
    if isinstance(model_or_path, (str, os.PathLike)):
        from ..models import load_generator

        return load_generator(model_or_path)
    raise TypeError(f"Upscaler: expected an nn.Module or a checkpoint path, got {type(model_or_path).__name__}")


class Upscaler:
    """Upscale images with a generator (an `nn.Module` with a `scale` attribute, or a checkpoint path).

    device: None -> CUDA if available, else CPU. dtype: "fp32" | "fp16" | "bf16" | torch dtype | None
    (fp16 on CUDA, fp32 on CPU) | "auto" (`precision.py`; `dtype_reason` says what it chose). pre_pad:
    input pixels reflect-padded on every side and cropped after (module docstring; 0: none). tile: None or 0 -> whole image at once; an int -> core tile size in
    input pixels; "auto" -> from free GPU memory (DEFAULT_CPU_TILE on CPU). overlap: context pixels
    per tile side (tiled == untiled when >= the receptive-field radius); feather: blending
    half-width. batch_tiles: tiles per forward pass. fused: "auto" | "on" | "off" (or None | True | False;
    `gansr_ext.ops._common.resolve_fused`) -> `model.set_fused`; "auto" turns the fused op on where it is
    built for a CUDA device and leaves a CPU model's setting alone; a failing fused op is an error. alpha: "bicubic" (alpha resized with `imresize`) or "model"
    (alpha replicated to the model's channels). progress: a tqdm bar over tiles. max_output_pixels:
    images whose output (at the model's scale or at outscale, whichever is larger, times the batch)
    has more pixels are refused with ImageTooLargeError before any work (None: no limit).

    The module is moved to the device and dtype in place (like `nn.Module.to`) and put in eval mode.
    """

    def __init__(self, model_or_path, device=None, dtype=None, tile=None, overlap=None, batch_tiles: int = 4,
                 fused=None, channels_last: bool = True, feather=None, alpha: str = "bicubic",
                 progress: bool = False, max_output_pixels: int | None = DEFAULT_MAX_OUTPUT_PIXELS,
                 pre_pad: int = DEFAULT_PRE_PAD):
        self.device = torch.device(device) if device is not None else torch.device(
            "cuda" if torch.cuda.is_available() else "cpu")
        asked, dtype = dtype, resolve_dtype(dtype, self.device)
        self.dtype = torch.float32 if dtype == "probe" else dtype
        self.dtype_reason = dtype_reason(asked, self.device, self.dtype)  # _choose_cpu_bf16 replaces it
        tiling.check_int("pre_pad", pre_pad, 0, who="Upscaler")
        self.pre_pad = pre_pad
        if not (tile is None or tile == "auto" or (isinstance(tile, int) and not isinstance(tile, bool) and tile >= 0)):
            raise ValueError(f"Upscaler: tile must be None, 'auto' or a non-negative int, got {tile!r}")
        self.overlap = DEFAULT_OVERLAP if overlap is None else overlap
        self.feather = DEFAULT_FEATHER if feather is None else feather
        tiling.check_int("overlap", self.overlap, 0, who="Upscaler")
        tiling.check_int("feather", self.feather, 0, who="Upscaler")
        tiling.check_int("batch_tiles", batch_tiles, 1, who="Upscaler")
        if alpha not in ALPHA_MODES:
            raise ValueError(f"Upscaler: alpha must be one of {ALPHA_MODES}, got {alpha!r}")
        if max_output_pixels is not None:
            tiling.check_int("max_output_pixels", max_output_pixels, 1, who="Upscaler")
        self.batch_tiles, self.alpha, self.progress = batch_tiles, alpha, progress
        self.max_output_pixels = max_output_pixels
        self.channels_last = channels_last
        self.model = _load_model(model_or_path).eval()  # no requires_grad_ change: inference_mode suffices
        self.model.to(device=self.device, dtype=self.dtype)
        if dtype == "probe":
            self._choose_cpu_bf16()
        if channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.in_ch = int(getattr(self.model, "in_ch", 3))
        self.multiple = int(getattr(self.model, "unshuffle", 1))  # RRDBNet x2/x1 pixel-unshuffle the input
        self.scale = self._model_scale()
        self._warned_overflow = False
        self._set_fused(fused)
        self.tile = self._auto_tile() if tile == "auto" else (tile or None)

    # -- setup ---------------------------------------------------------------------------------
    def _choose_cpu_bf16(self) -> None:
        """dtype "auto" on a native-bf16 CPU: bf16 when `precision.probe_bf16` finds its output close to fp32's."""
        use_bf16, self.dtype_reason = probe_bf16(self.model)
        if use_bf16:  # the same cast of the same fp32 weights as the probed copy
            self.model.to(torch.bfloat16)
            self.dtype = torch.bfloat16

    def _model_scale(self) -> int:
        scale = getattr(self.model, "scale", None)
        if scale is None:  # probe with a small input
            side = 8 * self.multiple
            with torch.inference_mode():
                y = self.model(torch.zeros(1, self.in_ch, side, side, device=self.device, dtype=self.dtype))
            if y.shape[-1] % side:
                raise ValueError(f"Upscaler: model output width {y.shape[-1]} is not an integer multiple of "
                                 f"the input width {side}")
            scale = y.shape[-1] // side
        return int(scale)

    def _set_fused(self, fused) -> None:
        mode = fused_mode(fused)
        if not callable(getattr(self.model, "set_fused", None)):
            if mode == "on":
                warnings.warn(f"Upscaler: {type(self.model).__name__} has no fused path (no set_fused); "
                              "fused=on ignored", stacklevel=3)
            return
        if mode == "auto" and self.device.type != "cuda":  # the fused op pays off on CUDA
            return
        self.model.set_fused(resolve_fused(mode, self.device))

    def _auto_tile(self) -> int:
        """Core tile size for tile='auto': measured activation bytes/pixel against free GPU memory."""
        context = self.overlap + self.feather
        if self.device.type != "cuda":
            return DEFAULT_CPU_TILE
        side = 64 * self.multiple
        torch.cuda.synchronize(self.device)
        before = torch.cuda.memory_allocated(self.device)
        torch.cuda.reset_peak_memory_stats(self.device)
        self._forward(torch.rand(1, self.in_ch, side, side, device=self.device, dtype=self.dtype))
        peak = torch.cuda.max_memory_allocated(self.device) - before
        free, _ = torch.cuda.mem_get_info(self.device)
        free += torch.cuda.memory_reserved(self.device) - torch.cuda.memory_allocated(self.device)
        return tiling.auto_tile_size(free, max(peak, 1) / side ** 2, self.batch_tiles, context, self.multiple)

    # -- model execution -----------------------------------------------------------------------
    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        """Model on a device batch (a failing fused op is an error, never a silent rerun)."""
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            return self.model(x)

    def _run(self, x: torch.Tensor) -> torch.Tensor:
        """CPU float32 batch -> model -> CPU float32 (pinned staging for the host-to-GPU copy)."""
        if self.device.type == "cuda":
            x = x.pin_memory()
        y = self._forward(x.to(self.device, self.dtype, non_blocking=True))
        if self.dtype == torch.float16 and not self._warned_overflow and not bool(y.isfinite().all()):
            self._warned_overflow = True
            warnings.warn("Upscaler: the fp16 output has Inf/NaN values (overflow); use dtype bf16 or fp32",
                          stacklevel=3)
        return y.float().cpu()

    def _run_tiled(self, x: torch.Tensor, tile: int, batch: int) -> torch.Tensor:
        """One (C, H, W) CPU image through the tile grid; returns the blended (C', sH, sW) output."""
        plan = tiling.plan_tiles(*x.shape[-2:], tile, self.overlap, self.feather, self.multiple)
        return run_tiled(self._run, x, plan, self.scale, batch, self.progress)

    def _run_image(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) CPU float32 with C == model channels -> (N, C', sH, sW); tiles if asked."""
        n, _, h, w = x.shape
        x = pad_to_multiple(reflect_pad(x, self.pre_pad), self.multiple)
        ph, pw = x.shape[-2:]
        s = self.scale
        rows, cols = slice(self.pre_pad * s, (self.pre_pad + h) * s), slice(self.pre_pad * s, (self.pre_pad + w) * s)
        if self.tile is None:
            outs = [self._run(x[i:i + self.batch_tiles]) for i in range(0, n, self.batch_tiles)]
            return torch.cat(outs)[..., rows, cols]
        outs = []
        for img in x:
            tile, batch = self.tile, self.batch_tiles
            while True:
                try:
                    y = self._run(img[None])[0] if ph <= tile and pw <= tile else self._run_tiled(img, tile, batch)
                    outs.append(y[..., rows, cols])
                    break
                except torch.cuda.OutOfMemoryError:
                    if batch == 1 and tile <= 32:
                        raise
                    torch.cuda.empty_cache()
                    if ph <= tile and pw <= tile:  # the whole image did not fit: start tiling
                        tile = max(ph, pw) // 2
                    else:
                        batch, tile = (batch // 2, tile) if batch > 1 else (1, tile // 2)
                    warnings.warn(f"Upscaler: out of GPU memory; retrying with tile {tile}, batch {batch}",
                                  stacklevel=2)
        return torch.stack(outs)

    def _through_model(self, x: torch.Tensor) -> torch.Tensor:
        """Any 1 or 3 channel float image -> upscaled, same channel count, via the model's channels."""
        n, c = x.shape[:2]
        if c == self.in_ch:
            return self._run_image(x)
        if self.in_ch == 1:  # a gray model: each channel as its own image
            y = self._run_image(x.reshape(n * c, 1, *x.shape[-2:]))
            return y.reshape(n, c, *y.shape[-2:])
        if c == 1 and self.in_ch == 3:
            return _to_gray(self._run_image(x.expand(-1, 3, -1, -1).contiguous()))
        raise ValueError(f"Upscaler: cannot feed a {c}-channel image to a model with {self.in_ch} input channels")

    # -- public API ----------------------------------------------------------------------------
    def check_size(self, height: int, width: int, outscale: float | None = None, count: int = 1,
                   channels: int = 3) -> None:
        """ImageTooLargeError if `count` images of height x width would exceed max_output_pixels (the
        model-scale output and the outscale result are both held in memory: the larger one counts)."""
        check_outscale(outscale)
        factor = max(self.scale, outscale or 0)
        out_h, out_w = round(height * factor), round(width * factor)
        pixels = count * out_h * out_w
        if self.max_output_pixels is None or pixels <= self.max_output_pixels:
            return
        gigabytes = pixels * channels * 4 / 1e9
        raise ImageTooLargeError(
            f"upscale: the output would be {out_w}x{out_h}" + (f" x {count} images" if count > 1 else "")
            + f" = {pixels / 1e6:.0f} megapixels (about {gigabytes:.1f} GB as float32), above the limit of "
            f"{self.max_output_pixels / 1e6:g} megapixels; raise it (gansr upscale --max-pixels, "
            "Upscaler(max_output_pixels=...)) if the memory is there")

    def upscale_tensor(self, x: torch.Tensor, outscale: float | None = None, alpha: str | None = None) -> torch.Tensor:
        """(N, C, H, W) float in [0, 1], C in {1, 2, 3, 4} (2 and 4: last channel alpha) -> upscaled
        float32 CPU tensor (not clamped) of size round(outscale * H) x round(outscale * W)."""
        alpha = self.alpha if alpha is None else alpha
        if alpha not in ALPHA_MODES:
            raise ValueError(f"upscale: alpha must be one of {ALPHA_MODES}, got {alpha!r}")
        self.check_size(*x.shape[-2:], outscale=outscale, count=x.shape[0], channels=x.shape[1])
        x = x.to("cpu", torch.float32)
        c = x.shape[1]
        has_alpha = c in (2, 4) and c != self.in_ch
        color, a = (x[:, :-1], x[:, -1:]) if has_alpha else (x, None)
        y = self._through_model(color)
        if a is not None:
            if alpha == "model":
                ya = self._through_model(a)
            else:
                ya = imresize(a, output_shape=tuple(y.shape[-2:]))
            y = torch.cat([y, ya], 1)
        if outscale is not None and outscale != self.scale:
            h, w = x.shape[-2:]
            y = imresize(y, output_shape=(max(1, round(h * outscale)), max(1, round(w * outscale))))
        return y

    def upscale(self, image, outscale: float | None = None, alpha: str | None = None):
        """Upscale a numpy HW/HWC image (uint8, uint16, float), a PIL image or a float tensor
        (C, H, W) / (N, C, H, W); the result has the input's kind, dtype and layout."""
        x, restore = to_tensor(image)
        return restore(self.upscale_tensor(x, outscale, alpha))

    __call__ = upscale

