"""Losses of GAN super-resolution (formulas in each class's docstring).

pixel (L1, MSE, Charbonnier), perceptual (VGG features, LPIPS, DISTS), adversarial
(`make_gan_loss(name)` -> `.d_loss`, `.g_loss`, `.penalty` for wgan-gp / ragp / r1), frequency
(FFT, DCT, spectral profile, focal frequency), `CompositeLoss` / `build_losses(cfg)`;
`gradient_penalty` lives in `penalty.py` (imported on first use).
"""

from .adversarial import GAN_LOSS_NAMES, GANLoss, make_gan_loss
from .composite import CompositeLoss, build_loss, build_losses
from .frequency import DCTLoss, FFTLoss, FocalFrequencyLoss, SpectralLoss, dct2
from .perceptual import DISTSLoss, LPIPSLoss, VGGPerceptualLoss
from .pixel import CharbonnierLoss, L1Loss, L2Loss, MSELoss

__all__ = [
    "GAN_LOSS_NAMES", "GANLoss", "make_gan_loss", "CompositeLoss", "build_loss", "build_losses",
    "DCTLoss", "FFTLoss", "FocalFrequencyLoss", "SpectralLoss", "dct2", "DISTSLoss", "LPIPSLoss",
    "VGGPerceptualLoss", "CharbonnierLoss", "L1Loss", "L2Loss", "MSELoss", "gradient_penalty",
]


def __getattr__(name):
    if name == "gradient_penalty":
        from .penalty import gradient_penalty

        return gradient_penalty
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
