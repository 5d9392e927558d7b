"""Hallo2's identity encoder, trained here: a face embedder in place of the authors' frozen ArcFace.

Hallo2 (Cui et al., "Hallo2: Long-Duration and High-Resolution Audio-Driven Portrait Image
Animation", 2024) embeds the reference face with InsightFace's ArcFace (512-d), then projects
it to 4 tokens the denoiser cross-attends to. No face-recognition weights can be fetched
here, so this stage trains :class:`~codecgen.nn.face_embedder.FaceEmbedder` on the portrait
corpus's training identities with ArcFace's additive-angular-margin loss. Validation asks the
question that matters, on faces never seen in training (the corpus holds out whole
identities): are two crops of one person closer than crops of two people? It logs the mean
cosine within and between held-out identities, their gap, and the leave-one-out
nearest-neighbour accuracy. The same embedder scores identity drift in the benchmark.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from codecgen.config import configurable
from codecgen.module import Module
from codecgen.nn.face_embedder import ArcMarginHead, FaceEmbedder
from codecgen.nn.optim import warmup_cosine


def identity_scores(embeddings: Tensor, labels: Tensor) -> dict[str, float]:
    """Mean cosine within and between identities, their gap, and leave-one-out 1-NN accuracy."""
    cos = embeddings @ embeddings.T
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    within, between = cos[same & ~eye], cos[~same]
    nearest = cos.masked_fill(eye, -2.0).argmax(1)
    out = {"nn_accuracy": float((labels[nearest] == labels).float().mean())}
    if len(within) and len(between):
        out |= {"same_cos": float(within.mean()), "other_cos": float(between.mean()),
                "gap": float(within.mean() - between.mean())}
    return out


@configurable
class IdentityPretraining(Module):
    """Args:
        embedder: the ``FaceEmbedder`` to train.
        num_identities: training identities (the data module numbers them; a larger number is harmless).
        scale, margin: ArcFace's (64, 0.5 for millions of faces; smaller here, for a few dozen).
        lr, weight_decay, warmup_steps: AdamW with a warm-up and a cosine decay.
    """

    inference_modules = ("embedder",)

    def __init__(self, embedder: FaceEmbedder, num_identities: int = 64, scale: float = 16.0, margin: float = 0.3,
                 lr: float = 1e-3, weight_decay: float = 5e-4, warmup_steps: int = 200) -> None:
        super().__init__()
        if num_identities < 2:
            raise ValueError(f"num_identities must be >= 2, got {num_identities}")
        self.embedder = embedder
        self.head = ArcMarginHead(embedder.dim, num_identities, scale, margin)
        self.num_identities = num_identities
        self.lr, self.weight_decay, self.warmup_steps = lr, weight_decay, warmup_steps
        self._val: list[tuple[Tensor, Tensor]] = []

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        labels = batch["identity"]
        if int(labels.max()) >= self.num_identities:
            raise ValueError(f"identity {int(labels.max())} but the head has {self.num_identities} classes: "
                             "raise num_identities to the corpus's training identities")
        logits = self.head(self.embedder(batch["face"]), labels)
        loss = F.cross_entropy(logits, labels)
        n = len(labels)
        self.log("loss", loss.detach(), prog_bar=True, batch_size=n)
        self.log("train/arcface", loss.detach(), batch_size=n)
        self.log("train/accuracy", (logits.argmax(1) == labels).float().mean(), batch_size=n)
        return loss

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._val.append((self.embedder(batch["face"]).detach(), batch["identity"]))

    def on_validation_epoch_end(self) -> None:
        if not self._val:
            return
        embeddings = torch.cat([e for e, _ in self._val])
        labels = torch.cat([lab for _, lab in self._val])
        self._val.clear()
        for name, value in identity_scores(embeddings, labels).items():
            self.log(f"val/{name}", value, prog_bar=name == "gap")

    def configure_optimizers(self):
        opt = torch.optim.AdamW(self.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        return [opt], [warmup_cosine(opt, self.training_steps(), self.warmup_steps)]
