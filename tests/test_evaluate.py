"""End-to-end evaluation on tiny images with a tiny random RRDBNet (CPU)."""

import csv
import json

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data as skdata

from conftest import requires_cuda
from gansr_ext.data import imresize, make_lr
from gansr_ext.evaluate import Crop, EvalOptions, evaluate, find_pairs, parse_crop
from gansr_ext.metrics import psnr, ssim
from gansr_ext.models import RRDBNet, save_generator


def _tiny_model(seed=0, scale=4):
    """Full-strength Kaiming weights so the output has structure (the x0.1 ESRGAN init is flat)."""
    torch.manual_seed(seed)
    model = RRDBNet(nf=8, nb=1, gc=4, scale=scale)
    for p in model.parameters():
        if p.dim() == 4:
            torch.nn.init.kaiming_normal_(p)
    return model


def _hr_images():
    # two images with 2 NIQE blocks after the x4 border shave, one too small for NIQE
    return {"astro": skdata.astronaut()[100:304, 150:254], "cat": skdata.chelsea()[60:264, 120:224],
            "cup": skdata.coffee()[100:148, 300:352]}


@pytest.fixture(scope="module")
def hr_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("set_hr")
    for name, img in _hr_images().items():
        Image.fromarray(img).save(d / f"{name}.png")
    return d


