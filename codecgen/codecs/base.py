"""The Codec contract shared by audio, image and video codecs (DESIGN.md).

A ``Codec`` is a LightningModule that
- maps a batch to integer codes and back: ``encode(x) -> codes``, ``decode(codes) -> x``;
- maps one item to a self-describing ``.cgc`` byte string and back: ``compress`` /
  ``decompress`` (file format in ``codecgen.codecs.bitstream``);
- declares its modality, rate and ``bitrate()``, computed from the quantizer.

Every codec is ``@configurable``: its constructor arguments (sub-modules included, as
``class_path`` / ``init_args``) are the checkpoint's hyper-parameters, so
``codecgen.load`` rebuilds it from a ``.ckpt`` or an exported folder with no config.
"""

from __future__ import annotations

import hashlib
from typing import ClassVar

import lightning as L
import torch

from codecgen.nn.config import init_spec


class CodecError(ValueError):
    """A user-facing error about an input (bad audio, wrong model for a file, ...)."""


class Codec(L.LightningModule):
    modality: ClassVar[str] = "none"
    # Sub-modules needed to encode and decode; the rest (discriminators, losses) are
    # training-only: left out of exports and of the weights hash.
    inference_modules: ClassVar[tuple[str, ...]] = ()

    def __init__(self):
        super().__init__()
        # The recorded spec (codecgen.nn.config.configurable) is plain JSON-able data,
        # so checkpoints load with torch.load(weights_only=True).
        self.save_hyperparameters(init_spec(self)["init_args"])
        self._weights_hash: str | None = None

    # -- identity ---------------------------------------------------------------------
    @property
    def model_name(self) -> str:
        return type(self).__name__

    def spec(self, inference_only: bool = False) -> dict:
        """``{"class_path", "init_args"}``; with ``inference_only`` the training-only
        sub-modules (discriminators) are dropped, as in an export."""
        spec = init_spec(self)
        if not inference_only:
            return spec
        init_args = dict(spec["init_args"])
        for name in self.training_only_args():
            init_args[name] = None
        return {"class_path": spec["class_path"], "init_args": init_args}

    def training_only_args(self) -> tuple[str, ...]:
        return ()

    def setup(self, stage: str) -> None:
        # A GAN step runs two backward passes (discriminator, then generator) and the
        # discriminator sits idle during warm-up, so some parameters get no gradient in
        # a given backward. Plain `--trainer.strategy ddp` would then hang or fail; ask
        # DDP to look for unused parameters before it wraps the model.
        ddp_kwargs = getattr(getattr(self._trainer, "strategy", None), "_ddp_kwargs", None)
        if isinstance(ddp_kwargs, dict):
            ddp_kwargs.setdefault("find_unused_parameters", True)

    def inference_state_dict(self) -> dict[str, torch.Tensor]:
        prefixes = tuple(f"{name}." for name in self.inference_modules)
        return {k: v for k, v in self.state_dict().items() if k.startswith(prefixes)}

    def weights_hash(self) -> str:
        """SHA-256 (first 16 hex digits) of the inference weights: a file records the
        hash of the model that wrote it, and decoding with another model is refused."""
        if self._weights_hash is None or self.training:
            digest = hashlib.sha256()
            for name, tensor in sorted(self.inference_state_dict().items()):
                digest.update(name.encode())
                digest.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
            digest.update(self.hash_extra())
            self._weights_hash = digest.hexdigest()[:16]
        return self._weights_hash

    def hash_extra(self) -> bytes:
        """Configuration, beyond the weights, that a file's decodability depends on."""
        return b""

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["codecgen_spec"] = self.spec()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self._weights_hash = None

    # -- contract ---------------------------------------------------------------------
    def encode(self, x: torch.Tensor, **kwargs) -> torch.Tensor:
        raise NotImplementedError

    def decode(self, codes: torch.Tensor, **kwargs) -> torch.Tensor:
        raise NotImplementedError

    def compress(self, x: torch.Tensor, **kwargs) -> bytes:
        raise NotImplementedError

    def decompress(self, data: bytes) -> torch.Tensor:
        raise NotImplementedError

    def bitrate(self, **kwargs) -> float:
        raise NotImplementedError
