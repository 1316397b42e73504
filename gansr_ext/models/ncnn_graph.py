"""Is an ncnn graph an RRDBNet? Symbolic execution of the parsed `.param` layers (`ncnn_param.py`).

Every layer is run symbolically (each blob becomes a node of an expression graph, interned so that equal
sub-expressions get equal ids) and the result must be exactly the expression `RRDBNet.forward` builds for
the nb/nf/gc read off the graph, not guessed from a conv count. Layers understood: Input, Convolution
(3x3, stride 1, pad 1, bias, optionally LeakyReLU(0.2) fused: activation_type 2), Split, Concat
(channel axis), Eltwise (sum, coefficients), BinaryOp (add of two blobs, or multiply by a scalar), Interp
(nearest x2). Anything else (PReLU, PixelShuffle of the compact SRVGG models, int8 convs...) is refused
with the layer's name. Only the x4 RRDBNet (no pixel-unshuffle) exists as an ncnn model; x2/x1 are
refused. `match_rrdbnet` returns the architecture and each conv layer's BasicSR parameter name, which
`ncnn.read_weights` uses to name the `.bin` weights.
"""

from __future__ import annotations

from .ncnn_param import Layer, NcnnModelError

LRELU_SLOPE = 0.2
RESIDUAL_SCALE = 0.2


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
