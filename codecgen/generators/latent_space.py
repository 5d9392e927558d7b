"""A generator's frozen latent space: a trained ``FrameVAE``'s ``AutoencoderKL``, its latents scaled to unit variance.

Latent diffusion (Rombach et al. 2022, "High-Resolution Image Synthesis with Latent Diffusion
Models") denoises the latents of a frozen autoencoder, scaled so they have unit variance. Stable
Diffusion hard-codes the factor of its own VAE (0.18215); ours are trained here, so the factor is
measured on the first training batch of a fresh run (LDM's ``scale_by_std``) and kept in the
state dict (``latent_scale``). The VAE comes from its own run (``vae_ckpt``: a ``FrameVAE``
checkpoint or export) when a fresh run starts.
"""

from __future__ import annotations

import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor, nn

from codecgen.kl_autoencoder import autoencoder_factor


class FrameLatentSpace:
    """Mixin for a ``Generator`` (listed before it) whose samples are latents of ``self.vae``.

    Call ``init_latent_space`` in the constructor, ``start_latent_space`` when a fresh run starts
    (``on_fit_start``), and encode training frames with ``training_latents``."""

    def init_latent_space(self, vae: nn.Module, vae_ckpt: str | None) -> None:
        self.vae, self.vae_ckpt = vae.requires_grad_(False), vae_ckpt
        self.register_buffer("latent_scale", torch.ones(()))
        self._measure_scale = False

    @property
    def vae_factor(self) -> int:
        return autoencoder_factor(self.vae)

    @property
    def latent_channels(self) -> int:
        return int(self.vae.config.latent_channels)

    def encode_frames(self, frames: Tensor) -> Tensor:
        """(N, 3, H, W) in [-1, 1] -> (N, C, H / f, W / f) scaled latents (the posterior's mean)."""
        if frames.shape[-1] % self.vae_factor or frames.shape[-2] % self.vae_factor:
            raise ValueError(f"frames of {tuple(frames.shape[-2:])} px are not multiples of the VAE's factor "
                             f"{self.vae_factor}")
        with torch.no_grad():
            return self.vae.encode(frames).latent_dist.mode() * self.latent_scale

    def decode_latents(self, latents: Tensor) -> Tensor:
        """(N, C, h, w) scaled latents -> (N, 3, H, W) in [-1, 1], clamped."""
        with torch.no_grad():
            return self.vae.decode(latents / self.latent_scale).sample.clamp(-1, 1)

    def training_latents(self, frames: Tensor) -> Tensor:
        """``encode_frames``, after measuring the scale on these frames when a fresh run starts."""
        if self._measure_scale:
            self._measure_scale = False
            with torch.no_grad():
                raw = self.vae.encode(frames).latent_dist.mode()
            self.latent_scale.fill_(1.0 / float(raw.float().std().clamp(min=1e-8)))
        return self.encode_frames(frames)

    def start_latent_space(self) -> None:
        """A fresh run: take the VAE of ``vae_ckpt`` and measure the scale on the first batch."""
        from codecgen import hub
        from codecgen.frame_vae import FrameVAE

        if self.vae_ckpt:
            hub.load_stage_weights(self.vae, self.vae_ckpt, FrameVAE, "vae_ckpt", self.device, part="vae")
        else:
            rank_zero_warn("vae_ckpt is not set: the model trains in the latent space of an UNTRAINED VAE")
        self._measure_scale = True

    def inference_state_dict(self) -> dict[str, Tensor]:
        return {**super().inference_state_dict(), "latent_scale": self.latent_scale}
