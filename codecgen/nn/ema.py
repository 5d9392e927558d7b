"""Exponential moving average (EMA, Polyak averaging) of a model's weights.

A diffusion model samples with, and is exported with, the average of its recent weights
rather than the last ones: a <- decay * a + (1 - decay) * w after every optimiser step
(Ho et al. 2020 sample from an EMA with decay 0.9999). The averaged copies are ordinary
sub-modules of their owner, so the owner's state dict (a checkpoint) holds them and a
resumed run continues the very same average; so does the count of updates, which the
average keeps itself rather than trusting a trainer's step counter. The live modules are
not registered here (they belong to the owner), so every method takes them as a mapping
name -> module.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import torch
from torch import Tensor, nn


class EMA(nn.Module):
    def __init__(self, modules: Mapping[str, nn.Module], decay: float, start_step: int = 0):
        """``modules``: the live modules to average, by name. Until ``start_step`` optimiser
        steps the average follows the live weights exactly (early weights are poor; the
        average starts from a trained model)."""
        super().__init__()
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        if start_step < 0:
            raise ValueError(f"EMA start_step must be >= 0, got {start_step}")
        self.decay, self.start_step = float(decay), int(start_step)
        self.averaged = nn.ModuleDict()
        self.register_buffer("num_updates", torch.zeros((), dtype=torch.long))
        self._swapped = False
        for name, module in modules.items():
            self.add(name, module)

    def add(self, name: str, module: nn.Module) -> None:
        """Average one more live module (its copy starts equal to it)."""
        self.averaged[name] = copy.deepcopy(module).requires_grad_(False)

    def _tensors(self, live: Mapping[str, nn.Module], buffers: bool) -> Iterator[tuple[Tensor, Tensor]]:
        for name, average in self.averaged.items():
            ours = average.buffers() if buffers else average.parameters()
            theirs = live[name].buffers() if buffers else live[name].parameters()
            yield from zip(ours, theirs, strict=True)

    @torch.no_grad()
    def reset(self, live: Mapping[str, nn.Module]) -> None:
        """Make the average equal to the live weights."""
        for average, current in (*self._tensors(live, False), *self._tensors(live, True)):
            average.copy_(current)

    @torch.no_grad()
    def update(self, live: Mapping[str, nn.Module]) -> None:
        """After an optimiser step. Buffers (norm statistics, masks) are copied, not averaged."""
        self.num_updates += 1
        if self.num_updates <= self.start_step:
            self.reset(live)
            return
        for average, current in self._tensors(live, False):
            average.lerp_(current, 1.0 - self.decay)
        for average, current in self._tensors(live, True):
            average.copy_(current)

    def averaged_state(self, live: Mapping[str, nn.Module]) -> dict[str, Tensor]:
        """The averaged weights under the live modules' names (``"unet.conv_in.weight"``),
        wherever they are at the moment (swapped in or not)."""
        holders = live if self._swapped else self.averaged
        return {f"{name}.{key}": tensor for name in self.averaged
                for key, tensor in holders[name].state_dict().items()}

    @contextmanager
    def swapped_in(self, live: Mapping[str, nn.Module]):
        """Inside, the live modules hold the averaged weights (and the average the live ones);
        both are back in place on exit. Swapping storage copies nothing. Nested uses are
        no-ops (a second swap would put the live weights back)."""
        if self._swapped:
            yield
            return
        pairs = list(self._tensors(live, False))

        def swap():
            for average, current in pairs:
                average.data, current.data = current.data, average.data
            self._swapped = not self._swapped

        swap()
        try:
            yield
        finally:
            swap()
