"""Super-resolution datasets: paired HR/LR folders, or HR only with bicubic LR made on the fly.

Items are ``{"lr": (3, h, w) float32 in [0, 1], "hr": (3, h*s, w*s) float32, "name": str}``.

Training mode (``crop=N``): an aligned random crop (HR N x N, LR N/s x N/s at the same place)
then, with ``augment=True``, horizontal flip, vertical flip and transpose (each with p = 1/2;
together the 8 symmetries of the square). Validation mode (``crop=None``): the whole image,
HR modcropped to a multiple of the scale.

Randomness is a function of (seed, epoch, index) only (a fresh generator per item), so results do
not depend on worker count or order, and a resumed run reproduces the interrupted one exactly:
call ``set_epoch(epoch)`` at the start of each epoch. Unreadable images are reported once each
(`UnreadableImageWarning`, naming the file) and replaced by the next readable item.
"""

from __future__ import annotations

import numbers
import random
import re
import warnings
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from .imresize import _check_scale, imresize, modcrop
from .io import ImageReadError, _to_float, list_images, read_image

__all__ = ["PairedImageDataset", "HROnlyDataset", "UnreadableImageWarning", "item_generator",
           "random_crop_pair", "augment_pair", "EpochSeededDataset", "EpochTaggedSampler",
           "DataError", "check_data"]


class UnreadableImageWarning(UserWarning):
    pass


def item_generator(seed: int, epoch: int, index: int) -> torch.Generator:
    """A torch.Generator determined by (seed, epoch, index) alone (well mixed by SeedSequence)."""
    state = np.random.SeedSequence([int(seed) & (2**63 - 1), int(epoch), int(index)]).generate_state(2, np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 31 ^ int(state[1]))


def _randint(high: int, gen: torch.Generator) -> int:
    """Uniform integer in [0, high]."""
    return int(torch.randint(high + 1, (1,), generator=gen))


def random_crop_pair(lr: np.ndarray, hr: np.ndarray, crop: int, scale: int, gen: torch.Generator):
    """Aligned random crop: HR `crop` x `crop`, LR `crop // scale` at the corresponding place."""
    lc = crop // scale
    lh, lw = lr.shape[:2]
    top, left = _randint(lh - lc, gen), _randint(lw - lc, gen)
    return (lr[top: top + lc, left: left + lc],
            hr[top * scale: (top + lc) * scale, left * scale: (left + lc) * scale])


def augment_pair(lr: np.ndarray, hr: np.ndarray, gen: torch.Generator):
    """Same random hflip / vflip / transpose (90-degree rotations with the flips) on both images."""
    hflip, vflip, transpose = (bool(b) for b in torch.rand(3, generator=gen) < 0.5)

    def apply(img):
        if hflip:
            img = img[:, ::-1]
        if vflip:
            img = img[::-1]
        if transpose:
            img = img.swapaxes(0, 1)
        return img

    return apply(lr), apply(hr)


def _to_chw(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1), dtype=np.float32))


def _check_args(scale, crop):
    _check_scale(scale)
    if crop is not None:
        if isinstance(crop, bool) or not isinstance(crop, numbers.Integral) or crop < scale or crop % scale:
            raise ValueError(f"crop must be None or a positive multiple of scale={scale}, got {crop!r}")


