"""Training configs: YAML files that compose (`base:`), command-line overrides, strict keys.

A config file may name `base: other.yaml` (relative to itself, or a recipe name shipped in
`gansr_ext/train/configs/`); the base is loaded first and the file's values are deep-merged over it.
Everything is finally merged over `DEFAULTS`, whose key tree is the schema: a key that is not in it
is an error naming the key. Only dicts named `args` are open (extra constructor arguments, checked
against the constructor's signature when the object is built).

A mapping whose `type` is changed (by a file or an override) loses the `args` it had: they were
the old type's constructor arguments.

Overrides are `key.sub=value` strings; the value is parsed as YAML (`3`, `1e-4`, `[1, 2]`, `false`,
`null`, `lpips`).
"""

from __future__ import annotations

import copy
import difflib
import math
import re
from pathlib import Path
from typing import Any, Iterable

import yaml

CONFIG_DIR = Path(__file__).resolve().parent / "configs"

DEFAULTS: dict[str, Any] = {
    "name": "run",
    "stage": "psnr",  # psnr: pixel losses only; gan: adds a discriminator and the adversarial term
    "seed": 0,
    "output_dir": "runs",  # the run folder is output_dir/name
    "device": "auto",  # auto | cpu | cuda
    "model": {
        "generator": {"type": "rrdbnet", "in_ch": 3, "out_ch": 3, "scale": 4, "nf": 64, "nb": 23, "gc": 32},
        "discriminator": {"type": "vgg128", "args": {}},  # vgg128 | unet
        "pretrained_g": None,  # generator weights to start from (stage-1 result), any load_generator format
    },
    "data": {
        # hr_only: folder of HR images, LR made on the fly by bicubic downscaling; paired: HR and LR
        # folders; samples: scikit-image's sample images (gansr_ext.data.sample_images, demo and tests)
        "train": {"type": "hr_only", "root": None, "lr_root": None, "args": {}},
        "val": {"type": "paired", "root": None, "lr_root": None, "args": {}, "max_images": None},
        "crop": 128,  # HR crop size
        "batch_size": 16,  # per process
        "num_workers": 4,
    },
    "optim": {
        "g": {"type": "adam", "lr": 2.0e-4, "betas": [0.9, 0.99], "weight_decay": 0.0},
        "d": {"type": "adam", "lr": 1.0e-4, "betas": [0.9, 0.99], "weight_decay": 0.0},
    },
    # multistep: lr * gamma at each milestone; constant; cosine: cosine annealing restarted every `period`
    # iterations (BasicSR's CosineAnnealingRestartLR with equal restart weights), down to eta_min
    "scheduler": {"type": "multistep", "milestones": [200000, 400000, 600000, 800000], "gamma": 0.5,
                  "period": None, "eta_min": 1.0e-7},
    "train": {
        "total_iters": 1000000,
        "ema_decay": 0.999,  # 0 disables the EMA (then the raw G is validated and exported)
        "amp": "auto",  # auto (bf16 on CUDA, off on CPU) | off | bf16 | fp16
        "channels_last": "auto",  # auto (on CUDA; on CPU it slows convolutions down) | true | false
        "fused": "auto",  # auto (fused ops where compiled) | on | off: all fused ops at once
        # on: G's forward+backward replayed as one CUDA graph (train/graphed.py; CUDA only, every LR batch
        # (data.batch_size, C, crop/scale, crop/scale)); auto: off until python/gpu_check.sh validates it
        "cuda_graph": "auto",
        "grad_clip": None,  # max gradient norm for G and D, None = no clipping
    },
    "losses": {  # a term with weight 0 is not built
        "pixel": {"type": "l1", "weight": 1.0, "args": {}},
        "perceptual": {"type": "vgg", "weight": 0.0, "args": {}},  # vgg | lpips | dists
        "gan": {"type": "ragan", "weight": 0.0, "args": {}},
        "frequency": {"type": "fft", "weight": 0.0, "args": {}},  # fft | dct | spectral | focal_frequency
    },
    "val": {
        "every": 5000,  # 0: only at the end
        "metrics": ["psnr", "ssim", "lpips", "niqe"],
        "best_metric": "psnr",
        "crop_border": 4,
        "save_images": 4,  # SR samples written per validation
    },
    "checkpoint": {"every": 5000, "keep_last": 3},
    "log": {"every": 100, "tensorboard": True, "csv": True, "progress": True},
    "guard": {
        "max_nonfinite": 5,  # this many non-finite losses in a row -> roll back
        "lr_factor": 0.5,  # learning rates are multiplied by this at each rollback
        "max_rollbacks": 5,
        "collapse_d_loss": 0.0,  # D loss below this ...
        "collapse_patience": 1000,  # ... for this many iterations in a row -> roll back (0.0 = off)
        # a D that does not learn: D loss within idle_d_epsilon of its chance value (ln 2 for ragan) for
        # idle_d_window of train.total_iters (at least idle_d_min_iters) in a row -> a warning (0 = off)
        "idle_d_epsilon": 0.01,
        "idle_d_window": 0.1,
        "idle_d_min_iters": 100,
        "inject_nan_at": [],  # test hook: iterations whose G loss is made NaN (once each)
    },
    "dist": {"backend": "auto", "sync_bn": False},  # auto: nccl on CUDA, gloo on CPU
}

