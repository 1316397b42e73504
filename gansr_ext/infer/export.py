"""`gansr export onnx --model CKPT -o model.onnx [--opset 17]`: ONNX export of the generator.

The reference network (fused=False, fp32) is exported with dynamic batch, height and width. It uses
the TorchScript exporter (`dynamo=False`): the torch.export-based one needs `onnxscript`, which is
not a dependency, and RRDBNet has nothing it needs. For x2 / x1 models (pixel-unshuffled input)
H and W must be multiples of 2 / 4 at run time, as in PyTorch.
`check_onnx` runs the file with onnxruntime and compares it with the PyTorch model.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import torch
from torch import nn

DEFAULT_OPSET = 17


def _reference_model(model_or_path) -> nn.Module:
    from ..models import load_generator

    model = load_generator(model_or_path) if not isinstance(model_or_path, nn.Module) else model_or_path
    if callable(getattr(model, "set_fused", None)):
        model.set_fused(False)  # the compiled op has no ONNX form
    return model.float().cpu().eval()


def export_onnx(model_or_path, path, opset: int = DEFAULT_OPSET, example_size: int = 32) -> Path:
    """Write the reference network as ONNX (input "input" (N, C, H, W), output "output")."""
    model = _reference_model(model_or_path)
    multiple = int(getattr(model, "unshuffle", 1))
    side = max(example_size // multiple, 1) * multiple
    example = torch.rand(1, int(getattr(model, "in_ch", 3)), side, side)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    axes = {0: "batch", 2: "height", 3: "width"}
    out_axes = {0: "batch", 2: "out_height", 3: "out_width"}
    with warnings.catch_warnings():
        # the legacy-exporter deprecation notice, and tracer notes about RRDBNet's (constant) shape checks
        warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export.*")
        warnings.filterwarnings("ignore", message=".*will be removed.*")
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        torch.onnx.export(model, (example,), str(path), dynamo=False, opset_version=opset,
                          input_names=["input"], output_names=["output"],
                          dynamic_axes={"input": axes, "output": out_axes})
    return path


def check_onnx(path, model, sizes=((1, 24, 32), (2, 40, 28)), atol: float = 1e-4) -> list[float]:
    """Max |onnxruntime - PyTorch| for random inputs of each (N, H, W) in `sizes`; raises
    AssertionError naming the size when one exceeds `atol`. Needs onnxruntime."""
    try:
        import onnxruntime as ort
    except ImportError as e:
        raise ImportError("check_onnx needs onnxruntime (pip install onnxruntime)") from e
    model = _reference_model(model)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    in_ch = int(getattr(model, "in_ch", 3))
    errors = []
    for n, h, w in sizes:
        x = torch.rand(n, in_ch, h, w)
        with torch.inference_mode():
            ref = model(x).numpy()
        got = session.run(None, {"input": x.numpy()})[0]
        if got.shape != ref.shape:
            raise AssertionError(f"check_onnx: output shape {got.shape} != PyTorch {ref.shape} "
                                 f"for input {tuple(x.shape)}")
        err = float(abs(got - ref).max())
        if err > atol:
            raise AssertionError(f"check_onnx: max abs difference {err:.3g} > {atol:g} for input {tuple(x.shape)}")
        errors.append(err)
    return errors


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("format", choices=("onnx",), help="export format")
    parser.add_argument("--model", required=True, metavar="CKPT", help="generator checkpoint")
    parser.add_argument("-o", "--output", required=True, help="output file, e.g. model.onnx")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset (default {DEFAULT_OPSET})")
    parser.add_argument("--no-check", action="store_true",
                        help="skip comparing the exported model with PyTorch (done when onnxruntime is installed)")


def run(args) -> int:
    try:
        model = _reference_model(args.model)
    except Exception as e:  # noqa: BLE001 - report any load failure with its message
        print(f"gansr export: error: cannot load model {args.model}: {type(e).__name__}: {e}", file=sys.stderr)
        return 2
    path = export_onnx(model, args.output, opset=args.opset)
    print(f"gansr export: wrote {path}")
    if args.no_check:
        return 0
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        print("gansr export: onnxruntime not installed; output not checked", file=sys.stderr)
        return 0
    multiple = int(getattr(model, "unshuffle", 1))
    sizes = ((1, 8 * multiple, 12 * multiple), (2, 10 * multiple, 6 * multiple))
    try:
        errors = check_onnx(path, model, sizes=sizes)
    except AssertionError as e:
        print(f"gansr export: error: {e}", file=sys.stderr)
        return 1
    print(f"gansr export: onnxruntime matches PyTorch (max abs difference {max(errors):.2g})")
    return 0
