"""A latent space of video frames, trained here: an ``AutoencoderKL`` of the frames of clips.

Hallo2 (Cui et al. 2024) and VideoGen (Li et al. 2023) denoise in the latent space of Stable
Diffusion's VAE (f8, 4 channels), frozen. Those weights cannot be fetched here, so this stage
trains a diffusers ``AutoencoderKL`` of the same kind on the corpus's frames, with Stable
Diffusion's recipe (``codecgen.kl_autoencoder``: L1 at several resolutions in place of LPIPS,
KL 1e-6, an adaptively weighted PatchGAN). Batches are clips ``{"frames": (B, T, 3, H, W)}`` in
[-1, 1] (``PortraitClipDataModule(frames=1, motion_frames=0)``, ``CaptionedVideoDataModule``),
whose frames are coded one by one. Validation logs the L1 and PSNR of the reconstruction from
the posterior's mean on held-out frames.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from codecgen.config import configurable
from codecgen.kl_autoencoder import KLAutoencoderTraining


@configurable
class FrameVAE(KLAutoencoderTraining):
    """Args: as ``codecgen.kl_autoencoder.KLAutoencoderTraining`` (``vae`` with 3 input and output channels)."""

    modality = "image"

    def __init__(self, vae: nn.Module, discriminator: nn.Module | None = None, kl_weight: float = 1e-6,
                 scales: Sequence[int] = (1, 2, 4), gan_weight: float = 0.5, disc_start_step: int = 50000,
                 lr: float = 1e-4, betas: tuple[float, float] = (0.5, 0.9)):
        super().__init__()
        if vae.config.in_channels != 3 or vae.config.out_channels != 3:
            raise ValueError("the frame VAE takes and gives RGB (in_channels=3, out_channels=3)")
        self.init_kl_autoencoder(vae, discriminator, kl_weight, scales, gan_weight, disc_start_step, lr, betas)

    def images(self, batch: dict[str, Tensor]) -> Tensor:
        frames = batch["frames"]
        if frames.shape[-1] % self.factor or frames.shape[-2] % self.factor:
            raise ValueError(f"frames of {tuple(frames.shape[-2:])} px are not a multiple of the VAE's factor "
                             f"{self.factor}")
        return frames.flatten(0, 1)

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        images = self.images(batch)
        rec = self.decode(self.encode(images)).clamp(-1, 1)
        mse = ((rec - images) / 2).square().flatten(1).mean(1)
        n = images.shape[0]
        self.log("val/l1", F.l1_loss(rec, images), prog_bar=True, batch_size=n, sync_dist=True)
        self.log("val/psnr", (-10 * torch.log10(mse.clamp_min(1e-10))).mean(), prog_bar=True, batch_size=n,
                 sync_dist=True)
