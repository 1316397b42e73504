"""Config composition, command-line overrides and errors for unknown keys."""

import pytest

from gansr_ext.train.config import ConfigError, DEFAULTS, list_recipes, load_config, parse_override


def test_override_values_are_yaml_parsed():
    assert parse_override("optim.g.lr=1e-4") == (["optim", "g", "lr"], 1e-4)  # a float, not YAML 1.1's string
    assert parse_override("train.total_iters=12") == (["train", "total_iters"], 12)
    assert parse_override("val.metrics=[psnr, ssim]") == (["val", "metrics"], ["psnr", "ssim"])
    assert parse_override("model.pretrained_g=null") == (["model", "pretrained_g"], None)
    assert parse_override("name=a=b") == (["name"], "a=b")
    cfg = load_config("esrgan_psnr", ["optim.g.lr=3e-4", "train.fused=off", "data.crop=64"])
    assert cfg["optim"]["g"]["lr"] == 3e-4 and cfg["train"]["fused"] == "off" and cfg["data"]["crop"] == 64


@pytest.mark.parametrize("bad,key,hint", [("optim.g.lrr=1", "optim.g.lrr", "lr"),
                                          ("trian.total_iters=3", "trian", "train"),
                                          ("losses.pixel.wieght=1", "losses.pixel.wieght", "weight")])
def test_unknown_override_key_is_an_error_naming_it(bad, key, hint):
    with pytest.raises(ConfigError, match=f"unknown config key '{key}'; did you mean '{hint}'"):
        load_config("esrgan_psnr", [bad])


def test_unknown_key_in_a_file_and_bad_values(tmp_path):
    (tmp_path / "a.yaml").write_text("base: esrgan_psnr\ntrain:\n  totl_iters: 5\n")
    with pytest.raises(ConfigError, match="train.totl_iters"):
        load_config(tmp_path / "a.yaml")
    with pytest.raises(ConfigError, match="stage"):
        load_config(None, ["stage=wgan"])
    with pytest.raises(ConfigError, match="data.batch_size"):
        load_config(None, ["data.batch_size=0"])
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_config(None, ["train=3"])
    with pytest.raises(ConfigError, match="not valid YAML|must look like"):
        load_config(None, ["train.total_iters"])
    with pytest.raises(ConfigError, match="multiple of"):
        load_config(None, ["data.crop=30"])


def test_bases_compose_and_cycles_are_caught(tmp_path):
    (tmp_path / "x.yaml").write_text("base: y.yaml\nname: x\n")
    (tmp_path / "y.yaml").write_text("base: x.yaml\n")
    with pytest.raises(ConfigError, match="cycle"):
        load_config(tmp_path / "x.yaml")
    (tmp_path / "child.yaml").write_text("base: final\nlosses:\n  frequency: {weight: 0.5}\n")
    cfg = load_config(tmp_path / "child.yaml")
    assert cfg["losses"]["frequency"] == {"type": "fft", "weight": 0.5, "args": {"p": 2, "mode": "magnitude"}}
    assert cfg["losses"]["perceptual"]["type"] == "lpips"  # from final
    assert cfg["data"]["crop"] == 128 and cfg["optim"]["g"]["betas"] == [0.9, 0.99]  # from esrgan_psnr
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")


def test_recipes_hold_the_published_settings():
    assert {"esrgan_psnr", "esrgan_gan", "final", "adv_ragp", "freq_fft_0.3", "freq_fft_0.5",
            "perceptual_lpips", "perceptual_dists"} <= set(list_recipes())
    p = load_config("esrgan_psnr")
    assert p["stage"] == "psnr" and p["optim"]["g"]["lr"] == 2e-4 and p["data"]["batch_size"] == 16
    assert p["scheduler"]["milestones"] == [200000, 400000, 600000, 800000] and p["scheduler"]["gamma"] == 0.5
    assert [t for t, v in p["losses"].items() if v["weight"]] == ["pixel"]
    g = load_config("esrgan_gan")
    weights = {t: (v["type"], v["weight"]) for t, v in g["losses"].items() if v["weight"]}
    assert weights == {"pixel": ("l1", 1e-2), "perceptual": ("vgg", 1.0), "gan": ("ragan", 5e-3)}
    assert g["optim"]["g"]["lr"] == g["optim"]["d"]["lr"] == 1e-4 and g["train"]["total_iters"] == 400000
    assert g["scheduler"]["milestones"] == [50000, 100000, 200000, 300000]
    f = load_config("final")
    assert (f["losses"]["perceptual"]["type"], f["losses"]["gan"]["type"], f["losses"]["frequency"]["type"]) == \
        ("lpips", "ragp", "fft")
    for name in ("rahinge", "rals", "rcgan", "rchinge", "rcls", "ragp"):
        assert load_config(f"adv_{name}")["losses"]["gan"]["type"] == name
    assert load_config("freq_fft_0.5")["losses"]["frequency"]["weight"] == 0.5
    assert set(DEFAULTS["losses"]) == {"pixel", "perceptual", "gan", "frequency"}


def test_changing_a_type_drops_the_old_types_args(tmp_path):
    assert load_config("freq_fft_0.3", ["losses.frequency.type=spectral"])["losses"]["frequency"]["args"] == {}
    cfg = load_config("freq_fft_0.3", ["losses.frequency.type=spectral", "losses.frequency.args.eps=1e-6"])
    assert cfg["losses"]["frequency"]["args"] == {"eps": 1e-6}
    (tmp_path / "c.yaml").write_text("base: freq_fft_0.3\nlosses:\n  frequency: {type: focal_frequency}\n")
    assert load_config(tmp_path / "c.yaml")["losses"]["frequency"]["args"] == {}
    assert load_config("freq_fft_0.3", ["losses.frequency.type=fft"])["losses"]["frequency"]["args"]["p"] == 2


@pytest.mark.parametrize("override,key", [
    ("guard.lr_factor=2", "guard.lr_factor"), ("guard.lr_factor=x", "guard.lr_factor"),
    ("checkpoint.keep_last=0", "checkpoint.keep_last"), ("optim.d.lr=0", "optim.d.lr"),
    ("optim.g.betas=[0.9]", "optim.g.betas"), ("train.grad_clip=-1", "train.grad_clip"),
    ("guard.max_nonfinite=0", "guard.max_nonfinite"), ("scheduler.milestones=5", "scheduler.milestones")])
def test_values_that_failed_only_mid_run_are_refused_at_load(override, key):
    # (lr_factor at the first rollback, keep_last at the first checkpoint, lr when the optimizer is built)
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(None, [override])


def test_invalid_yaml_is_a_config_error(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: {total_iters: 3\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
