"""Reference attention: a reference network's spatial self-attention inputs joined to a denoiser's keys and values.

Hallo2 (Cui et al. 2024), after Animate Anyone (Hu et al., CVPR 2024), keeps the portrait's
appearance by running a copy of the denoising UNet (the reference net) on the reference
image's latent at t = 0, and letting every spatial self-attention of the denoiser attend to
the reference net's features at the same place: the keys and values of the denoiser's layer
``name`` are computed from [its own hidden states, the reference net's hidden states entering
its layer ``name``] (per frame: each of the F frames of a sample sees its sample's reference).

Done with diffusers attention processors, so the UNets stay diffusers' classes: the reference
net's self-attentions (``attn1``) get a :class:`WriteReference` processor that records their
input in a shared :class:`ReferenceBank`; the denoiser's get a :class:`ReadReference` that uses
it. Layer names match between a ``UNet2DConditionModel`` and the ``UNetMotionModel`` built from
its configuration, which is how layers pair up. An empty bank (or ``bank.enabled = False``)
leaves the denoiser exactly as it was.
"""

from __future__ import annotations

import torch
from diffusers.models.attention_processor import AttnProcessor2_0
from torch import Tensor, nn


class ReferenceBank:
    """What one forward pass of the reference net leaves for the denoiser: its self-attention
    inputs by layer name (N, tokens, C), and (``codecgen.nn.motion_frame_context``) its features
    at the motion modules' places. The reference net's batch holds ``per_sample`` items a
    sample: the reference first, then the motion frames (1 = the reference alone)."""

    def __init__(self) -> None:
        self.features: dict[str, Tensor] = {}
        self.motion: dict[str, Tensor] = {}
        self.per_sample = 1
        self.enabled = True

    def clear(self) -> None:
        self.features.clear()
        self.motion.clear()

    def __len__(self) -> int:
        return len(self.features)


class WriteReference(AttnProcessor2_0):
    """A self-attention that records its input under ``name`` and attends as usual."""

    def __init__(self, bank: ReferenceBank, name: str) -> None:
        super().__init__()
        self.bank, self.name = bank, name

    def __call__(self, attn, hidden_states: Tensor, encoder_hidden_states: Tensor | None = None, *args, **kwargs):
        self.bank.features[self.name] = hidden_states
        return super().__call__(attn, hidden_states, encoder_hidden_states, *args, **kwargs)


class ReadReference(AttnProcessor2_0):
    """A self-attention whose keys and values also see the bank's features for ``name``, repeated
    over the frames of each sample (the denoiser's batch is samples x frames, frame-major within
    a sample)."""

    def __init__(self, bank: ReferenceBank, name: str) -> None:
        super().__init__()
        self.bank, self.name = bank, name

    def __call__(self, attn, hidden_states: Tensor, encoder_hidden_states: Tensor | None = None, *args, **kwargs):
        reference = self.bank.features.get(self.name) if self.bank.enabled else None
        if reference is None or encoder_hidden_states is not None:
            return super().__call__(attn, hidden_states, encoder_hidden_states, *args, **kwargs)
        reference = reference[:: self.bank.per_sample]  # each sample's reference, not its motion frames
        n, samples = hidden_states.shape[0], reference.shape[0]
        if n % samples:
            raise ValueError(f"layer {self.name}: {n} denoised frames for {samples} references")
        reference = reference.repeat_interleave(n // samples, dim=0)
        return super().__call__(attn, hidden_states, torch.cat([hidden_states, reference], dim=1), *args, **kwargs)


def _self_attentions(unet: nn.Module) -> list[str]:
    """Names of a UNet's spatial self-attentions (``...transformer_blocks.k.attn1``, not motion modules')."""
    return [name for name, module in unet.named_modules()
            if name.endswith(".attn1") and "motion_modules" not in name and hasattr(module, "set_processor")]


def install_reference_attention(reference_net: nn.Module, denoiser: nn.Module) -> ReferenceBank:
    """Wire ``reference_net``'s spatial self-attentions to ``denoiser``'s of the same names; return
    the bank they share. ValueError if the two do not have the same self-attention layers."""
    names = _self_attentions(reference_net)
    theirs = set(_self_attentions(denoiser))
    if not names or set(names) != theirs:
        raise ValueError(f"the reference net and the denoiser must have the same spatial self-attentions; "
                         f"only in one: {sorted(set(names) ^ theirs)[:4]}")
    bank = ReferenceBank()
    modules = dict(reference_net.named_modules())
    for name in names:
        modules[name].set_processor(WriteReference(bank, name))
    modules = dict(denoiser.named_modules())
    for name in names:
        modules[name].set_processor(ReadReference(bank, name))
    return bank
