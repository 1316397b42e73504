"""Image IO: everything in as float32 HWC RGB in [0, 1]; out as 8- or 16-bit files.

Reading uses Pillow (PNG, JPEG, WebP, BMP, TIFF, ...) with the EXIF orientation applied, except
16-bit PNGs and 16-bit RGB(A) TIFFs, which Pillow truncates to 8 bits and which OpenCV decodes
(imported lazily: only these files need it). Grayscale becomes 3 identical channels; alpha is
dropped by `read_image` and returned separately by `read_image_with_alpha`. Any failure, and a
float image (32-bit TIFF) holding NaN or Inf, raises `ImageReadError` naming the file. 16-bit PNGs are written with OpenCV.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .._fileio import atomic_write

__all__ = ["IMAGE_EXTENSIONS", "ImageReadError", "read_image", "read_image_native", "read_image_with_alpha",
           "write_image", "list_images"]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
_PIL_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".bmp": "BMP",
                ".tif": "TIFF", ".tiff": "TIFF"}


class ImageReadError(OSError):
    """An image file that is missing, unreadable or corrupt; `.path` names it."""

    def __init__(self, path, reason: str):
        self.path = str(path)
        super().__init__(f"cannot read image {self.path}: {reason}")


def _orient(arr: np.ndarray, orientation: int) -> np.ndarray:
    """Apply EXIF orientation 1..8 to an HWC array (what PIL.ImageOps.exif_transpose does)."""
    ops = {
        2: lambda a: a[:, ::-1],
        3: lambda a: a[::-1, ::-1],
        4: lambda a: a[::-1],
        5: lambda a: a.swapaxes(0, 1),
        6: lambda a: np.rot90(a, -1),
        7: lambda a: a[::-1, ::-1].swapaxes(0, 1),
        8: lambda a: np.rot90(a, 1),
    }
    return np.ascontiguousarray(ops[orientation](arr)) if orientation in ops else arr


def _pil_to_array(im) -> np.ndarray:
    """PIL image -> HWC array with 1 (gray), 2 (gray+alpha), 3 (RGB) or 4 (RGBA) channels."""
    mode = im.mode
    if mode in ("P", "PA"):
        im = im.convert("RGBA" if mode == "PA" or "transparency" in im.info else "RGB")
    elif mode == "1":
        im = im.convert("L")
    elif mode == "La":
        im = im.convert("LA")
    elif mode == "RGBa":
        im = im.convert("RGBA")
    elif mode not in ("L", "LA", "RGB", "RGBA", "I", "F") and not mode.startswith("I;16"):
        im = im.convert("RGB")  # CMYK, YCbCr, LAB, HSV, ...
    arr = np.array(im)
    if im.mode.startswith("I;16"):
        arr = arr.astype(np.uint16)
    elif im.mode == "I":  # 16-bit grayscale from some decoders
        arr = np.clip(arr, 0, 65535).astype(np.uint16)
    elif im.mode == "F":  # 32-bit float (TIFF): range-checked and clipped by the caller
        arr = arr.astype(np.float32)
    return arr[:, :, None] if arr.ndim == 2 else arr


def _checked_float(arr: np.ndarray, path: Path) -> np.ndarray:
    """A float image clipped to [0, 1]; NaN / Inf pixels are refused (clipping would hide or invent them)."""
    bad = int(np.count_nonzero(~np.isfinite(arr)))
    if bad:
        raise ImageReadError(path, f"{bad} of {arr.size} pixel values are not finite (NaN or Inf)")
    return np.clip(arr, 0.0, 1.0)


def _cv2():
    """OpenCV, imported on first use (it is slow to import and only 16-bit files need it)."""
    try:
        import cv2
    except ImportError as e:
        raise ImportError("16-bit PNG/TIFF images are read and written with OpenCV: "
                          "pip install opencv-python-headless") from e
    return cv2


def _is_16_bit(im, path: Path) -> bool:
    """True for the files Pillow would truncate to 8 bits: 16-bit PNGs, 16-bit RGB(A) TIFFs."""
    if im.format == "PNG":
        with open(path, "rb") as f:
            head = f.read(26)  # signature (8), IHDR length + type (8), width, height, bit depth
        return head[12:16] == b"IHDR" and head[24] == 16
    if im.format == "TIFF" and im.mode in ("RGB", "RGBA"):
        bits = im.tag_v2.get(258, ())  # BitsPerSample
        return set(bits if isinstance(bits, tuple) else (bits,)) == {16}
    return False


def _decode_16_bit(path: Path) -> np.ndarray:
    """HWC uint16 array with 1 (gray), 3 (RGB) or 4 (RGBA) channels, decoded by OpenCV."""
    cv2 = _cv2()
    try:
        arr = cv2.imdecode(np.frombuffer(path.read_bytes(), np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error as e:
        raise ImageReadError(path, f"OpenCV: {e}") from e
    if arr is None:
        raise ImageReadError(path, "corrupt or truncated 16-bit image (OpenCV cannot decode it)")
    if arr.dtype != np.uint16 or arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (3, 4)):
        raise ImageReadError(path, f"unsupported 16-bit layout: OpenCV gave {arr.dtype} {arr.shape}")
    if arr.ndim == 2:
        return arr[:, :, None]
    return cv2.cvtColor(arr, cv2.COLOR_BGR2RGB if arr.shape[2] == 3 else cv2.COLOR_BGRA2RGBA)


def _encode_png16(arr: np.ndarray) -> bytes:
    """PNG bytes of an HWC uint16 array with 1-4 channels, encoded by OpenCV."""
    cv2 = _cv2()
    if arr.shape[2] == 2:  # OpenCV writes no gray+alpha: store RGBA with R = G = B (reads back the same)
        arr = np.concatenate([arr[:, :, :1]] * 3 + [arr[:, :, 1:]], axis=2)
    if arr.shape[2] == 1:
        arr = arr[:, :, 0]
    else:
        arr = cv2.cvtColor(arr, cv2.COLOR_RGB2BGR if arr.shape[2] == 3 else cv2.COLOR_RGBA2BGRA)
    ok, buf = cv2.imencode(".png", arr)
    if not ok:
        raise OSError(f"write_image: OpenCV could not encode a 16-bit PNG of shape {arr.shape}")
    return buf.tobytes()


def read_image_native(path) -> np.ndarray:
    """HWC array (uint8 / uint16 / float32 clipped to [0, 1], 1-4 channels), EXIF orientation applied.

    A float image with a NaN or Inf pixel raises `ImageReadError` (it would poison every loss).
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    p = Path(path)
    if not p.is_file():
        raise ImageReadError(p, "no such file")
    try:
        with Image.open(p) as im:
            if _is_16_bit(im, p):
                arr = _decode_16_bit(p)
                # OpenCV's TIFF decoder applies the Orientation tag itself; for PNG it does not
                # (IMREAD_UNCHANGED), so orient with the EXIF that Pillow reads from the same file
                return arr if im.format == "TIFF" else _orient(arr, im.getexif().get(0x0112, 1))
            im.load()
            arr = _pil_to_array(ImageOps.exif_transpose(im))
    except ImageReadError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as e:
        raise ImageReadError(p, f"{type(e).__name__}: {e}") from e
    return _checked_float(arr, p) if arr.dtype.kind == "f" else arr


