"""`gansr train CONFIG [key=value ...]` and `gansr train --resume RUN_DIR [key=value ...]`.

CONFIG is a YAML file or a shipped recipe name (`gansr train --list`). Multi-GPU / multi-node:
`torchrun --nproc_per_node 8 -m gansr_ext.cli train CONFIG ...`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", nargs="?", help="YAML config file or recipe name (see --list)")
    parser.add_argument("overrides", nargs="*", metavar="key.sub=value",
                        help="config overrides, values parsed as YAML (e.g. optim.g.lr=1e-4 data.batch_size=8)")
    parser.add_argument("--resume", metavar="RUN_DIR",
                        help="continue the run in RUN_DIR from its newest checkpoint (its config.yaml + overrides)")
    parser.add_argument("--list", action="store_true", help="list the shipped recipes and exit")
    parser.add_argument("--print-config", action="store_true", help="print the resolved config and exit")


def run(args) -> int:
    import yaml

    from ..data.datasets import DataError
    from .checkpointing import CheckpointError
    from .config import ConfigError, list_recipes, load_config, load_run_config
    from .guard import TrainingDiverged
    from .runfolder import RunFolderError

    if args.list:
        print("\n".join(list_recipes()))
        return 0
    overrides = list(args.overrides)
    run_dir = None
    try:
        if args.resume:
            if args.config is not None:  # `--resume DIR a=b`: argparse put the first override in `config`
                overrides.insert(0, args.config)
            run_dir = Path(args.resume)
            if not (run_dir / "config.yaml").is_file():
                print(f"gansr train: {run_dir} has no config.yaml (not a run folder)", file=sys.stderr)
                return 2
            cfg = load_run_config(run_dir / "config.yaml", overrides)
        else:
            if args.config is None:
                print("gansr train: give a CONFIG (file or recipe name) or --resume RUN_DIR", file=sys.stderr)
                return 2
            cfg = load_config(args.config, overrides)
    except ConfigError as e:
        print(f"gansr train: {e}", file=sys.stderr)
        return 2
    if args.print_config:
        print(yaml.safe_dump(cfg, sort_keys=False))
        return 0
    from .trainer import Trainer

    try:
        Trainer(cfg, run_dir, resume=bool(args.resume)).train()
    except (ConfigError, DataError, RunFolderError, CheckpointError) as e:  # the user's to fix: one line
        print(f"gansr train: {e}", file=sys.stderr)
        return 2
    except TrainingDiverged as e:  # the log has the story
        print(f"gansr train: {e}", file=sys.stderr)
        return 1
    return 0
