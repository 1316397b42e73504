"""Issue 11, the inference side: what a careless or hostile user can do to `gansr upscale` and the
generator loader (NaN output, outputs onto inputs or outside -o, lying model files, huge images,
file modes, bad --outscale, unclear load errors, a trainer checkpoint as --model). Tiny sizes."""

import os
import stat
import time
from contextlib import contextmanager

import numpy as np
import pytest
import torch
from PIL import Image

from gansr_ext._fileio import atomic_write
from gansr_ext.cli import main
from gansr_ext.infer import ImageTooLargeError, NonFiniteOutputError, Upscaler
from gansr_ext.models import RRDBNet, load_generator, save_generator
from gansr_ext.models.checkpoint import CheckpointError
from gansr_ext.weights import CorruptWeightsError, load_state_dict

H, W = 6, 7


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    torch.manual_seed(0)
    return save_generator(RRDBNet(nf=8, nb=1, gc=4), tmp_path_factory.mktemp("ckpt") / "tiny.pth")


def _png(path, seed=0):
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (H, W, 3), dtype=np.uint8)).save(path)
    return path


def upscale_cli(*args):
    return main(["upscale", *map(str, args), "--device", "cpu", "--tile", "0"])


@contextmanager
def umask(mask):
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


# ---- 7: NaN output ----------------------------------------------------------------------------------------

def test_nan_model_output_is_an_error_naming_the_image_not_a_black_file(tmp_path, capsys):
    torch.manual_seed(0)
    model = RRDBNet(nf=8, nb=1, gc=4)
    with torch.no_grad():
        model.conv_last.bias.fill_(float("nan"))
    nan_ckpt = save_generator(model, tmp_path / "nan.pth")
    src = _png(tmp_path / "photo.png")
    assert upscale_cli(src, "-o", tmp_path / "out", "--model", nan_ckpt) == 1
    err = capsys.readouterr().err
    assert "photo.png" in err and "NaN" in err
    assert not (tmp_path / "out" / "photo_out.png").exists()
    with pytest.raises(NonFiniteOutputError, match="NaN"):  # the library call refuses too
        Upscaler(model, device="cpu").upscale(np.zeros((H, W, 3), np.uint8))


# ---- 8: where outputs go ----------------------------------------------------------------------------------

def test_empty_suffix_into_the_input_folder_overwrites_nothing(tmp_path, ckpt, capsys):
    folder = tmp_path / "photos"
    folder.mkdir()
    before = _png(folder / "a.png").read_bytes()
    assert upscale_cli(folder, "-o", folder, "--model", ckpt, "--suffix", "") == 1
    assert upscale_cli(folder / ".." / "photos" / "a.png", "-o", folder, "--model", ckpt, "--suffix", "") == 1
    assert "would overwrite an input" in capsys.readouterr().err
    assert (folder / "a.png").read_bytes() == before and sorted(p.name for p in folder.iterdir()) == ["a.png"]


def test_suffix_cannot_write_outside_the_output_folder(tmp_path, ckpt):
    src = _png(tmp_path / "a.png")
    (tmp_path / "deep" / "out").mkdir(parents=True)
    with pytest.raises(SystemExit):  # argparse: --suffix must not contain a path separator
        upscale_cli(src, "-o", tmp_path / "deep" / "out", "--model", ckpt, "--suffix", "/../../escaped")
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == ["a.png"]


def test_existing_output_is_skipped_with_a_notice_unless_overwrite(tmp_path, ckpt, capsys):
    src, out = _png(tmp_path / "a.png"), tmp_path / "out"
    out.mkdir()
    (out / "a_out.png").write_bytes(b"keep me")
    assert upscale_cli(src, "-o", out, "--model", ckpt) == 0
    assert "exists, skipped" in capsys.readouterr().err
    assert (out / "a_out.png").read_bytes() == b"keep me"
    assert upscale_cli(src, "-o", out, "--model", ckpt, "--overwrite") == 0
    with Image.open(out / "a_out.png") as im:
        assert im.size == (4 * W, 4 * H)


# ---- 9: lying architecture metadata -----------------------------------------------------------------------

def test_lying_metadata_is_refused_before_the_network_is_built(tmp_path):
    m = RRDBNet(nf=8, nb=1, gc=4)
    lying = {"format": "gansr_ext", "format_version": 1, "arch": {**m.arch, "nb": 2000}, "params": m.state_dict()}
    path = tmp_path / "small.pth"
    torch.save(lying, path)
    start = time.perf_counter()
    with pytest.raises(CheckpointError, match=r"nb=2000 \(tensors: 1\)"):
        load_generator(path)
    assert time.perf_counter() - start < 0.5


