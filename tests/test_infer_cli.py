"""`gansr upscale` on tiny generated files (modes, bit depths, EXIF, corrupt files) and `gansr export onnx`."""

import numpy as np
import pytest
import torch
from PIL import Image

from gansr_ext.cli import main
from gansr_ext.data import read_image, write_image
from gansr_ext.data.io import read_image_native as load_native
from gansr_ext.infer import Upscaler
from gansr_ext.models import RRDBNet, save_generator

H, W = 17, 20  # tiny images: PIL size (20, 17)


@pytest.fixture(scope="module")
def model():
    """Full-strength Kaiming weights: outputs with structure (ESRGAN's x0.1 init gives a flat image)."""
    torch.manual_seed(0)
    model = RRDBNet(nf=8, nb=1, gc=4).eval()
    for p in model.parameters():
        if p.dim() == 4:
            torch.nn.init.kaiming_normal_(p)
    return model


@pytest.fixture(scope="module")
def ckpt(model, tmp_path_factory):
    return str(save_generator(model, tmp_path_factory.mktemp("ckpt") / "tiny.pth"))


def _rgb8(seed=0):
    return np.random.default_rng(seed).integers(0, 256, (H, W, 3), dtype=np.uint8)


def upscale_cli(*args):
    return main(["upscale", *map(str, args), "--device", "cpu"])


def test_modes_and_bit_depths_round_trip(tmp_path, ckpt, model):
    src = tmp_path / "in"
    src.mkdir()
    rgb = Image.fromarray(_rgb8())
    rgb.save(src / "rgb.png")
    rgb.convert("RGBA").save(src / "rgba.png")
    rgb.convert("L").save(src / "gray.png")
    rgb.convert("P").save(src / "pal.png")
    Image.fromarray(np.random.default_rng(1).integers(0, 65536, (H, W), dtype=np.uint16)).save(src / "gray16.png")
    rgb16 = np.random.default_rng(2).integers(0, 65536, (H, W, 3), dtype=np.uint16)
    write_image(src / "rgb16.png", rgb16, bit_depth=16)
    out = tmp_path / "out"
    assert upscale_cli(src, "-o", out, "--model", ckpt, "--tile", 8, "--overlap", 4) == 0
    expected = {"rgb": 3, "rgba": 4, "gray": 1, "pal": 3, "gray16": 1, "rgb16": 3}
    for name, channels in expected.items():
        arr = load_native(out / f"{name}_out.png")
        assert arr.shape == (4 * H, 4 * W, channels), name
        assert arr.dtype == (np.uint16 if name.endswith("16") else np.uint8), name
    # the file equals the in-memory Upscaler result of the same pixels (same tiling, the CLI's default dtype)
    up = Upscaler(model, device="cpu", tile=8, overlap=4, dtype="auto")
    np.testing.assert_array_equal(load_native(out / "rgb16_out.png"), up.upscale(rgb16))
    np.testing.assert_array_equal(load_native(out / "rgba_out.png")[:, :, 3],
                                  up.upscale(np.asarray(rgb.convert("RGBA")))[:, :, 3])


def test_corrupt_and_missing_files_are_reported_and_others_processed(tmp_path, ckpt, capsys):
    Image.fromarray(_rgb8()).save(tmp_path / "good.png")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not a png")
    out = tmp_path / "out"
    code = upscale_cli(tmp_path / "good.png", tmp_path / "broken.png", tmp_path / "missing.png", "-o", out,
                       "--model", ckpt)
    err = capsys.readouterr().err
    assert code == 1
    assert "broken.png" in err and "missing.png" in err and "1 of 2 images" in err
    assert (out / "good_out.png").is_file() and not (out / "broken_out.png").exists()


def test_empty_folder_glob_and_bad_model(tmp_path, ckpt, capsys):
    (tmp_path / "empty").mkdir()
    assert upscale_cli(tmp_path / "empty", "-o", tmp_path / "out", "--model", ckpt) == 0
    assert "no images in folder" in capsys.readouterr().err
    assert upscale_cli(tmp_path / "*.png", "-o", tmp_path / "out", "--model", ckpt) == 1
    assert "matched no files" in capsys.readouterr().err
    Image.fromarray(_rgb8()).save(tmp_path / "a.png")
    (tmp_path / "bad.pth").write_bytes(b"not a checkpoint")
    assert upscale_cli(tmp_path / "a.png", "-o", tmp_path / "out", "--model", tmp_path / "bad.pth") == 2
    assert "cannot load model" in capsys.readouterr().err


