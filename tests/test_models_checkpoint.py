"""Generator checkpoints: every format round-trips to identical outputs, hyper-parameters are inferred or
read from metadata, mismatches and unsafe pickles are refused with clear errors."""

import json
import os
import re

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from gansr_ext.models import (CheckpointError, RRDBNet, convert_state_dict, export_basicsr, load_generator,
                              save_generator)

SMALL = dict(nf=16, nb=2, gc=8)


def _model(seed=0, **kw):
    torch.manual_seed(seed)
    return RRDBNet(**{**SMALL, **kw}).eval()


def _same_outputs(a, b, in_ch=3, hw=8):
    x = torch.rand(1, in_ch, hw, hw)
    with torch.no_grad():
        return torch.equal(a(x), b(x))


# Foreign formats written from their published key layouts (not from the loader's tables).
def to_esrgan(sd):
    top = {"conv_body": "trunk_conv", "conv_up1": "upconv1", "conv_up2": "upconv2", "conv_hr": "HRconv"}
    out = {}
    for k, v in sd.items():
        m = re.match(r"body\.(\d+)\.rdb(\d)\.(.*)", k)
        if m:
            out[f"RRDB_trunk.{m[1]}.RDB{m[2]}.{m[3]}"] = v
        else:
            layer, rest = k.split(".", 1)
            out[f"{top.get(layer, layer)}.{rest}"] = v
    return out


def to_old_arch(sd, nb):
    top = {"conv_first": "model.0", "conv_body": f"model.1.sub.{nb}", "conv_up1": "model.3",
           "conv_up2": "model.6", "conv_hr": "model.8", "conv_last": "model.10"}
    out = {}
    for k, v in sd.items():
        m = re.match(r"body\.(\d+)\.rdb(\d)\.(conv\d)\.(weight|bias)", k)
        if m:
            out[f"model.1.sub.{m[1]}.RDB{m[2]}.{m[3]}.0.{m[4]}"] = v
        else:
            layer, rest = k.split(".", 1)
            out[f"{top[layer]}.{rest}"] = v
    return out


FORMATS = {
    "esrgan": lambda sd: to_esrgan(sd),
    "old_arch": lambda sd: to_old_arch(sd, SMALL["nb"]),
    "basicsr": lambda sd: dict(sd),
    "basicsr_params_ema": lambda sd: {"params_ema": dict(sd)},
    "basicsr_params": lambda sd: {"params": dict(sd)},
    "data_parallel": lambda sd: {f"module.{k}": v for k, v in sd.items()},
}


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_every_foreign_format_round_trips(fmt):
    m = _model()
    ckpt = FORMATS[fmt](m.state_dict())
    loaded = load_generator(ckpt)
    assert loaded.arch == m.arch
    assert _same_outputs(m, loaded)
    sd, arch = convert_state_dict(ckpt)
    assert arch == m.arch and sd.keys() == m.state_dict().keys()


def test_foreign_format_from_files(tmp_path):
    m = _model()
    torch.save(to_esrgan(m.state_dict()), tmp_path / "RRDB_ESRGAN_x4.pth")
    save_file(dict(m.state_dict()), str(tmp_path / "plain.safetensors"), metadata={"format": "pt"})
    for name in ("RRDB_ESRGAN_x4.pth", "plain.safetensors"):
        assert _same_outputs(m, load_generator(tmp_path / name))
    assert _same_outputs(m, load_generator(str(tmp_path / "plain.safetensors")))


def test_params_ema_is_preferred_over_params():
    ema, raw = _model(seed=1), _model(seed=2)
    loaded = load_generator({"params": raw.state_dict(), "params_ema": ema.state_dict()})
    assert _same_outputs(ema, loaded) and not _same_outputs(raw, loaded)


@pytest.mark.parametrize("scale,in_ch", [(1, 3), (2, 3), (4, 3), (2, 1), (4, 1)])
def test_scale_and_channels_inferred_without_metadata(scale, in_ch):
    m = _model(scale=scale, in_ch=in_ch, out_ch=in_ch)
    loaded = load_generator(m.state_dict())
    assert loaded.arch == dict(in_ch=in_ch, out_ch=in_ch, scale=scale, **SMALL)
    assert _same_outputs(m, loaded, in_ch=in_ch)


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_own_format_round_trip_and_metadata(tmp_path, suffix):
    # in_ch=12 at x4 looks like in_ch=3 at x2 to shape inference: only the metadata can tell
    m = _model(in_ch=12, out_ch=3, scale=4)
    path = save_generator(m, tmp_path / f"g{suffix}")
    assert path.is_file() and os.listdir(tmp_path) == [path.name]  # no temp file left behind
    if suffix == ".safetensors":
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata()
        assert meta["format"] == "gansr_ext" and int(meta["format_version"]) == 1
        assert json.loads(meta["arch"]) == m.arch
    else:
        obj = torch.load(path, weights_only=True)
        assert obj["format"] == "gansr_ext" and obj["arch"] == m.arch
        assert obj["params"].keys() == m.state_dict().keys()
    loaded = load_generator(path)
    assert loaded.arch == m.arch
    assert _same_outputs(m, loaded, in_ch=12)
    assert convert_state_dict(m.state_dict())[1]["scale"] == 2  # what inference alone would have said


