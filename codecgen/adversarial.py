"""What every model trained against a discriminator shares, under Lightning's manual
optimisation (the audio codecs, the VQGAN image codec, SemantiCodec's mel VAE and vocoder):

- ``optimizer_list()``: the configured optimisers as a list (the generator's first);
- ``discriminator_step(optimizer, loss)``: backward and step the discriminator WITHOUT
  advancing ``global_step``, so ``trainer.max_steps`` and a ``disc_start_step`` count
  generator steps only;
- ``adaptive_gan_weight(nll, g_loss, last_layer)``: taming-transformers' balance of the
  adversarial term (Esser et al., CVPR 2021, "Taming Transformers for High-Resolution Image
  Synthesis"): ||d nll / d last|| / ||d g / d last||, clamped to [0, 1e4], no gradient.
"""

from __future__ import annotations

import torch
from torch import Tensor


class AdversarialTraining:
    """A mixin for ``codecgen.module.Module`` subclasses with a discriminator."""

    def optimizer_list(self) -> list:
        optimizers = self.optimizers()
        return optimizers if isinstance(optimizers, list) else [optimizers]

    def discriminator_step(self, optimizer, loss: Tensor, grad_clip: float | None = None) -> None:
        optimizer.zero_grad()
        self.manual_backward(loss)
        if grad_clip:
            self.clip_gradients(optimizer, gradient_clip_val=grad_clip)
        self.trainer.strategy.optimizer_step(optimizer.optimizer, closure=lambda: None, model=self)

    @staticmethod
    def adaptive_gan_weight(nll: Tensor, g_loss: Tensor, last_layer: Tensor) -> Tensor:
        nll_grad = torch.autograd.grad(nll, last_layer, retain_graph=True)[0]
        g_grad = torch.autograd.grad(g_loss, last_layer, retain_graph=True)[0]
        return (nll_grad.norm() / (g_grad.norm() + 1e-4)).clamp(0.0, 1e4).detach()
