"""`gansr eval`: models and test sets from the command line, tables on stdout, skipped images on stderr."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

from gansr_ext.metrics.spectrum import KINDS as SPECTRAL_KINDS

from .runner import EvalOptions, evaluate
from .scoring import METRICS


def _named_paths(values, what: str) -> dict:
    """'NAME=PATH' or 'PATH' (name = file stem / folder name), unique names. A model may also be a
    pretrained model's name (`gansr models`): its package must be installed."""
    from gansr_ext.models import zoo

    out = {}
    for v in values or []:
        name, path = v.split("=", 1) if "=" in v and not Path(v).exists() else ("", v)
        name = name or Path(path.rstrip("/")).stem or path
        base, i = name, 2
        while name in out:
            name, i = f"{base}_{i}", i + 1
        if what == "model" and zoo.is_zoo_name(path):
            zoo.model_files(path)  # MissingModelPackageError naming the extra, before any work
        elif not Path(path).exists():
            hint = f" and is not a pretrained model's name ({', '.join(zoo.ZOO)})" if what == "model" else ""
            raise FileNotFoundError(f"gansr eval: {what} {path} does not exist{hint}")
        out[name] = path
    return out


def add_arguments(parser) -> None:
    parser.add_argument("--model", action="append", default=[], metavar="[NAME=]CKPT",
                        help="generator checkpoint or pretrained model's name (`gansr models`), repeatable; "
                             "bicubic is always evaluated")
    parser.add_argument("--data", action="append", required=True, metavar="[NAME=]DIR",
                        help="test set: a folder of HR images, or with HR/ and LR/ (LRbicx4/) subfolders (repeatable)")
    parser.add_argument("--out", required=True, metavar="OUT_DIR", help="output folder for tables and figures")
    parser.add_argument("--scale", type=int, default=4, help="SR factor; also the border shave for PSNR/SSIM/NIQE")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda if available)")
    parser.add_argument("--metrics", nargs="+", choices=METRICS, default=list(METRICS))
    parser.add_argument("--crops", nargs="+", default=[], metavar="NAME:X,Y,SIZE",
                        help="crops (HR pixels) shown side by side; default: centre of each set's first image")
    parser.add_argument("--fid-weights", default=None, help="path to the FID Inception weights (else torch hub cache)")
    parser.add_argument("--lpips-weights", default=None,
                        help="path to the LPIPS backbone weights (else torch hub cache)")
    parser.add_argument("--lpips-net", default="alex", choices=("alex", "vgg", "squeeze"))
    parser.add_argument("--random-weights", action="store_true",
                        help="FID / LPIPS with random networks (smoke tests only; numbers not comparable)")
    parser.add_argument("--tile", type=int, default=None, help="tile size in LR pixels for large images")
    parser.add_argument("--dtype", default="fp32", choices=("fp32", "fp16", "bf16"))
    parser.add_argument("--spectral-kind", default="abs", choices=SPECTRAL_KINDS,
                        help="spectral discrepancy: abs / squared (log10 mean power) or durall (Durall et al. "
                             "CVPR 2020: normalised 1-D log spectra, squared difference; the scale of their figures)")
    parser.add_argument("--save-images", action="store_true", help="also write the SR images as PNG")
    parser.add_argument("--no-progress", action="store_true")


def _options(args) -> EvalOptions:
    return EvalOptions(scale=args.scale, device=args.device, metrics=args.metrics, crops=args.crops,
                       pretrained=not args.random_weights, fid_weights=args.fid_weights,
                       lpips_weights=args.lpips_weights, lpips_net=args.lpips_net, tile=args.tile, dtype=args.dtype,
                       save_images=args.save_images, progress=not args.no_progress, spectral_kind=args.spectral_kind)


def run(args) -> int:
    try:
        models, datasets = _named_paths(args.model, "model"), _named_paths(args.data, "data folder")
    except (FileNotFoundError, ImportError) as e:  # a missing file, or a zoo model's package not installed
        print(f"gansr eval: error: {e}", file=sys.stderr)
        return 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=UserWarning)  # scipy sqrtm / torchvision chatter
        result = evaluate(models, datasets, args.out, _options(args))
    print(result["markdown"])
    print(f"written to {Path(args.out).resolve()}")
    skipped = [why for res in result["datasets"].values() for why in res["skipped"].values()]
    for why in skipped:  # as `gansr upscale`: each unusable image on stderr, exit status 1
        print(f"gansr eval: skipped {why}", file=sys.stderr)
    if skipped:
        print(f"gansr eval: {len(skipped)} image(s) skipped (see above); the tables use the others", file=sys.stderr)
    return 1 if skipped else 0
