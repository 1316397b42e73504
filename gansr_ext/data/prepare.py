"""Offline dataset preparation: modcropped HR, MATLAB-bicubic LR, overlapping sub-images.

Layout written by `prepare_dataset(hr_dir, out_root, scale)` (DIV2K's naming)::

    out_root/HR/<stem>.png                     HR modcropped to a multiple of `scale`
    out_root/LR_bicubic/X<scale>/<stem>x<scale>.png
    out_root/HR_sub/<stem>_s001.png ...        with crop=...: sub-images (BasicSR layout)
    out_root/LR_bicubic/X<scale>_sub/<stem>_s001.png ...   (same names as the HR tiles)

Pixel values are kept at the source bit depth (8-bit stays 8-bit and LR is rounded like MATLAB's
uint8 imresize; 16-bit stays 16-bit). `DATASETS` lists the usual SR datasets and their layouts.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .imresize import imresize, modcrop
from .io import list_images, read_image_native, write_image

__all__ = ["DatasetInfo", "DATASETS", "find_dataset_dirs", "crop_positions", "extract_subimages",
           "prepare_dataset"]


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    split: str  # "train" or "test"
    images: int
    hr_dirs: tuple  # candidate HR folders, relative to the dataset root, first match wins
    lr_dirs: tuple  # candidate LR folders ({scale} filled in); empty: make LR with prepare_dataset
    note: str


DATASETS = {
    "DIV2K": DatasetInfo("DIV2K", "train", 800, ("DIV2K_train_HR", "DIV2K/DIV2K_train_HR"),
                         ("DIV2K_train_LR_bicubic/X{scale}", "DIV2K/DIV2K_train_LR_bicubic/X{scale}"),
                         "2K images 0001-0800; LR files 0001x4.png; validation 0801-0900 (DIV2K_valid_*)"),
    "DIV2K_valid": DatasetInfo("DIV2K_valid", "test", 100, ("DIV2K_valid_HR", "DIV2K/DIV2K_valid_HR"),
                               ("DIV2K_valid_LR_bicubic/X{scale}", "DIV2K/DIV2K_valid_LR_bicubic/X{scale}"),
                               "images 0801-0900"),
    "Flickr2K": DatasetInfo("Flickr2K", "train", 2650, ("Flickr2K/Flickr2K_HR", "Flickr2K_HR"),
                            ("Flickr2K/Flickr2K_LR_bicubic/X{scale}", "Flickr2K_LR_bicubic/X{scale}"),
                            "2K images 000001-002650; DIV2K + Flickr2K = DF2K"),
    "OST": DatasetInfo("OST", "train", 10324, ("OST", "OutdoorSceneTrain_v2"), (),
                       "OutdoorSceneTraining, one sub-folder per category (animal, building, grass, mountain, "
                       "plant, sky, water); HR only, list with list_images(recursive=True)"),
    "Set5": DatasetInfo("Set5", "test", 5, ("Set5/GTmod12", "Set5/HR", "Set5/original"),
                        ("Set5/LRbicx{scale}", "Set5/LR_bicubic/X{scale}"),
                        "baby, bird, butterfly, head, woman; evaluate on Y with a `scale`-pixel border crop"),
    "Set14": DatasetInfo("Set14", "test", 14, ("Set14/GTmod12", "Set14/HR", "Set14/original"),
                         ("Set14/LRbicx{scale}", "Set14/LR_bicubic/X{scale}"), "includes 2 grayscale images"),
    "BSD100": DatasetInfo("BSD100", "test", 100, ("BSD100/GTmod12", "BSD100/HR", "B100/HR", "BSDS100"),
                          ("BSD100/LRbicx{scale}", "BSD100/LR_bicubic/X{scale}", "B100/LR_bicubic/X{scale}"),
                          "the 100 BSD300 test images (a.k.a. B100)"),
    "Urban100": DatasetInfo("Urban100", "test", 100, ("Urban100/GTmod12", "Urban100/HR"),
                            ("Urban100/LRbicx{scale}", "Urban100/LR_bicubic/X{scale}"),
                            "urban scenes with regular structures; large images"),
}


def find_dataset_dirs(root, name: str, scale: int = 4):
    """(hr_dir, lr_dir or None) of a known dataset under `root`, trying its usual layouts."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
    info, root = DATASETS[name], Path(root)
    hr = next((root / d for d in info.hr_dirs if (root / d).is_dir()), None)
    if hr is None:
        raise FileNotFoundError(f"{name}: none of {', '.join(info.hr_dirs)} found under {root}")
    lr = next((root / d.format(scale=scale) for d in info.lr_dirs if (root / d.format(scale=scale)).is_dir()), None)
    return hr, lr


