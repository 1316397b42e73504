import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from gansr_ext.data import ImageReadError, list_images, read_image, read_image_with_alpha, write_image
from gansr_ext.data import _png16

RNG = np.random.default_rng(0)


def test_png8_roundtrip(tmp_path):
    img = RNG.random((9, 11, 3)).astype(np.float32)
    out = read_image(write_image(tmp_path / "a.png", img))
    assert out.dtype == np.float32 and out.shape == (9, 11, 3)
    assert np.abs(out - img).max() <= 0.5 / 255 + 1e-6
    u8 = RNG.integers(0, 256, (5, 4, 3), dtype=np.uint8)
    np.testing.assert_array_equal(read_image(write_image(tmp_path / "b.png", u8)) * 255, u8.astype(np.float32))


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_png16_roundtrip_keeps_16_bit_precision(tmp_path, channels):
    img = RNG.integers(0, 65536, (7, 6, channels), dtype=np.uint16)
    path = write_image(tmp_path / "a.png", img, bit_depth=16)
    rgb, alpha = read_image_with_alpha(path)
    color = img[..., :3] if channels >= 3 else np.repeat(img[..., :1], 3, axis=2)
    np.testing.assert_array_equal(np.round(rgb * 65535).astype(np.uint16), color)
    if channels in (2, 4):
        np.testing.assert_array_equal(np.round(alpha * 65535).astype(np.uint16), img[..., -1])
    else:
        assert alpha is None


def test_png16_files_decode_with_pillow(tmp_path):
    # an independent decoder: Pillow reads 16-bit gray exactly and 16-bit RGB as the high bytes
    gray = RNG.integers(0, 65536, (5, 8), dtype=np.uint16)
    write_image(tmp_path / "g.png", gray, bit_depth=16)
    with Image.open(tmp_path / "g.png") as im:
        np.testing.assert_array_equal(np.array(im).astype(np.uint16), gray)
    rgb = RNG.integers(0, 65536, (5, 8, 3), dtype=np.uint16)
    write_image(tmp_path / "c.png", rgb, bit_depth=16)
    with Image.open(tmp_path / "c.png") as im:
        np.testing.assert_array_equal(np.array(im.convert("RGB")), (rgb >> 8).astype(np.uint8))


def _paeth(a, b, c):
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    return a if pa <= pb and pa <= pc else (b if pb <= pc else c)


