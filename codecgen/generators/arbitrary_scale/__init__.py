"""Arbitrary-scale image generation and upsampling with a latent diffusion model and an
implicit neural decoder (Kim & Kim, CVPR 2024; code: zhenshij/arbitrary-scale-diffusion):
the first stage (``first_stage.ImplicitAutoencoder``), super-resolution (``sr``) and
unconditional generation (``generate``)."""

from codecgen.generators.arbitrary_scale.generate import ArbitraryScaleGenerator, GenerateOutput
from codecgen.generators.arbitrary_scale.sr import ArbitraryScaleSR, UpscaleOutput

__all__ = ["ArbitraryScaleGenerator", "ArbitraryScaleSR", "GenerateOutput", "UpscaleOutput"]
