"""Generators: denoising-diffusion models trained in a codec's latent space or on pixels
(``base.Generator``; the diffusion parts are in ``codecgen.nn.diffusion``)."""

from codecgen.generators.base import Generator, GeneratorOutput, GeneratorPipeline

__all__ = ["Generator", "GeneratorOutput", "GeneratorPipeline"]
