"""Generator (RRDBNet), discriminators and generator checkpoint formats."""

from .checkpoint import (CheckpointError, convert_state_dict, export_basicsr, infer_arch, load_generator,
                         save_generator)
from .discriminators import UNetDiscriminatorSN, VGGDiscriminator128
from .ncnn import NcnnModelError, load_ncnn_generator, read_ncnn
from .rrdbnet import RRDB, ResidualDenseBlock, RRDBNet
from .zoo import ZOO, MissingModelPackageError, load_zoo_generator, resolve_model

__all__ = ["RRDB", "RRDBNet", "ResidualDenseBlock", "UNetDiscriminatorSN", "VGGDiscriminator128",
           "CheckpointError", "convert_state_dict", "export_basicsr", "infer_arch", "load_generator",
           "save_generator", "NcnnModelError", "load_ncnn_generator", "read_ncnn", "ZOO",
           "MissingModelPackageError", "load_zoo_generator", "resolve_model"]
