"""The waveform GAN step that HiFi-GAN (Kong et al., NeurIPS 2020, "HiFi-GAN: Generative
Adversarial Networks for Efficient and High Fidelity Speech Synthesis") gave the audio codecs
(HiFi-Codec, EnCodec, DAC, Language-Codec) and vocoders (SemantiCodec's), written once:

a discriminator step on (real, generated.detach()), then a generator step on weighted losses
keyed by name (``loss_weights``): the mel distance, the model's own terms (a codec's VQ loss),
and once ``disc_start_step`` generator steps have passed, the adversarial and feature-matching
losses; the learning rates decay by ``lr_gamma`` every ``lr_decay_every`` generator steps.

A class using ``WaveformGANTraining`` calls ``init_waveform_gan`` in its constructor.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from codecgen.adversarial import AdversarialTraining
from codecgen.nn.losses import (
    MultiResolutionMelLoss,
    feature_matching_loss,
    hinge_discriminator_loss,
    hinge_generator_loss,
    lsgan_discriminator_loss,
    lsgan_generator_loss,
)

GAN_LOSSES = {
    "lsgan": (lsgan_discriminator_loss, lsgan_generator_loss),
    "hinge": (hinge_discriminator_loss, hinge_generator_loss),
}


class WaveformGANTraining(AdversarialTraining):
    def init_waveform_gan(self, discriminator: nn.Module | None, sample_rate: int, mel_loss: nn.Module | None,
                          loss_weights: dict[str, float], gan_loss: str, lr: float, betas: tuple[float, float],
                          lr_gamma: float, lr_decay_every: int, disc_start_step: int, grad_clip: float | None) -> None:
        """Set the step's settings (``mel_loss`` None: ``MultiResolutionMelLoss(sample_rate)``)."""
        if gan_loss not in GAN_LOSSES:
            raise ValueError(f"gan_loss must be one of {sorted(GAN_LOSSES)}, got {gan_loss!r}")
        self.discriminator, self.sample_rate = discriminator, sample_rate
        self.mel_loss = mel_loss if mel_loss is not None else MultiResolutionMelLoss(sample_rate)
        self.loss_weights, self.gan_loss = dict(loss_weights), gan_loss
        self.lr, self.betas = lr, tuple(betas)
        self.lr_gamma, self.lr_decay_every = lr_gamma, lr_decay_every
        self.disc_start_step, self.grad_clip = disc_start_step, grad_clip
        self.automatic_optimization = False

    def training_only_args(self) -> tuple[str, ...]:
        return (*super().training_only_args(), "discriminator")

    def gan_active(self) -> bool:
        return self.discriminator is not None and self.global_step >= self.disc_start_step

    def configure_gan_optimizers(self, generator_params):
        """Adam for the generator's parameters (and the discriminator's), each with an
        exponential decay stepped every ``lr_decay_every`` generator steps."""
        opt_g = torch.optim.Adam(generator_params, lr=self.lr, betas=self.betas)
        sched_g = torch.optim.lr_scheduler.ExponentialLR(opt_g, gamma=self.lr_gamma)
        if self.discriminator is None:
            return [opt_g], [sched_g]
        opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=self.lr, betas=self.betas)
        sched_d = torch.optim.lr_scheduler.ExponentialLR(opt_d, gamma=self.lr_gamma)
        return [opt_g, opt_d], [sched_g, sched_d]

    def waveform_gan_step(self, x: Tensor, y: Tensor, losses: dict[str, Tensor] | None = None,
                          logs: dict[str, Tensor] | None = None) -> Tensor:
        """One training step for real waveforms ``x`` and generated ``y`` (B, 1, T), with
        the model's own ``losses`` (weighted by name like the rest) and extra ``logs``."""
        optimizers = self.optimizer_list()
        d_loss_fn, g_loss_fn = GAN_LOSSES[self.gan_loss]
        out_logs = {}
        if self.gan_active():
            real_logits, _ = self.discriminator(x)
            fake_logits, _ = self.discriminator(y.detach())
            loss_d = d_loss_fn(real_logits, fake_logits)
            self.discriminator_step(optimizers[1], loss_d, self.grad_clip)
            out_logs["train/disc"] = loss_d.detach()

        losses = {"mel": self.mel_loss(y, x), **(losses or {})}
        if self.gan_active():
            with torch.no_grad():
                _, real_fmaps = self.discriminator(x)
            fake_logits, fake_fmaps = self.discriminator(y)
            losses["adversarial"] = g_loss_fn(fake_logits)
            losses["feature_matching"] = feature_matching_loss(real_fmaps, fake_fmaps)
        total = sum(self.loss_weights.get(name, 0.0) * value for name, value in losses.items())
        opt_g = optimizers[0]
        opt_g.zero_grad()
        self.manual_backward(total)
        if self.grad_clip:
            self.clip_gradients(opt_g, gradient_clip_val=self.grad_clip)
        opt_g.step()

        if self.lr_decay_every and self.global_step % self.lr_decay_every == 0:
            schedulers = self.lr_schedulers()
            for scheduler in schedulers if isinstance(schedulers, list) else [schedulers]:
                scheduler.step()
        out_logs.update({f"train/{k}": v.detach() for k, v in losses.items()})
        out_logs["train/loss"] = total.detach()
        out_logs.update(logs or {})
        self.log_dict(out_logs, prog_bar=False, sync_dist=False)
        self.log("mel", losses["mel"].detach(), prog_bar=True)
        return total.detach()
