"""Generators: denoising-diffusion models trained in a learned latent space or on pixels
(``base.Generator``; the diffusion parts are in ``codecgen.nn.diffusion``), and the
autoencoders whose latent they sample (``arbitrary_scale.first_stage``)."""

from codecgen.generators.base import Generator, GeneratorOutput, GeneratorPipeline

__all__ = ["Generator", "GeneratorOutput", "GeneratorPipeline"]
