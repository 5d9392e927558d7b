"""SemantiCodec's fourth stage: the HiFi-GAN vocoder that turns its decoded 64-bin mel into a
16 kHz waveform (Liu et al. 2024, "SemantiCodec", which takes AudioLDM's; HiFi-GAN: Kong et
al., NeurIPS 2020).

The generator is injected: HiFi-GAN as in the paper (``vocoder_paper.yaml``), or Vocos
(Siuzdak 2023: ConvNeXt blocks at the mel's frame rate and an iSTFT head, a mel vocoder by
design) in the CPU-trainable ``vocoder_small.yaml``. Deviation, measured here on one CPU
thread for a batch of 8 x 0.5 s: HiFi-GAN's generator (quarter width) takes 1.5 s forward +
backward against Vocos' 0.46 s, and HiFi-GAN's multi-scale discriminator 1.9 s a pass
against 0.3 s for a narrow MPD and 0.6 s for Vocos' MRD; a step of the paper's recipe took
11.6 s, 20 000 steps 64 hours.

Trained on ground-truth mels of our audio with HiFi-GAN's waveform GAN step
(``codecgen.codecs.audio.gan``: multi-period and multi-scale discriminators, LSGAN losses,
feature matching, mel L1 x 45; Adam (0.8, 0.99), lr decay 0.999). The mel is the one the VAE
and the diffusion decoder work in (``mel_vae.semanticodec_mel``: 100 frames a second), so the
generator's upsampling rates must multiply to 160. Validation scores the vocoder alone on
ground-truth mels: the ceiling of every SemantiCodec decode (``val/pesq``, ``val/stoi``).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from codecgen.codecs.audio.base import speech_scores
from codecgen.codecs.audio.gan import WaveformGANTraining
from codecgen.codecs.audio.semanticodec.mel_vae import semanticodec_mel
from codecgen.config import configurable
from codecgen.module import Module
from codecgen.nn.hifigan import HiFiGANGenerator
from codecgen.nn.vocos import VocosDecoder
from codecgen.nn.losses import LogMelSpectrogram


@configurable
class MelVocoder(WaveformGANTraining, Module):
    """Args:
        generator: ``HiFiGANGenerator`` (``in_channels``) or ``VocosDecoder`` (``input_channels``)
            taking the mel's bins, with a ``hop_length`` of the mel's hop (160).
        discriminator: training only (e.g. MPD + MSD in a ``DiscriminatorGroup``).
        mel: the input front end (``semanticodec_mel()`` by default).
        mel_loss: the reconstruction loss (``MultiResolutionMelLoss(sample_rate)`` by
            default, the audio codecs' loss; HiFi-GAN uses one resolution).
        sample_rate, loss_weights, gan_loss, lr, betas, lr_gamma, lr_decay_every,
            disc_start_step, grad_clip: as ``AudioCodec`` (HiFi-GAN's values by default).
        val_speech_metrics: PESQ-WB and STOI in validation.
    """

    modality = "audio"
    inference_modules = ("generator",)

    def __init__(self, generator: HiFiGANGenerator | VocosDecoder, discriminator: nn.Module | None = None,
                 mel: LogMelSpectrogram | None = None, mel_loss: nn.Module | None = None, sample_rate: int = 16000,
                 loss_weights: dict[str, float] | None = None, gan_loss: str = "lsgan", lr: float = 2e-4,
                 betas: tuple[float, float] = (0.8, 0.99), lr_gamma: float = 0.999, lr_decay_every: int = 1000,
                 disc_start_step: int = 0, grad_clip: float | None = None, val_speech_metrics: bool = True):
        super().__init__()
        self.mel = mel if mel is not None else semanticodec_mel(sample_rate)
        channels = getattr(generator, "in_channels", getattr(generator, "input_channels", None))
        if channels != self.mel.n_mels or getattr(generator, "hop_length", None) != self.mel.hop_length:
            raise ValueError(f"the generator takes {channels} channels at a hop of {generator.hop_length}; "
                             f"the mel has {self.mel.n_mels} bins at a hop of {self.mel.hop_length}")
        self.generator = generator
        self.init_waveform_gan(discriminator, sample_rate, mel_loss,
                               loss_weights or {"mel": 45.0, "adversarial": 1.0, "feature_matching": 2.0}, gan_loss,
                               lr, betas, lr_gamma, lr_decay_every, disc_start_step, grad_clip)
        self.val_speech_metrics = val_speech_metrics

    @property
    def hop_length(self) -> int:
        return self.mel.hop_length

    def forward(self, mel: Tensor) -> Tensor:
        """Log-mel (B, n_mels, frames) -> waveform (B, 1, frames x hop)."""
        return self.generator(mel)

    def _cut(self, x: Tensor) -> Tensor:
        """A batch cut to whole hops, so the mel's frames map onto its samples exactly."""
        n = x.shape[-1] // self.hop_length * self.hop_length
        if n == 0:
            raise ValueError(f"{x.shape[-1]} samples are shorter than one {self.hop_length}-sample hop")
        return x[..., :n]

    def configure_optimizers(self):
        return self.configure_gan_optimizers(self.generator.parameters())

    def training_step(self, batch: Tensor, batch_idx: int):
        x = self._cut(batch)
        with torch.no_grad():
            mel = self.mel(x)
        return self.waveform_gan_step(x, self(mel))

    def validation_step(self, batch: Tensor, batch_idx: int):
        x = self._cut(batch)
        y = self(self.mel(x))
        n = x.shape[0]
        self.log("val/mel_distance", self.mel_loss(y, x), prog_bar=True, sync_dist=True, batch_size=n)
        if self.val_speech_metrics:
            for name, value in speech_scores(x, y, self.sample_rate).items():
                if value is not None:
                    self.log(f"val/{name}", value, sync_dist=True, batch_size=n)