def _filter_rows(raw: np.ndarray, bpp: int, ftypes) -> bytes:
    """PNG row filtering written from the spec (filter(x) = raw(x) - predictor, mod 256)."""
    out = bytearray()
    prev = [0] * raw.shape[1]
    for row, f in zip(raw.tolist(), ftypes):
        out.append(f)
        for i, x in enumerate(row):
            a = row[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            pred = [0, a, b, (a + b) // 2, _paeth(a, b, c)][f]
            out.append((x - pred) % 256)
        prev = row
    return bytes(out)


def test_png16_decoder_handles_every_row_filter():
    img = RNG.integers(0, 65536, (10, 6, 3), dtype=np.uint16)
    raw = img.astype(">u2").view(np.uint8).reshape(10, -1)
    body = _filter_rows(raw, 6, [0, 1, 2, 3, 4, 4, 3, 2, 1, 0])

    def chunk(t, b):
        return struct.pack(">I", len(b)) + t + b + struct.pack(">I", zlib.crc32(t + b))

    png = (_png16.SIGNATURE + chunk(b"IHDR", struct.pack(">IIBBBBB", 6, 10, 16, 2, 0, 0, 0))
           + chunk(b"IDAT", zlib.compress(body)) + chunk(b"IEND", b""))
    np.testing.assert_array_equal(_png16.decode_png16(png), img)
    with pytest.raises(_png16.PNGFormatError, match="truncated|CRC"):
        _png16.decode_png16(png[:-20])


def test_grayscale_and_alpha(tmp_path):
    g = RNG.integers(0, 256, (4, 5), dtype=np.uint8)
    Image.fromarray(g).save(tmp_path / "g.png")
    out = read_image(tmp_path / "g.png")
    assert out.shape == (4, 5, 3)
    for c in range(3):
        np.testing.assert_array_equal(out[..., c] * 255, g.astype(np.float32))
    rgba = RNG.integers(0, 256, (4, 5, 4), dtype=np.uint8)
    Image.fromarray(rgba).save(tmp_path / "a.png")
    rgb, alpha = read_image_with_alpha(tmp_path / "a.png")
    np.testing.assert_allclose(rgb * 255, rgba[..., :3], atol=1e-4)
    np.testing.assert_allclose(alpha * 255, rgba[..., 3], atol=1e-4)
    assert read_image(tmp_path / "a.png").shape == (4, 5, 3)
    pal = Image.fromarray(g).convert("P")
    pal.info["transparency"] = 0
    pal.save(tmp_path / "p.png", transparency=0)
    assert read_image_with_alpha(tmp_path / "p.png")[1] is not None


@pytest.mark.parametrize("ext,tol", [(".jpg", 0.03), (".webp", 0.03), (".bmp", 0.5 / 255 + 1e-6)])
def test_other_formats_roundtrip(tmp_path, ext, tol):
    yy, xx = np.mgrid[0:32, 0:32] / 32.0
    img = np.stack([xx, yy, 0.5 * (xx + yy)], -1).astype(np.float32)
    out = read_image(write_image(tmp_path / f"a{ext}", img, quality=95))
    assert out.shape == img.shape
    assert np.abs(out - img).mean() < tol


@pytest.mark.parametrize("ext", [".png", ".jpg"])
def test_exif_orientation_is_applied(tmp_path, ext):
    img = np.zeros((2, 3, 3), np.uint8)
    img[0, 0] = 255  # marker top-left
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    Image.fromarray(img).save(tmp_path / f"o{ext}", exif=exif, **({"quality": 100} if ext == ".jpg" else {}))
    out = read_image(tmp_path / f"o{ext}")
    assert out.shape == (3, 2, 3)
    assert out[0, 1].mean() > 0.8 and out[0, 0].mean() < 0.2  # marker now top-right


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_on_16_bit_png_matches_pillow(tmp_path, orientation):
    # the 16-bit PNG path orients with numpy; Pillow's exif_transpose (8-bit path) is the reference
    img8 = RNG.integers(0, 256, (2, 3, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(img8).save(tmp_path / "e.png", exif=exif)
    data = (tmp_path / "e.png").read_bytes()
    i = data.index(b"eXIf") - 4
    (n,) = struct.unpack(">I", data[i: i + 4])
    exif_chunk = data[i: i + 12 + n]
    png = _png16.encode_png16(img8.astype(np.uint16) * 257)
    iend = png.index(b"IEND") - 4
    (tmp_path / "r.png").write_bytes(png[:iend] + exif_chunk + png[iend:])
    np.testing.assert_allclose(read_image(tmp_path / "r.png"), read_image(tmp_path / "e.png"), atol=1e-6)
    if orientation == 8:  # "rotate 90 degrees counter-clockwise to display"
        np.testing.assert_allclose(read_image(tmp_path / "r.png") * 255, np.rot90(img8, 1), atol=1e-4)


def test_unreadable_files_raise_image_read_error(tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not an image at all")
    with pytest.raises(ImageReadError, match="broken.png"):
        read_image(bad)
    write_image(tmp_path / "t.jpg", RNG.random((64, 64, 3)))
    data = (tmp_path / "t.jpg").read_bytes()
    (tmp_path / "trunc.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match="trunc.jpg"):
        read_image(tmp_path / "trunc.jpg")
    write_image(tmp_path / "t16.png", RNG.integers(0, 65535, (8, 8, 3), dtype=np.uint16), bit_depth=16)
    data = (tmp_path / "t16.png").read_bytes()
    (tmp_path / "trunc16.png").write_bytes(data[:-30])
    with pytest.raises(ImageReadError, match="trunc16.png"):
        read_image(tmp_path / "trunc16.png")
    with pytest.raises(ImageReadError, match="missing.png"):
        read_image(tmp_path / "missing.png")
    assert isinstance(ImageReadError("x", "y"), OSError)


def test_write_image_inputs_and_errors(tmp_path):
    t = torch.rand(3, 6, 5)
    out = read_image(write_image(tmp_path / "sub" / "t.png", t))
    np.testing.assert_allclose(out, t.permute(1, 2, 0).numpy(), atol=0.5 / 255 + 1e-6)
    clipped = read_image(write_image(tmp_path / "c.png", np.array([[[-1.0, 0.5, 2.0]]])))
    np.testing.assert_allclose(clipped[0, 0], [0, 128 / 255, 1], atol=1e-6)
    with pytest.raises(ValueError, match="extension"):
        write_image(tmp_path / "a.gifx", np.zeros((2, 2, 3)))
    with pytest.raises(ValueError, match="16-bit"):
        write_image(tmp_path / "a.jpg", np.zeros((2, 2, 3)), bit_depth=16)
    with pytest.raises(ValueError, match="NaN"):
        write_image(tmp_path / "a.png", np.full((2, 2, 3), np.nan))
    with pytest.raises(ValueError, match="channels"):
        write_image(tmp_path / "a.png", np.zeros((2, 2, 5)))
    assert not list(tmp_path.glob(".*.tmp"))  # no temporary files left behind


def test_list_images(tmp_path):
    for name in ["b.PNG", "a.jpg", "c.webp", "notes.txt", ".hidden.png"]:
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "d.bmp").write_bytes(b"")
    assert [p.name for p in list_images(tmp_path)] == ["a.jpg", "b.PNG", "c.webp"]
    assert [p.name for p in list_images(tmp_path, recursive=True)] == ["a.jpg", "b.PNG", "c.webp", "d.bmp"]
    with pytest.raises(NotADirectoryError, match="nope"):
        list_images(tmp_path / "nope")
