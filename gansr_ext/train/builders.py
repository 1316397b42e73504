"""Config -> objects: models, loss terms, optimizers, schedulers, datasets.

Extra constructor arguments come from the config's open `args` mappings; they are checked against
the constructor's signature so a misspelt argument is an error naming its config key.
"""

from __future__ import annotations

import inspect
import random
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from .config import ConfigError


def call_with_args(fn: Callable, key: str, fixed: dict, args: dict) -> Any:
    """fn(**fixed, **args), where an `args` name the signature lacks is a ConfigError naming
    `key.args.<name>`; `fixed` entries the signature lacks are dropped (e.g. `fused`)."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):  # builtins without a signature
        return fn(**fixed, **args)
    takes_kwargs = any(p.kind == p.VAR_KEYWORD for p in params.values())
    for name in args:
        if name not in params and not takes_kwargs:
            raise ConfigError(f"unknown config key '{key}.args.{name}': {getattr(fn, '__name__', fn)} "
                              f"takes {', '.join(params)}")
    kw = {k: v for k, v in fixed.items() if takes_kwargs or k in params}
    kw.update(args)
    return fn(**kw)


# ---------------------------------------------------------------- models

def build_generator(cfg: dict) -> nn.Module:
    from ..models import RRDBNet

    g = dict(cfg["model"]["generator"])
    kind = g.pop("type")
    if kind != "rrdbnet":
        raise ConfigError(f"config key 'model.generator.type' must be 'rrdbnet', got {kind!r}")
    return RRDBNet(**g)


def build_discriminator(cfg: dict) -> nn.Module:
    from ..models import UNetDiscriminatorSN, VGGDiscriminator128

    d = cfg["model"]["discriminator"]
    kinds = {"vgg128": VGGDiscriminator128, "unet": UNetDiscriminatorSN}
    if d["type"] not in kinds:
        raise ConfigError(f"config key 'model.discriminator.type' must be one of {tuple(kinds)}, got {d['type']!r}")
    in_ch = cfg["model"]["generator"]["out_ch"]
    return call_with_args(kinds[d["type"]], "model.discriminator", {"in_ch": in_ch}, d["args"])


# ---------------------------------------------------------------- losses

def build_generator_losses(cfg: dict, fused: bool, amp_dtype=None, channels_last: bool = False):
    """The G loss as a `gansr_ext.losses.CompositeLoss` of the terms with weight > 0 (its `.gan_loss`
    serves the D step). `fused` reaches every term whose constructor has it (FFT loss) and the gradient
    penalty, which also gets the AMP dtype and memory format."""
    from ..losses import build_losses, make_gan_loss
    from ..losses.composite import LOSS_TYPES

    spec = {}
    for term, t in cfg["losses"].items():
        if not t["weight"]:
            continue
        key = f"losses.{term}"
        kind = str(t["type"]).lower()
        if kind not in LOSS_TYPES or (LOSS_TYPES[kind][0] == "gan") != (term == "gan"):
            known = sorted(k for k, (cat, _) in LOSS_TYPES.items() if (cat == "gan") == (term == "gan"))
            raise ConfigError(f"config key '{key}.type' must be one of {known}, got {t['type']!r}")
        args = dict(t["args"])
        if term == "gan":
            if make_gan_loss(kind).needs_penalty:
                args = {"fused": fused, "autocast_dtype": amp_dtype, "channels_last": channels_last, **args}
        else:
            ctor = LOSS_TYPES[kind][1]
            params = inspect.signature(ctor).parameters
            for name in args:
                if name not in params:
                    raise ConfigError(f"unknown config key '{key}.args.{name}': {ctor.__name__} takes "
                                      f"{', '.join(p for p in params if p != 'loss_weight')}")
            if "fused" in params:
                args.setdefault("fused", fused)
        spec[term] = {"type": kind, "weight": float(t["weight"]), **args}
    try:
        return build_losses(spec)
    except TypeError as e:
        raise ConfigError(f"config key 'losses': {e}") from None


# ---------------------------------------------------------------- optimisation

def build_optimizer(params, spec: dict, key: str) -> torch.optim.Optimizer:
    kind = spec["type"]
    if kind == "adam":
        return torch.optim.Adam(params, lr=spec["lr"], betas=tuple(spec["betas"]), weight_decay=spec["weight_decay"])
    if kind == "adamw":
        return torch.optim.AdamW(params, lr=spec["lr"], betas=tuple(spec["betas"]), weight_decay=spec["weight_decay"])
    raise ConfigError(f"config key '{key}.type' must be 'adam' or 'adamw', got {kind!r}")


def build_scheduler(opt: torch.optim.Optimizer, cfg: dict):
    s = cfg["scheduler"]
    if s["type"] == "multistep":
        return torch.optim.lr_scheduler.MultiStepLR(opt, milestones=list(s["milestones"]), gamma=s["gamma"])
    if s["type"] == "cosine":
        period = s["period"] or cfg["train"]["total_iters"]
        return torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(opt, T_0=int(period), eta_min=s["eta_min"])
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)


# ---------------------------------------------------------------- data

class EpochSeededDataset(torch.utils.data.Dataset):
    """Wraps a dataset so that item `(epoch, index)` is drawn with the Python/numpy/torch RNGs seeded
    from (seed, epoch, index), and the caller's RNG states restored afterwards.

    Random crops and flips then depend only on (seed, epoch, index): not on the worker that loads
    the item nor on what was loaded before, which is what makes a resumed run see the same batches.
    """

    def __init__(self, inner, seed: int):
        self.inner, self.seed = inner, seed

    def __len__(self) -> int:
        return len(self.inner)

    def __getitem__(self, key):
        epoch, index = key
        item_seed = (self.seed * 1_000_003 + epoch * 7_919 + index) % 2**32
        py, npy, th = random.getstate(), np.random.get_state(), torch.get_rng_state()
        try:
            random.seed(item_seed)
            np.random.seed(item_seed)
            # the CPU generator only: torch.manual_seed would also reseed (and not restore) the CUDA
            # generators that the training step draws from (e.g. the gradient penalty's eps)
            torch.random.default_generator.manual_seed(item_seed)
            if hasattr(self.inner, "set_epoch"):
                self.inner.set_epoch(epoch)
            return self.inner[index]
        finally:
            random.setstate(py)
            np.random.set_state(npy)
            torch.set_rng_state(th)


class DataError(ValueError):
    """The configured data cannot be trained on (a missing folder, no usable image, sizes that disagree)."""


def check_data(dataset, seed: int, key: str) -> None:
    """Load one item as training will (RNG states restored afterwards), so a data problem is reported
    before the run folder is created rather than at the first batch. The datasets skip unusable
    images, so this fails only when none of them can be used."""
    if len(dataset) == 0:
        raise DataError(f"{key}: the dataset is empty")
    try:
        EpochSeededDataset(dataset, seed)[(0, 0)]
    except (OSError, ValueError, RuntimeError, TypeError) as e:
        raise DataError(f"{key}: {' '.join(str(e).split()) or type(e).__name__}") from None


def build_dataset(cfg: dict, split: str):
    """`data.<split>` -> a dataset of {"lr", "hr", "name"} items ('train' crops and augments, 'val' does not).

    Types: hr_only (folder of HR images, LR by bicubic downscaling), paired (HR and LR folders),
    samples (the scikit-image sample images of `gansr_ext.data.sample_images`, split by name).
    """
    from .. import data as D

    spec = cfg["data"][split]
    key = f"data.{split}"
    train = split == "train"
    fixed = {"scale": cfg["model"]["generator"]["scale"], "crop": cfg["data"]["crop"] if train else None,
             "augment": train, "seed": cfg["seed"]}
    kind = spec["type"]
    try:
        return _build_dataset(D, spec, key, kind, fixed, split)
    except (OSError, ValueError) as e:
        if isinstance(e, ConfigError):
            raise
        raise DataError(f"{key}: {' '.join(str(e).split())}") from None


def _build_dataset(D, spec: dict, key: str, kind: str, fixed: dict, split: str):
    if kind == "samples":
        return call_with_args(D.HROnlyDataset, key, {"hr": D.sample_images(split), **fixed}, spec["args"])
    if spec["root"] is None:
        raise ConfigError(f"config key '{key}.root' is not set (the folder of {split} HR images)")
    if kind == "hr_only":
        return call_with_args(D.HROnlyDataset, key, {"hr": spec["root"], **fixed}, spec["args"])
    if kind == "paired":
        if spec["lr_root"] is None:
            raise ConfigError(f"config key '{key}.lr_root' is not set (paired data needs an LR folder)")
        return call_with_args(D.PairedImageDataset, key, {"hr_dir": spec["root"], "lr_dir": spec["lr_root"], **fixed},
                              spec["args"])
    raise ConfigError(f"config key '{key}.type' must be 'hr_only', 'paired' or 'samples', got {kind!r}")
