"""Input conventions shared by the metrics.

Every metric accepts torch tensors (C, H, W) / (N, C, H, W) (float in [0, 1] or uint8) and numpy
arrays HW / HWC / NHWC (uint8 in [0, 255] or float in [0, 1]); C is 1 or 3 (RGB). Internally images
are float64 numpy batches (N, H, W, C) in [0, 255]. A single image gives a float result, a batch a
numpy array (N,) of per-image values.
"""

from __future__ import annotations

import numpy as np
import torch

# MATLAB rgb2gray: first row of inv([1 .956 .621; 1 -.272 -.647; 1 -1.106 1.703]) (NTSC luma)
MATLAB_GRAY = np.array([0.298936021293775, 0.587043074451121, 0.114020904255103])


def to_batch255(img, fn: str, what: str = "image") -> tuple[np.ndarray, bool]:
    """-> (float64 (N, H, W, C) in [0, 255], True if the input was a single image)."""
    if isinstance(img, torch.Tensor):
        t = img.detach()
        if t.dim() == 2:
            t = t[None, None]
        single = t.dim() == 3
        if single:
            t = t[None]
        if t.dim() != 4:
            raise ValueError(f"{fn}: {what} tensor must be (C, H, W) or (N, C, H, W), got shape {tuple(img.shape)}")
        if t.dtype == torch.uint8:
            scale = 1.0
        elif t.dtype.is_floating_point:
            scale = 255.0
        else:
            raise TypeError(f"{fn}: {what} tensor must be float in [0, 1] or uint8, got {t.dtype}")
        x = t.to("cpu", torch.float64).permute(0, 2, 3, 1).numpy() * scale
    elif isinstance(img, np.ndarray):
        if img.ndim == 2:
            x, single = img[None, :, :, None], True
        elif img.ndim == 3:
            x, single = img[None], True
        elif img.ndim == 4:
            x, single = img, False
        else:
            raise ValueError(f"{fn}: {what} array must be HW, HWC or NHWC, got shape {img.shape}")
        if img.dtype == np.uint8:
            x = x.astype(np.float64)
        elif np.issubdtype(img.dtype, np.floating):
            x = x.astype(np.float64) * 255.0
        else:
            raise TypeError(f"{fn}: {what} array must be uint8 or float in [0, 1], got {img.dtype}")
    else:
        raise TypeError(f"{fn}: {what} must be a torch tensor or numpy array, got {type(img).__name__}")
    if x.shape[-1] not in (1, 3):
        raise ValueError(f"{fn}: {what} must have 1 or 3 channels, got shape {tuple(img.shape)} "
                         "(tensors are channels-first, arrays channels-last)")
    if x.size == 0:
        raise ValueError(f"{fn}: {what} is empty (shape {tuple(img.shape)})")
    return x, single


# an image whose values are all this close to 8-bit levels is taken as those levels (uint8 data, or
# uint8 / 255 stored as float32, whose x 255 is off by up to ~1.5e-5)
LEVEL_TOLERANCE = 1e-3


def y_channel(x: np.ndarray) -> np.ndarray:
    """(N, H, W, 3) RGB in [0, 255] -> (N, H, W, 1) MATLAB rgb2ycbcr Y in [16, 235] (float, unrounded)."""
    if x.shape[-1] == 1:
        return x
    from gansr_ext.data.color import rgb_to_y

    return (rgb_to_y(x / 255.0) * 255.0)[..., None]


def _as_levels(x: np.ndarray) -> np.ndarray | None:
    """x as uint8 if every value is an 8-bit level (within LEVEL_TOLERANCE), else None."""
    levels = np.rint(x)
    if levels.min() < 0 or levels.max() > 255 or np.abs(x - levels).max() > LEVEL_TOLERANCE:
        return None
    return levels.astype(np.uint8)


def y_levels(x: np.ndarray) -> np.ndarray:
    """(N, H, W, C) in [0, 255] -> (N, H, W, 1) Y as 8-bit levels (float), as MATLAB rgb2ycbcr on uint8.

    8-bit inputs (in any layout or dtype) use the exact integer Y, so ties round up on every path;
    other float inputs round their float Y half away from zero (MATLAB's im2uint8). NaN stays NaN.
    """
    from gansr_ext.data.color import matlab_round, rgb_to_y

    levels = _as_levels(x) if np.isfinite(x).all() else None
    if levels is None:
        return matlab_round(y_channel(x))
    if x.shape[-1] == 1:
        return levels.astype(np.float64)
    return rgb_to_y(levels)[..., None].astype(np.float64)


def matlab_gray(x: np.ndarray) -> np.ndarray:
    """(N, H, W, 3) RGB in [0, 255] -> (N, H, W, 1) as MATLAB `rgb2gray` on uint8 (rounded levels)."""
    from gansr_ext.data.color import matlab_round

    x = np.clip(matlab_round(x), 0, 255)
    if x.shape[-1] == 1:
        return x
    w = MATLAB_GRAY  # channel by channel in a fixed order: the same result for every memory layout
    return matlab_round(w[0] * x[..., 0] + w[1] * x[..., 1] + w[2] * x[..., 2])[..., None]


def crop_border(x: np.ndarray, border: int, fn: str) -> np.ndarray:
    if isinstance(border, bool) or not isinstance(border, (int, np.integer)) or border < 0:
        raise ValueError(f"{fn}: crop_border must be a non-negative integer, got {border!r}")
    if border == 0:
        return x
    if x.shape[1] <= 2 * border or x.shape[2] <= 2 * border:
        raise ValueError(f"{fn}: image of size {x.shape[1]}x{x.shape[2]} is too small for crop_border={border}")
    return x[:, border:-border, border:-border]


def pair(sr, hr, fn: str) -> tuple[np.ndarray, np.ndarray, bool]:
    """Both images as batches; their shapes must agree."""
    a, single_a = to_batch255(sr, fn, "sr")
    b, single_b = to_batch255(hr, fn, "hr")
    if a.shape != b.shape:
        raise ValueError(f"{fn}: sr and hr must have the same shape, got {tuple(sr.shape)} and {tuple(hr.shape)}")
    return a, b, single_a and single_b


def result(values: np.ndarray, single: bool):
    return float(values[0]) if single else np.asarray(values, dtype=np.float64)
