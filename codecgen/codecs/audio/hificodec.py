"""HiFi-Codec (Yang et al. 2023, "HiFi-Codec: Group-residual Vector quantization for
High Fidelity Audio Codec"; recipe of AcademiCodec).

Convolutional encoder (1 -> 32 channels, strided stages 32 -> 64 -> 128 -> 256 -> 512
with HiFi-GAN ResBlocks and GroupNorm), group-residual VQ (2 groups x 2 stages x 1024
codes on the 512-d latent: 4 codebooks), HiFi-GAN V1 decoder; MPD + MSD + MS-STFT
discriminators with LSGAN; generator loss 45 x multi-resolution mel L1 + adversarial +
2 x feature matching + VQ loss; Adam 2e-4, betas (0.5, 0.9), exponential LR decay.

Every part is injected (``configs/hificodec/*.yaml``), so the 16 kHz / 320x (2 kbps),
24 kHz / 320x (3 kbps) and 24 kHz / 240x (4 kbps) variants and the tiny test model are
YAML files. Deviations from the authors' recipe, and why:
- the codebooks use EMA updates, k-means init and dead-code replacement by default
  (the authors' plain learned codebook is ``vq: {ema: false, kmeans_init: false,
  threshold_dead_code: 0}``): from-scratch training on small corpora collapses
  codebooks far less this way;
- the VQ loss weight is 1.0 rather than 10 by default, because the EMA codebook has
  no codebook-loss term and the remaining commitment term (x0.25) otherwise
  dominates early training; the authors' value is one YAML line away;
- the learning rate decays by ``lr_gamma`` every ``lr_decay_every`` generator steps
  instead of 0.98 per epoch: an "epoch" is meaningless for random-segment sampling.
"""

from __future__ import annotations

from torch import nn

from codecgen.codecs.audio.base import AudioCodec
from codecgen.nn.hifigan import HiFiCodecEncoder, HiFiGANGenerator
from codecgen.config import configurable
from codecgen.nn.discriminators import (
    DiscriminatorGroup,
    MultiPeriodDiscriminator,
    MultiScaleDiscriminator,
    MultiScaleSTFTDiscriminator,
)
from codecgen.nn.quantizers import GRVQ


@configurable
class HiFiCodec(AudioCodec):
    """HiFi-Codec; defaults are the paper's 16 kHz / 320x model (50 Hz, 4 x 1024 codes = 2 kbps)."""

    def __init__(
        self,
        encoder: nn.Module | None = None,
        quantizer: nn.Module | None = None,
        decoder: nn.Module | None = None,
        **kwargs,
    ):
        """Other arguments (discriminator, loss weights, optimiser, chunking): ``AudioCodec``."""
        super().__init__(
            encoder=encoder if encoder is not None else HiFiCodecEncoder(),
            quantizer=quantizer if quantizer is not None else GRVQ(512, groups=2, n_q_per_group=2, codebook_size=1024),
            decoder=decoder if decoder is not None else HiFiGANGenerator(),
            **kwargs,
        )
        if self.encoder.hop_length != self.decoder.hop_length:
            raise ValueError(f"encoder hop {self.encoder.hop_length} != decoder hop {self.decoder.hop_length}")


def paper_discriminator() -> DiscriminatorGroup:
    """MPD (periods 2, 3, 5, 7, 11) + MSD (3 scales) + MS-STFT (32 filters), as in the paper."""
    return DiscriminatorGroup([MultiPeriodDiscriminator(), MultiScaleDiscriminator(), MultiScaleSTFTDiscriminator()])
