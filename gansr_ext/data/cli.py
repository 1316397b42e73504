"""`gansr data ...`: prepare, cut into sub-images, download, list known datasets, write samples."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="data_command", metavar="ACTION", required=True)

    p = sub.add_parser("prepare", help="modcrop HR, make bicubic LR (and optional sub-images)")
    p.add_argument("hr_dir", help="folder of HR images")
    p.add_argument("out_root", help="output folder (HR/, LR_bicubic/X<scale>/, *_sub/)")
    p.add_argument("--scale", type=int, default=4)
    p.add_argument("--crop", type=int, default=None, help="also cut HR/LR into crop x crop sub-images")
    p.add_argument("--step", type=int, default=None, help="sub-image stride (default crop / 2)")
    p.add_argument("--thresh", type=int, default=0, help="min leftover that gets an extra border crop")

    p = sub.add_parser("subimages", help="cut images into overlapping sub-images (BasicSR DIV2K style)")
    p.add_argument("in_dir")
    p.add_argument("out_dir")
    p.add_argument("--crop", type=int, default=480)
    p.add_argument("--step", type=int, default=240)
    p.add_argument("--thresh", type=int, default=0)

    p = sub.add_parser("download", help="download, verify and unpack a known dataset archive")
    p.add_argument("name", help="a name from `gansr data list`")
    p.add_argument("--root", required=True, help="folder to download and unpack into")
    p.add_argument("--no-extract", action="store_true", help="keep the archive only")
    p.add_argument("--url", default=None, help="override the URL (a mirror)")
    p.add_argument("--sha256", default=None, help="expected sha256 of the archive")

    sub.add_parser("list", help="list known datasets, their layouts and downloads")

    p = sub.add_parser("samples", help="write the built-in sample images as PNG (train/ and val/)")
    p.add_argument("out_root")


def run(args) -> int:
    import sys

    from .downloader import DownloadError

    try:
        return _run_action(args)
    except (ValueError, OSError, DownloadError) as e:
        print(f"gansr data {args.data_command}: error: {e}", file=sys.stderr)
        return 2


def _run_action(args) -> int:
    cmd = args.data_command
    if cmd == "prepare":
        from .prepare import prepare_dataset

        dirs = prepare_dataset(args.hr_dir, args.out_root, scale=args.scale, crop=args.crop, step=args.step,
                               thresh=args.thresh)
        print(f"HR: {dirs['hr']}\nLR: {dirs['lr']}")
    elif cmd == "subimages":
        from .prepare import extract_subimages

        written = extract_subimages(args.in_dir, args.out_dir, crop=args.crop, step=args.step, thresh=args.thresh)
        print(f"wrote {len(written)} sub-images to {args.out_dir}")
    elif cmd == "download":
        from .downloader import download

        out = download(args.name, args.root, url=args.url, sha256=args.sha256, extract=not args.no_extract)
        print(out)
    elif cmd == "list":
        from .downloader import DOWNLOADS
        from .prepare import DATASETS

        print("datasets (layouts under a root):")
        for info in DATASETS.values():
            lr = ", ".join(info.lr_dirs) or "none (make with `gansr data prepare`)"
            print(f"  {info.name:12s} {info.split:5s} {info.images:6d} images  HR: {', '.join(info.hr_dirs)}  "
                  f"LR: {lr}\n  {'':12s} {info.note}")
        print("downloads (`gansr data download NAME --root DIR`):")
        for name, d in DOWNLOADS.items():
            sha = d.sha256 or "sha256 unknown"
            print(f"  {name:28s} {d.approx_size:8s} {d.url}  ({sha})")
    elif cmd == "samples":
        from .samples import write_sample_folders

        train, val = write_sample_folders(args.out_root)
        print(f"train: {train}\nval: {val}")
    return 0
