"""SemantiCodec's first stage: pre-training its semantic encoder, an AudioMAE (Huang et al.,
NeurIPS 2022, "Masked Autoencoders that Listen"), on our audio corpus.

The authors froze an AudioMAE pre-trained on AudioSet; no such weights can be downloaded here,
so we pre-train one from scratch with the AudioMAE recipe: 80 % of the patches masked, the
MSE on per-patch normalised pixels of the masked patches, AdamW (betas 0.9, 0.95, weight
decay 0.05), linear warm-up then cosine decay. Batches are random waveform segments
(``AudioDataModule``); each becomes Kaldi filterbank frames (``codecgen.nn.fbank``) cut or
zero-padded to the model's window. A user who has the authors' checkpoint loads it instead
(``init_weights``: ``codecgen.nn.audiomae.load_audiomae_weights``) and may skip this stage.
"""

from __future__ import annotations

import torch
from torch import Tensor

from codecgen.config import configurable
from codecgen.module import Module
from codecgen.nn.audiomae import AudioMAE, load_audiomae_weights
from codecgen.nn.fbank import KaldiFbank, fit_frames
from codecgen.nn.optim import warmup_cosine


@configurable
class AudioMAEPretraining(Module):
    """Args:
        mae: the ``AudioMAE`` (encoder and pre-training decoder).
        fbank: its front end (``KaldiFbank``: 16 kHz, ``mae.num_mel_bins`` bins by default).
        mask_ratio: share of patches hidden (AudioMAE: 0.8).
        lr, weight_decay, betas: AdamW's (AudioMAE: base lr 2e-4 per 256 examples,
            (0.9, 0.95), 0.05).
        warmup_steps: linear warm-up before the cosine decay (over the run's steps).
        init_weights: a local AudioMAE checkpoint to start from (e.g. the authors').
    """

    inference_modules = ("fbank", "mae")

    def __init__(self, mae: AudioMAE, fbank: KaldiFbank | None = None, mask_ratio: float = 0.8, lr: float = 2e-4,
                 weight_decay: float = 0.05, betas: tuple[float, float] = (0.9, 0.95), warmup_steps: int = 500,
                 init_weights: str | None = None):
        super().__init__()
        if not 0.0 < mask_ratio < 1.0:
            raise ValueError(f"mask_ratio must be in (0, 1), got {mask_ratio}")
        self.mae = mae
        self.fbank = fbank if fbank is not None else KaldiFbank(num_mel_bins=mae.num_mel_bins)
        if self.fbank.num_mel_bins != mae.num_mel_bins:
            raise ValueError(f"the front end makes {self.fbank.num_mel_bins} mel bins, the AudioMAE takes "
                             f"{mae.num_mel_bins}")
        self.mask_ratio, self.lr, self.weight_decay, self.betas = mask_ratio, lr, weight_decay, tuple(betas)
        self.warmup_steps, self.init_weights = warmup_steps, init_weights
        if init_weights is not None:
            load_audiomae_weights(self.mae, init_weights)

    def training_only_args(self) -> tuple[str, ...]:
        return (*super().training_only_args(), "init_weights")

    @property
    def window_samples(self) -> int:
        """Samples that fill the model's window exactly."""
        return self.fbank.samples_for(self.mae.num_frames)

    def spectrogram(self, wave: Tensor) -> Tensor:
        """Waveforms (B, 1, T) -> the MAE's input (B, 1, num_frames, num_mel_bins)."""
        with torch.no_grad():
            return fit_frames(self.fbank(wave), self.mae.num_frames)[:, None]

    def training_step(self, batch: Tensor, batch_idx: int) -> Tensor:
        loss, _, _ = self.mae.pretraining_loss(self.spectrogram(batch), self.mask_ratio)
        self.log("loss", loss.detach(), prog_bar=True, batch_size=batch.shape[0])
        self.log("train/mae", loss.detach(), batch_size=batch.shape[0])
        return loss

    def validation_step(self, batch: Tensor, batch_idx: int) -> None:
        """``val/mae``: the loss under masks drawn from a seed per batch (the same every time)."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(batch_idx)
            loss, _, _ = self.mae.pretraining_loss(self.spectrogram(batch), self.mask_ratio)
        self.log("val/mae", loss, prog_bar=True, batch_size=batch.shape[0], sync_dist=True)

    def configure_optimizers(self):
        # AdamW without decay on biases, norms and tokens (MAE's param groups)
        decay, no_decay = [], []
        for name, p in self.mae.named_parameters():
            (no_decay if p.ndim < 2 or name.endswith("_token") else decay).append(p)
        opt = torch.optim.AdamW([{"params": decay, "weight_decay": self.weight_decay},
                                 {"params": no_decay, "weight_decay": 0.0}], lr=self.lr, betas=self.betas)
        return [opt], [warmup_cosine(opt, self.training_steps(), self.warmup_steps)]
