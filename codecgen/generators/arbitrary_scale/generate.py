"""Arbitrary-scale image generation (Kim & Kim, CVPR 2024, "Arbitrary-Scale Image Generation
and Upsampling using Latent Diffusion Model and Implicit Neural Decoder"; code:
zhenshij/arbitrary-scale-diffusion, ``inference.py``): an unconditional latent diffusion
model in the latent space of a frozen ``ImplicitAutoencoder``. One latent is sampled and
rendered by the first stage's LIIF at every requested size, so the images of one latent
agree across sizes by construction (the paper's scale consistency).

Training: x0 = encode(HR crop) (scaled to unit variance, LDM's ``scale_by_std``), the
plain ``Generator`` denoising loss; the first stage is frozen (see ``latent.py``).

Deviations from the authors' code: samplers are any diffusers scheduler (the authors:
DDIM, 200 steps, eta 1); the optimiser is AdamW (the authors: Adam).
"""

from __future__ import annotations

from typing import ClassVar

import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from diffusers import SchedulerMixin
from torch import Tensor, nn

from codecgen.config import configurable
from codecgen.generators.arbitrary_scale.first_stage import ImplicitAutoencoder
from codecgen.generators.arbitrary_scale.latent import LatentGenerator
from codecgen.nn.liif import hw_pair
from codecgen.generators.base import GeneratorPipeline


@dataclass
class GenerateOutput:
    latents: Tensor  # (N, z, h, w): the sampled latents, in the denoiser's (scaled) space
    images: list[Tensor]  # one (N, 3, H, W) batch in [0, 1] per requested size


class GeneratePipeline(GeneratorPipeline):
    """``pipe(num_images=, latent_size=, sizes=, num_steps=, seed=, progress=) -> GenerateOutput``.
    One call at a time per pipeline."""

    def __init__(self, model: ArbitraryScaleGenerator, scheduler):
        super().__init__(model, scheduler)
        self._sizes: list[tuple[int, int]] = []

    def __call__(self, num_images: int = 1, latent_size: int | Sequence[int] | None = None,
                 sizes: Sequence[Sequence[int]] | None = None, num_steps: int = 50, seed: int | None = None,
                 progress: Callable[[int, int], None] | None = None) -> GenerateOutput:
        """``num_images`` latents of ``latent_size`` (h, w) (default: the UNet's
        ``sample_size``; multiples of its downsampling), each rendered at every (H, W) of
        ``sizes`` (default: 4x the latent, the first stage's native size)."""
        model = self.model
        if isinstance(num_images, bool) or not isinstance(num_images, numbers.Integral) or num_images < 1:
            raise ValueError(f"num_images must be a whole number >= 1, got {num_images!r}")
        latent = hw_pair(model.sample_shape(1)[-2:] if latent_size is None else latent_size, "latent_size")
        m = model.unet_factor
        if latent[0] % m or latent[1] % m:
            raise ValueError(f"latent_size must be multiples of {m} (the UNet's downsampling), got {latent}")
        f = model.first_stage.downsampling_factor
        sizes = [(latent[0] * f, latent[1] * f)] if sizes is None else sizes
        if isinstance(sizes, (str, bytes)) or not isinstance(sizes, Sequence) or not sizes:
            raise ValueError(f"sizes must be a non-empty list of (height, width), got {sizes!r}")
        self._sizes = [hw_pair(s, "each of sizes") for s in sizes]
        return super().__call__(int(num_images), latent, num_steps=num_steps, seed=seed, progress=progress)

    def prepare(self, num_images: int, latent: tuple[int, int]) -> tuple[None, tuple[int, ...]]:
        return None, (num_images, self.model.z_channels, *latent)

    def finish(self, latents: Tensor) -> GenerateOutput:
        return GenerateOutput(latents=latents, images=[self.model.decode_latents(latents, s) for s in self._sizes])


@configurable
class ArbitraryScaleGenerator(LatentGenerator):
    """Unconditional latent diffusion rendered at any size (see the module docstring).

    Args:
        unet: ``diffusers.UNet2DModel`` with z in and out channels; its ``sample_size`` is
            the default latent size.
        scheduler: a diffusers scheduler (its noise schedule is trained on).
        first_stage, first_stage_ckpt, scale_by_std: as ``ArbitraryScaleSR``'s.
        **kwargs: ``Generator``'s (prediction_type, min_snr_gamma, lr, ema_decay, ...).
    """

    pipeline_class = GeneratePipeline
    task: ClassVar[str] = "generate"  # infer.py's command for it (codecgen.cli.generate)

    def __init__(self, unet: nn.Module, scheduler: SchedulerMixin, first_stage: ImplicitAutoencoder,
                 first_stage_ckpt: str | None = None, scale_by_std: bool = True, **kwargs):
        super().__init__(unet, scheduler, first_stage, first_stage_ckpt, scale_by_std, **kwargs)
        self._check_unet_channels(self.z_channels)

    def denoise(self, x_t: Tensor, t: Tensor, cond: None) -> Tensor:
        return self.unet(x_t, t).sample

    def latents_and_condition(self, batch: Tensor) -> tuple[Tensor, None]:
        self._check_crops(batch)
        with torch.no_grad():
            return self.encode(batch), None