def _sr_of(model, lr):
    with torch.no_grad():
        x = torch.from_numpy(lr).permute(2, 0, 1)[None].float() / 255
        y = model.eval()(x)[0].clamp(0, 1)
    return (y.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


@pytest.fixture(scope="module")
def full_run(hr_dir, tmp_path_factory):
    model = _tiny_model()
    model.train()
    out = tmp_path_factory.mktemp("eval_out")
    result = evaluate({"tiny": model}, {"mini": hr_dir}, out, device="cpu", pretrained=False, fid_dims=64,
                      progress=False, crops=["cat:10,20,40"])
    return model, out, result


def test_all_metrics_reported_and_files_written(full_run):
    model, out, result = full_run
    res = result["datasets"]["mini"]
    assert list(res["rows"]) == ["Bicubic", "tiny"] and res["n_images"] == 3
    for row in res["rows"].values():
        assert set(row) == {"niqe", "fid", "lpips", "psnr", "ssim", "brisque", "spectral"}
        assert all(isinstance(v, float) and np.isfinite(v) for v in row.values()), row
    assert res["rows"]["Bicubic"]["psnr"] > res["rows"]["tiny"]["psnr"]  # a random net is worse than bicubic
    assert any("niqe: skipped" in n and "cup" in n for n in res["notes"])  # 48x52 is too small for NIQE
    for f in ("metrics.md", "metrics.csv", "metrics.json", "spectrum.png", "crops_cat.png"):
        assert (out / "mini" / f).stat().st_size > 0, f
    assert (out / "results.md").read_text() == result["markdown"]
    assert "| tiny |" in result["markdown"] and "RANDOM network weights" in result["markdown"]
    with open(out / "mini" / "metrics.csv") as f:
        rows = {r["method"]: r for r in csv.DictReader(f)}
    assert float(rows["tiny"]["ssim"]) == pytest.approx(res["rows"]["tiny"]["ssim"], rel=1e-12)
    saved = json.loads((out / "mini" / "metrics.json").read_text())
    assert saved["rows"] == res["rows"]
    # the caller's model is left as it was (evaluation works on a copy)
    assert model.training and all(p.requires_grad for p in model.parameters())


def test_rows_match_direct_metric_computation(full_run):
    model, _, result = full_run
    res = result["datasets"]["mini"]
    hrs = _hr_images()
    bic = {n: imresize(make_lr(hr, 4), 4) for n, hr in hrs.items()}
    sr = {n: _sr_of(model, make_lr(hr, 4)) for n, hr in hrs.items()}
    assert res["rows"]["Bicubic"]["psnr"] == pytest.approx(np.mean([psnr(bic[n], hrs[n]) for n in hrs]), rel=1e-9)
    assert res["rows"]["tiny"]["psnr"] == pytest.approx(np.mean([psnr(sr[n], hrs[n]) for n in hrs]), rel=1e-6)
    assert res["rows"]["tiny"]["ssim"] == pytest.approx(np.mean([ssim(sr[n], hrs[n]) for n in hrs]), rel=1e-6)
    assert res["per_image"]["tiny"]["cat"]["psnr"] == pytest.approx(psnr(sr["cat"], hrs["cat"]), rel=1e-6)


def test_spectral_kind_durall_matches_direct_computation(hr_dir, tmp_path, capsys):
    from gansr_ext.cli import main
    from gansr_ext.metrics import spectral_discrepancy

    hrs = list(_hr_images().values())
    bic = [imresize(make_lr(hr, 4), 4) for hr in hrs]
    res = evaluate({}, {"mini": hr_dir}, tmp_path / "out", device="cpu", metrics=("spectral",), progress=False,
                   spectral_kind="durall")
    row = res["datasets"]["mini"]["rows"]["Bicubic"]
    assert row["spectral"] == pytest.approx(spectral_discrepancy(hrs, bic, kind="durall"), rel=1e-12)
    assert row["spectral"] != pytest.approx(spectral_discrepancy(hrs, bic, kind="abs"), rel=1e-3)
    assert res["spectral_kind"] == "durall" and "kind 'durall'" in res["markdown"]
    with pytest.raises(ValueError, match="spectral_kind"):
        evaluate({}, {"mini": hr_dir}, tmp_path / "o2", metrics=("spectral",), spectral_kind="power")
    assert main(["eval", "--data", str(hr_dir), "--out", str(tmp_path / "cli"), "--metrics", "spectral",
                 "--spectral-kind", "durall", "--device", "cpu", "--no-progress"]) == 0
    saved = json.loads((tmp_path / "cli" / "results.json").read_text())
    assert saved["spectral_kind"] == "durall"
    assert saved["datasets"][hr_dir.name]["rows"]["Bicubic"]["spectral"] == pytest.approx(row["spectral"], rel=1e-12)


def test_missing_weights_reported_unavailable_rest_runs(hr_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_hub"))
    result = evaluate({}, {"mini": hr_dir}, tmp_path / "out", device="cpu", metrics=("fid", "lpips", "psnr"),
                      progress=False)
    res = result["datasets"]["mini"]
    assert list(res["rows"]) == ["Bicubic"]
    assert res["rows"]["Bicubic"]["fid"] is None and res["rows"]["Bicubic"]["lpips"] is None
    assert res["rows"]["Bicubic"]["psnr"] > 20
    assert "pt_inception-2015-12-05-6726825d.pth" in res["unavailable"]["fid"]
    assert "alexnet-owt-7be5be79.pth" in res["unavailable"]["lpips"]
    assert "FID unavailable" in result["markdown"] and "n/a" in result["markdown"]


def test_hr_lr_layout_uses_given_lr_and_checkpoint_path(tmp_path):
    root = tmp_path / "paired"
    (root / "HR").mkdir(parents=True)
    (root / "LRbicx4").mkdir()
    hr = _hr_images()["cat"]
    lr = np.ascontiguousarray(make_lr(hr, 4)[::-1])  # flipped: only the given LR gives this result
    Image.fromarray(hr).save(root / "HR" / "cat.png")
    Image.fromarray(lr).save(root / "LRbicx4" / "catx4.png")
    assert [(n, p.name, q.name) for n, p, q in find_pairs(root, 4)] == [("cat", "cat.png", "catx4.png")]
    model = _tiny_model(seed=1)
    ckpt = save_generator(model, tmp_path / "tiny.pth")
    res = evaluate({"ck": str(ckpt)}, {"paired": root}, tmp_path / "out", device="cpu",
                   metrics=("psnr", "ssim"), progress=False)["datasets"]["paired"]
    assert res["rows"]["Bicubic"]["psnr"] == pytest.approx(psnr(imresize(lr, 4), hr), rel=1e-9)
    assert res["rows"]["ck"]["psnr"] == pytest.approx(psnr(_sr_of(model, lr), hr), rel=1e-6)


def test_bad_inputs(tmp_path, hr_dir):
    root = tmp_path / "bad"
    (root / "HR").mkdir(parents=True)
    (root / "LR").mkdir()
    Image.fromarray(_hr_images()["cup"]).save(root / "HR" / "cup.png")
    Image.fromarray(np.zeros((10, 10, 3), np.uint8)).save(root / "LR" / "cup.png")
    with pytest.raises(ValueError, match="not a x4 pair"), pytest.warns(UserWarning, match="not a x4 pair"):
        evaluate({}, {"bad": root}, tmp_path / "o", metrics=("psnr",), progress=False)
    (root / "LR" / "cup.png").rename(root / "LR" / "other.png")
    with pytest.raises(ValueError, match="no LR image"):
        evaluate({}, {"bad": root}, tmp_path / "o", metrics=("psnr",), progress=False)
    with pytest.raises(ValueError, match="upscales x2"):
        evaluate({"m": _tiny_model(scale=2)}, {"s": hr_dir}, tmp_path / "o", metrics=("psnr",), progress=False)
    with pytest.raises(ValueError, match="metrics must be"):
        evaluate({}, {"s": hr_dir}, tmp_path / "o", metrics=("psnr", "vif"))
    with pytest.raises(NotADirectoryError):
        evaluate({}, {"s": tmp_path / "nope"}, tmp_path / "o", metrics=("psnr",), progress=False)
    (tmp_path / "empty" / "HR").mkdir(parents=True)  # an HR/ folder without images (and no LR/)
    with pytest.raises(ValueError, match="no images in"):
        evaluate({}, {"e": tmp_path / "empty"}, tmp_path / "o", metrics=("psnr",), progress=False)
    with pytest.raises(TypeError, match="EvalOptions"):  # the old positional scale
        evaluate({}, {"s": hr_dir}, tmp_path / "o", 4)
    opts = EvalOptions(metrics=["ssim", "niqe"], crops=["cat:1,2,3"])  # columns in METRICS order, crops parsed
    assert opts.metrics == ("niqe", "ssim") and opts.crops == (Crop("cat", 1, 2, 3),)
    with pytest.raises(ValueError, match="NAME:X,Y,SIZE"):
        parse_crop("cat:1,2")
    assert parse_crop("a:b:1,2,30").image == "a:b"


def test_unusable_images_are_skipped_reported_and_counted(hr_dir, tmp_path, capsys):
    from gansr_ext.cli import main
    from gansr_ext.data.datasets import UnreadableImageWarning

    folder = tmp_path / "mixed"
    folder.mkdir()
    for name in ("astro", "cup"):  # cup (48x52) is usable but too small for NIQE after the border shave
        (folder / f"{name}.png").write_bytes((hr_dir / f"{name}.png").read_bytes())
    (folder / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    Image.fromarray(np.full((3, 3, 3), 90, np.uint8)).save(folder / "tiny.png")  # smaller than the scale
    kw = dict(metrics=("psnr", "niqe", "spectral"), device="cpu", progress=False)
    with pytest.warns(UnreadableImageWarning) as caught:
        res = evaluate({}, {"mixed": folder}, tmp_path / "out", **kw)["datasets"]["mixed"]
    assert any("corrupt.png" in str(w.message) for w in caught) and any("tiny.png" in str(w.message) for w in caught)
    assert res["n_images"] == 2 and res["n_found"] == 4 and sorted(res["skipped"]) == ["corrupt", "tiny"]
    assert "corrupt.png" in res["skipped"]["corrupt"] and "smaller than the scale" in res["skipped"]["tiny"]
    # the values are those of the usable images alone
    clean = tmp_path / "clean"
    clean.mkdir()
    for name in ("astro", "cup"):
        (clean / f"{name}.png").write_bytes((folder / f"{name}.png").read_bytes())
    assert res["rows"] == evaluate({}, {"clean": clean}, tmp_path / "out2", **kw)["datasets"]["clean"]["rows"]
    assert res["counts"]["Bicubic"] == {"images": 2, "psnr": 2, "niqe": 1, "spectral": 2}
    md = (tmp_path / "out" / "mixed" / "metrics.md").read_text()
    assert "2 of 4 images, 2 skipped" in md and "| Method | Images |" in md
    assert "| Bicubic | 2 | " in md and "(n=1)" in md  # NIQE used one image of the row's two
    assert "- skipped: cannot read image" in md and "tiny.png: make_lr" in md
    with open(tmp_path / "out" / "mixed" / "metrics.csv") as f:
        row = next(csv.DictReader(f))
    assert row["images"] == "2" and row["n_niqe"] == "1"
    rc = main(["eval", "--data", str(folder), "--out", str(tmp_path / "cli"), "--metrics", "psnr", "--device", "cpu",
               "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 1 and "gansr eval: skipped cannot read image" in err and "tiny.png" in err
    assert (tmp_path / "cli" / "results.md").exists()
    tiny_only = tmp_path / "tiny_only"
    tiny_only.mkdir()
    (tiny_only / "tiny.png").write_bytes((folder / "tiny.png").read_bytes())
    with pytest.raises(ValueError, match="none of the 1 image"), pytest.warns(UnreadableImageWarning):
        evaluate({}, {"t": tiny_only}, tmp_path / "out3", **kw)


def test_cli(hr_dir, tmp_path, capsys):
    from gansr_ext.cli import main

    ckpt = save_generator(_tiny_model(), tmp_path / "tiny.safetensors")
    out = tmp_path / "cli_out"
    rc = main(["eval", "--model", f"net={ckpt}", "--data", str(hr_dir), "--out", str(out), "--metrics", "psnr",
               "ssim", "spectral", "--device", "cpu", "--no-progress", "--crops", "astro:0,0,32", "--save-images"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "| net |" in text and "| Bicubic |" in text
    res = json.loads((out / "results.json").read_text())
    assert set(res["datasets"][hr_dir.name]["rows"]) == {"Bicubic", "net"}
    assert (out / hr_dir.name / "crops_astro.png").exists()
    assert (out / hr_dir.name / "images" / "net" / "cat.png").exists()


@requires_cuda
def test_cuda_matches_cpu(hr_dir, tmp_path):
    model = _tiny_model()
    kw = dict(metrics=("psnr", "ssim", "spectral"), progress=False)
    cpu = evaluate({"m": model}, {"s": hr_dir}, tmp_path / "cpu", device="cpu", **kw)["datasets"]["s"]["rows"]
    gpu = evaluate({"m": model}, {"s": hr_dir}, tmp_path / "gpu", device="cuda", **kw)["datasets"]["s"]["rows"]
    assert gpu["Bicubic"] == cpu["Bicubic"]  # no model involved
    # the model runs on the GPU (TF32 convolutions): a few 8-bit levels may round the other way
    assert gpu["m"]["psnr"] == pytest.approx(cpu["m"]["psnr"], abs=0.05)
    assert gpu["m"]["ssim"] == pytest.approx(cpu["m"]["ssim"], abs=1e-3)
