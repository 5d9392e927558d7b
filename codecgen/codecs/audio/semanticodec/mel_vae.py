"""SemantiCodec's third stage: the variational autoencoder of the mel spectrogram its latent
diffusion decoder works in (Liu et al. 2024, "SemantiCodec"; the VAE is AudioLDM's: Liu et
al., ICML 2023, "AudioLDM: Text-to-Audio Generation with Latent Diffusion Models").

The mel (``semanticodec_mel``): 64 bins over 0-8 kHz of 16 kHz audio, n_fft 1024, hop 160
(100 frames a second), librosa's slaney filters, log of the magnitude clamped at 1e-5, frames
not centred (HiFi-GAN's padding: T / 160 frames). It is an image (B, 1, frames, 64), time down
the rows, as AudioLDM lays it out. The VAE is diffusers' ``AutoencoderKL`` given in the config
(the authors: channels 128 x [1, 2, 4], 2 blocks a level, 8 latent channels: a 4x smaller
latent each way).

Loss (``codecgen.kl_autoencoder``): AudioLDM trains it with L1 + LPIPS + KL (weight 1e-6) + a
PatchGAN whose hinge loss is balanced by taming's adaptive weight (times 0.5). LPIPS needs VGG
weights we cannot download; in its place (as the issue asks) an L1 at several resolutions of
the mel (``scales``: the image average-pooled by 2 and 4 as well), which, like LPIPS, rewards
getting the coarse spectral envelope right as well as the pixels.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from codecgen.config import configurable
from codecgen.kl_autoencoder import KLAutoencoderTraining
from codecgen.nn.losses import LogMelSpectrogram


def semanticodec_mel(sample_rate: int = 16000) -> LogMelSpectrogram:
    """AudioLDM's 64-bin log-mel at 100 frames a second (module docstring)."""
    return LogMelSpectrogram(sample_rate, n_fft=1024, hop_length=160, win_length=1024, n_mels=64, f_min=0.0,
                             f_max=8000.0, center=False)


def mel_image(mel: LogMelSpectrogram, wave: Tensor, multiple: int = 1) -> Tensor:
    """Waveforms (B, 1, T) -> log-mel images (B, 1, frames, n_mels), frames cut to a multiple."""
    with torch.no_grad():
        spec = mel(wave).transpose(1, 2)[:, None]
    frames = spec.shape[2] // multiple * multiple
    if frames == 0:
        raise ValueError(f"{wave.shape[-1]} samples make fewer than {multiple} mel frames")
    return spec[:, :, :frames]


@configurable
class MelVAE(KLAutoencoderTraining):
    """Args:
        vae: ``diffusers.AutoencoderKL`` with one input and output channel.
        mel: the front end (``semanticodec_mel()`` by default).
        discriminator: ``PatchGANDiscriminator(input_nc=1)`` (training only; None: no GAN).
        kl_weight: of the KL term (AudioLDM: 1e-6).
        scales: the L1's resolutions (1 = the mel itself; see the module docstring).
        gan_weight: times the adaptive weight (AudioLDM: 0.5).
        disc_start_step: generator steps before the GAN loss switches on.
        lr, betas: Adam's, for the VAE and the discriminator.
    The training (``codecgen.kl_autoencoder``) is shared with Hallo2's frame VAE.
    """

    modality = "audio"

    def __init__(self, vae: nn.Module, mel: LogMelSpectrogram | None = None, discriminator: nn.Module | None = None,
                 kl_weight: float = 1e-6, scales: Sequence[int] = (1, 2, 4), gan_weight: float = 0.5,
                 disc_start_step: int = 50000, lr: float = 1e-4, betas: tuple[float, float] = (0.5, 0.9)):
        super().__init__()
        if vae.config.in_channels != 1 or vae.config.out_channels != 1:
            raise ValueError("the mel VAE takes and gives one channel (in_channels=1, out_channels=1)")
        self.init_kl_autoencoder(vae, discriminator, kl_weight, scales, gan_weight, disc_start_step, lr, betas)
        self.mel = mel if mel is not None else semanticodec_mel()

    def mel_image(self, wave: Tensor) -> Tensor:
        return mel_image(self.mel, wave, self.factor)

    def images(self, batch: Tensor) -> Tensor:
        return self.mel_image(batch)

    def validation_step(self, batch: Tensor, batch_idx: int) -> None:
        """``val/mel_l1``: the L1 of the reconstruction from the posterior's mean."""
        mel = self.mel_image(batch)
        self.log("val/mel_l1", F.l1_loss(self.decode(self.encode(mel)), mel), prog_bar=True,
                 batch_size=batch.shape[0], sync_dist=True)
