"""Hallo2's audio encoder, pre-trained here: wav2vec 2.0 taught to name the phoneme under each video frame.

Hallo2 (Cui et al., "Hallo2: Long-Duration and High-Resolution Audio-Driven Portrait Image
Animation", 2024) conditions its denoiser on the features of a frozen wav2vec2-base that
was pre-trained (self-supervised, then for speech recognition) on hundreds of hours of
speech. Neither those weights nor that data can be had here. What the animation needs from
the audio is what the mouth does, which is the phoneme being spoken; the portrait corpus
knows it for every frame (espeak-ng's own phoneme events, DTW for recorded prompts). So the
encoder is trained supervised, frame by frame, on exactly the input Hallo2 gives it (the CNN
features interpolated to 25 fps before the transformer: :class:`Wav2Vec2Features`), with a
linear classifier on its last layer (cross-entropy over :data:`PHONEME_CLASSES`). This is a
deviation from the paper (supervised on synthetic and a little recorded speech instead of
self-supervised on LibriSpeech), said here because it bounds how well the animation can
follow real voices. A user with wav2vec2 weights passes ``init_weights`` and may skip it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from codecgen.config import configurable
from codecgen.module import Module
from codecgen.nn.optim import warmup_cosine
from codecgen.nn.wav2vec2 import Wav2Vec2Features, load_wav2vec2_weights

IGNORE = -100  # frames past a clip's end (the data module's label)


@configurable
class PhonemePretraining(Module):
    """Args:
        encoder: the ``Wav2Vec2Features`` to train (its last layer feeds the classifier).
        num_classes: phoneme classes (``len(codecgen.datamodules.portraits.PHONEME_CLASSES)``).
        fps: video frames a second (the labels' rate and the features' after interpolation).
        lr, weight_decay, warmup_steps: AdamW with a warm-up and a cosine decay.
        init_weights: a local wav2vec2 state dict to start from (torchaudio or Hugging Face names).
    """

    inference_modules = ("encoder",)

    def __init__(self, encoder: Wav2Vec2Features, num_classes: int = 56, fps: float = 25.0, lr: float = 5e-4,
                 weight_decay: float = 0.01, warmup_steps: int = 500, init_weights: str | None = None) -> None:
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes}")
        self.encoder = encoder
        self.classifier = nn.Linear(encoder.dim, num_classes)
        self.num_classes, self.fps = num_classes, fps
        self.lr, self.weight_decay, self.warmup_steps, self.init_weights = lr, weight_decay, warmup_steps, init_weights
        if init_weights is not None:
            load_wav2vec2_weights(self.encoder, init_weights)

    def training_only_args(self) -> tuple[str, ...]:
        return (*super().training_only_args(), "init_weights")

    def logits(self, audio: Tensor, frames: int) -> Tensor:
        """Waveforms (B, N) -> phoneme logits (B, frames, num_classes) from the last layer."""
        return self.classifier(self.encoder(audio, frames)[:, :, -1])

    def _loss(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        labels = batch["phonemes"]
        logits = self.logits(batch["audio"], labels.shape[1])
        loss = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=IGNORE)
        known = labels != IGNORE
        accuracy = (logits.argmax(-1) == labels)[known].float().mean()
        return loss, accuracy

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        loss, accuracy = self._loss(batch)
        n = batch["audio"].shape[0]
        self.log("loss", loss.detach(), prog_bar=True, batch_size=n)
        self.log("train/ce", loss.detach(), batch_size=n)
        self.log("train/accuracy", accuracy, batch_size=n)
        return loss

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        loss, accuracy = self._loss(batch)
        n = batch["audio"].shape[0]
        self.log("val/ce", loss, prog_bar=True, batch_size=n, sync_dist=True)
        self.log("val/accuracy", accuracy, prog_bar=True, batch_size=n, sync_dist=True)

    def configure_optimizers(self):
        decay = [p for p in self.parameters() if p.ndim >= 2]
        no_decay = [p for p in self.parameters() if p.ndim < 2]
        opt = torch.optim.AdamW([{"params": decay, "weight_decay": self.weight_decay},
                                 {"params": no_decay, "weight_decay": 0.0}], lr=self.lr)
        return [opt], [warmup_cosine(opt, self.training_steps(), self.warmup_steps)]
