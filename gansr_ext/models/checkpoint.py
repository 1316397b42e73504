"""Generator checkpoints: load every ESRGAN-family format into `RRDBNet`, save this package's own format.

Formats recognised by `convert_state_dict` (all end up with BasicSR parameter names):
  (a) official ESRGAN release: `RRDB_trunk.N.RDBk.convj`, `trunk_conv`, `upconv1/2`, `HRconv`
  (b) ESRGAN old architecture: `model.0`, `model.1.sub.N.RDBk.convj.0`, `model.1.sub.{nb}` (trunk conv),
      `model.3`, `model.6`, `model.8`, `model.10`
  (c) BasicSR / Real-ESRGAN: `body.N.rdbk.convj`, `conv_body`, `conv_up1/2`, `conv_hr`, optionally wrapped
      in `params_ema` (preferred) or `params`
  (d) gansr_ext: BasicSR keys plus the arch hyper-parameters; `.pth` holds
      `{"format": "gansr_ext", "format_version": 1, "arch": {...}, "params": state_dict}`, `.safetensors`
      holds the tensors with `format`, `format_version`, `arch` (JSON) in the header metadata.
  (e) `gansr train` checkpoints (`RUN_DIR/checkpoints/iter_N.pt`): the EMA generator (`ema`), or `G` when
      the run kept no EMA (numpy arrays in their RNG state are allowed; no other objects are).
`load_generator` also takes an ncnn model (`models/ncnn.py`) and a model-zoo name (`models/zoo.py`).
Without metadata, hyper-parameters are inferred from key names and shapes; the scale from conv_first's
input channels c: c == out_ch -> x4, 4*out_ch -> x2 (pixel-unshuffle 2), 16*out_ch -> x1, otherwise x4.
`.pth` files are read only with `torch.load(weights_only=True)`.

Before a network is built, the architecture (metadata or inferred) is checked against the tensor shapes and
against ARCH_LIMITS / MAX_PARAMETERS, so a small file with lying metadata cannot make the loader allocate
gigabytes.
"""

from __future__ import annotations

import json
import os
import pickle
import re
from pathlib import Path

import torch
from torch import nn

from .._fileio import atomic_write, load_tensors, read_error_text
from .rrdbnet import _SCALES, _UNSHUFFLE, RRDBNet

FORMAT_NAME = "gansr_ext"
FORMAT_VERSION = 1
ARCH_KEYS = ("in_ch", "out_ch", "scale", "nf", "nb", "gc")
_PTH_SUFFIXES = (".pth", ".pt", ".ckpt", ".bin")
# Far above every published RRDBNet (ESRGAN: nf 64, nb 23, gc 32, 16.7 M parameters), far below what
# would exhaust memory: a checkpoint describing more is refused before anything is allocated.
ARCH_LIMITS = {"in_ch": 64, "out_ch": 64, "nf": 1024, "nb": 256, "gc": 1024}
MAX_PARAMETERS = 200_000_000


class CheckpointError(ValueError):
    """A generator checkpoint that cannot be read or does not fit RRDBNet."""


# --- key renaming, one function per foreign format -------------------------------------------------------

_ESRGAN_TOP = {"trunk_conv": "conv_body", "upconv1": "conv_up1", "upconv2": "conv_up2", "HRconv": "conv_hr"}
_ESRGAN_BLOCK = re.compile(r"^RRDB_trunk\.(\d+)\.RDB([123])\.(conv[1-5]\.(?:weight|bias))$")


def _rename_esrgan(sd: dict) -> dict:
    out = {}
    for k, v in sd.items():
        m = _ESRGAN_BLOCK.match(k)
        if m:
            out[f"body.{m[1]}.rdb{m[2]}.{m[3]}"] = v
            continue
        layer, _, rest = k.partition(".")
        out[f"{_ESRGAN_TOP.get(layer, layer)}.{rest}"] = v
    return out


_OLD_BLOCK = re.compile(r"^model\.1\.sub\.(\d+)\.RDB([123])\.(conv[1-5])\.0\.(weight|bias)$")
_OLD_TRUNK = re.compile(r"^model\.1\.sub\.(\d+)\.(weight|bias)$")
_OLD_TOP = {"0": "conv_first", "3": "conv_up1", "6": "conv_up2", "8": "conv_hr", "10": "conv_last"}
_OLD_TOP_KEY = re.compile(r"^model\.(\d+)\.(weight|bias)$")


