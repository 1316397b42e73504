"""Config -> objects: models, loss terms, optimizers, schedulers, datasets, and a whole run
(`build_parts` -> `TrainingParts`, what the Trainer loops over).

Extra constructor arguments come from the config's open `args` mappings; they are checked against
the constructor's signature so a misspelt argument is an error naming its config key.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import nn

from ..data.datasets import DataError, check_data
from . import distributed as dist_utils
from .config import ConfigError
from .ema import EMA


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

def build_dataset(cfg: dict, split: str):
    """`data.<split>` -> a dataset of {"lr", "hr", "name"} items ('train' crops and augments, 'val' does not).

    Types: hr_only (folder of HR images, LR by bicubic downscaling), paired (HR and LR folders),
    samples (the scikit-image sample images of `gansr_ext.data.sample_images`, split by name).
    """
    from .. import data as data_pkg

    spec = cfg["data"][split]
    key = f"data.{split}"
    train = split == "train"
    fixed = {"scale": cfg["model"]["generator"]["scale"], "crop": cfg["data"]["crop"] if train else None,
             "augment": train, "seed": cfg["seed"]}
    kind = spec["type"]
    try:
        return _build_dataset(data_pkg, spec, key, kind, fixed, split)
    except (OSError, ValueError) as e:
        if isinstance(e, ConfigError):
            raise
        raise DataError(f"{key}: {' '.join(str(e).split())}") from None


def _build_dataset(data_pkg, spec: dict, key: str, kind: str, fixed: dict, split: str):
    if kind == "samples":
        return call_with_args(data_pkg.HROnlyDataset, key, {"hr": data_pkg.sample_images(split), **fixed}, spec["args"])
    if spec["root"] is None:
        raise ConfigError(f"config key '{key}.root' is not set (the folder of {split} HR images)")
    if kind == "hr_only":
        return call_with_args(data_pkg.HROnlyDataset, key, {"hr": spec["root"], **fixed}, spec["args"])
    if kind == "paired":
        if spec["lr_root"] is None:
            raise ConfigError(f"config key '{key}.lr_root' is not set (paired data needs an LR folder)")
        return call_with_args(data_pkg.PairedImageDataset, key, {"hr_dir": spec["root"], "lr_dir": spec["lr_root"], **fixed},
                              spec["args"])
    raise ConfigError(f"config key '{key}.type' must be 'hr_only', 'paired' or 'samples', got {kind!r}")


# ---------------------------------------------------------------- the whole run

def resolve_device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("config device 'cuda' asked for, but no CUDA GPU is available")
    return dist_utils.local_device(name)


def resolve_train_fused(mode: str, device: torch.device) -> bool:
    """`train.fused` through the package's one resolver (`gansr_ext.ops._common.resolve_fused`)."""
    from ..ops._common import resolve_fused

    try:
        return resolve_fused(mode, device)
    except RuntimeError as e:
        raise ConfigError(f"train.fused=on but the compiled gansr ops are not available for {device.type} "
                          f"({e}; run `make build`, or set train.fused=auto/off)") from None


def resolve_cuda_graph(mode: str, device: torch.device) -> bool:
    """`train.cuda_graph`: on needs a CUDA device; auto is off (see train/README.md)."""
    if mode == "on" and device.type != "cuda":
        raise ConfigError(f"train.cuda_graph=on needs a CUDA device, but the run's device is {device.type} "
                          "(set train.cuda_graph=off or auto)")
    return mode == "on"


def resolve_amp(mode: str, device: torch.device) -> torch.dtype | None:
    if mode == "auto":
        return torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() else None
    if mode == "off":
        return None
    if mode == "fp16" and device.type != "cuda":
        raise ConfigError("train.amp=fp16 needs a CUDA device (use bf16 or off on CPU)")
    return torch.bfloat16 if mode == "bf16" else torch.float16


@dataclass
class TrainingParts:
    """Everything a run trains with, built once by `build_parts`; the Trainer only loops over it."""

    G: nn.Module  # DistributedDataParallel-wrapped when world > 1
    D: nn.Module | None  # the discriminator (GAN stage)
    ema: EMA | None
    opt_g: torch.optim.Optimizer
    sched_g: Any
    opt_d: torch.optim.Optimizer | None
    sched_d: Any
    scaler: torch.amp.GradScaler
    losses: nn.Module  # CompositeLoss: (sr, hr, real_logits, fake_logits) -> (total, {term: value})
    gan_loss: nn.Module | None  # losses.gan_loss, which the D step uses
    train_set: Any
    val_set: Any
    fused: bool
    amp_dtype: torch.dtype | None
    mem_format: torch.memory_format
    notes: list[str] = field(default_factory=list)  # facts for the log and the summary


