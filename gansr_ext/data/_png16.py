"""Minimal 16-bit PNG codec (Pillow has no 16-bit RGB/RGBA/LA mode and truncates them to 8 bits).

Only what `io.py` needs: non-interlaced, non-palette PNGs with bit depth 16 (colour types 0 gray,
2 RGB, 4 gray+alpha, 6 RGBA). Decoding handles all five row filters; encoding uses the Sub filter.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np

SIGNATURE = b"\x89PNG\r\n\x1a\n"
_CHANNELS = {0: 1, 2: 3, 4: 2, 6: 4}


class PNGFormatError(ValueError):
    pass


def _chunks(data: bytes):
    if not data.startswith(SIGNATURE):
        raise PNGFormatError("not a PNG file")
    pos = len(SIGNATURE)
    while pos + 8 <= len(data):
        length, ctype = struct.unpack(">I4s", data[pos: pos + 8])
        body = data[pos + 8: pos + 8 + length]
        if len(body) != length:
            raise PNGFormatError("truncated chunk")
        crc_bytes = data[pos + 8 + length: pos + 12 + length]
        if len(crc_bytes) != 4:
            raise PNGFormatError("truncated chunk")
        (crc,) = struct.unpack(">I", crc_bytes)
        if zlib.crc32(ctype + body) != crc:
            raise PNGFormatError(f"CRC mismatch in chunk {ctype!r}")
        yield ctype, body
        if ctype == b"IEND":
            return
        pos += 12 + length
    raise PNGFormatError("missing IEND chunk (truncated file)")


def png_header(data: bytes):
    """(width, height, bit_depth, colour_type, interlace) from the IHDR chunk."""
    if not data.startswith(SIGNATURE) or data[12:16] != b"IHDR":
        raise PNGFormatError("not a PNG file")
    w, h, depth, ctype, _, _, interlace = struct.unpack(">IIBBBBB", data[16:29])
    return w, h, depth, ctype, interlace


def _unfilter(rows: np.ndarray, bpp: int) -> np.ndarray:
    h, stride = rows.shape[0], rows.shape[1] - 1
    out = np.zeros((h, stride), np.uint8)
    prev = np.zeros(stride, np.uint8)
    for y in range(h):
        ftype, line = rows[y, 0], rows[y, 1:]
        if ftype == 0:
            cur = line
        elif ftype == 1:  # Sub: prefix sum along pixels, mod 256
            cur = (np.cumsum(line.reshape(-1, bpp).astype(np.int64), axis=0) % 256).astype(np.uint8).ravel()
        elif ftype == 2:  # Up
            cur = line + prev  # uint8 wraps mod 256
        elif ftype in (3, 4):  # Average / Paeth: sequential, plain Python on bytes
            cur_b = bytearray(line.tobytes())
            up = prev.tobytes()
            for i in range(stride):
                a = cur_b[i - bpp] if i >= bpp else 0
                b = up[i]
                if ftype == 3:
                    pred = (a + b) >> 1
                else:
                    c = up[i - bpp] if i >= bpp else 0
                    p = a + b - c
                    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                    pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                cur_b[i] = (cur_b[i] + pred) & 255
            cur = np.frombuffer(bytes(cur_b), np.uint8)
        else:
            raise PNGFormatError(f"bad filter type {ftype} in row {y}")
        out[y] = cur
        prev = out[y]
    return out


def decode_png16(data: bytes) -> np.ndarray:
    """uint16 array (H, W, C) with C = 1, 2, 3 or 4 (gray, gray+alpha, RGB, RGBA)."""
    w, h, depth, ctype, interlace = png_header(data)
    if depth != 16 or ctype not in _CHANNELS:
        raise PNGFormatError(f"not a 16-bit non-palette PNG (bit depth {depth}, colour type {ctype})")
    if interlace:
        raise PNGFormatError("interlaced 16-bit PNG is not supported")
    idat = b"".join(body for ctype_, body in _chunks(data) if ctype_ == b"IDAT")
    try:
        raw = zlib.decompress(idat)
    except zlib.error as e:
        raise PNGFormatError(f"corrupt image data ({e})") from e
    c = _CHANNELS[ctype]
    stride = w * c * 2
    if len(raw) < h * (stride + 1):
        raise PNGFormatError("image data too short (truncated file)")
    rows = np.frombuffer(raw[: h * (stride + 1)], np.uint8).reshape(h, stride + 1)
    pix = _unfilter(rows, c * 2)
    return pix.view(">u2").reshape(h, w, c).astype(np.uint16)


def _chunk(ctype: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + ctype + body + struct.pack(">I", zlib.crc32(ctype + body))


def encode_png16(img: np.ndarray, level: int = 6) -> bytes:
    """PNG bytes of a uint16 (H, W) or (H, W, C), C in 1..4."""
    if img.dtype != np.uint16:
        raise TypeError(f"encode_png16: need uint16, got {img.dtype}")
    if img.ndim == 2:
        img = img[:, :, None]
    h, w, c = img.shape
    ctype = {1: 0, 2: 4, 3: 2, 4: 6}[c]
    raw = np.ascontiguousarray(img, dtype=">u2").view(np.uint8).reshape(h, w, c * 2)
    sub = raw.copy()
    sub[:, 1:] = raw[:, 1:] - raw[:, :-1]  # Sub filter (uint8 wraps mod 256)
    rows = np.concatenate([np.ones((h, 1), np.uint8), sub.reshape(h, -1)], axis=1)
    ihdr = struct.pack(">IIBBBBB", w, h, 16, ctype, 0, 0, 0)
    idat = zlib.compress(rows.tobytes(), level)
    return SIGNATURE + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")
