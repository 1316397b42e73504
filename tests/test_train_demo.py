"""`gansr demo --quick` writes its whole report (tiny budget, CPU)."""

import argparse
import json

import numpy as np
from PIL import Image

from gansr_ext.train import demo
from test_train_helpers import one_thread  # noqa: F401


def test_quick_demo_writes_the_report(tmp_path):
    parser = argparse.ArgumentParser()
    demo.add_arguments(parser)
    args = parser.parse_args(["--quick", "--out", str(tmp_path / "out"), "--threads", "1", "--device", "cpu",
                              "--iters", "9"])
    assert demo.run(args) == 0
    out = tmp_path / "out"
    for name in ("loss_curves.png", "sr_comparison.png", "spectrum.png"):
        img = np.asarray(Image.open(out / name))
        assert img.shape[0] > 100 and img.std() > 0, name  # a real figure, not a blank canvas
    table = [line for line in (out / "metrics.md").read_text().splitlines() if line.startswith("| ")]
    assert table[0].startswith("| Method |") and "PSNR" in table[0] and "NIQE" in table[0]
    assert [row.split("|")[1].strip() for row in table[1:]] == [
        "Bicubic", "L1 (stage 1)", "LPIPS+RaGP+FFT (stage 2)", demo.REAL_MODEL_ROW]  # make venv installs it
    report = (out / "report.md").read_text()
    assert "0.01 l1 + 1 lpips + 0.005 ragp + 0.3 fft" in report  # the final recipe's losses
    assert json.loads((out / "metrics.json").read_text())["iters"] == [4, 5]  # --iters split over the stages
    assert "## Metrics" in report and "![SR comparison](sr_comparison.png)" in report
    assert "- PSNR over bicubic on the held-back images: L1 (stage 1) " in report
    assert "- stage 2 discriminator: d_loss " in report
    if not demo._lpips_available()[0]:
        assert "RANDOM-WEIGHT backbone" in report
    from gansr_ext.models import load_generator

    g = load_generator(out / "generator_gan.pth")
    assert (g.nf, g.nb) == (16, 1)
    for run in ("stage1_psnr", "stage2_gan"):
        assert (out / "runs" / run / "train_log.csv").is_file()
        assert any((out / "runs" / run / "checkpoints").glob("iter_*.pt"))


def test_demo_gan_stage_discriminator_learns(tmp_path):
    """The demo's stage 2 (recipe `final`: L1 + LPIPS + RaGP + FFT, U-Net D) must train a discriminator that
    tells real from fake: d_loss below ln 2 and real logits above fake ones. With the penalty on the SUM of the
    U-Net's per-pixel logits (and lam 10) d_loss stayed at 0.6931 and the logit gap near 1e-4."""
    args = argparse.Namespace(iters=None, seed=0, fused="auto")
    budget = demo.Budget(stage1_iters=30, stage2_iters=240, batch=4, crop=32, nf=16, nb=1, gc=8, d_nf=16)
    demo._train_stages(args, "cpu", budget, tmp_path, pretrained=False, log=lambda _: None)
    d = demo.discriminator_summary(tmp_path / "runs" / "stage2_gan")
    assert d["d_loss"] < demo.CHANCE_D_LOSS - 0.02, d
    assert d["logit_gap"] > 0.05, d
    assert d["learned"], d
