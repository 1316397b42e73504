import sys

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from gansr_ext.data import ImageReadError, list_images, read_image, read_image_with_alpha, write_image
from gansr_ext.data.io import read_image_native

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
    # an independent decoder: Pillow reads 16-bit gray exactly and 16-bit RGB(A) as the high bytes
    gray = RNG.integers(0, 65536, (5, 8), dtype=np.uint16)
    write_image(tmp_path / "g.png", gray, bit_depth=16)
    with Image.open(tmp_path / "g.png") as im:
        np.testing.assert_array_equal(np.array(im).astype(np.uint16), gray)
    rgb = RNG.integers(0, 65536, (5, 8, 3), dtype=np.uint16)
    write_image(tmp_path / "c.png", rgb, bit_depth=16)
    with Image.open(tmp_path / "c.png") as im:
        np.testing.assert_array_equal(np.array(im.convert("RGB")), (rgb >> 8).astype(np.uint8))
    rgba = RNG.integers(0, 65536, (5, 8, 4), dtype=np.uint16)
    write_image(tmp_path / "a.png", rgba, bit_depth=16)
    with Image.open(tmp_path / "a.png") as im:
        np.testing.assert_array_equal(np.array(im.convert("RGBA")), (rgba >> 8).astype(np.uint8))
    gray_alpha = RNG.integers(0, 65536, (5, 8, 2), dtype=np.uint16)  # stored as RGBA with R = G = B
    write_image(tmp_path / "ga.png", gray_alpha, bit_depth=16)
    with Image.open(tmp_path / "ga.png") as im:
        expected = (gray_alpha[..., [0, 0, 0, 1]] >> 8).astype(np.uint8)
        np.testing.assert_array_equal(np.array(im.convert("RGBA")), expected)


def test_16_bit_files_from_other_encoders_read_exactly(tmp_path):
    gray = RNG.integers(0, 65536, (5, 8), dtype=np.uint16)
    Image.fromarray(gray).save(tmp_path / "g.png")  # Pillow's own 16-bit gray PNG encoder
    with Image.open(tmp_path / "g.png") as im:
        assert im.mode.startswith("I")
    np.testing.assert_array_equal(np.round(read_image(tmp_path / "g.png") * 65535), np.repeat(gray[..., None], 3, 2))
    tifffile = pytest.importorskip("tifffile")
    for channels in (3, 4):  # tifffile stores RGB(A) order, so this also checks OpenCV's BGR(A) is undone
        img = RNG.integers(0, 65536, (5, 8, channels), dtype=np.uint16)
        tifffile.imwrite(tmp_path / "c.tif", img, photometric="rgb", extrasamples=[2] if channels == 4 else None)
        rgb, alpha = read_image_with_alpha(tmp_path / "c.tif")
        np.testing.assert_array_equal(np.round(rgb * 65535).astype(np.uint16), img[..., :3])
        if channels == 4:
            np.testing.assert_array_equal(np.round(alpha * 65535).astype(np.uint16), img[..., 3])
        else:
            assert alpha is None


def test_missing_opencv_gives_an_install_hint(tmp_path, monkeypatch):
    write_image(tmp_path / "a8.png", RNG.random((4, 4, 3)))
    write_image(tmp_path / "a16.png", RNG.random((4, 4, 3)), bit_depth=16)
    monkeypatch.setitem(sys.modules, "cv2", None)  # makes `import cv2` raise ImportError
    assert read_image(tmp_path / "a8.png").shape == (4, 4, 3)  # 8-bit files do not need OpenCV
    with pytest.raises(ImportError, match="pip install opencv-python-headless"):
        read_image(tmp_path / "a16.png")
    with pytest.raises(ImportError, match="pip install opencv-python-headless"):
        write_image(tmp_path / "b16.png", RNG.random((4, 4, 3)), bit_depth=16)


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
def test_exif_orientation_on_16_bit_files_matches_pillow(tmp_path, orientation):
    # Pillow's exif_transpose on an 8-bit PNG with the same pixels (x 257) and EXIF is the reference
    img8 = RNG.integers(0, 256, (2, 3, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(img8).save(tmp_path / "e.png", exif=exif)
    ref = read_image(tmp_path / "e.png")
    img16 = img8.astype(np.uint16) * 257
    # 16-bit RGB PNG with an eXIf chunk (which holds the TIFF data without Pillow's "Exif\0\0" prefix)
    ok, buf = cv2.imencodeWithMetadata(".png", img16[..., ::-1].copy(), [cv2.IMAGE_METADATA_EXIF],
                                       [np.frombuffer(exif.tobytes()[6:], np.uint8)])
    assert ok
    (tmp_path / "r.png").write_bytes(buf.tobytes())
    np.testing.assert_allclose(read_image(tmp_path / "r.png"), ref, atol=1e-6)
    # 16-bit gray PNG written by Pillow
    Image.fromarray(img16[..., 0]).save(tmp_path / "g.png", exif=exif)
    np.testing.assert_allclose(read_image(tmp_path / "g.png"), np.repeat(ref[..., :1], 3, 2), atol=1e-6)
    tifffile = pytest.importorskip("tifffile")  # 16-bit RGB TIFF with the Orientation tag (274)
    tifffile.imwrite(tmp_path / "t.tif", img16, photometric="rgb", extratags=[(274, "H", 1, orientation, True)])
    np.testing.assert_allclose(read_image(tmp_path / "t.tif"), ref, atol=1e-6)
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
    i = data.index(b"IDAT") + 8  # flip a byte of compressed pixel data: the chunk CRC no longer matches
    (tmp_path / "crc16.png").write_bytes(data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1:])
    with pytest.raises(ImageReadError, match="crc16.png"):
        read_image(tmp_path / "crc16.png")
    with pytest.raises(ImageReadError, match="missing.png"):
        read_image(tmp_path / "missing.png")
    assert isinstance(ImageReadError("x", "y"), OSError)


@pytest.mark.parametrize("bad_value", [np.nan, np.inf, -np.inf])
def test_float_images_with_non_finite_pixels_are_refused(tmp_path, bad_value):
    from PIL import Image

    arr = RNG.random((6, 5)).astype(np.float32)
    Image.fromarray(arr, mode="F").save(tmp_path / "ok.tif")
    np.testing.assert_array_equal(read_image(tmp_path / "ok.tif"), np.repeat(arr[..., None], 3, 2))
    arr[2, 3] = bad_value
    Image.fromarray(arr, mode="F").save(tmp_path / "bad.tif")
    for reader in (read_image, read_image_native):
        with pytest.raises(ImageReadError, match=r"bad\.tif: 1 of 30 pixel values are not finite"):
            reader(tmp_path / "bad.tif")


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
