"""Import RRDBNet generators shipped for the ncnn engine: a text `.param` graph plus a `.bin` of weights.

The `.param` text (first line the magic 7767517, then "layer_count blob_count", then one line per layer:
`Type name n_in n_out in_blobs... out_blobs... key=value...`) is checked to BE an RRDBNet, not guessed
from a conv count: every layer is run symbolically (each blob becomes a node of an expression graph,
interned so that equal sub-expressions get equal ids) and the result must be exactly the expression
`RRDBNet.forward` builds for the nb/nf/gc read off the graph. Layers understood: Input, Convolution (3x3,
stride 1, pad 1, bias, optionally LeakyReLU(0.2) fused: activation_type 2), Split, Concat (channel
axis), Eltwise (sum, coefficients), BinaryOp (add of two blobs, or multiply by a scalar), Interp
(nearest x2). Anything else (PReLU, PixelShuffle of the compact SRVGG models, int8 convs...) is refused
with the layer's name. Only the x4 RRDBNet (no pixel-unshuffle) exists as an ncnn model; x2/x1 are refused.

The `.bin` holds the layers' weights in layer order; only Convolution layers have any here. Each conv's
weights are a 4-byte storage tag then the [out][in][kh][kw] array (torch's order): tag 0x01306B47 =
fp16 (padded to 4 bytes), tag 0 = fp32; then, with a bias, `out` fp32 values with no tag. Other tags
(int8 0x000D4B38, the 256-entry quantisation table, scaled data 0x0002C056) are refused, as is a file
whose size is not exactly what the graph needs, and non-finite weights (a corrupted file).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
import torch

from .checkpoint import CheckpointError
from .rrdbnet import RRDBNet

NCNN_MAGIC = 7767517
TAG_FP16 = 0x01306B47
TAG_FP32 = 0x00000000
_OTHER_TAGS = {0x000D4B38: "int8-quantised", 0x0002C056: "fp32 with extra scaling"}
LRELU_SLOPE = 0.2
RESIDUAL_SCALE = 0.2


class NcnnModelError(CheckpointError):
    """An ncnn model that cannot be read, or that is not an RRDBNet."""


@dataclasses.dataclass
class Layer:
    type: str
    name: str
    bottoms: list
    tops: list
    params: dict  # int key -> int | float | list (array params, keys -23300 - k stored as k)


# --- .param text ------------------------------------------------------------------------------------------

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


# --- symbolic execution -----------------------------------------------------------------------------------

class _Terms:
    """Interned expression nodes: equal (op, operands) get one id, so whole graphs compare as ints."""

    def __init__(self):
        self.ids, self.channels, self.keys = {}, [], []

    def _node(self, key: tuple, channels: int) -> int:
        if key not in self.ids:
            self.ids[key] = len(self.keys)
            self.keys.append(key)
            self.channels.append(channels)
        return self.ids[key]

    def input(self, channels: int) -> int:
        return self._node(("input", channels), channels)

    def conv(self, src: int, out_ch: int) -> int:
        return self._node(("conv3x3", src, out_ch), out_ch)

    def lrelu(self, src: int) -> int:
        return self._node(("lrelu", src, LRELU_SLOPE), self.channels[src])

    def cat(self, srcs) -> int:
        return self._node(("cat", tuple(srcs)), sum(self.channels[s] for s in srcs))

    def up2(self, src: int) -> int:
        return self._node(("nearest2x", src), self.channels[src])

    def lin(self, pairs) -> int:
        """sum(coef * src); a single-operand sum inside (a scaling) is folded into its coefficient."""
        flat = {}
        for src, coef in pairs:
            key = self.keys[src]
            if key[0] == "lin" and len(key[1]) == 1:
                (src, inner), = key[1]
                coef *= inner
            flat[src] = round(flat.get(src, 0.0) + float(coef), 6)  # 2.000000e-01 in text vs 0.2 in code
        if list(flat.values()) == [1.0]:  # x * 1: x itself
            return next(iter(flat))
        chans = {self.channels[s] for s in flat}
        if len(chans) != 1:
            raise NcnnModelError(f"a sum of blobs with different channel counts {sorted(chans)}")
        return self._node(("lin", tuple(sorted(flat.items()))), chans.pop())


def rrdbnet_terms(t: _Terms, in_ch: int, out_ch: int, nf: int, nb: int, gc: int) -> tuple[int, dict]:
    """RRDBNet.forward (scale 4) as interned nodes -> (output node, {conv node: parameter prefix})."""
    names = {}

    def conv(src, out, name, act):
        node = t.conv(src, out)
        names[node] = name
        return t.lrelu(node) if act else node

    def rdb(x, prefix):
        feats = [x]
        for k in range(1, 5):
            feats.append(conv(t.cat(feats) if k > 1 else x, gc, f"{prefix}.conv{k}", act=True))
        return t.lin([(conv(t.cat(feats), nf, f"{prefix}.conv5", act=False), RESIDUAL_SCALE), (x, 1.0)])

    feat = conv(t.input(in_ch), nf, "conv_first", act=False)
    trunk = feat
    for i in range(nb):
        block_in = trunk
        for j in (1, 2, 3):
            trunk = rdb(trunk, f"body.{i}.rdb{j}")
        trunk = t.lin([(trunk, RESIDUAL_SCALE), (block_in, 1.0)])
    feat = t.lin([(feat, 1.0), (conv(trunk, nf, "conv_body", act=False), 1.0)])
    feat = conv(t.up2(feat), nf, "conv_up1", act=True)
    feat = conv(t.up2(feat), nf, "conv_up2", act=True)
    return conv(conv(feat, nf, "conv_hr", act=True), out_ch, "conv_last", act=False), names


def _check_params(layer: Layer, allowed: dict) -> None:
    """Every parameter must be known and hold the value RRDBNet needs (allowed: key -> accepted values)."""
    for key, value in layer.params.items():
        if key not in allowed:
            raise NcnnModelError(f"{layer.type} {layer.name}: parameter {key}={value} is not supported "
                                 "(not an RRDBNet layer)")
        if value not in allowed[key]:
            raise NcnnModelError(f"{layer.type} {layer.name}: parameter {key}={value}; RRDBNet needs one of "
                                 f"{allowed[key]}")


def _close(value, target) -> bool:
    return isinstance(value, (int, float)) and abs(value - target) < 1e-6


class _Near:
    """`value in _Near(x)` for float parameters written with a few digits."""

    def __init__(self, *targets):
        self.targets = targets

    def __contains__(self, value) -> bool:
        return any(_close(value, t) for t in self.targets)

    def __repr__(self) -> str:
        return repr(list(self.targets))


class _AnyValue:
    """`value in _ANY` for parameters checked elsewhere (sizes, arrays)."""

    def __contains__(self, value) -> bool:
        return True

    def __repr__(self) -> str:
        return "any"


_ANY = _AnyValue()
# Convolution: 0 num_output, 1/11 kernel, 2/12 dilation, 3/13 stride, 4/14/15/16 pad, 5 bias_term,
# 6 weight_data_size, 8 int8_scale_term, 9 activation_type (2 = leaky relu), 10 its params, 18 pad value
_CONV_PARAMS = {0: _ANY, 1: (3,), 11: (3,), 2: (1,), 12: (1,), 3: (1,), 13: (1,), 4: (1,), 14: (1,), 15: (1,),
                16: (1,), 18: _Near(0.0), 5: (1,), 6: _ANY, 8: (0,), 9: (0, 2), 10: _ANY}


def _conv_layer(t: _Terms, layer: Layer, src: int) -> tuple[int, int]:
    """-> (conv node, output node incl. the fused activation)."""
    _check_params(layer, _CONV_PARAMS)
    p = layer.params
    out, size, in_ch = p.get(0, 0), p.get(6, 0), t.channels[src]
    if p.get(5) != 1 or out < 1 or size != out * in_ch * 9:
        raise NcnnModelError(f"Convolution {layer.name}: needs a bias and {out}x{in_ch}x3x3 weights for its "
                             f"{in_ch}-channel input, has bias_term={p.get(5, 0)} weight_data_size={size}")
    node = t.conv(src, out)
    if p.get(9, 0) == 0:
        return node, node
    slope = p.get(10)
    if not isinstance(slope, list) or len(slope) != 1 or not _close(slope[0], LRELU_SLOPE):
        raise NcnnModelError(f"Convolution {layer.name}: fused LeakyReLU slope {p.get(10)}; RRDBNet uses "
                             f"{LRELU_SLOPE}")
    return node, t.lrelu(node)


def _eltwise(t: _Terms, layer: Layer, srcs) -> int:
    _check_params(layer, {0: (1,), 1: _ANY})  # 0 op_type: 1 = sum; 1 coefficients
    coefs = layer.params.get(1, [1.0] * len(srcs))
    if not isinstance(coefs, list) or len(coefs) != len(srcs):
        raise NcnnModelError(f"Eltwise {layer.name}: coefficients {coefs} for {len(srcs)} inputs")
    return t.lin(zip(srcs, coefs))


def _binary_op(t: _Terms, layer: Layer, srcs) -> int:
    p = layer.params
    _check_params(layer, {0: (0, 2), 1: (0, 1), 2: _ANY})  # 0 op_type: add / mul; 1 with_scalar; 2 scalar
    op, with_scalar = p.get(0, 0), p.get(1, 0)
    if op == 0 and not with_scalar and len(srcs) == 2:
        return t.lin([(srcs[0], 1.0), (srcs[1], 1.0)])
    if op == 2 and with_scalar and len(srcs) == 1:
        return t.lin([(srcs[0], float(p.get(2, 0.0)))])
    raise NcnnModelError(f"BinaryOp {layer.name}: op_type={op} with_scalar={with_scalar} on {len(srcs)} "
                         "inputs; RRDBNet has only blob + blob and blob * scalar")


def _interp(t: _Terms, layer: Layer, src: int) -> int:
    # 0 resize_type (1 nearest), 1/2 height/width scale, 3/4 output size, 5 dynamic size, 6 align corners
    _check_params(layer, {0: (1,), 1: _Near(2.0), 2: _Near(2.0), 3: (0,), 4: (0,), 5: (0,), 6: (0,)})
    if not all(k in layer.params for k in (0, 1, 2)):  # ncnn's defaults: no resize type, scale 1
        raise NcnnModelError(f"Interp {layer.name}: RRDBNet upsamples by exactly 2 (nearest)")
    return t.up2(src)


def _run_layer(t: _Terms, layer: Layer, srcs: list, convs: list, in_ch: int) -> list:
    """Output nodes of one layer (its tops, in order); records conv layers in `convs`."""
    n_in = {"Input": 0, "Convolution": 1, "Split": 1, "Interp": 1}.get(layer.type)
    if n_in is not None and len(srcs) != n_in:
        raise NcnnModelError(f"{layer.type} {layer.name}: {len(srcs)} inputs, expected {n_in}")
    if layer.type != "Split" and len(layer.tops) != 1:
        raise NcnnModelError(f"{layer.type} {layer.name}: {len(layer.tops)} outputs, expected 1")
    if layer.type == "Input":
        _check_params(layer, {0: _ANY, 1: _ANY, 2: (in_ch,)})  # w, h, c (c usually absent)
        return [t.input(in_ch)]
    if layer.type == "Split":
        return list(srcs) * len(layer.tops)
    if layer.type == "Convolution":
        node, out = _conv_layer(t, layer, srcs[0])
        convs.append((layer, node))
        return [out]
    if layer.type == "Concat":
        _check_params(layer, {0: (0,)})  # axis 0 = channels
        return [t.cat(srcs)]
    handlers = {"Eltwise": _eltwise, "BinaryOp": _binary_op}
    if layer.type in handlers:
        return [handlers[layer.type](t, layer, srcs)]
    if layer.type == "Interp":
        return [_interp(t, layer, srcs[0])]
    raise NcnnModelError(f"layer {layer.name} is a {layer.type}: not an RRDBNet op (RRDBNet has only "
                         "Convolution, Concat, Eltwise/BinaryOp, Interp, Split); other architectures "
                         "such as realesr-animevideov3 (SRVGGNetCompact) are not supported")


def _in_channels(layers: list[Layer]) -> int:
    """Input channels: what the first conv's weight count implies (nf*in*9); an Input's c must agree."""
    conv = next((ly for ly in layers if ly.type == "Convolution"), None)
    if conv is None:
        raise NcnnModelError("the graph has no Convolution layer: not an RRDBNet")
    out, size = conv.params.get(0, 0), conv.params.get(6, 0)
    if out < 1 or size % (out * 9):
        raise NcnnModelError(f"Convolution {conv.name}: weight_data_size {size} is not {out}x(in)x3x3")
    return size // (out * 9)


def _walk(layers: list[Layer], t: _Terms) -> tuple[int, list]:
    """Symbolic run of the whole graph -> (output node, [(conv layer, conv node)] in file order)."""
    in_ch = _in_channels(layers)
    values, consumers, convs, inputs = {}, {}, [], 0
    for layer in layers:
        missing = [b for b in layer.bottoms if b not in values]
        if missing:
            raise NcnnModelError(f"{layer.type} {layer.name}: input blob {missing[0]!r} is used before any "
                                 "layer produces it")
        for b in layer.bottoms:
            consumers[b] = consumers.get(b, 0) + 1
        outs = _run_layer(t, layer, [values[b] for b in layer.bottoms], convs, in_ch)
        inputs += layer.type == "Input"
        for top, node in zip(layer.tops, outs):
            if top in values:
                raise NcnnModelError(f"{layer.type} {layer.name}: blob {top!r} is produced twice")
            values[top] = node
    unused = [b for b in values if b not in consumers]
    if inputs != 1 or len(unused) != 1:
        raise NcnnModelError(f"the graph must have one Input and one output blob; it has {inputs} Input "
                             f"layer(s) and unused blobs {unused[:5]}")
    return values[unused[0]], convs


def _infer_arch(convs: list, t: _Terms, in_ch: int) -> dict:
    """nb/nf/gc from the conv layers: conv_first, 15 per RRDB, then body/up1/up2/hr/last."""
    if len(convs) < 21 or (len(convs) - 6) % 15:
        raise NcnnModelError(f"{len(convs)} convolutions; an RRDBNet has 15*nb + 6")
    outs = [t.channels[node] for _, node in convs]
    return dict(in_ch=in_ch, out_ch=outs[-1], scale=4, nf=outs[0], nb=(len(convs) - 6) // 15, gc=outs[1])


def match_rrdbnet(layers: list[Layer]) -> tuple[dict, list]:
    """Verify the graph computes RRDBNet -> (arch, [(conv layer, parameter prefix)] in file order)."""
    t = _Terms()
    out, convs = _walk(layers, t)
    arch = _infer_arch(convs, t, _in_channels(layers))
    expected_out, names = rrdbnet_terms(t, **{k: arch[k] for k in ("in_ch", "out_ch", "nf", "nb", "gc")})
    for layer, node in convs:
        if node not in names:
            raise NcnnModelError(f"Convolution {layer.name}: its input is not what RRDBNet{arch} has at any "
                                 "conv (a rewired, reordered or foreign graph)")
    if len({node for _, node in convs}) != len(names) or out != expected_out:
        raise NcnnModelError(f"the graph's convs are RRDBNet{arch}'s, but its output is not RRDBNet's "
                             "(a residual, scaling, concat order or upsampling differs)")
    return arch, [(layer, names[node]) for layer, node in convs]


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
