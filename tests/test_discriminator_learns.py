"""A discriminator trained alone learns to tell natural crops from their bicubic upscales.

The generator is frozen out entirely: fakes are MATLAB-bicubic x4 upscales of the x4-downscaled real
crops (what a PSNR-stage generator starts near), so D faces a fixed, separable task. Each step is the
trainer's `_d_step` (gansr_ext/train/trainer.py): L_D = gan.d_loss(D(hr), D(fake)) [+ gan.penalty(D, hr,
fake, step=...)], one Adam step (betas (0.9, 0.99) as the recipes, lr 2e-4 for a short test). For the
relativistic losses ln 2 is the chance value of L_D (equal logits), so a learning D must get below it.
U-Net + RaGP stayed at ln 2 while the penalty differentiated the SUM of the per-pixel logits (a
1/(H W) target on what the loss sees); it learns since the penalty is on each sample's mean logit.
"""

import math

import numpy as np
import pytest
import torch

from gansr_ext.data import imresize, sample_images
from gansr_ext.losses import make_gan_loss
from gansr_ext.models import UNetDiscriminatorSN, VGGDiscriminator128

SCALE = 4
MARGIN = 0.02  # the bar: d_loss < ln 2 - 0.02


def crop_pool(size: int, count: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(real, fake) float32 (count, 3, size, size) in [0, 1]: random crops of the training sample
    images, and their bicubic x4 down-then-up versions (the fixed 'generator')."""
    gen = np.random.default_rng(seed)
    images = [img for _, img in sample_images("train")]
    crops = []
    for i in range(count):
        img = images[i % len(images)]
        y = int(gen.integers(0, img.shape[0] - size + 1))
        x = int(gen.integers(0, img.shape[1] - size + 1))
        crops.append(img[y:y + size, x:x + size])
    real = torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float() / 255
    lr = imresize(real, scale=1 / SCALE)
    fake = imresize(lr, output_shape=(size, size)).clamp(0, 1)
    return real, fake


def train_d_alone(D, gan, real, fake, steps: int, batch: int, lr: float, seed: int = 0) -> list[float]:
    """Train D alone for `steps` steps as the trainer's D step does; returns every step's d_loss."""
    torch.manual_seed(seed)
    opt = torch.optim.Adam(D.parameters(), lr=lr, betas=(0.9, 0.99))
    pick = torch.Generator().manual_seed(seed)
    losses = []
    for it in range(steps):
        idx = torch.randint(0, real.shape[0], (batch,), generator=pick)
        hr, sr = real[idx], fake[idx]
        opt.zero_grad(set_to_none=True)
        d_loss = gan.d_loss(D(hr), D(sr))
        total = d_loss + gan.penalty(D, hr, sr, step=it + 1) if gan.needs_penalty else d_loss
        total.backward()
        opt.step()
        losses.append(d_loss.item())
    return losses


LR = 2e-4  # twice the recipes' D learning rate (1e-4), to keep the CPU test short
CASES = {
    # name: (discriminator, crop size, GAN loss, steps). lam 1 for RaGP: at lam 10 the penalty's pull
    # outweighs the RaGAN loss (its logit gradient is at most 1/2) for many hundred steps (see the report)
    "unet_ragan": (lambda: UNetDiscriminatorSN(nf=16), 32, dict(name="ragan"), 150),
    "unet_ragp": (lambda: UNetDiscriminatorSN(nf=16), 32, dict(name="ragp", lam=1.0), 200),
    "vgg_ragp": (lambda: VGGDiscriminator128(nf=8), 128, dict(name="ragp", lam=1.0), 150),
}


@pytest.fixture
def one_thread():
    """One intra-op thread: two threads on two shared, busy cores made each step ~10x slower."""
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


@pytest.mark.parametrize("case", list(CASES))
def test_discriminator_alone_gets_below_chance(case, one_thread):
    make_d, size, loss_kw, steps = CASES[case]
    torch.manual_seed(0)
    D = make_d().train()
    real, fake = crop_pool(size, count=64)
    losses = train_d_alone(D, make_gan_loss(**loss_kw), real, fake, steps=steps, batch=4, lr=LR)
    assert all(math.isfinite(v) for v in losses)
    last = float(np.mean(losses[-20:]))  # the mean of the last 20 steps: one batch is noisy
    assert last < math.log(2) - MARGIN, f"{case}: d_loss {last:.4f} after {steps} steps (chance ln 2 = 0.6931)"
