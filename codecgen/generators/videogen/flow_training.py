"""Training the flow network of VideoGen's temporal upsampling on exact flow (RAFT's recipe, Teed & Deng 2020).

The captioned-video corpus draws its clips, so the flow from every frame to the next and where it is
visible are known exactly (``FlowPairsDataModule``). The loss is RAFT's: the L1 distance of each of
the N updates' flow to the truth over visible pixels, weighted gamma^(N - i - 1) (gamma 0.8), so the
later updates count most. Validation logs the end-point error (EPE, pixels) of the final flow and
the PSNR of the second frame warped back onto the first by it (over visible pixels), next to the
PSNR of not warping at all.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from codecgen.config import configurable
from codecgen.module import Module
from codecgen.nn.frame_interpolation import backward_warp


def sequence_loss(flows: list[Tensor], truth: Tensor, valid: Tensor, gamma: float = 0.8) -> Tensor:
    """RAFT's loss: sum_i gamma^(N-i-1) mean over valid pixels of |flow_i - truth|_1."""
    mask = valid[:, None].to(truth.dtype)
    count = (mask.sum() * 2).clamp_min(1.0)
    n = len(flows)
    return sum(gamma ** (n - i - 1) * ((f - truth).abs() * mask).sum() / count for i, f in enumerate(flows))


@configurable
class FlowTraining(Module):
    """Args:
        estimator: ``codecgen.nn.optical_flow.FlowEstimator``.
        iterations: updates per training pair (RAFT trains with 12; fewer are faster on a CPU).
        gamma: the sequence loss's decay.
        lr, weight_decay: AdamW's.
    """

    modality = "video"
    inference_modules = ("estimator",)

    def __init__(self, estimator: nn.Module, iterations: int = 8, gamma: float = 0.8, lr: float = 4e-4,
                 weight_decay: float = 1e-4) -> None:
        super().__init__()
        self.estimator, self.iterations, self.gamma = estimator, iterations, gamma
        self.lr, self.weight_decay = lr, weight_decay

    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        frames = batch["frames"]
        flows = self.estimator(frames[:, 0], frames[:, 1], self.iterations)
        loss = sequence_loss(flows, batch["flow"], batch["valid"], self.gamma)
        self.log("train/loss", loss, prog_bar=True, batch_size=frames.shape[0])
        self.log("train/epe", _epe(flows[-1], batch["flow"], batch["valid"]), batch_size=frames.shape[0])
        return loss

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        frames, truth, valid = batch["frames"], batch["flow"], batch["valid"]
        flow = self.estimator(frames[:, 0], frames[:, 1])[-1]
        n = frames.shape[0]
        self.log("val/epe", _epe(flow, truth, valid), prog_bar=True, batch_size=n, sync_dist=True)
        mask = valid[:, None].expand_as(frames[:, 0])
        for name, guess in (("val/warp_psnr", backward_warp(frames[:, 1], flow)), ("val/still_psnr", frames[:, 1])):
            mse = ((guess - frames[:, 0]) / 2).square()[mask].mean()
            self.log(name, -10 * torch.log10(mse.clamp_min(1e-10)), batch_size=n, sync_dist=True)

    def configure_optimizers(self):
        return torch.optim.AdamW(self.estimator.parameters(), lr=self.lr, weight_decay=self.weight_decay)


def _epe(flow: Tensor, truth: Tensor, valid: Tensor) -> Tensor:
    return (flow - truth).norm(dim=1)[valid].mean()