def crop_positions(length: int, crop: int, step: int, thresh: int = 0) -> list[int]:
    """Start offsets `0, step, 2 step, ...` plus a last crop flush with the end when more than
    `thresh` pixels would otherwise be left over (BasicSR's extract_subimages rule)."""
    if length < crop:
        return []
    pos = list(range(0, length - crop + 1, step))
    if length - (pos[-1] + crop) > thresh:
        pos.append(length - crop)
    return pos


def _crop_and_write(arr: np.ndarray, stem: str, out_dir: Path, crop: int, step: int, thresh: int) -> list[Path]:
    hs = crop_positions(arr.shape[0], crop, step, thresh)
    ws = crop_positions(arr.shape[1], crop, step, thresh)
    bit_depth = 16 if arr.dtype == np.uint16 else 8
    out, k = [], 0
    for y in hs:
        for x in ws:
            k += 1
            out.append(write_image(out_dir / f"{stem}_s{k:03d}.png", arr[y: y + crop, x: x + crop],
                                   bit_depth=bit_depth))
    return out


def _check_positive(**kw):
    for k, v in kw.items():
        if isinstance(v, bool) or not isinstance(v, int) or v < (0 if k == "thresh" else 1):
            raise ValueError(f"{k} must be a {'non-negative' if k == 'thresh' else 'positive'} integer, got {v!r}")


def extract_subimages(in_dir, out_dir, crop: int = 480, step: int = 240, thresh: int = 0) -> list[Path]:
    """Cut every image of `in_dir` into `crop` x `crop` PNG tiles every `step` pixels
    (`<stem>_s001.png`, row-major; a trailing scale tag is dropped, `0001x4` -> `0001_s001`, as
    BasicSR does, so HR and LR tiles share names). Images smaller than `crop` are skipped with a
    warning."""
    _check_positive(crop=crop, step=step, thresh=thresh)
    out_dir = Path(out_dir)
    written = []
    for path in list_images(in_dir):
        arr = read_image_native(path)
        if min(arr.shape[:2]) < crop:
            warnings.warn(f"extract_subimages: {path} ({arr.shape[0]}x{arr.shape[1]}) is smaller than {crop}; skipped",
                          stacklevel=2)
            continue
        written += _crop_and_write(arr, re.sub(r"x\d+$", "", path.stem), out_dir, crop, step, thresh)
    return written


def _downscale(arr: np.ndarray, scale: int) -> np.ndarray:
    """MATLAB bicubic 1/scale at the array's own precision (float arrays are clipped to [0, 1])."""
    lr = imresize(arr, 1.0 / scale)
    return lr if lr.dtype in (np.uint8, np.uint16) else np.clip(lr, 0.0, 1.0)


def prepare_dataset(hr_dir, out_root, scale: int = 4, crop: int | None = None, step: int | None = None,
                    thresh: int = 0) -> dict:
    """Write modcropped HR and bicubic LR (and with `crop`, aligned sub-images of both).

    Returns {"hr": dir, "lr": dir} of what a `PairedImageDataset` should read (the sub-image folders
    when `crop` is given). `crop`, `step` (default crop // 2) and `thresh` must be multiples of scale.
    """
    _check_positive(scale=scale)
    if crop is not None:
        step = crop // 2 if step is None else step
        _check_positive(crop=crop, step=step, thresh=thresh)
        if crop % scale or step % scale or thresh % scale:
            raise ValueError(f"crop, step and thresh must be multiples of scale={scale}, got {crop}, {step}, {thresh}")
    out_root = Path(out_root)
    hr_out, lr_out = out_root / "HR", out_root / "LR_bicubic" / f"X{scale}"
    hr_sub, lr_sub = out_root / "HR_sub", out_root / "LR_bicubic" / f"X{scale}_sub"
    files = list_images(hr_dir)
    if not files:
        raise ValueError(f"prepare_dataset: no images in {hr_dir}")
    for path in files:
        arr = modcrop(read_image_native(path), scale)
        if min(arr.shape[:2]) < scale:
            warnings.warn(f"prepare_dataset: {path} is smaller than the scale {scale}; skipped", stacklevel=2)
            continue
        bit_depth = 16 if arr.dtype == np.uint16 else 8
        lr = _downscale(arr, scale)
        write_image(hr_out / f"{path.stem}.png", arr, bit_depth=bit_depth)
        write_image(lr_out / f"{path.stem}x{scale}.png", lr, bit_depth=bit_depth)
        if crop is not None:
            if min(arr.shape[:2]) < crop:
                warnings.warn(f"prepare_dataset: {path} is smaller than the crop {crop}; no sub-images", stacklevel=2)
                continue
            _crop_and_write(arr, path.stem, hr_sub, crop, step, thresh)
            _crop_and_write(lr, path.stem, lr_sub, crop // scale, step // scale, thresh // scale)
    if crop is not None:
        return {"hr": hr_sub, "lr": lr_sub}
    return {"hr": hr_out, "lr": lr_out}
