"""Motion frames on the time axis of the motion modules (Hallo2's way of continuing the previous clip).

Hallo2 (Cui et al. 2024; also Hallo) generates a long video in clips of F frames and gives each
clip the last M frames of the one before (the motion frames, M = 2). They do not enter the
denoiser as noisy frames: the reference net encodes them (with the reference image, at t = 0),
and inside the denoiser each motion module (temporal attention over the frames of a sample)
sees the motion frames' reference-net features PREPENDED on the time axis; after the module,
they are cut off again. So the temporal attention continues the motion of the previous clip,
while only the F new frames are denoised.

With diffusers: the reference net runs on [reference, motion frame 1 .. M] per sample
(``bank.per_sample = 1 + M``); a forward hook on its module at the place of each motion module
(the output of ``attentions[j]`` of that block, or of ``resnets[j]`` in a block without
attention) stores those features; the denoiser's motion module ``j`` of that block is wrapped in
:class:`MotionFrameContext`, which prepends the stored motion-frame features, runs the module
over M + F frames and keeps the last F. With M = 0 (``per_sample = 1``) nothing changes.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from codecgen.nn.reference_attention import ReferenceBank


class MotionFrameContext(nn.Module):
    """A motion module that also sees the motion frames' features stored under ``name``."""

    def __init__(self, module: nn.Module, bank: ReferenceBank, name: str) -> None:
        super().__init__()
        self.module, self.bank, self.name = module, bank, name

    def forward(self, hidden_states: Tensor, encoder_hidden_states: Tensor | None = None, timestep=None,
                class_labels=None, num_frames: int = 1, cross_attention_kwargs=None) -> Tensor:
        # The arguments of diffusers' AnimateDiffTransformer3D.forward, which some blocks pass by position.
        kwargs = dict(encoder_hidden_states=encoder_hidden_states, timestep=timestep, class_labels=class_labels,
                      cross_attention_kwargs=cross_attention_kwargs)
        stored = self.bank.motion.get(self.name) if self.bank.enabled else None
        motion = self.bank.per_sample - 1
        if stored is None or motion == 0:
            return self.module(hidden_states, num_frames=num_frames, **kwargs)
        n, c, h, w = hidden_states.shape
        samples = n // num_frames
        if stored.shape[0] != samples * self.bank.per_sample or stored.shape[1:] != (c, h, w):
            raise ValueError(f"motion module {self.name}: stored features {tuple(stored.shape)} do not fit "
                             f"{samples} samples x {self.bank.per_sample} reference-net items of {(c, h, w)}")
        context = stored.view(samples, self.bank.per_sample, c, h, w)[:, 1:]
        frames = torch.cat([context, hidden_states.view(samples, num_frames, c, h, w)], dim=1)
        out = self.module(frames.flatten(0, 1), num_frames=motion + num_frames, **kwargs)
        return out.view(samples, motion + num_frames, c, h, w)[:, motion:].flatten(0, 1)


def _store(bank: ReferenceBank, name: str):
    def hook(module: nn.Module, args, output) -> None:
        bank.motion[name] = output[0] if isinstance(output, tuple) else getattr(output, "sample", output)
    return hook


def _reference_position(reference_net: nn.Module, block_path: str, index: int) -> nn.Module:
    block = reference_net.get_submodule(block_path)
    if getattr(block, "attentions", None) is not None and len(block.attentions) > index:
        return block.attentions[index]
    return block.resnets[index]  # a block without attention: the motion module follows its resnet


def install_motion_frame_context(reference_net: nn.Module, denoiser: nn.Module, bank: ReferenceBank) -> list[str]:
    """Hook ``reference_net`` and wrap every motion module of ``denoiser`` (a ``UNetMotionModel``)
    so motion frames reach them (module docstring); return the wrapped modules' names."""
    wrapped = []
    for path, block in list(denoiser.named_modules()):
        modules = getattr(block, "motion_modules", None)
        if not isinstance(modules, nn.ModuleList) or not path:
            continue
        for j, module in enumerate(modules):
            name = f"{path}.motion_modules.{j}"
            if isinstance(module, MotionFrameContext):
                continue
            _reference_position(reference_net, path, j).register_forward_hook(_store(bank, name))
            modules[j] = MotionFrameContext(module, bank, name)
            wrapped.append(name)
    if not wrapped:
        raise ValueError("the denoiser has no motion modules (expected a diffusers UNetMotionModel)")
    return wrapped