_OPEN_KEYS = {"args"}


class _Loader(yaml.SafeLoader):
    """SafeLoader that reads `1e-4` as a float (YAML 1.2), not the string YAML 1.1 makes of it."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                   |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
                   |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
                   |[-+]?\.(?:inf|Inf|INF)
                   |\.(?:nan|NaN|NAN))$""", re.X),
    list("-+0123456789."))


def yaml_load(text_or_stream):
    return yaml.load(text_or_stream, Loader=_Loader)


class ConfigError(ValueError):
    """A config file or override is invalid (unknown key, bad value, missing base)."""


def deep_merge(base: dict, over: dict) -> dict:
    """A new dict: `over` merged into `base`, recursively for dict values (lists are replaced).
    When `over` changes a mapping's `type`, the base's `args` are dropped (they belong to the old type)."""
    out = copy.deepcopy(base)
    if "type" in over and "type" in out and over["type"] != out["type"] and isinstance(out.get("args"), dict):
        out["args"] = {}
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def find_config(name: str | Path, relative_to: Path | None = None) -> Path:
    """Resolve a config path: as given, relative to `relative_to`, or a shipped recipe by name."""
    p = Path(name)
    candidates = [p] if p.is_absolute() else [Path.cwd() / p] + ([relative_to / p] if relative_to else [])
    stem = p.name if p.suffix in (".yaml", ".yml") else p.name + ".yaml"
    candidates.append(CONFIG_DIR / stem)
    for c in candidates:
        if c.is_file():
            return c
    raise ConfigError(f"config {str(name)!r} not found (looked in {', '.join(str(c) for c in candidates)})")


def _load_file(path: Path, seen: tuple[Path, ...] = ()) -> dict:
    path = path.resolve()
    if path in seen:
        raise ConfigError(f"config base cycle: {' -> '.join(str(s) for s in seen + (path,))}")
    try:
        with open(path) as f:
            data = yaml_load(f) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"config {path} is not valid YAML: {' '.join(str(e).split())}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config {path} must hold a mapping at the top level, got {type(data).__name__}")
    base = data.pop("base", None)
    if base is None:
        return data
    return deep_merge(_load_file(find_config(base, path.parent), seen + (path,)), data)


