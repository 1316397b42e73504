"""Finding pretrained backbone weights (VGG, AlexNet, Inception) without downloading them.

Weights come from an explicit path or from the torch hub cache (`$TORCH_HOME/hub/checkpoints`,
default `~/.cache/torch/hub/checkpoints`). When neither has the file, the error names the file and
where to get it; nothing is downloaded behind the user's back.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from ._fileio import read_error_text


class MissingWeightsError(FileNotFoundError):
    """Pretrained weights are not on this machine."""


def hub_checkpoint_dir() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints"


def resolve_weights(filename: str, url: str, path: str | os.PathLike | None = None, what: str = "weights") -> Path:
    """Return the path of pretrained `filename`: `path` if given (must exist), else the hub cache copy.

    Raises MissingWeightsError naming the file, where it was looked for and the URL to fetch it from.
    """
    if path is not None:
        p = Path(path).expanduser()
        if not p.is_file():
            raise MissingWeightsError(f"{what}: file {p} does not exist (expected {filename}, from {url})")
        return p
    p = hub_checkpoint_dir() / filename
    if p.is_file():
        return p
    raise MissingWeightsError(
        f"{what}: pretrained file {filename} not found in the torch hub cache {hub_checkpoint_dir()}. "
        f"Download it from {url} into that folder (or pass its path explicitly), "
        "or ask for random weights explicitly with pretrained=False."
    )


class CorruptWeightsError(MissingWeightsError):
    """A pretrained weights file that exists but cannot be read (truncated download, wrong file): as good
    as missing, so the callers that report missing weights (metric unavailable, ...) report it too."""


def load_state_dict(filename: str, url: str, path: str | os.PathLike | None = None, what: str = "weights") -> dict:
    """resolve_weights + torch.load(weights_only=True) on CPU; an unreadable file is a CorruptWeightsError
    naming it and where to get it again."""
    found = resolve_weights(filename, url, path, what)
    try:
        return torch.load(found, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch.load reports a truncated file as a bare EOFError, KeyError...
        raise CorruptWeightsError(f"{what}: cannot read {found} (truncated or not {filename}? download it again "
                                  f"from {url}): {read_error_text(e)}") from e
