"""Training: YAML recipes (`configs/`), the `Trainer` (EMA, AMP, fused ops, validation, exact resume,
divergence guard, DDP), the `gansr train` command and the `gansr demo`.

    from gansr_ext.train import load_config, Trainer
    Trainer(load_config("final", ["data.batch_size=8"])).train()
"""

from .config import ConfigError, list_recipes, load_config

__all__ = ["ConfigError", "Trainer", "list_recipes", "load_config"]


def __getattr__(name):
    if name == "Trainer":
        from .trainer import Trainer

        return Trainer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
