"""The Codec contract shared by audio, image and video codecs (docs/architecture.md).

A ``Codec`` is a ``codecgen.module.Module`` (spec, weights hash, export) that
- maps a batch to integer codes and back: ``encode(x) -> codes``, ``decode(codes) -> x``;
- maps one item to a self-describing ``.cgc`` byte string and back: ``compress`` /
  ``decompress`` (file format in ``codecgen.codecs.bitstream``);
- declares its modality, its ``downsampling_factor`` and ``bitrate()``, computed from
  the quantizer, never hand-written.
"""

from __future__ import annotations

import torch

from codecgen.module import Module


class CodecError(ValueError):
    """A user-facing error about an input (bad audio, wrong model for a file, ...)."""


class Codec(Module):
    # -- contract ---------------------------------------------------------------------
    @property
    def downsampling_factor(self) -> int:
        """Input samples (audio) or pixels per side (image, video) per latent position."""
        raise NotImplementedError

    def encode(self, x: torch.Tensor, **kwargs) -> torch.Tensor:
        raise NotImplementedError

    def decode(self, codes: torch.Tensor, **kwargs) -> torch.Tensor:
        raise NotImplementedError

    def compress(self, x: torch.Tensor, **kwargs) -> bytes:
        raise NotImplementedError

    def decompress(self, data: bytes, **kwargs):
        raise NotImplementedError

    def bitrate(self, **kwargs) -> float:
        raise NotImplementedError