def parse_override(text: str) -> tuple[list[str], Any]:
    """`a.b.c=value` -> (['a', 'b', 'c'], yaml-parsed value)."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like key.sub=value")
    key, value = text.split("=", 1)
    parts = key.strip().split(".")
    if not all(parts):
        raise ConfigError(f"override {text!r} has an empty key part")
    try:
        parsed = yaml_load(value) if value.strip() else None
    except yaml.YAMLError as e:
        raise ConfigError(f"override {text!r}: value is not valid YAML ({e})") from None
    return parts, parsed


def apply_overrides(cfg: dict, overrides: Iterable[str]) -> dict:
    cfg = copy.deepcopy(cfg)
    for text in overrides:
        parts, value = parse_override(text)
        node = cfg
        for i, part in enumerate(parts[:-1]):
            nxt = node.get(part)
            if nxt is None:
                nxt = node[part] = {}
            if not isinstance(nxt, dict):
                raise ConfigError(f"override {text!r}: {'.'.join(parts[:i + 1])} is not a mapping")
            node = nxt
        if parts[-1] == "type" and node.get("type") != value and isinstance(node.get("args"), dict):
            node["args"] = {}  # the old type's arguments
        node[parts[-1]] = value
    return cfg


def validate(cfg: dict, schema: dict = DEFAULTS, prefix: str = "") -> None:
    """Raise ConfigError naming the first key of `cfg` absent from `schema` (or a mapping where a value
    belongs and vice versa). Dicts named `args` are open."""
    for k, v in cfg.items():
        name = f"{prefix}{k}"
        if k not in schema:
            close = difflib.get_close_matches(str(k), [str(s) for s in schema], n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; known keys: {', '.join(schema)}"
            raise ConfigError(f"unknown config key {name!r}{hint}")
        if isinstance(schema[k], dict):
            if not isinstance(v, dict):
                raise ConfigError(f"config key {name!r} must be a mapping, got {v!r}")
            if k not in _OPEN_KEYS:
                validate(v, schema[k], name + ".")
        elif isinstance(v, dict):
            raise ConfigError(f"config key {name!r} takes a value, not a mapping ({v!r})")


def load_config(path: str | Path | None = None, overrides: Iterable[str] = ()) -> dict:
    """Defaults <- config file (with its bases) <- overrides; validated. `path` may be a shipped
    recipe name (e.g. `esrgan_psnr`)."""
    data = _load_file(find_config(path)) if path is not None else {}
    data = apply_overrides(data, overrides)
    validate(data)
    cfg = deep_merge(DEFAULTS, data)
    check_values(cfg)
    return cfg


_CHOICES = {
    ("stage",): ("psnr", "gan"),
    ("device",): ("auto", "cpu", "cuda"),
    ("train", "amp"): ("auto", "off", "bf16", "fp16"),
    ("train", "fused"): ("auto", "on", "off"),
    ("train", "cuda_graph"): ("auto", "on", "off"),
    ("train", "channels_last"): ("auto", True, False),
    ("scheduler", "type"): ("multistep", "cosine", "constant"),
    ("dist", "backend"): ("auto", "nccl", "gloo"),
}


def _get(cfg: dict, keys: tuple[str, ...]):
    for k in keys:
        cfg = cfg[k]
    return cfg


# (keys, low, high, kind): a value checked here fails at load time, not hours into a run
# (lr_factor at the first rollback, keep_last at the first checkpoint). kind: "int" (>= low),
# "number" (finite, >= low), "positive" (finite, > low); a trailing "?" also allows null.
_RANGES = (
    (("optim", "g", "lr"), 0, None, "positive"), (("optim", "d", "lr"), 0, None, "positive"),
    (("optim", "g", "weight_decay"), 0, None, "number"), (("optim", "d", "weight_decay"), 0, None, "number"),
    (("scheduler", "gamma"), 0, None, "positive"), (("scheduler", "eta_min"), 0, None, "number"),
    (("scheduler", "period"), 1, None, "int?"), (("train", "grad_clip"), 0, None, "positive?"),
    (("checkpoint", "keep_last"), 1, None, "int"), (("guard", "max_nonfinite"), 1, None, "int"),
    (("guard", "lr_factor"), 0, 1, "positive"), (("guard", "max_rollbacks"), 0, None, "int"),
    (("guard", "collapse_d_loss"), 0, None, "number"), (("guard", "collapse_patience"), 1, None, "int"),
    (("guard", "idle_d_epsilon"), 0, None, "number"), (("guard", "idle_d_window"), 0, 1, "number"),
    (("guard", "idle_d_min_iters"), 1, None, "int"),
    (("seed",), 0, None, "int"),
)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _check_range(cfg: dict, keys: tuple, low, high, kind: str) -> None:
    v = _get(cfg, keys)
    optional = kind.endswith("?")
    kind = kind.rstrip("?")
    if v is None and optional:
        return
    ok = isinstance(v, int) and not isinstance(v, bool) if kind == "int" else _is_number(v)
    ok = ok and (v > low if kind == "positive" else v >= low) and (high is None or v <= high)
    if not ok:
        what = {"int": "an integer >= ", "number": "a finite number >= ", "positive": "a finite number > "}[kind]
        what += f"{low}{f' and <= {high}' if high is not None else ''}{' or null' if optional else ''}"
        raise ConfigError(f"config key {'.'.join(keys)!r} must be {what}, got {v!r}")


def check_values(cfg: dict) -> None:
    """Value checks that need no imports (types of losses/models are checked when built)."""
    for keys in (("train", "fused"), ("train", "amp"), ("train", "cuda_graph")):  # YAML 1.1 reads on/off as booleans
        v = _get(cfg, keys[:-1])
        if isinstance(v[keys[-1]], bool):
            v[keys[-1]] = "on" if v[keys[-1]] else "off"
    for keys, choices in _CHOICES.items():
        v = _get(cfg, keys)
        if v not in choices:
            raise ConfigError(f"config key {'.'.join(keys)!r} must be one of {choices}, got {v!r}")
    for keys in (("train", "total_iters"), ("data", "batch_size"), ("data", "crop")):
        v = _get(cfg, keys)
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ConfigError(f"config key {'.'.join(keys)!r} must be a positive integer, got {v!r}")
    for keys in (("val", "every"), ("checkpoint", "every"), ("log", "every"), ("data", "num_workers")):
        v = _get(cfg, keys)
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            raise ConfigError(f"config key {'.'.join(keys)!r} must be an integer >= 0, got {v!r}")
    for keys, low, high, kind in _RANGES:
        _check_range(cfg, keys, low, high, kind)
    for which in ("g", "d"):
        betas = cfg["optim"][which]["betas"]
        if not (isinstance(betas, list) and len(betas) == 2 and all(_is_number(b) and 0 <= b < 1 for b in betas)):
            raise ConfigError(f"config key 'optim.{which}.betas' must be two numbers in [0, 1), got {betas!r}")
    for keys in (("scheduler", "milestones"), ("guard", "inject_nan_at")):
        v = _get(cfg, keys)
        if not (isinstance(v, list) and all(isinstance(i, int) and not isinstance(i, bool) for i in v)):
            raise ConfigError(f"config key {'.'.join(keys)!r} must be a list of integers, got {v!r}")
    if cfg["data"]["crop"] % cfg["model"]["generator"]["scale"]:
        raise ConfigError(f"data.crop ({cfg['data']['crop']}) must be a multiple of model.generator.scale "
                          f"({cfg['model']['generator']['scale']})")
    d = cfg["train"]["ema_decay"]
    if not isinstance(d, (int, float)) or not 0.0 <= d < 1.0:
        raise ConfigError(f"config key 'train.ema_decay' must be in [0, 1), got {d!r}")
    if cfg["stage"] == "gan" and not cfg["losses"]["gan"]["weight"]:
        raise ConfigError("stage 'gan' needs losses.gan.weight > 0")


# The last line of every config.yaml a run writes: a copy without it was cut short (a full disk, a
# killed write) and is refused rather than completed from the defaults.
END_MARK = "# end of gansr config (a copy without this line was cut short)"


def config_text(cfg: dict) -> str:
    return yaml.safe_dump(cfg, sort_keys=False) + END_MARK + "\n"


def dump_config(cfg: dict, path: str | Path) -> bool:
    """Write `cfg` to `path` atomically (temp file + rename); False when the file already holds
    exactly this config (a resume without overrides leaves its run's config.yaml untouched)."""
    from .._fileio import atomic_write

    text = config_text(cfg)
    path = Path(path)
    if path.is_file() and path.read_text() == text:
        return False
    atomic_write(path, lambda f: f.write(text.encode()))
    return True


def load_run_config(path: str | Path, overrides: Iterable[str] = ()) -> dict:
    """A run folder's config.yaml (+ overrides), refused unless it ends with `END_MARK`."""
    path = Path(path)
    try:
        lines = path.read_text().rstrip().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path} cannot be read: {e}") from None
    if not lines or lines[-1].strip() != END_MARK:
        raise ConfigError(f"{path} is incomplete (its last line should be {END_MARK!r}): it was cut short by a "
                          "full disk or a killed write; restore it, or start a new run")
    return load_config(path, overrides)


def list_recipes() -> list[str]:
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml") if not p.stem.startswith("_"))
