"""Inference: `Upscaler` (tiled, blended, streamed from CPU memory), the `gansr upscale` CLI and
ONNX export (`gansr export onnx`)."""

from .convert import NonFiniteOutputError
from .export import check_onnx, export_onnx
from .tiling import plan_tiles
from .upscaler import ImageTooLargeError, Upscaler

__all__ = ["ImageTooLargeError", "NonFiniteOutputError", "Upscaler", "check_onnx", "export_onnx", "plan_tiles"]
