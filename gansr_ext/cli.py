"""`gansr` command line: one sub-command per module, imported only when used.

Each sub-command module exposes `add_arguments(parser)` and `run(args) -> int`.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# name -> (module, one-line help)
COMMANDS = {
    "train": ("gansr_ext.train.cli", "train a model from a YAML config (or resume a run)"),
    "demo": ("gansr_ext.train.demo", "train a small model on embedded sample images and write a report"),
    "eval": ("gansr_ext.evaluate", "evaluate models on test sets (NIQE, FID, LPIPS, PSNR, SSIM, BRISQUE, spectrum)"),
    "data": ("gansr_ext.data.cli", "prepare or download datasets"),
    "upscale": ("gansr_ext.infer.cli", "upscale images with a trained model"),
    "models": ("gansr_ext.models.cli", "list the pretrained generators (model zoo); convert ncnn models"),
    "export": ("gansr_ext.infer.export", "export a model (ONNX)"),
    "info": ("gansr_ext.cli", "print build information of the compiled extension"),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:  # for `gansr info`
    pass


def run(args) -> int:  # `gansr info`
    import json

    from gansr_ext import build_info

    print(json.dumps(build_info(), indent=2))
    return 0


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = argparse.ArgumentParser(prog="gansr", description="GAN super-resolution with fused ops")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    if not argv or argv[0] not in COMMANDS:  # no command, -h/--help or an unknown one
        parser.print_help()
        return 0 if not argv or argv[0] in ("-h", "--help") else 2
    name = argv[0]
    module = importlib.import_module(COMMANDS[name][0])
    cmd_parser = argparse.ArgumentParser(prog=f"gansr {name}", description=COMMANDS[name][1])
    module.add_arguments(cmd_parser)
    args = cmd_parser.parse_args(argv[1:])
    return int(module.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