def build_parts(cfg: dict, device: torch.device, world: int, *, resume: bool = False, generator=None,
                discriminator=None, losses=None, train_set=None, val_set=None) -> TrainingParts:
    """Build a run from its config, in the order that fixes what the (already seeded) RNG gives each
    part; components passed in (tests, the demo) are used as they are. The data are checked here,
    before the run folder exists, so a fixed command needs no --resume."""
    tcfg, gan = cfg["train"], cfg["stage"] == "gan"
    notes: list[str] = []
    amp_dtype = resolve_amp(tcfg["amp"], device)
    fused = resolve_train_fused(tcfg["fused"], device)
    cuda_graph = resolve_cuda_graph(tcfg["cuda_graph"], device)
    cl = device.type == "cuda" if tcfg["channels_last"] == "auto" else tcfg["channels_last"]
    mem_format = torch.channels_last if cl else torch.contiguous_format
    G = generator if generator is not None else build_generator(cfg)
    if cfg["model"]["pretrained_g"] and not resume:  # a resume takes G from the checkpoint
        from ..models import load_generator

        G.load_state_dict(load_generator(cfg["model"]["pretrained_g"]).state_dict())
    _set_fused(G, fused, tcfg["fused"], notes)
    G = G.to(device, memory_format=mem_format)
    if cuda_graph:  # before DDP wraps G; DDP's broadcast then writes into the captured parameters
        _graph_generator(G, cfg, device, mem_format, amp_dtype, notes)
    G = dist_utils.wrap_ddp(G, device, world)  # broadcasts rank 0's weights
    ema = EMA(dist_utils.unwrap(G), tcfg["ema_decay"]) if tcfg["ema_decay"] > 0 else None
    D, sync_bn = _build_d(cfg, discriminator, device, world, mem_format, notes) if gan else (None, False)
    losses = losses if losses is not None else build_generator_losses(cfg, fused, amp_dtype, cl)
    losses.to(device)
    if gan and losses.gan_loss is None:
        raise ConfigError("stage 'gan' needs an adversarial loss term (losses.gan)")
    if sync_bn and getattr(losses.gan_loss, "needs_penalty", False):
        raise ConfigError("dist.sync_bn=true cannot be combined with a gradient-penalty GAN loss "
                          f"({cfg['losses']['gan']['type']}): SyncBatchNorm's backward is not twice "
                          "differentiable; use sync_bn=false or a discriminator without BatchNorm (unet)")
    opt_g = build_optimizer(G.parameters(), cfg["optim"]["g"], "optim.g")
    opt_d = build_optimizer(D.parameters(), cfg["optim"]["d"], "optim.d") if gan else None
    train_set = train_set if train_set is not None else build_dataset(cfg, "train")
    check_data(train_set, cfg["seed"], "data.train")
    if val_set is None and cfg["data"]["val"]["root"] is not None:
        val_set = build_dataset(cfg, "val")
    if val_set is not None:
        check_data(val_set, cfg["seed"], "data.val")
    return TrainingParts(
        G=G, D=D, ema=ema, opt_g=opt_g, sched_g=build_scheduler(opt_g, cfg), opt_d=opt_d,
        sched_d=build_scheduler(opt_d, cfg) if gan else None,
        scaler=torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16), losses=losses,
        gan_loss=losses.gan_loss, train_set=train_set, val_set=val_set, fused=fused, amp_dtype=amp_dtype,
        mem_format=mem_format, notes=notes)


def _graph_generator(G: nn.Module, cfg: dict, device: torch.device, mem_format, amp_dtype, notes: list[str]) -> None:
    """G's training forward+backward as a CUDA graph for the loader's batches: (data.batch_size, C,
    crop/scale, crop/scale), the loader dropping the last partial batch (`graphed.graph_generator`)."""
    from .graphed import graph_generator

    g = cfg["model"]["generator"]
    lr_size = cfg["data"]["crop"] // g["scale"]
    sample = torch.zeros(cfg["data"]["batch_size"], g["in_ch"], lr_size, lr_size, device=device)
    graph_generator(G, sample.contiguous(memory_format=mem_format), amp_dtype)
    notes.append(f"generator forward+backward CUDA-graphed for LR batches {list(sample.shape)}")


def _set_fused(G: nn.Module, fused: bool, mode: str, notes: list[str]) -> None:
    """G's fused trunk as resolved; under train.fused=auto a generator that refuses it runs unfused (noted)."""
    if not hasattr(G, "set_fused"):
        return
    try:
        G.set_fused(fused)
    except RuntimeError as e:
        if mode == "on":
            raise
        G.set_fused(False)
        notes.append(f"generator runs unfused ({e})")


def _build_d(cfg: dict, D: nn.Module | None, device: torch.device, world: int, mem_format,
             notes: list[str]) -> tuple[nn.Module, bool]:
    """The discriminator on the device, the same on every rank; (D, whether it uses SyncBatchNorm)."""
    D = D if D is not None else build_discriminator(cfg)
    sync_bn = False
    if cfg["dist"]["sync_bn"] and world > 1:
        if device.type == "cuda":
            D, sync_bn = nn.SyncBatchNorm.convert_sync_batchnorm(D), True
        else:
            notes.append("dist.sync_bn ignored: SyncBatchNorm runs on GPUs only")
    D = D.to(device, memory_format=mem_format)
    dist_utils.broadcast_buffers(D)
    if world > 1:  # same initial D on every rank
        for p in D.parameters():
            torch.distributed.broadcast(p.data, src=0)
    return D, sync_bn
