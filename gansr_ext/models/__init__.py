"""Generator (RRDBNet), discriminators and generator checkpoint formats."""

from .discriminators import UNetDiscriminatorSN, VGGDiscriminator128
from .rrdbnet import RRDB, ResidualDenseBlock, RRDBNet

__all__ = ["RRDB", "RRDBNet", "ResidualDenseBlock", "UNetDiscriminatorSN", "VGGDiscriminator128"]
