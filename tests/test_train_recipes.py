"""Every shipped recipe builds and trains a few iterations at tiny sizes (random-weight backbones)."""

import math

import pytest

from gansr_ext.train.config import list_recipes, load_config
from gansr_ext.train.trainer import Trainer
from test_train_helpers import TinyImages, one_thread, psnr_metric, tiny_cfg  # noqa: F401

TINY = ["train.total_iters=2", "checkpoint.every=0", "data.crop=32", "model.discriminator.type=unet",
        "model.discriminator.args={nf: 8}", "losses.perceptual.args.pretrained=false"]


@pytest.mark.parametrize("recipe", list_recipes())
def test_recipe_trains_a_few_iterations(tmp_path, recipe):
    full = load_config(recipe)
    cfg = tiny_cfg(tmp_path, *TINY, config=recipe)
    assert cfg["losses"] == {t: ({**v, "args": {**v["args"], "pretrained": False}} if t == "perceptual" else v)
                             for t, v in full["losses"].items()}  # the recipe's losses, untouched but the backbone
    tr = Trainer(cfg, train_set=TinyImages(n=4, size=64, crop=32), val_set=TinyImages(n=1, size=32, crop=None),
                 metrics={"psnr": psnr_metric})
    summary = tr.train()
    assert summary["iterations"] == 2 and summary["skipped_iterations"] == 0
    rows = (tmp_path / "run" / "train_log.csv").read_text().splitlines()
    header = rows[0].split(",")
    active = [t for t, v in cfg["losses"].items() if v["weight"]]
    assert all(f"g_{t}" in header for t in active)
    assert ("d_loss" in header) == (cfg["stage"] == "gan")
    assert ("d_penalty" in header) == (cfg["losses"]["gan"]["type"] == "ragp" and cfg["stage"] == "gan")
    last = dict(zip(header, rows[-1].split(",")))
    assert math.isfinite(float(last["g_total"]))


def test_vgg128_discriminator_recipe_at_its_native_crop(tmp_path):
    """The ESRGAN baseline's own discriminator (128x128 input) on 128 crops."""
    cfg = tiny_cfg(tmp_path, "train.total_iters=2", "checkpoint.every=0", "data.crop=128",
                   "model.discriminator.args={nf: 4}", "losses.perceptual.weight=0", config="esrgan_gan")
    assert cfg["model"]["discriminator"]["type"] == "vgg128"
    tr = Trainer(cfg, train_set=TinyImages(n=2, size=128, crop=128), val_set=TinyImages(n=1, size=32, crop=None),
                 metrics={"psnr": psnr_metric})
    assert tr.train()["iterations"] == 2
