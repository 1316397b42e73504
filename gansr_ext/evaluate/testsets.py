"""Test-set folders: (HR, LR) pairs by file name, loading, and the crops shown side by side."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

HR_DIRS = ("HR", "GT")


@dataclass(frozen=True)
class Crop:
    """A square region of one HR image (HR pixel coordinates) for the side-by-side figure."""

    image: str
    x: int
    y: int
    size: int


def parse_crop(text: str) -> Crop:
    """'name:x,y,size' -> Crop (name = image file stem)."""
    m = re.fullmatch(r"(.+):(\d+),(\d+),(\d+)", text.strip())
    if not m or int(m.group(4)) < 1:
        raise ValueError(f"crop must be NAME:X,Y,SIZE with non-negative integers and SIZE >= 1, got {text!r}")
    return Crop(m.group(1), int(m.group(2)), int(m.group(3)), int(m.group(4)))


def _to_uint8(img: np.ndarray) -> np.ndarray:
    return np.clip(np.round(img * 255.0), 0, 255).astype(np.uint8)


def _find_lr_dir(folder: Path, scale: int) -> Path | None:
    for name in ("LR", f"LRbicx{scale}", f"LR_bicubic/X{scale}", f"LR_bicubic/x{scale}"):
        if (folder / name).is_dir():
            return folder / name
    return None


def _hr_stem_of_lr(stem: str, scale: int) -> str:
    return re.sub(rf"_?(x{scale}|lrbicx{scale}|lr)$", "", stem, flags=re.IGNORECASE)


def find_pairs(folder, scale: int = 4) -> list[tuple[str, Path, Path | None]]:
    """[(name, HR path, LR path or None)] of a test-set folder (see the package docstring)."""
    from gansr_ext.data.io import list_images

    folder = Path(folder)
    if not folder.is_dir():
        raise NotADirectoryError(f"evaluate: test set {folder} is not a directory")
    hr_dir = next((folder / d for d in HR_DIRS if (folder / d).is_dir()), None)
    lr_dir = _find_lr_dir(folder, scale)
    if hr_dir is None and lr_dir is not None:
        raise ValueError(f"evaluate: {folder} has {lr_dir.name}/ but no HR/ (or GT/) folder")
    hr_dir = hr_dir or folder
    hr_files = list_images(hr_dir)
    if not hr_files:
        raise ValueError(f"evaluate: no images in {hr_dir}")
    if lr_dir is None:
        return [(p.stem, p, None) for p in hr_files]
    lr_by_hr_stem = {_hr_stem_of_lr(p.stem, scale): p for p in list_images(lr_dir)}
    missing = [p.name for p in hr_files if p.stem not in lr_by_hr_stem]
    if missing:
        raise ValueError(f"evaluate: no LR image in {lr_dir} for HR image(s) {missing[:5]}")
    return [(p.stem, p, lr_by_hr_stem[p.stem]) for p in hr_files]


def load_pair(hr_path: Path, lr_path: Path | None, scale: int) -> tuple[np.ndarray, np.ndarray]:
    """(HR uint8 HWC cropped to a multiple of scale, LR uint8 HWC)."""
    from gansr_ext.data import make_lr, modcrop
    from gansr_ext.data.io import read_image

    hr = modcrop(_to_uint8(read_image(hr_path)), scale)
    if lr_path is None:
        return hr, make_lr(hr, scale)
    lr = _to_uint8(read_image(lr_path))
    if (lr.shape[0] * scale, lr.shape[1] * scale) != hr.shape[:2]:
        raise ValueError(f"evaluate: LR {lr_path.name} is {lr.shape[1]}x{lr.shape[0]}, HR {hr_path.name} is "
                         f"{hr.shape[1]}x{hr.shape[0]} after modcrop: not a x{scale} pair")
    return hr, lr


def _centre_crop(name: str, shape, size: int = 128) -> Crop:
    size = min(size, shape[0], shape[1])
    return Crop(name, (shape[1] - size) // 2, (shape[0] - size) // 2, size)


def _fit_crop(crop: Crop, shape) -> tuple[int, int, int]:
    h, w = shape[:2]
    size = min(crop.size, h, w)
    return min(crop.x, w - size), min(crop.y, h - size), size


def crop_box(name, shape, crops_by_image: dict | None, have_one: bool, notes: list) -> tuple[int, int, int] | None:
    """(x, y, size) of the crop to show for image `name`, or None. crops_by_image None: the default,
    a centre crop of the first image (`have_one`: a crop was taken already). A crop that does not
    fit the image is moved / shrunk, with a note."""
    if crops_by_image is None:
        chosen = None if have_one else _centre_crop(name, shape)
    else:
        chosen = crops_by_image.get(name)
    if chosen is None:
        return None
    box = _fit_crop(chosen, shape)
    if box != (chosen.x, chosen.y, chosen.size):
        notes.append(f"crop {name}:{chosen.x},{chosen.y},{chosen.size} moved/shrunk to "
                     f"{box[0]},{box[1]},{box[2]} to fit the {shape[1]}x{shape[0]} image")
    return box