def _rename_old_arch(sd: dict) -> dict:
    blocks = {int(m[1]) for k in sd if (m := _OLD_BLOCK.match(k))}
    nb = max(blocks) + 1 if blocks else 0
    out = {}
    for k, v in sd.items():
        if m := _OLD_BLOCK.match(k):
            out[f"body.{m[1]}.rdb{m[2]}.{m[3]}.{m[4]}"] = v
        elif (m := _OLD_TRUNK.match(k)) and int(m[1]) == nb:
            out[f"conv_body.{m[2]}"] = v
        elif (m := _OLD_TOP_KEY.match(k)) and m[1] in _OLD_TOP:
            out[f"{_OLD_TOP[m[1]]}.{m[2]}"] = v
        else:
            out[k] = v  # unknown: kept so the mismatch error names it
    return out


# --- detection ------------------------------------------------------------------------------------------

def _is_tensor_dict(obj) -> bool:
    return isinstance(obj, dict) and len(obj) > 0 and all(isinstance(v, torch.Tensor) for v in obj.values())


def _strip_module_prefix(sd: dict) -> dict:
    # DataParallel / DDP checkpoints
    if all(k.startswith("module.") for k in sd):
        return {k[len("module."):]: v for k, v in sd.items()}
    return sd


def _read_arch(arch, where: str) -> dict:
    if isinstance(arch, str):
        try:
            arch = json.loads(arch)
        except json.JSONDecodeError as e:
            raise CheckpointError(f"{where}: arch metadata is not valid JSON: {arch!r}") from e
    if not isinstance(arch, dict):
        raise CheckpointError(f"{where}: arch metadata must be a dict, got {type(arch).__name__}")
    unknown = set(arch) - set(ARCH_KEYS)
    if unknown:
        raise CheckpointError(f"{where}: unknown arch metadata keys {sorted(unknown)} (known: {ARCH_KEYS})")
    bad = {k: v for k, v in arch.items() if isinstance(v, bool) or not isinstance(v, int)}
    if bad:
        raise CheckpointError(f"{where}: arch metadata values must be ints, got {bad}")
    return dict(arch)


def _is_trainer_checkpoint(obj) -> bool:
    return isinstance(obj, dict) and "iteration" in obj and ("ema" in obj or "G" in obj)


def _weights_and_arch(obj) -> tuple[dict, dict | None]:
    """-> (flat state dict, arch metadata or None)."""
    if _is_trainer_checkpoint(obj):
        for key in ("ema", "G"):  # the EMA weights are what validation and the exported generator use
            if _is_tensor_dict(obj.get(key)):
                return obj[key], None
        raise CheckpointError("gansr train checkpoint without generator weights ('ema' and 'G' are empty); use "
                              "the run's generator_ema.pth")
    if isinstance(obj, dict) and obj.get("format") == FORMAT_NAME:
        version = int(obj.get("format_version", FORMAT_VERSION))
        if version > FORMAT_VERSION:
            raise CheckpointError(f"gansr_ext checkpoint format_version {version} is newer than this reader "
                                  f"({FORMAT_VERSION}); upgrade gansr_ext")
        params = obj.get("params")
        if not _is_tensor_dict(params):
            raise CheckpointError("gansr_ext checkpoint: 'params' must be a non-empty dict of tensors")
        return params, _read_arch(obj.get("arch", {}), "gansr_ext checkpoint")
    if isinstance(obj, dict):
        for wrapper in ("params_ema", "params", "state_dict"):
            if _is_tensor_dict(obj.get(wrapper)):
                return obj[wrapper], None
    if _is_tensor_dict(obj):
        return obj, None
    top = sorted(obj)[:8] if isinstance(obj, dict) else type(obj).__name__
    raise CheckpointError(f"unrecognised generator checkpoint: expected a state dict of tensors (or one wrapped "
                          f"in params_ema/params/state_dict, or a gansr_ext checkpoint), got {top}")


def _to_basicsr_names(sd: dict) -> dict:
    if any(k.startswith("RRDB_trunk.") for k in sd):
        return _rename_esrgan(sd)
    if "model.0.weight" in sd and any(k.startswith("model.1.sub.") for k in sd):
        return _rename_old_arch(sd)
    if "conv_first.weight" in sd and any(k.startswith("body.") for k in sd):
        return dict(sd)
    raise CheckpointError("unrecognised generator checkpoint format: no ESRGAN (RRDB_trunk.*), old-arch (model.*) "
                          f"or BasicSR (conv_first, body.*) keys; first keys: {sorted(sd)[:6]}")


def _shape(sd: dict, key: str) -> torch.Size:
    if key not in sd:
        raise CheckpointError(f"generator checkpoint lacks {key!r} (needed to infer the architecture); "
                              f"first keys: {sorted(sd)[:6]}")
    return sd[key].shape