def test_glob_formats_quality_outscale_and_verbose(tmp_path, ckpt, capsys):
    for i in range(2):
        Image.fromarray(_rgb8(i)).save(tmp_path / f"img{i}.png")
    out = tmp_path / "out"
    assert upscale_cli(tmp_path / "img*.png", "-o", out, "--model", ckpt, "--ext", "jpg", "--quality", "90",
                       "--outscale", "2", "--suffix", "_x2", "-v", "--dtype", "fp32") == 0
    assert "img0.png" in capsys.readouterr().err  # per-image timing line
    for i in range(2):
        with Image.open(out / f"img{i}_x2.jpg") as im:
            assert im.format == "JPEG" and im.size == (2 * W, 2 * H)
    assert upscale_cli(tmp_path / "img0.png", "-o", out, "--model", ckpt, "--ext", "webp", "--quality", "50",
                       "--tile", "0") == 0
    with Image.open(out / "img0_out.webp") as im:
        assert im.format == "WEBP" and im.size == (4 * W, 4 * H)
    low = tmp_path / "low"
    assert upscale_cli(tmp_path / "img0.png", "-o", low, "--model", ckpt, "--ext", "webp", "--quality", "5") == 0
    assert (low / "img0_out.webp").stat().st_size < (out / "img0_out.webp").stat().st_size
    Image.fromarray(_rgb8()).save(tmp_path / "photo.jpg")
    assert upscale_cli(tmp_path / "photo.jpg", "-o", out, "--model", ckpt, "--ext", "auto") == 0
    assert (out / "photo_out.jpg").is_file()
    with pytest.raises(SystemExit):  # argparse refuses a bad --tile
        upscale_cli(tmp_path / "img0.png", "-o", out, "--model", ckpt, "--tile", "big")


def test_exif_orientation_is_applied(tmp_path, ckpt):
    img = Image.fromarray(_rgb8())
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    img.save(tmp_path / "rot.jpg", exif=exif.tobytes())
    assert upscale_cli(tmp_path / "rot.jpg", "-o", tmp_path / "out", "--model", ckpt) == 0
    assert read_image(tmp_path / "out" / "rot_out.png").shape == (4 * W, 4 * H, 3)


def test_fp16_on_cpu_cli_warns_and_works(tmp_path, ckpt):
    Image.fromarray(_rgb8()).save(tmp_path / "a.png")
    with pytest.warns(UserWarning, match="fp16"):
        assert upscale_cli(tmp_path / "a.png", "-o", tmp_path / "out", "--model", ckpt, "--dtype", "fp16") == 0
    assert (tmp_path / "out" / "a_out.png").is_file()


# ---- ONNX export ------------------------------------------------------------------------------------

def test_onnx_export_matches_pytorch_on_two_sizes(tmp_path, model, ckpt, capsys):
    pytest.importorskip("onnxruntime")
    from gansr_ext.infer.export import check_onnx, export_onnx

    path = export_onnx(model, tmp_path / "tiny.onnx")
    errors = check_onnx(path, model, sizes=((1, 12, 16), (2, 20, 8)))
    assert len(errors) == 2 and max(errors) < 1e-4
    torch.manual_seed(5)
    other = RRDBNet(nf=8, nb=1, gc=4)
    with pytest.raises(AssertionError, match="max abs difference"):
        check_onnx(path, other)  # the comparison can fail
    assert main(["export", "onnx", "--model", ckpt, "-o", str(tmp_path / "cli.onnx"), "--opset", "17"]) == 0
    assert "matches PyTorch" in capsys.readouterr().out


def test_onnx_export_x2_unshuffle_model(tmp_path):
    pytest.importorskip("onnxruntime")
    from gansr_ext.infer.export import check_onnx, export_onnx

    torch.manual_seed(1)
    x2 = RRDBNet(nf=8, nb=1, gc=4, scale=2)
    path = export_onnx(x2, tmp_path / "x2.onnx")
    assert max(check_onnx(path, x2, sizes=((1, 8, 12), (1, 16, 6)))) < 1e-4
