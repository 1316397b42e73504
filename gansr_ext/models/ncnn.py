"""Import RRDBNet generators shipped for the ncnn engine: a text `.param` graph plus a `.bin` of weights.

Where things live: `ncnn_param.py` parses the `.param` text into layers (`parse_param`, `Layer`,
`NcnnModelError`); `ncnn_graph.py` checks, by symbolic execution, that the layers compute exactly
RRDBNet's forward and names each conv (`match_rrdbnet`); this module reads the `.bin` weights into a
BasicSR-named state dict (`read_weights`) and holds the public API (`read_ncnn`, `load_ncnn_generator`,
`ncnn_pair`, `is_ncnn_param`).

The `.bin` holds the layers' weights in layer order; only Convolution layers have any here. Each conv's
weights are a 4-byte storage tag then the [out][in][kh][kw] array (torch's order): tag 0x01306B47 =
fp16 (padded to 4 bytes), tag 0 = fp32; then, with a bias, `out` fp32 values with no tag. Other tags
(int8 0x000D4B38, the 256-entry quantisation table, scaled data 0x0002C056) are refused, as is a file
whose size is not exactly what the graph needs, and non-finite weights (a corrupted file).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from .ncnn_graph import match_rrdbnet
from .ncnn_param import NCNN_MAGIC, Layer, NcnnModelError, parse_param
from .rrdbnet import RRDBNet

__all__ = ["NCNN_MAGIC", "Layer", "NcnnModelError", "is_ncnn_param", "load_ncnn_generator", "match_rrdbnet",
           "ncnn_pair", "parse_param", "read_ncnn", "read_weights"]

TAG_FP16 = 0x01306B47
TAG_FP32 = 0x00000000
_OTHER_TAGS = {0x000D4B38: "int8-quantised", 0x0002C056: "fp32 with extra scaling"}


# --- .bin weights -----------------------------------------------------------------------------------------


class _Reader:
    def __init__(self, data: bytes, where: str):
        self.data, self.pos, self.where = data, 0, where

    def take(self, n: int, what: str) -> bytes:
        if self.pos + n > len(self.data):
            raise NcnnModelError(f"{self.where}: truncated: {what} needs bytes {self.pos}..{self.pos + n}, the "
                                 f"file has {len(self.data)}")
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def weights(self, count: int, what: str) -> np.ndarray:
        """A tagged weight array (ncnn ModelBin::load type 0) as float32."""
        tag = int.from_bytes(self.take(4, f"{what} storage tag"), "little")
        if tag == TAG_FP16:
            raw = self.take((count * 2 + 3) // 4 * 4, what)  # padded to 4 bytes
            return np.frombuffer(raw, dtype="<f2", count=count).astype(np.float32)
        if tag == TAG_FP32:
            return np.frombuffer(self.take(count * 4, what), dtype="<f4").astype(np.float32)
        kind = _OTHER_TAGS.get(tag, "table-quantised (8-bit indices)" if sum(tag.to_bytes(4, "little")) else
                               "unknown")
        raise NcnnModelError(f"{self.where}: {what}: storage tag {tag:#010x} ({kind}) at byte {self.pos - 4}; "
                             "only fp16 (0x01306b47) and fp32 (0) weights are supported")

    def floats(self, count: int, what: str) -> np.ndarray:
        return np.frombuffer(self.take(count * 4, what), dtype="<f4").astype(np.float32)


def read_weights(data: bytes, conv_names: list, where: str = ".bin") -> dict:
    """BasicSR-named state dict from the .bin bytes; conv_names: [(conv layer, prefix)] in file order."""
    reader, sd = _Reader(data, where), {}
    for layer, name in conv_names:
        out, size = layer.params[0], layer.params[6]
        weight = reader.weights(size, f"{name}.weight (layer {layer.name})")
        bias = reader.floats(out, f"{name}.bias (layer {layer.name})")
        for key, value, shape in ((f"{name}.weight", weight, (out, size // (out * 9), 3, 3)),
                                  (f"{name}.bias", bias, (out,))):
            if not np.isfinite(value).all():
                raise NcnnModelError(f"{where}: {key} has non-finite values (corrupted file)")
            sd[key] = torch.from_numpy(value.reshape(shape).copy())
    if reader.pos != len(data):
        raise NcnnModelError(f"{where}: the graph's weights take {reader.pos} bytes but the file has "
                             f"{len(data)} (a .bin from another model?)")
    return sd


# --- public API -------------------------------------------------------------------------------------------


def ncnn_pair(param_path, bin_path=None) -> tuple[Path, Path]:
    """(.param, .bin) paths: the .bin defaults to the .param's name with .bin; both must exist."""
    param = Path(param_path).expanduser()
    weights = Path(bin_path).expanduser() if bin_path is not None else param.with_suffix(".bin")
    for p in (param, weights):
        if not p.is_file():
            raise FileNotFoundError(f"ncnn model file {p} does not exist")
    return param, weights


def read_ncnn(param_path, bin_path=None) -> tuple[dict, dict]:
    """-> (state dict with BasicSR names, RRDBNet kwargs) of an ncnn RRDBNet model."""
    param, weights = ncnn_pair(param_path, bin_path)
    try:
        text = param.read_text(encoding="ascii")
    except UnicodeDecodeError:
        raise NcnnModelError(f"{param}: not an ncnn text .param (binary data; .param.bin is not supported)") \
            from None
    arch, conv_names = match_rrdbnet(parse_param(text, str(param)))
    return read_weights(weights.read_bytes(), conv_names, str(weights)), arch


def load_ncnn_generator(param_path, bin_path=None, device="cpu") -> RRDBNet:
    """RRDBNet with the weights of an ncnn model (strict load), in eval mode on `device`."""
    sd, arch = read_ncnn(param_path, bin_path)
    model = RRDBNet(**arch)
    model.load_state_dict(sd, strict=True)
    return model.to(device).eval()


def is_ncnn_param(path) -> bool:
    return isinstance(path, (str, os.PathLike)) and Path(path).suffix == ".param"