def infer_arch(sd: dict) -> dict:
    """Hyper-parameters of the RRDBNet a BasicSR-named state dict belongs to (scale rule: module docstring)."""
    first, last = _shape(sd, "conv_first.weight"), _shape(sd, "conv_last.weight")
    gc = _shape(sd, "body.0.rdb1.conv1.weight")[0]
    nb = len({k.split(".")[1] for k in sd if k.startswith("body.") and k.split(".")[1].isdigit()})
    nf, cin, out_ch = first[0], first[1], last[0]
    for scale, factor in ((4, 1), (2, 4), (1, 16)):
        if cin == out_ch * factor:
            return dict(in_ch=out_ch, out_ch=out_ch, scale=scale, nf=nf, nb=nb, gc=gc)
    return dict(in_ch=cin, out_ch=out_ch, scale=4, nf=nf, nb=nb, gc=gc)


def check_arch(arch: dict, sd: dict) -> None:
    """CheckpointError unless `arch` is within ARCH_LIMITS, agrees with the tensor shapes of `sd` (BasicSR
    names) and makes at most MAX_PARAMETERS; cheap, so it runs before any network is built."""
    if arch.get("scale") not in _SCALES:
        raise CheckpointError(f"checkpoint: scale must be one of {_SCALES}, got {arch.get('scale')!r}")
    found = infer_arch(sd)
    wrong = [f"{k}={arch[k]} (tensors: {found[k]})" for k in ("nf", "nb", "gc", "out_ch") if arch[k] != found[k]]
    first_in = _shape(sd, "conv_first.weight")[1]
    if arch["in_ch"] * _UNSHUFFLE[arch["scale"]] ** 2 != first_in:
        wrong.append(f"in_ch={arch['in_ch']} with scale={arch['scale']} (conv_first has {first_in} input channels)")
    if wrong:
        raise CheckpointError(f"checkpoint: architecture metadata contradicts the tensors: {', '.join(wrong)}")
    absurd = [f"{k}={v} (allowed 1..{ARCH_LIMITS[k]})" for k, v in arch.items()
              if k in ARCH_LIMITS and not 1 <= v <= ARCH_LIMITS[k]]
    if absurd:
        raise CheckpointError(f"checkpoint: architecture outside the supported range: {', '.join(absurd)} "
                              "(models.checkpoint.ARCH_LIMITS)")
    count = sum(v.numel() for v in sd.values())
    if count > MAX_PARAMETERS:
        raise CheckpointError(f"checkpoint: {count} parameters, more than the {MAX_PARAMETERS} an RRDBNet "
                              "checkpoint is allowed (models.checkpoint.MAX_PARAMETERS)")


def convert_state_dict(sd) -> tuple[dict, dict]:
    """Any supported checkpoint object -> (state dict with BasicSR names, RRDBNet kwargs).

    Metadata (gansr_ext format) wins over inference; missing metadata entries are inferred."""
    flat, arch = _weights_and_arch(sd)
    flat = _to_basicsr_names(_strip_module_prefix(flat))
    inferred = infer_arch(flat)
    return flat, {**inferred, **(arch or {})}


# --- loading --------------------------------------------------------------------------------------------

def _read_safetensors(path: Path):
    from safetensors import safe_open

    with safe_open(str(path), framework="pt", device="cpu") as f:
        meta = f.metadata() or {}
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    if meta.get("format") == FORMAT_NAME:
        return {"format": FORMAT_NAME, "format_version": int(meta.get("format_version", FORMAT_VERSION)),
                "arch": meta.get("arch", "{}"), "params": tensors}
    return tensors


def _torch_load(path: Path):
    try:
        return load_tensors(path)
    except pickle.UnpicklingError as e:
        if "global" not in str(e).lower():
            raise  # not a pickle of tensors at all: reported by _read_file as unreadable
        raise CheckpointError(f"{path}: refused to load; it holds objects other than tensors and only "
                              f"torch.load(weights_only=True) is used ({read_error_text(e)})") from e


def _read_file(path: Path):
    if path.is_dir():
        hint = next((f"; did you mean {p}?" for p in (path / "generator_ema.pth", path / "generator.pth")
                     if p.is_file()), "")
        raise CheckpointError(f"{path} is a folder, not a generator checkpoint file{hint}")
    if not path.is_file():
        raise FileNotFoundError(f"generator checkpoint {path} does not exist")
    try:
        return _read_safetensors(path) if path.suffix == ".safetensors" else _torch_load(path)
    except CheckpointError:
        raise
    except Exception as e:  # noqa: BLE001 - torch.load / safetensors report truncation as EOFError, KeyError...
        raise CheckpointError(f"{path}: cannot read it as a checkpoint (truncated, corrupt, or not a PyTorch "
                              f"or safetensors file): {read_error_text(e)}") from e


