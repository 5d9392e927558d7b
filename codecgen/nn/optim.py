"""Optimisers and schedules torch lacks: ``warmup_cosine`` (linear warm-up, then cosine decay
to zero, as HNeRV and MAE train) and Adan (Xie et al. 2022, "Adan: Adaptive Nesterov Momentum Algorithm for Faster
Optimizing Deep Models"; code: sail-sg/Adan), the optimiser the conditional-decoder boost
trains its NeRV-family decoders with (Adan, lr 3e-3). Not in torch.

Per parameter, with g_k the gradient and d_k = g_k - g_{k-1} (zero at the first step):
    m_k = b1 m + (1 - b1) g_k                       first moment
    v_k = b2 v + (1 - b2) d_k                       moment of the gradient difference
    n_k = b3 n + (1 - b3) (g_k + b2 d_k)^2          second moment of the Nesterov gradient
    p  <- (p - lr (m_k / c1 + b2 v_k / c2) / (sqrt(n_k / c3) + eps)) / (1 + lr wd)
with bias corrections c_i = 1 - b_i^k and betas in the torch convention (b = 1 - the
paper's beta), defaults (0.98, 0.92, 0.99) as the authors' code. Weight decay is the
proximal (divide) form, the authors' default.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import Tensor


class Adan(torch.optim.Optimizer):
    def __init__(self, params: Iterable[Tensor] | Iterable[dict], lr: float = 1e-3,
                 betas: tuple[float, float, float] = (0.98, 0.92, 0.99), eps: float = 1e-8,
                 weight_decay: float = 0.0):
        if lr < 0 or eps < 0 or weight_decay < 0:
            raise ValueError(f"need lr, eps and weight_decay >= 0, got {lr}, {eps}, {weight_decay}")
        if len(betas) != 3 or not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"betas must be three values in [0, 1), got {betas}")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            b1, b2, b3 = group["betas"]
            lr, eps, wd = group["lr"], group["eps"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["m"] = torch.zeros_like(p)
                    state["v"] = torch.zeros_like(p)
                    state["n"] = torch.zeros_like(p)
                    state["prev_grad"] = grad.clone()  # so the first difference is zero
                state["step"] += 1
                k = state["step"]
                diff = grad - state["prev_grad"]
                state["m"].mul_(b1).add_(grad, alpha=1 - b1)
                state["v"].mul_(b2).add_(diff, alpha=1 - b2)
                nesterov = grad + b2 * diff
                state["n"].mul_(b3).addcmul_(nesterov, nesterov, value=1 - b3)
                denom = (state["n"].sqrt() / math.sqrt(1 - b3 ** k)).add_(eps)
                p.addcdiv_(state["m"], denom, value=-lr / (1 - b1 ** k))
                p.addcdiv_(state["v"], denom, value=-lr * b2 / (1 - b2 ** k))
                if wd:
                    p.div_(1 + lr * wd)
                state["prev_grad"].copy_(grad)
        return loss


def warmup_cosine(optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int) -> dict:
    """Lightning's scheduler entry for a per-step LambdaLR: the learning rate rises linearly
    over ``warmup_steps`` (from 1 / warmup_steps of its value), then falls along a half cosine
    to zero at ``total_steps``."""
    total, warmup = max(1, total_steps), max(1, warmup_steps)

    def schedule(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))

    return {"scheduler": torch.optim.lr_scheduler.LambdaLR(optimizer, schedule), "interval": "step"}
