"""What the arbitrary-scale latent diffusion models (Kim & Kim, CVPR 2024, "Arbitrary-Scale
Image Generation and Upsampling using Latent Diffusion Model and Implicit Neural Decoder";
code: zhenshij/arbitrary-scale-diffusion) share: a ``Generator`` in the latent space of a
FROZEN ``ImplicitAutoencoder`` (its first stage), which decodes a latent at any size.

- The first stage is a sub-module: its weights are part of the model's state (checkpoint,
  export, weights hash), so a trained model loads with no other file. ``first_stage_ckpt``
  only seeds them when a run trains from scratch (not when resuming, not after
  ``init_from``). It never trains: no gradients, eval mode whatever ``train()`` says, and
  the optimiser holds the UNet alone; gradients still flow THROUGH its decoder where a loss
  needs them (alignment fine-tuning).
- Latent scaling (LDM's ``scale_by_std``, which the authors' configs turn on): at the first
  batch of a fresh run the latents are measured and every latent the denoiser sees is
  multiplied by ``latent_scale`` = 1 / std, so that it has unit variance like the noise.
  The factor is a buffer, saved, exported and hashed with the weights.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor

from codecgen.generators.arbitrary_scale.first_stage import ImplicitAutoencoder
from codecgen.generators.base import Generator


class LatentGenerator(Generator):
    """Base of ``ArbitraryScaleSR`` and ``ArbitraryScaleGenerator`` (not built by itself)."""

    frozen_modules = ("first_stage",)  # trained stages, always in inference mode
    inference_modules = ("unet", "first_stage")

    def __init__(self, unet: torch.nn.Module, scheduler, first_stage: ImplicitAutoencoder,
                 first_stage_ckpt: str | None = None, scale_by_std: bool = True, **kwargs):
        super().__init__(unet, scheduler, **kwargs)
        if not isinstance(first_stage, ImplicitAutoencoder):
            raise ValueError(f"first_stage must be an ImplicitAutoencoder, got {type(first_stage).__name__}")
        self.first_stage = first_stage.requires_grad_(False).eval()
        self.first_stage_ckpt, self.scale_by_std = first_stage_ckpt, scale_by_std
        self.register_buffer("latent_scale", torch.ones(()))
        self._measure_scale = False

    # -- shapes ---------------------------------------------------------------------------
    @property
    def z_channels(self) -> int:
        return self.first_stage.z_channels

    @property
    def unet_factor(self) -> int:
        """How much the UNet downsamples: latent sides must be multiples of it."""
        return 2 ** (len(self.unet.config.block_out_channels) - 1)

    @property
    def pixel_multiple(self) -> int:
        """Image sides the model encodes and samples whole: first-stage factor x UNet factor."""
        return self.first_stage.downsampling_factor * self.unet_factor

    def _check_unet_channels(self, in_channels: int) -> None:
        config = self.unet.config
        if config.in_channels != in_channels or config.out_channels != self.z_channels:
            raise ValueError(f"the UNet must take {in_channels} and give {self.z_channels} channels (the first "
                             f"stage's latent has {self.z_channels}); it takes {config.in_channels} and gives "
                             f"{config.out_channels}")

    # -- the latent space -------------------------------------------------------------------
    def encode(self, images: Tensor) -> Tensor:
        """Images (B, 3, H, W) in [-1, 1], sides multiples of 4 -> the denoiser's latents."""
        return self.first_stage.encode(images) * self.latent_scale

    def decode(self, latents: Tensor, size: Sequence[int], chunk: int | None = None) -> Tensor:
        """The denoiser's latents -> images (B, 3, H, W) in [-1, 1], unclamped, differentiable."""
        return self.first_stage.decode(latents / self.latent_scale, size, chunk=chunk)

    @torch.no_grad()
    def decode_latents(self, latents: Tensor, size: Sequence[int]) -> Tensor:
        """The denoiser's latents -> images in [0, 1] at ``size`` (H, W), rendered in chunks."""
        images = self.decode(latents.to(self.device), tuple(size), chunk=self.first_stage.chunk)
        return ((images.clamp(-1, 1) + 1) / 2).float()

    def _check_crops(self, images: Tensor) -> None:
        q = self.pixel_multiple
        if images.shape[-2] % q or images.shape[-1] % q:
            raise ValueError(f"training crops must have sides that are multiples of {q} (first stage x UNet "
                             f"downsampling), got {tuple(images.shape[-2:])}")

    # -- training -------------------------------------------------------------------------
    def configure_optimizers(self):
        return torch.optim.AdamW(self.unet.parameters(), lr=self.lr)

    def training_only_args(self) -> tuple[str, ...]:
        # an export carries the first stage's weights itself
        return (*super().training_only_args(), "first_stage_ckpt")

    def inference_state_dict(self) -> dict[str, Tensor]:
        return {**super().inference_state_dict(), "latent_scale": self.latent_scale}

    def load_initial_weights(self) -> bool:
        """A fresh run's starting weights from elsewhere than the first stage (a subclass's
        ``init_from``); True when they replaced the whole model."""
        return False

    def on_fit_start(self) -> None:
        self._measure_scale = False
        if self.trainer.ckpt_path is not None or self.load_initial_weights():
            self._weights_hash = None
            return  # a resumed run, or one started from a trained model: everything is loaded
        if self.first_stage_ckpt:
            from codecgen.hub import load_stage_weights

            load_stage_weights(self.first_stage, self.first_stage_ckpt, ImplicitAutoencoder, "first_stage_ckpt",
                               self.device)
        else:
            rank_zero_warn("first_stage_ckpt is not set: the diffusion model trains in the latent space of an "
                           "UNTRAINED (randomly initialised) first stage")
        self._measure_scale = self.scale_by_std
        self._weights_hash = None

    def on_train_batch_start(self, batch, batch_idx: int) -> None:
        super().on_train_batch_start(batch, batch_idx)
        if self._measure_scale:  # LDM: on the first batch of a fresh run
            self._measure_scale = False
            with torch.no_grad():
                std = self.first_stage.encode(batch).float().std()
            self.latent_scale.fill_(1.0 / float(std.clamp(min=1e-8)))
