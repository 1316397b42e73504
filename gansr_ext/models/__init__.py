"""Generator (RRDBNet), discriminators and generator checkpoint formats."""

from .checkpoint import (CheckpointError, convert_state_dict, export_basicsr, infer_arch, load_generator,
                         save_generator)
from .discriminators import UNetDiscriminatorSN, VGGDiscriminator128
from .rrdbnet import RRDB, ResidualDenseBlock, RRDBNet

__all__ = ["RRDB", "RRDBNet", "ResidualDenseBlock", "UNetDiscriminatorSN", "VGGDiscriminator128",
           "CheckpointError", "convert_state_dict", "export_basicsr", "infer_arch", "load_generator",
           "save_generator"]
