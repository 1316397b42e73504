"""The ncnn text `.param` format: one `Layer` per line, parsed and counted, nothing interpreted.

The text (first line the magic 7767517, then "layer_count blob_count", then one line per layer:
`Type name n_in n_out in_blobs... out_blobs... key=value...`; a key <= -23300 holds an array
`-23300-k=n,v1,...,vn`, stored under k) is checked against its header counts. What the layers compute
is `ncnn_graph.py`'s business; the weights (`.bin`) and the public API are in `ncnn.py`.
"""

from __future__ import annotations

import dataclasses

from .checkpoint import CheckpointError

NCNN_MAGIC = 7767517


class NcnnModelError(CheckpointError):
    """An ncnn model that cannot be read, or that is not an RRDBNet."""


@dataclasses.dataclass
class Layer:
    type: str
    name: str
    bottoms: list
    tops: list
    params: dict  # int key -> int | float | list (array params, keys -23300 - k stored as k)


def _number(text: str, where: str):
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    raise NcnnModelError(f"{where}: parameter value {text!r} is not a number")


def _parse_params(items, where: str) -> dict:
    params = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.lstrip("-").isdigit():
            raise NcnnModelError(f"{where}: malformed parameter {item!r} (expected key=value)")
        k = int(key)
        if k <= -23300:  # array: -23300-k=n,v1,...,vn
            n, *values = value.split(",")
            values = [_number(v, where) for v in values]
            if _number(n, where) != len(values):
                raise NcnnModelError(f"{where}: array parameter {item!r} announces {n} values, has {len(values)}")
            params[-23300 - k] = values
        else:
            params[k] = _number(value, where)
    return params


def _parse_layer(line: str, where: str) -> Layer:
    fields = line.split()
    if len(fields) < 4 or not (fields[2].isdigit() and fields[3].isdigit()):
        raise NcnnModelError(f"{where}: malformed layer line {line!r}")
    n_in, n_out = int(fields[2]), int(fields[3])
    blobs = fields[4:4 + n_in + n_out]
    if len(blobs) != n_in + n_out:
        raise NcnnModelError(f"{where}: layer {fields[1]} announces {n_in}+{n_out} blobs, has {len(blobs)}")
    where = f"{where} (layer {fields[1]})"
    return Layer(fields[0], fields[1], blobs[:n_in], blobs[n_in:], _parse_params(fields[4 + n_in + n_out:], where))


def parse_param(text: str, where: str = ".param") -> list[Layer]:
    """The layers of an ncnn text `.param`, with the header counts checked."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines or lines[0].strip() != str(NCNN_MAGIC):
        raise NcnnModelError(f"{where}: not an ncnn text .param (first line must be {NCNN_MAGIC}; the binary "
                             ".param.bin form is not supported)")
    counts = lines[1].split() if len(lines) > 1 else []
    if len(counts) != 2 or not all(c.isdigit() for c in counts):
        raise NcnnModelError(f"{where}: second line must be 'layer_count blob_count', got {lines[1:2]}")
    layers = [_parse_layer(ln, f"{where}:{i + 3}") for i, ln in enumerate(lines[2:])]
    blobs = {b for layer in layers for b in layer.bottoms + layer.tops}
    if (len(layers), len(blobs)) != (int(counts[0]), int(counts[1])):
        raise NcnnModelError(f"{where}: header says {counts[0]} layers and {counts[1]} blobs, the file has "
                             f"{len(layers)} layers and {len(blobs)} blobs (truncated or edited?)")
    return layers
