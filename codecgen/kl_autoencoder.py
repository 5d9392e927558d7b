"""Training a latent-diffusion autoencoder (diffusers' ``AutoencoderKL``) the way Stable Diffusion's and
AudioLDM's were trained (Rombach et al., CVPR 2022, "High-Resolution Image Synthesis with Latent
Diffusion Models"): reconstruction + a small KL to N(0, 1) + a PatchGAN whose hinge loss is
balanced against the reconstruction by taming-transformers' adaptive weight.

Shared by SemantiCodec's mel VAE and Hallo2's frame VAE; a subclass says how a batch becomes
images (``images``) and names its validation metric. The perceptual term of the originals
(LPIPS) needs VGG weights that cannot be downloaded here: an L1 at several resolutions
(``scales``: the images average-pooled by 2 and 4 as well) stands in for it, rewarding the
coarse structure as well as the pixels.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from codecgen.adversarial import AdversarialTraining
from codecgen.module import Module
from codecgen.nn.losses import hinge_discriminator_loss, hinge_generator_loss



def autoencoder_factor(vae) -> int:
    """Pixels per latent position, each way, of a diffusers ``AutoencoderKL`` (one halving between levels)."""
    return 2 ** (len(vae.config.block_out_channels) - 1)

class KLAutoencoderTraining(AdversarialTraining, Module):
    """Args (of subclasses' ``init_kl_autoencoder``):
        vae: ``diffusers.AutoencoderKL``.
        discriminator: e.g. ``PatchGANDiscriminator`` (training only; None: no GAN).
        kl_weight: of the KL term (Stable Diffusion, AudioLDM: 1e-6).
        scales: the L1's resolutions (1 = the images themselves).
        gan_weight: times the adaptive weight (0.5).
        disc_start_step: generator steps before the GAN loss switches on.
        lr, betas: Adam's, for the VAE and the discriminator.
    """

    inference_modules = ("vae",)

    def init_kl_autoencoder(self, vae: nn.Module, discriminator: nn.Module | None, kl_weight: float,
                            scales: Sequence[int], gan_weight: float, disc_start_step: int, lr: float,
                            betas: Sequence[float]) -> None:
        if not scales or any(s < 1 for s in scales):
            raise ValueError(f"scales must be positive pooling factors, got {list(scales)}")
        self.vae, self.discriminator = vae, discriminator
        self.kl_weight, self.scales, self.gan_weight = kl_weight, [int(s) for s in scales], gan_weight
        self.disc_start_step, self.lr, self.betas = disc_start_step, lr, tuple(betas)
        self.automatic_optimization = False

    def training_only_args(self) -> tuple[str, ...]:
        return ("discriminator",)

    def images(self, batch) -> Tensor:
        """A batch -> the images the VAE reconstructs (B, C, H, W)."""
        raise NotImplementedError

    @property
    def factor(self) -> int:
        """Pixels per latent position, each way."""
        return autoencoder_factor(self.vae)

    @property
    def latent_channels(self) -> int:
        return self.vae.config.latent_channels

    def encode(self, images: Tensor, sample: bool = False) -> Tensor:
        """Images (B, C, H, W) -> latents (B, z, H / f, W / f): the posterior's mean, or a draw
        from it (torch's global RNG) with ``sample``."""
        posterior = self.vae.encode(images).latent_dist
        return posterior.sample() if sample else posterior.mode()

    def decode(self, z: Tensor) -> Tensor:
        return self.vae.decode(z).sample

    def reconstruction_losses(self, rec: Tensor, images: Tensor) -> dict[str, Tensor]:
        losses = {}
        for s in self.scales:
            a, b = (rec, images) if s == 1 else (F.avg_pool2d(rec, s), F.avg_pool2d(images, s))
            losses["l1" if s == 1 else f"l1_pool{s}"] = F.l1_loss(a, b)
        return losses

    def gan_active(self) -> bool:
        return self.discriminator is not None and self.global_step >= self.disc_start_step

    def configure_optimizers(self):
        opt = torch.optim.Adam(self.vae.parameters(), lr=self.lr, betas=self.betas)
        if self.discriminator is None:
            return opt
        return [opt, torch.optim.Adam(self.discriminator.parameters(), lr=self.lr, betas=self.betas)]

    def training_step(self, batch, batch_idx: int) -> Tensor:
        images = self.images(batch)
        n = images.shape[0]
        posterior = self.vae.encode(images).latent_dist
        rec = self.decode(posterior.sample())
        losses = self.reconstruction_losses(rec, images)
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
            loss_d = hinge_discriminator_loss(self.discriminator(images)[0], self.discriminator(rec.detach())[0])
            self.discriminator_step(optimizers[1], loss_d)
            logs["train/disc"] = loss_d.detach()
        logs.update({f"train/{k}": v.detach() for k, v in losses.items()})
        self.log_dict(logs, batch_size=n)
        self.log("loss", total.detach(), prog_bar=True, batch_size=n)
        return total.detach()