def _check_fit(model: nn.Module, sd: dict, strict: bool, arch: dict) -> None:
    own = model.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    wrong = [f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}"
             for k, v in sd.items() if k in own and v.shape != own[k].shape]
    problems = []
    if strict and missing:
        problems.append(f"missing keys ({len(missing)}): {missing[:5]}")
    if strict and unexpected:
        problems.append(f"unexpected keys ({len(unexpected)}): {unexpected[:5]}")
    if wrong:
        problems.append(f"size mismatches ({len(wrong)}): {wrong[:5]}")
    if problems:
        raise CheckpointError(f"checkpoint does not fit RRDBNet({arch}): " + "; ".join(problems))


def _ncnn_param_of(path: Path) -> Path | None:
    """The ncnn graph of `path`: itself if a .param, the sibling .param of a .bin (a .bin alone is a torch
    file, as BasicSR names some), else None."""
    if path.suffix == ".param":
        return path
    if path.suffix == ".bin" and path.with_suffix(".param").is_file():
        return path.with_suffix(".param")
    return None


def load_generator(path_or_state_dict, strict: bool = True, device="cpu") -> RRDBNet:
    """Build an RRDBNet from a checkpoint path (.pth/.pt/.safetensors), an ncnn model (.param, or a .bin
    with its .param beside it), a model-zoo name (`gansr models`) or an in-memory checkpoint object, in
    any format listed in the module docstring. Returned in eval mode on `device`."""
    from . import ncnn, zoo  # they import this module

    if zoo.is_zoo_name(path_or_state_dict):
        return zoo.load_zoo_generator(path_or_state_dict, device=device)
    if isinstance(path_or_state_dict, (str, os.PathLike)):
        path = Path(path_or_state_dict).expanduser()
        if param := _ncnn_param_of(path):  # the .bin is the .param's sibling
            return ncnn.load_ncnn_generator(param, device=device)
        if not path.suffix and not path.exists():  # most likely a mistyped zoo name
            raise FileNotFoundError(f"generator checkpoint {path} does not exist, nor is it a known pretrained "
                                    f"model ({', '.join(zoo.ZOO)}; `gansr models` lists them)")
        obj = _read_file(path)
    elif isinstance(path_or_state_dict, dict):
        obj = path_or_state_dict
    else:
        raise TypeError(f"load_generator: expected a path or a state dict, got {type(path_or_state_dict).__name__}")
    sd, arch = convert_state_dict(obj)
    check_arch(arch, sd)
    try:
        model = RRDBNet(**arch)
    except ValueError as e:
        raise CheckpointError(f"checkpoint describes an unsupported RRDBNet {arch}: {e}") from e
    _check_fit(model, sd, strict, arch)
    model.load_state_dict(sd, strict=strict)
    return model.to(device).eval()


# --- saving ---------------------------------------------------------------------------------------------

def _unwrap_model(model) -> RRDBNet:
    # torch.compile (`_orig_mod`) and DataParallel/DDP (`module`) wrappers, nested in any order
    while not isinstance(model, RRDBNet):
        inner = next((getattr(model, a) for a in ("_orig_mod", "module")
                      if isinstance(getattr(model, a, None), nn.Module)), None)
        if inner is None:
            break
        model = inner
    if not isinstance(model, RRDBNet):
        raise TypeError(f"expected an RRDBNet, got {type(model).__name__}")
    return model


def _cpu_state_dict(model: RRDBNet) -> dict:
    return {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}


def save_generator(model, path) -> Path:
    """Save in the gansr_ext format: `.safetensors` (arch in the header metadata) or `.pth`/`.pt`."""
    model, path = _unwrap_model(model), Path(path).expanduser()
    sd = _cpu_state_dict(model)
    if path.suffix == ".safetensors":
        from safetensors.torch import save as save_safetensors

        meta = {"format": FORMAT_NAME, "format_version": str(FORMAT_VERSION), "arch": json.dumps(model.arch)}
        return atomic_write(path, lambda f: f.write(save_safetensors(sd, metadata=meta)))
    if path.suffix in _PTH_SUFFIXES:
        obj = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, "arch": model.arch, "params": sd}
        return atomic_write(path, lambda f: torch.save(obj, f))
    raise ValueError(f"save_generator: unknown suffix {path.suffix!r} for {path}; use .safetensors or "
                     f"one of {_PTH_SUFFIXES}")


def export_basicsr(model, path) -> Path:
    """Save `{"params_ema": state_dict}` as BasicSR / Real-ESRGAN tools expect (no metadata)."""
    model, path = _unwrap_model(model), Path(path).expanduser()
    return atomic_write(path, lambda f: torch.save({"params_ema": _cpu_state_dict(model)}, f))
