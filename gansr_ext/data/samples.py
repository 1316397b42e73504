"""Natural sample images shipped inside scikit-image's wheel (no download), with a fixed split.

Train: astronaut, the stereo motorcycle pair (both views, so they stay in one split), Hubble deep
field, retina, immunohistochemistry. Val: chelsea, coffee, rocket. Only colour photos: grayscale
ones (camera, brick, grass, gravel) replicated to RGB taught the demo's models to desaturate colour.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

__all__ = ["sample_images", "write_sample_folders", "TRAIN_NAMES", "VAL_NAMES"]

TRAIN_NAMES = ("astronaut", "motorcycle_left", "motorcycle_right", "hubble_deep_field", "retina",
               "immunohistochemistry")
VAL_NAMES = ("chelsea", "coffee", "rocket")


@lru_cache(maxsize=None)
def _load(name: str) -> np.ndarray:
    import skimage.data as d

    if name in ("motorcycle_left", "motorcycle_right"):
        left, right, _ = d.stereo_motorcycle()
        img = left if name == "motorcycle_left" else right
    else:
        img = getattr(d, name)()
    img = np.asarray(img)
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    img = np.ascontiguousarray(img[:, :, :3].astype(np.uint8, copy=False))
    img.setflags(write=False)  # shared by the cache
    return img


def sample_images(split: str = "train") -> list[tuple[str, np.ndarray]]:
    """[(name, uint8 HWC RGB read-only array)] for split "train", "val" or "all" (train then val)."""
    names = {"train": TRAIN_NAMES, "val": VAL_NAMES, "all": TRAIN_NAMES + VAL_NAMES}.get(split)
    if names is None:
        raise ValueError(f"sample_images: split must be 'train', 'val' or 'all', got {split!r}")
    return [(n, _load(n)) for n in names]


def write_sample_folders(root) -> tuple[Path, Path]:
    """Write the samples as PNG into root/train and root/val; returns (train_dir, val_dir)."""
    from .io import write_image

    root = Path(root)
    dirs = []
    for split in ("train", "val"):
        folder = root / split
        folder.mkdir(parents=True, exist_ok=True)
        for name, img in sample_images(split):
            write_image(folder / f"{name}.png", img)
        dirs.append(folder)
    return dirs[0], dirs[1]