def test_absurd_architecture_is_capped_even_when_consistent():
    """301 blocks whose tensors are stride-0 views of one zero (a tiny file can hold them) agree with
    any metadata; the block count is still refused before a network is built."""
    shapes = {k: v.shape for k, v in RRDBNet(nf=8, nb=1, gc=4).state_dict().items()}
    sd = {k: torch.zeros(()).expand(s) for k, s in shapes.items() if not k.startswith("body.")}
    for i in range(301):
        sd.update({k.replace("body.0.", f"body.{i}.", 1): torch.zeros(()).expand(s)
                   for k, s in shapes.items() if k.startswith("body.0.")})
    with pytest.raises(CheckpointError, match=r"nb=301 \(allowed 1..256\)"):
        load_generator(sd)


# ---- 10: pixel budget -------------------------------------------------------------------------------------

def test_output_pixel_budget_refuses_before_decoding_and_can_be_raised(tmp_path, ckpt, capsys):
    src = _png(tmp_path / "a.png")
    out = tmp_path / "out"
    # 24 x 28 output = 672 pixels: a limit of 0.0005 megapixels (500 pixels) refuses it
    assert upscale_cli(src, "-o", out, "--model", ckpt, "--max-pixels", "0.0005") == 1
    err = capsys.readouterr().err
    assert "a.png" in err and "--max-pixels" in err and not out.joinpath("a_out.png").exists()
    assert upscale_cli(src, "-o", out, "--model", ckpt, "--max-pixels", "0.001") == 0
    # the default refuses a 9000 x 9000 image from its header: no 15.5 GB tensor, no decoding
    Image.new("1", (9000, 9000)).save(tmp_path / "huge.png")
    start = time.perf_counter()
    assert upscale_cli(tmp_path / "huge.png", "-o", out, "--model", ckpt) == 1
    assert time.perf_counter() - start < 5
    assert "36000x36000" in capsys.readouterr().err
    with pytest.raises(ImageTooLargeError, match="megapixels"):  # the library call has the same budget
        Upscaler(load_generator(ckpt), device="cpu", max_output_pixels=500).upscale(np.zeros((H, W, 3), np.uint8))


# ---- 11: file modes ---------------------------------------------------------------------------------------

@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
def test_written_files_respect_the_umask(tmp_path, ckpt):
    model = load_generator(ckpt)
    src = _png(tmp_path / "a.png")
    with umask(0o022):
        assert _mode(save_generator(model, tmp_path / "g.safetensors")) == 0o644
        assert upscale_cli(src, "-o", tmp_path / "out", "--model", ckpt) == 0
        assert _mode(tmp_path / "out" / "a_out.png") == 0o644
    with umask(0o027):
        assert _mode(atomic_write(tmp_path / "ckpt.pt", lambda f: f.write(b"x"))) == 0o640


# ---- 12: bad --outscale, unclear load errors, trainer checkpoints -----------------------------------------

def test_outscale_must_be_finite_and_positive(tmp_path, ckpt):
    src, up = _png(tmp_path / "a.png"), Upscaler(load_generator(ckpt), device="cpu")
    for value in ("inf", "-inf", "nan", "0", "-2"):
        with pytest.raises(SystemExit):
            upscale_cli(src, "-o", tmp_path / "out", "--model", ckpt, "--outscale", value)
        with pytest.raises(ValueError, match="outscale"):
            up.upscale(np.zeros((H, W, 3), np.uint8), outscale=float(value))


def test_load_errors_say_what_is_wrong(tmp_path, ckpt):
    data = ckpt.read_bytes()
    cases = {"empty.pth": b"", "truncated.pth": data[:len(data) // 2], "text.pth": b"hello"}
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(CheckpointError, match=f"{name}: cannot read it as a checkpoint .*truncated"):
            load_generator(tmp_path / name)
    run = tmp_path / "run"
    run.mkdir()
    (run / "generator_ema.pth").write_bytes(data)
    with pytest.raises(CheckpointError, match="is a folder.*generator_ema.pth"):
        load_generator(run)
    (tmp_path / "vgg.pth").write_bytes(data[:100])  # an interrupted download of pretrained weights
    with pytest.raises(CorruptWeightsError, match="cannot read .*vgg.pth .*download it again from https://x/vgg"):
        load_state_dict("vgg.pth", "https://x/vgg", path=tmp_path / "vgg.pth")


def test_trainer_checkpoint_as_model_loads_its_ema_generator(tmp_path):
    from test_train_helpers import TinyImages, psnr_metric, tiny_cfg

    from gansr_ext.train.trainer import Trainer

    trainer = Trainer(tiny_cfg(tmp_path), train_set=TinyImages(), val_set=TinyImages(n=1, size=16, crop=None),
                      metrics={"psnr": psnr_metric})
    with torch.no_grad():  # make the EMA copy differ from G, so loading G instead would show
        for p in trainer.ema.module.parameters():
            p.add_(1.0)
    path = trainer.save_checkpoint()
    older = torch.load(path, weights_only=True)  # as written before the RNG state became tensors
    older["rng"] = [{"python": (3, (0,) * 625, None), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}]
    torch.save(older, tmp_path / "older.pt")
    for loaded in (load_generator(path), load_generator(tmp_path / "older.pt")):
        for name, value in trainer.ema.module.state_dict().items():
            assert torch.equal(loaded.state_dict()[name], value), name
