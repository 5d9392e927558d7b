"""SemantiCodec's third stage: the variational autoencoder of the mel spectrogram its latent
diffusion decoder works in (Liu et al. 2024, "SemantiCodec"; the VAE is AudioLDM's: Liu et
al., ICML 2023, "AudioLDM: Text-to-Audio Generation with Latent Diffusion Models").

The mel (``semanticodec_mel``): 64 bins over 0-8 kHz of 16 kHz audio, n_fft 1024, hop 160
(100 frames a second), librosa's slaney filters, log of the magnitude clamped at 1e-5, frames
not centred (HiFi-GAN's padding: T / 160 frames). It is an image (B, 1, frames, 64), time down
the rows, as AudioLDM lays it out. The VAE is diffusers' ``AutoencoderKL`` given in the config
(the authors: channels 128 x [1, 2, 4], 2 blocks a level, 8 latent channels: a 4x smaller
latent each way).

Loss: AudioLDM trains it with L1 + LPIPS + KL (weight 1e-6) + a PatchGAN whose hinge loss is
balanced by taming's adaptive weight (times 0.5). LPIPS needs VGG weights we cannot download;
in its place (as the issue asks) an L1 at several resolutions of the mel (``scales``: the
image average-pooled by 2 and 4 as well), which, like LPIPS, rewards getting the coarse
spectral envelope right as well as the pixels.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from codecgen.adversarial import AdversarialTraining
from codecgen.config import configurable
from codecgen.module import Module
from codecgen.nn.losses import LogMelSpectrogram, hinge_discriminator_loss, hinge_generator_loss


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
class MelVAE(AdversarialTraining, Module):
    """Args:
        vae: ``diffusers.AutoencoderKL`` with one input and output channel.
        mel: the front end (``semanticodec_mel()`` by default).
        discriminator: ``PatchGANDiscriminator(input_nc=1)`` (training only; None: no GAN).
        kl_weight: of the KL term (AudioLDM: 1e-6).
        scales: the L1's resolutions (1 = the mel itself; see the module docstring).
        gan_weight: times the adaptive weight (AudioLDM: 0.5).
        disc_start_step: generator steps before the GAN loss switches on.
        lr, betas: Adam's, for the VAE and the discriminator.
    """

    modality = "audio"
    inference_modules = ("vae",)

    def __init__(self, vae: nn.Module, mel: LogMelSpectrogram | None = None, discriminator: nn.Module | None = None,
                 kl_weight: float = 1e-6, scales: Sequence[int] = (1, 2, 4), gan_weight: float = 0.5,
                 disc_start_step: int = 50000, lr: float = 1e-4, betas: tuple[float, float] = (0.5, 0.9)):
        super().__init__()
        if vae.config.in_channels != 1 or vae.config.out_channels != 1:
            raise ValueError("the mel VAE takes and gives one channel (in_channels=1, out_channels=1)")
        if not scales or any(s < 1 for s in scales):
            raise ValueError(f"scales must be positive pooling factors, got {list(scales)}")
        self.vae, self.mel = vae, mel if mel is not None else semanticodec_mel()
        self.discriminator = discriminator
        self.kl_weight, self.scales, self.gan_weight = kl_weight, [int(s) for s in scales], gan_weight
        self.disc_start_step, self.lr, self.betas = disc_start_step, lr, tuple(betas)
        self.automatic_optimization = False

    def training_only_args(self) -> tuple[str, ...]:
        return ("discriminator",)

    @property
    def factor(self) -> int:
        """Mel frames (and bins) per latent position."""
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def latent_channels(self) -> int:
        return self.vae.config.latent_channels

    # -- mel <-> latent ------------------------------------------------------------------
    def mel_image(self, wave: Tensor) -> Tensor:
        return mel_image(self.mel, wave, self.factor)

    def encode(self, mel: Tensor, sample: bool = False) -> Tensor:
        """Mel images (B, 1, frames, bins) -> latents (B, z, frames / f, bins / f): the
        posterior's mean, or a draw from it (torch's global RNG) with ``sample``."""
        posterior = self.vae.encode(mel).latent_dist
        return posterior.sample() if sample else posterior.mode()

    def decode(self, z: Tensor) -> Tensor:
        return self.vae.decode(z).sample

    def reconstruction_losses(self, rec: Tensor, mel: Tensor) -> dict[str, Tensor]:
        losses = {}
        for s in self.scales:
            a, b = (rec, mel) if s == 1 else (F.avg_pool2d(rec, s), F.avg_pool2d(mel, s))
            losses["l1" if s == 1 else f"l1_pool{s}"] = F.l1_loss(a, b)
        return losses

    # -- training ------------------------------------------------------------------------
    def gan_active(self) -> bool:
        return self.discriminator is not None and self.global_step >= self.disc_start_step

    def configure_optimizers(self):
        opt = torch.optim.Adam(self.vae.parameters(), lr=self.lr, betas=self.betas)
        if self.discriminator is None:
            return opt
        return [opt, torch.optim.Adam(self.discriminator.parameters(), lr=self.lr, betas=self.betas)]

    def training_step(self, batch: Tensor, batch_idx: int) -> Tensor:
        mel = self.mel_image(batch)
        posterior = self.vae.encode(mel).latent_dist
        rec = self.decode(posterior.sample())
        losses = self.reconstruction_losses(rec, mel)
        nll = sum(losses.values())
        losses["kl"] = posterior.kl().mean()
        total = nll + self.kl_weight * losses["kl"]
        logs = {}
        optimizers = self.optimizer_list()
        if self.gan_active():
            g_loss = hinge_generator_loss(self.discriminator(rec)[0])
            weight = self.adaptive_gan_weight(nll, g_loss, self.vae.decoder.conv_out.weight) * self.gan_weight
            total = total + weight * g_loss
            logs.update({"train/gan": g_loss.detach(), "train/gan_weight": weight})
        optimizers[0].zero_grad()
        self.manual_backward(total)
        optimizers[0].step()
        if self.gan_active():
            loss_d = hinge_discriminator_loss(self.discriminator(mel)[0], self.discriminator(rec.detach())[0])
            self.discriminator_step(optimizers[1], loss_d)
            logs["train/disc"] = loss_d.detach()
        logs.update({f"train/{k}": v.detach() for k, v in losses.items()})
        self.log_dict(logs, batch_size=batch.shape[0])
        self.log("loss", total.detach(), prog_bar=True, batch_size=batch.shape[0])
        return total.detach()

    def validation_step(self, batch: Tensor, batch_idx: int) -> None:
        """``val/mel_l1``: the L1 of the reconstruction from the posterior's mean."""
        mel = self.mel_image(batch)
        self.log("val/mel_l1", F.l1_loss(self.decode(self.encode(mel)), mel), prog_bar=True,
                 batch_size=batch.shape[0], sync_dist=True)