class _SRDataset(Dataset):
    def __init__(self, scale: int, crop: int | None, augment: bool, seed: int | None,
                 generator: torch.Generator | None):
        _check_args(scale, crop)
        self.scale, self.crop, self.augment = int(scale), None if crop is None else int(crop), bool(augment)
        if seed is None:
            seed = int(torch.randint(2**62, (1,), generator=generator))
        self.seed = int(seed)
        self.epoch = 0
        self._bad: set[int] = set()

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose crops/augmentations `__getitem__` returns."""
        self.epoch = int(epoch)

    # subclasses: __len__, _name(i), _make_item(i, gen), raising ImageReadError / _BadImage for an
    # image that cannot be used
    def _report(self, index: int, reason: str) -> None:
        if index not in self._bad:
            self._bad.add(index)
            warnings.warn(f"skipping {self._name(index)}: {reason}", UnreadableImageWarning, stacklevel=3)

    def _make_item(self, index: int, gen: torch.Generator) -> dict:
        raise NotImplementedError

    def __getitem__(self, index: int) -> dict:
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for a dataset of {n} items")
        index %= n
        gen = item_generator(self.seed, self.epoch, index)
        for k in range(n):  # replace unreadable items by the next readable one
            i = (index + k) % n
            if i in self._bad:
                continue
            try:
                return self._make_item(i, gen)
            except (ImageReadError, _BadImage) as e:
                self._report(i, str(e))
        raise RuntimeError(f"{type(self).__name__}: none of the {n} images could be used (see warnings)")


class _BadImage(Exception):
    """An image that was read but cannot be used (too small, LR/HR sizes disagree)."""


def _lr_stem_key(stem: str, scale: int) -> str:
    """'0001x4' / '0001_x4' / '0001_LR' / 'baby_LRx4' -> '0001' / 'baby' (the HR stem it belongs to)."""
    return re.sub(rf"[_-]?(?:LR)?(?:x{scale}|X{scale}|LR|lr|bicubic)$", "", stem)


class PairedImageDataset(_SRDataset):
    """HR and LR folders matched by file stem (LR stems may carry a suffix such as ``x4``).

    HR images larger than ``LR * scale`` by less than ``scale`` (not modcropped) are cropped;
    other size mismatches are reported and skipped like unreadable files.
    """

    def __init__(self, hr_dir, lr_dir, scale: int = 4, crop: int | None = 128, augment: bool = True,
                 seed: int | None = None, generator: torch.Generator | None = None):
        super().__init__(scale, crop, augment, seed, generator)
        hr_files, lr_files = list_images(hr_dir), list_images(lr_dir)
        lr_by_key: dict[str, Path] = {}
        for p in lr_files:
            lr_by_key.setdefault(p.stem, p)
        for p in lr_files:
            lr_by_key.setdefault(_lr_stem_key(p.stem, scale), p)
        self.pairs = [(h, lr_by_key[h.stem]) for h in hr_files if h.stem in lr_by_key]
        missing = [h.name for h in hr_files if h.stem not in lr_by_key]
        if missing:
            warnings.warn(f"{len(missing)} HR images in {hr_dir} have no LR image in {lr_dir}: "
                          f"{', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}", UnreadableImageWarning,
                          stacklevel=2)
        if not self.pairs:
            raise ValueError(f"PairedImageDataset: no HR/LR pairs found in {hr_dir} and {lr_dir}")

    def __len__(self) -> int:
        return len(self.pairs)

    def _name(self, i: int) -> str:
        return str(self.pairs[i][0])

    def _make_item(self, i: int, gen: torch.Generator) -> dict:
        hr_path, lr_path = self.pairs[i]
        hr, lr = read_image(hr_path), read_image(lr_path)
        s = self.scale
        (lh, lw), (hh, hw) = lr.shape[:2], hr.shape[:2]
        if not (0 <= hh - lh * s < s and 0 <= hw - lw * s < s):
            raise _BadImage(f"HR {hh}x{hw} ({hr_path.name}) does not match LR {lh}x{lw} ({lr_path.name}) "
                            f"at scale {s}")
        hr = hr[: lh * s, : lw * s]
        return _finish(self, lr, hr, hr_path.stem, gen)


def _finish(ds: _SRDataset, lr: np.ndarray, hr: np.ndarray, name: str, gen: torch.Generator) -> dict:
    if ds.crop is not None:
        if min(hr.shape[:2]) < ds.crop:
            raise _BadImage(f"image {hr.shape[0]}x{hr.shape[1]} is smaller than the crop {ds.crop}")
        lr, hr = random_crop_pair(lr, hr, ds.crop, ds.scale, gen)
    if ds.augment:
        lr, hr = augment_pair(lr, hr, gen)
    return {"lr": _to_chw(lr), "hr": _to_chw(hr), "name": name}


def _check_array(arr, name: str) -> np.ndarray:
    """HWC RGB view of an in-memory image (kept in its dtype; converted to float per crop)."""
    arr = np.asarray(arr)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 3, 4):
        raise ValueError(f"HROnlyDataset: image {name} must be HW, HWC RGB or RGBA, got shape {arr.shape}")
    if arr.dtype not in (np.uint8, np.uint16) and not np.issubdtype(arr.dtype, np.floating):
        raise TypeError(f"HROnlyDataset: image {name} must be uint8, uint16 or float in [0, 1], got {arr.dtype}")
    return arr[:, :, :3]


def _to_float_rgb(arr: np.ndarray) -> np.ndarray:
    return _to_float(np.repeat(arr, 3, axis=2) if arr.shape[2] == 1 else arr)


class HROnlyDataset(_SRDataset):
    """HR images (a folder, a list of paths, arrays or (name, array) pairs); LR = bicubic imresize.

    With a crop, LR is made from the HR crop plus a margin of 3 LR pixels (more than the x1/s
    bicubic support), so it equals ``make_lr(whole image)`` cropped at the same place. Images are
    modcropped to the scale first. ``cache=True`` keeps decoded files in memory.
    """

    _MARGIN = 3  # LR pixels; antialiased bicubic reaches 2 LR pixels either side of a centre

    def __init__(self, hr, scale: int = 4, crop: int | None = 128, augment: bool = True,
                 seed: int | None = None, generator: torch.Generator | None = None, cache: bool = False):
        super().__init__(scale, crop, augment, seed, generator)
        self.cache = cache
        self._cached: dict[int, np.ndarray] = {}
        if isinstance(hr, (str, Path)):
            items = list_images(hr)
            if not items:
                raise ValueError(f"HROnlyDataset: no images in {hr}")
        else:
            items = list(hr)
            if not items:
                raise ValueError("HROnlyDataset: empty image list")
        self.names: list[str] = []
        self.sources: list = []  # Path, or HWC array (uint8 / uint16 / float in [0, 1])
        for k, it in enumerate(items):
            if isinstance(it, (str, Path)):
                self.names.append(Path(it).stem)
                self.sources.append(Path(it))
            elif isinstance(it, tuple) and len(it) == 2 and isinstance(it[0], str):
                self.names.append(it[0])
                self.sources.append(_check_array(it[1], it[0]))
            else:
                name = f"image_{k:04d}"
                self.names.append(name)
                self.sources.append(_check_array(it, name))

    def __len__(self) -> int:
        return len(self.sources)

    def _name(self, i: int) -> str:
        return str(self.sources[i]) if isinstance(self.sources[i], Path) else self.names[i]

    def _hr(self, i: int) -> np.ndarray:
        src = self.sources[i]
        if not isinstance(src, Path):
            return src
        if i in self._cached:
            return self._cached[i]
        img = read_image(src)
        if self.cache:
            self._cached[i] = img
        return img

    def _make_item(self, i: int, gen: torch.Generator) -> dict:
        s = self.scale
        hr = modcrop(self._hr(i), s)
        if min(hr.shape[:2]) < max(s, self.crop or s):
            raise _BadImage(f"image {hr.shape[0]}x{hr.shape[1]} is smaller than the crop {self.crop or s}")
        if self.crop is None:
            hr = _to_float_rgb(hr)
            return _finish(self, imresize(hr, 1.0 / s), hr, self.names[i], gen)
        lc = self.crop // s
        lh, lw = hr.shape[0] // s, hr.shape[1] // s
        top, left = _randint(lh - lc, gen), _randint(lw - lc, gen)
        # downscale the crop with a margin (clipped at the image border, where imresize mirrors
        # exactly as it would for the whole image), then cut the margin off
        t0, l0 = max(0, top - self._MARGIN), max(0, left - self._MARGIN)
        t1, l1 = min(lh, top + lc + self._MARGIN), min(lw, left + lc + self._MARGIN)
        region = _to_float_rgb(hr[t0 * s: t1 * s, l0 * s: l1 * s])
        lr = imresize(region, 1.0 / s)[top - t0: top - t0 + lc, left - l0: left - l0 + lc]
        hr = region[(top - t0) * s: (top - t0 + lc) * s, (left - l0) * s: (left - l0 + lc) * s]
        if self.augment:
            lr, hr = augment_pair(lr, hr, gen)
        return {"lr": _to_chw(lr), "hr": _to_chw(hr), "name": self.names[i]}


# ---------------------------------------------------------------- training-data helpers

class EpochSeededDataset(torch.utils.data.Dataset):
    """Wraps a dataset so that item `(epoch, index)` is drawn with the Python/numpy/torch RNGs seeded
    from (seed, epoch, index), and the caller's RNG states restored afterwards.

    Random crops and flips then depend only on (seed, epoch, index): not on the worker that loads
    the item nor on what was loaded before, which is what makes a resumed run see the same batches.
    """

    def __init__(self, inner, seed: int):
        self.inner, self.seed = inner, seed

    def __len__(self) -> int:
        return len(self.inner)

    def __getitem__(self, key):
        epoch, index = key
        item_seed = (self.seed * 1_000_003 + epoch * 7_919 + index) % 2**32
        py, npy, th = random.getstate(), np.random.get_state(), torch.get_rng_state()
        try:
            random.seed(item_seed)
            np.random.seed(item_seed)
            # the CPU generator only: torch.manual_seed would also reseed (and not restore) the CUDA
            # generators that the training step draws from (e.g. the gradient penalty's eps)
            torch.random.default_generator.manual_seed(item_seed)
            if hasattr(self.inner, "set_epoch"):
                self.inner.set_epoch(epoch)
            return self.inner[index]
        finally:
            random.setstate(py)
            np.random.set_state(npy)
            torch.set_rng_state(th)


class DataError(ValueError):
    """The configured data cannot be trained on (a missing folder, no usable image, sizes that disagree)."""


def check_data(dataset, seed: int, key: str) -> None:
    """Load one item as training will (RNG states restored afterwards), so a data problem is reported
    before the run folder is created rather than at the first batch. The datasets skip unusable
    images, so this fails only when none of them can be used."""
    if len(dataset) == 0:
        raise DataError(f"{key}: the dataset is empty")
    try:
        EpochSeededDataset(dataset, seed)[(0, 0)]
    except (OSError, ValueError, RuntimeError, TypeError) as e:
        raise DataError(f"{key}: {' '.join(str(e).split()) or type(e).__name__}") from None


class EpochTaggedSampler(torch.utils.data.Sampler):
    """Yields (epoch, index) keys for EpochSeededDataset."""

    def __init__(self, inner, epoch: int):
        self.inner, self.epoch = inner, epoch

    def __len__(self):
        return len(self.inner)

    def __iter__(self):
        return ((self.epoch, i) for i in self.inner)