def _to_float(arr: np.ndarray) -> np.ndarray:
    """uint8 / uint16 (full scale -> 1) or float array -> float32 (also used by datasets)."""
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / 255.0
    if arr.dtype == np.uint16:
        return arr.astype(np.float32) / 65535.0
    return arr.astype(np.float32)


def read_image_with_alpha(path):
    """(RGB float32 HWC in [0, 1], alpha float32 HW in [0, 1] or None if the file has none)."""
    arr = _to_float(read_image_native(path))
    c = arr.shape[2]
    alpha = arr[:, :, c - 1].copy() if c in (2, 4) else None
    color = arr[:, :, :3] if c >= 3 else np.repeat(arr[:, :, :1], 3, axis=2)
    return np.ascontiguousarray(color), alpha


def read_image(path) -> np.ndarray:
    """float32 HWC RGB in [0, 1] (grayscale -> 3 channels, alpha dropped, EXIF orientation applied)."""
    return read_image_with_alpha(path)[0]


def _as_hwc_array(img) -> np.ndarray:
    if isinstance(img, torch.Tensor):
        t = img.detach().cpu()
        if t.dim() == 4 and t.shape[0] == 1:
            t = t[0]
        if t.dim() == 3:
            t = t.permute(1, 2, 0)
        elif t.dim() != 2:
            raise ValueError(f"write_image: tensor must be (C, H, W) or (H, W), got shape {tuple(img.shape)}")
        img = t.float().numpy() if t.dtype.is_floating_point else t.numpy()
    if not isinstance(img, np.ndarray):
        raise TypeError(f"write_image: expected a numpy array or torch tensor, got {type(img).__name__}")
    if img.ndim == 2:
        img = img[:, :, None]
    if img.ndim != 3 or img.shape[2] not in (1, 2, 3, 4):
        raise ValueError(f"write_image: image must be HW or HWC with 1-4 channels, got shape {img.shape}")
    if img.shape[0] == 0 or img.shape[1] == 0:
        raise ValueError(f"write_image: empty image of shape {img.shape}")
    return img