def test_save_accepts_wrapped_models_and_rejects_others(tmp_path):
    m = _model()
    save_generator(torch.nn.DataParallel(m), tmp_path / "dp.pth")
    assert _same_outputs(m, load_generator(tmp_path / "dp.pth"))
    # wrappers nest in either order: DataParallel(compile(m)) and compile(DataParallel(m))
    for i, wrapped in enumerate((torch.nn.DataParallel(torch.compile(m)), torch.compile(torch.nn.DataParallel(m)))):
        save_generator(wrapped, tmp_path / f"w{i}.pth")
        assert _same_outputs(m, load_generator(tmp_path / f"w{i}.pth"))
    with pytest.raises(TypeError, match="RRDBNet"):
        save_generator(torch.nn.Conv2d(1, 1, 1), tmp_path / "c.pth")
    with pytest.raises(ValueError, match="suffix"):
        save_generator(m, tmp_path / "g.onnx")


def test_failed_save_leaves_no_file(tmp_path, monkeypatch):
    def broken_save(obj, f):
        f.write(b"partial")  # the saver hands torch.save an open temp file
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_generator(_model(), tmp_path / "g.pth")
    assert os.listdir(tmp_path) == []


def test_export_basicsr(tmp_path):
    m = _model(scale=2)
    path = export_basicsr(m, tmp_path / "net_g.pth")
    obj = torch.load(path, weights_only=True)
    assert list(obj) == ["params_ema"] and obj["params_ema"].keys() == m.state_dict().keys()
    assert _same_outputs(m, load_generator(path))


def test_missing_and_unexpected_keys_are_listed():
    sd = dict(_model().state_dict())
    del sd["body.1.rdb2.conv3.weight"]
    with pytest.raises(CheckpointError, match=r"missing keys \(1\).*body\.1\.rdb2\.conv3\.weight"):
        load_generator(sd)
    sd = dict(_model().state_dict(), **{"conv_extra.weight": torch.zeros(1)})
    with pytest.raises(CheckpointError, match=r"unexpected keys \(1\).*conv_extra\.weight"):
        load_generator(sd)
    assert load_generator(sd, strict=False).arch["nb"] == 2


def test_non_strict_load_keeps_init_for_missing_keys():
    m = _model()
    sd = dict(m.state_dict())
    del sd["conv_hr.bias"]
    loaded = load_generator(sd, strict=False)
    torch.testing.assert_close(loaded.conv_hr.weight, m.conv_hr.weight)


def test_size_mismatch_is_reported_even_when_not_strict():
    sd = dict(_model().state_dict())
    sd["conv_up1.weight"] = torch.zeros(16, 16, 1, 1)
    for strict in (True, False):
        with pytest.raises(CheckpointError, match=r"size mismatches.*conv_up1\.weight.*\(16, 16, 1, 1\)"):
            load_generator(sd, strict=strict)


def test_metadata_that_contradicts_the_weights_is_an_error():
    m = _model()
    ckpt = {"format": "gansr_ext", "format_version": 1, "arch": {**m.arch, "nb": 3}, "params": m.state_dict()}
    with pytest.raises(CheckpointError, match=r"contradicts the tensors: nb=3 \(tensors: 2\)"):
        load_generator(ckpt)
    with pytest.raises(CheckpointError, match="newer"):
        load_generator({**ckpt, "format_version": 99})
    with pytest.raises(CheckpointError, match="unknown arch"):
        load_generator({**ckpt, "arch": {"depth": 3}})


@pytest.mark.parametrize("bad", [
    {"weight": torch.zeros(1)},
    {"net": {"conv.weight": torch.zeros(1)}},
    {"params_ema": {}},
])
def test_unrecognised_format(bad):
    with pytest.raises(CheckpointError, match="unrecognised"):
        load_generator(bad)


def test_bad_argument_types_and_missing_file(tmp_path):
    with pytest.raises(TypeError):
        load_generator(42)
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        load_generator(tmp_path / "nope.pth")


class _Evil:
    """Unpickling this would create `marker` (a stand-in for arbitrary code)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_pickle_with_arbitrary_object_is_refused(tmp_path):
    marker = tmp_path / "executed"
    path = tmp_path / "evil.pth"
    torch.save({"params_ema": dict(_model().state_dict()), "extra": _Evil(marker)}, path)
    with pytest.raises(CheckpointError, match="weights_only"):
        load_generator(path)
    assert not marker.exists()
