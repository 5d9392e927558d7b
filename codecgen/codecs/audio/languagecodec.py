"""Language-Codec (Ji et al. 2024, "Language-Codec: Reducing the Gaps Between Discrete
Codec Representation and Speech Language Models").

EnCodec's SEANet encoder (24 kHz, 32 filters, ratios 8-5-4-2, 128-d latent, 2-layer
LSTM, 75 Hz); masked-channel RVQ (8 codebooks of 1024: the first three quantize the
latent's three channel slices in parallel, the rest the residual) with EMA codebooks,
k-means init and dead-code replacement; bandwidth dropout (3..8 stages per step) so one
model serves 3 to 6 kbps, with ``--n-q`` at inference; a Vocos decoder (ConvNeXt
backbone whose LayerNorms are conditioned on the bandwidth, iSTFT head, n_fft 1280,
hop 320); MPD + multi-resolution discriminators with hinge loss; 45 x mel L1 +
adversarial + feature matching + commitment. The GAN loop, file handling and
chunking are HiFi-Codec's (``AudioCodec``); only the bandwidth conditioning differs.

Where the paper and the authors' code disagree, this follows the paper:
- encoding applies the channel masks exactly as training does (the authors'
  ``encode()`` skips them, so their codes differ from their training codes);
- every discriminator in ``discriminator`` is optimised (the authors build a DAC
  discriminator and never give it to an optimiser);
- ``n_q`` is a real inference choice (the authors' ``infer()`` hard-codes 8).
Other deviations: the decoder gets one bandwidth id per number of codebooks used
(n_q - 2 for n_q in 3..8, 6 ids) rather than the authors' 4 Vocos bandwidth ids, since
the bandwidth *is* the number of codebooks here; the optimiser is Adam with exponential
decay (shared with HiFi-Codec) rather than AdamW with cosine decay.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from codecgen.codecs.audio.base import AudioCodec
from codecgen.nn.seanet import SEANetEncoder
from codecgen.nn.vocos import VocosDecoder
from codecgen.config import configurable
from codecgen.nn.losses import MultiResolutionMelLoss
from codecgen.nn.quantizers import MCRVQ


@configurable
class LanguageCodec(AudioCodec):
    """Language-Codec; defaults are the paper's 24 kHz model (75 Hz, 3-8 x 1024 codes = 2.25-6 kbps)."""

    def __init__(
        self,
        encoder: nn.Module | None = None,
        quantizer: nn.Module | None = None,
        decoder: nn.Module | None = None,
        sample_rate: int = 24000,
        mel_loss: nn.Module | None = None,
        loss_weights: dict[str, float] | None = None,
        gan_loss: str = "hinge",
        betas: tuple[float, float] = (0.8, 0.9),
        lr_decay_every: int = 1000,
        **kwargs,
    ):
        """Arguments whose defaults differ from ``AudioCodec``'s are named here; the rest
        (discriminator, lr, chunking, ...) pass through to it."""
        quantizer = quantizer if quantizer is not None else MCRVQ(
            128, n_q=8, n_masked=3, codebook_size=1024, quantizer_dropout=1.0,
            vq={"decay": 0.99, "kmeans_iters": 50, "threshold_dead_code": 2.0, "commitment_weight": 1.0},
        )
        super().__init__(
            encoder=encoder if encoder is not None else SEANetEncoder(),
            quantizer=quantizer,
            decoder=decoder if decoder is not None else VocosDecoder(
                adanorm_num_embeddings=quantizer.n_q - quantizer.n_masked + 1
            ),
            sample_rate=sample_rate,
            # the paper's single mel resolution: 100 HTK mels, n_fft 1024, hop 256
            mel_loss=mel_loss if mel_loss is not None else MultiResolutionMelLoss(
                sample_rate, resolutions=[(1024, 256, 100)], norm=None, mel_scale="htk"
            ),
            loss_weights=loss_weights if loss_weights is not None else {
                "mel": 45.0, "vq": 1000.0, "adversarial": 1.0, "feature_matching": 1.0,
            },
            gan_loss=gan_loss,
            betas=betas,
            lr_decay_every=lr_decay_every,
            **kwargs,
        )
        if not hasattr(self.quantizer, "n_masked"):
            raise ValueError("Language-Codec needs a masked-channel quantizer (MCRVQ)")
        if self.encoder.hop_length != self.decoder.hop_length:
            raise ValueError(f"encoder hop {self.encoder.hop_length} != decoder hop {self.decoder.hop_length}")

    def bandwidth_id(self, n_q: int, batch: int) -> Tensor:
        """The decoder's condition: how many codebooks the codes carry."""
        return torch.full((batch,), n_q - self.quantizer.n_masked, dtype=torch.long, device=self.device)

    def decode_latent(self, quantized: Tensor, n_q: int) -> Tensor:
        return self.decoder(quantized, bandwidth_id=self.bandwidth_id(n_q, quantized.shape[0]))