def _quantize(img: np.ndarray, bit_depth: int) -> np.ndarray:
    top = 255 if bit_depth == 8 else 65535
    if img.dtype == np.uint8:
        x = img.astype(np.float64) / 255.0
    elif img.dtype == np.uint16:
        x = img.astype(np.float64) / 65535.0
    elif np.issubdtype(img.dtype, np.floating):
        if not np.isfinite(img).all():
            raise ValueError("write_image: image contains NaN or Inf")
        x = np.clip(img.astype(np.float64), 0.0, 1.0)
    else:
        raise TypeError(f"write_image: dtype must be float (in [0, 1]), uint8 or uint16, got {img.dtype}")
    return np.round(x * top).astype(np.uint8 if bit_depth == 8 else np.uint16)


def write_image(path, img, quality: int = 95, bit_depth: int = 8) -> Path:
    """Write `img` (float in [0, 1] (clipped), uint8 or uint16; HW/HWC numpy or (C, H, W) tensor).

    Format from the extension; `quality` for JPEG/WebP; `bit_depth=16` only for PNG (gray+alpha is
    then stored as RGBA with R = G = B, which OpenCV can write). JPEG drops alpha. The file is
    written to a temporary name and renamed, so readers never see half a file.
    """
    from PIL import Image

    path = Path(path)
    ext = path.suffix.lower()
    if ext not in _PIL_FORMATS:
        raise ValueError(f"write_image: unsupported extension {path.suffix!r} for {path} "
                         f"(use one of {IMAGE_EXTENSIONS})")
    if bit_depth not in (8, 16):
        raise ValueError(f"write_image: bit_depth must be 8 or 16, got {bit_depth!r}")
    if bit_depth == 16 and ext != ".png":
        raise ValueError(f"write_image: 16-bit output needs a .png file, got {path}")
    if not 1 <= int(quality) <= 100:
        raise ValueError(f"write_image: quality must be in 1..100, got {quality!r}")
    arr = _quantize(_as_hwc_array(img), bit_depth)
    if ext in (".jpg", ".jpeg") and arr.shape[2] in (2, 4):
        arr = arr[:, :, : arr.shape[2] - 1]

    def write(f):
        if bit_depth == 16:
            f.write(_encode_png16(arr))
        else:
            im = Image.fromarray(arr[:, :, 0] if arr.shape[2] == 1 else arr)
            kwargs = {"quality": int(quality)} if ext in (".jpg", ".jpeg", ".webp") else {}
            im.save(f, format=_PIL_FORMATS[ext], **kwargs)

    atomic_write(path, write)
    return path


def list_images(folder, recursive: bool = False) -> list[Path]:
    """Image files (by extension, case-insensitive, hidden files skipped) in `folder`, sorted."""
    folder = Path(folder)
    if not folder.is_dir():
        raise NotADirectoryError(f"list_images: {folder} is not a directory")
    it = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in it if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
                  and not p.name.startswith("."))
