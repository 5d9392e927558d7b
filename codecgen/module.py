"""The base every trainable codecgen model shares: ``Module`` (codecs and, next, generators).

A ``Module`` is a LightningModule built from a ``@configurable`` class, so it knows
- its spec: the constructor arguments, sub-modules as ``class_path`` / ``init_args``
  (``codecgen.config``), which is what a checkpoint and an export carry;
- which sub-modules inference needs (``inference_modules``): the rest (discriminators,
  losses) are training-only, left out of exports and of the weights hash;
- the hash of its inference weights, which a coded file records so that decoding with
  another model is refused;
- its nominal rate (``nominal_rate()``: a value with its unit) and how to ``export`` itself.

Checkpoints: the spec travels under ``codecgen_spec`` and ``codecgen.load`` rebuilds the
model from it. Lightning's own ``hyper_parameters`` entry is left out of checkpoints:
LightningCLI re-parses it on ``--ckpt_path`` (resuming a run), and a recorded spec is
the full, resolved argument tree, which need not fit the YAML parser's view of each
argument; the run's config file is what a resumed run is built from.

Resuming: everything a training step depends on is in the checkpoint (weights, buffers
such as EMA codebooks and k-means flags, every optimiser and LR scheduler, the loops'
counters; step-dependent schedules such as ``disc_start_step`` read ``global_step``), and
in a seeded run each training batch starts torch's RNG from the run's seed, the global
step and the batch index (``codecgen.seeding``), so the model's random draws (quantizer
dropout, dead-code replacement, k-means init, masks) continue as if never interrupted.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import ClassVar

import lightning as L
import torch

from codecgen.config import init_spec
from codecgen.seeding import derive_seed, run_seed


class Module(L.LightningModule):
    modality: ClassVar[str] = "none"
    # Sub-modules needed to run the model; the rest are training-only.
    inference_modules: ClassVar[tuple[str, ...]] = ()
    # Trained stages this model uses frozen: always in inference mode (dropout off, norms fixed); None allowed.
    frozen_modules: ClassVar[tuple[str, ...]] = ()

    def __init__(self):
        super().__init__()
        # The recorded spec is plain JSON-able data; hparams feed the loggers.
        self.save_hyperparameters(init_spec(self)["init_args"])
        self._weights_hash: str | None = None

    def train(self, mode: bool = True):
        super().train(mode)
        for name in self.frozen_modules:  # dotted names reach inside a sub-module; an absent (None) one is skipped
            parent, _, leaf = name.rpartition(".")
            module = getattr(self.get_submodule(parent) if parent else self, leaf)
            if module is not None:
                module.eval()
        return self

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

    def training_steps(self) -> int:
        """The optimiser steps of this run, for a schedule: ``max_steps``, else what the loader gives."""
        trainer = self.trainer
        return int(trainer.max_steps if trainer.max_steps > 0 else trainer.estimated_stepping_batches)

    def nominal_rate(self) -> dict | None:
        """The model's nominal rate with its unit (``{"value": 2000.0, "unit": "bps"}``), or
        None where it has none before it sees data (a generator; a video fitted per clip)."""
        return None

    def setup(self, stage: str) -> None:
        # A GAN step runs two backward passes (discriminator, then generator) and the
        # discriminator sits idle during warm-up, so some parameters get no gradient in
        # a given backward. Plain `--trainer.strategy ddp` would then hang or fail; ask
        # DDP to look for unused parameters before it wraps the model.
        ddp_kwargs = getattr(getattr(self._trainer, "strategy", None), "_ddp_kwargs", None)
        if isinstance(ddp_kwargs, dict):
            ddp_kwargs.setdefault("find_unused_parameters", True)

    def on_train_batch_start(self, batch, batch_idx: int) -> None:
        # see the module docstring: resumable randomness (an unseeded run is left alone)
        seed = run_seed()
        if seed is not None:
            torch.manual_seed(derive_seed(seed, self.global_step, batch_idx))

    def inference_state_dict(self) -> dict[str, torch.Tensor]:
        prefixes = tuple(f"{name}." for name in self.inference_modules)
        return {k: v for k, v in self.state_dict().items() if k.startswith(prefixes)}

    def weights_hash(self) -> str:
        """SHA-256 (first 16 hex digits) of the inference weights (and ``hash_extra``)."""
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

    def export(self, folder: str | Path, overwrite: bool = False, half: bool = False) -> Path:
        """``folder/config.json`` + ``folder/model.safetensors`` (see ``codecgen.hub.export``)."""
        from codecgen.hub import export

        return export(self, folder, overwrite=overwrite, half=half)

    # -- checkpoints ------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["codecgen_spec"] = self.spec()
        checkpoint.pop("hyper_parameters", None)  # see the module docstring: resuming

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self._weights_hash = None
