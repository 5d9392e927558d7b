"""Vector quantizers behind one contract.

- ``VQ``: one codebook (VQ-VAE, van den Oord et al. 2017), with EMA updates,
  k-means initialisation and dead-code replacement as in SoundStream / EnCodec.
- ``RVQ``: residual VQ (SoundStream, Zeghidour et al. 2021) with quantizer dropout.
- ``GRVQ``: group-residual VQ of HiFi-Codec (Yang et al. 2023, "HiFi-Codec:
  Group-residual Vector quantization for High Fidelity Audio Codec").
- ``MCRVQ``: masked-channel RVQ of Language-Codec (Ji et al. 2024).
- ``kmeans_shrink``: cluster a trained codebook into fewer entries (variable-rate
  VQGAN image compression, Mao et al. 2023).

Contract (DESIGN.md): ``forward(z) -> QuantizerOutput(quantized, codes, loss, metrics)``
with ``z`` channels-first ``(B, D, *spatial)`` and ``codes`` int64 ``(B, n_codebooks,
*spatial)`` for every quantizer; ``encode(z, n_q=None) -> codes`` and
``decode(codes) -> quantized`` reproduce ``forward``'s codes and output exactly (in
eval mode); ``codebook_sizes`` lists one size per codebook, so bitrates are computed.

The codebook is written here rather than wrapped from vector-quantize-pytorch:
that library's learnable-codebook mode fuses codebook and commitment losses into
one term (HiFi-Codec's authors weight them 1.0 and 0.25) and its default rotation
trick changes the gradient the papers describe. Its k-means routine is reused.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.distributed as dist
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from codecgen.config import configurable


@dataclass
class QuantizerOutput:
    quantized: Tensor  # same shape as the input, straight-through gradient to it
    codes: Tensor  # int64 (B, n_codebooks, *spatial)
    loss: Tensor  # scalar: codebook + commitment terms, already weighted
    metrics: dict[str, Tensor] = field(default_factory=dict)  # detached, for logging


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _to_vectors(z: Tensor) -> Tensor:
    """(B, D, *S) -> (B * prod(S), D)."""
    return z.movedim(1, -1).reshape(-1, z.shape[1])


def _from_vectors(x: Tensor, like_shape: torch.Size) -> Tensor:
    """(N, D) -> (B, D, *S) for the shape of the original channels-first tensor."""
    b, d, *spatial = like_shape
    return x.reshape(b, *spatial, x.shape[-1]).movedim(-1, 1)


def _squared_distances(x: Tensor, codebook: Tensor) -> Tensor:
    return x.pow(2).sum(-1, keepdim=True) - 2 * x @ codebook.t() + codebook.pow(2).sum(-1)[None]


def _draw_n_q(low: int, high: int, probability: float) -> int:
    """Quantizer dropout: with ``probability`` a number of stages in [low, high], else
    ``high``; the same on every DDP rank (all ranks must use the same parameters)."""
    n = torch.randint(low, high + 1, ()) if torch.rand(()) < probability else torch.tensor(high)
    if _distributed():
        dist.broadcast(n, src=0)
    return int(n)


def _kmeans(samples: Tensor, k: int, iters: int, chunk: int = 16384) -> tuple[Tensor, Tensor]:
    """Lloyd's k-means on (N, D) samples: (centroids (k, D), samples per centroid (k,)).

    Starts from k distinct random samples (with replacement when N < k); an empty
    cluster keeps its previous centroid. The same procedure (and random draws) as
    vector-quantize-pytorch's k-means, owned here because that one is not public API.
    Distances are computed ``chunk`` samples at a time, so memory stays at chunk x k
    (SemantiCodec's tokenizer clusters ~10^5 vectors into thousands of centroids).
    """
    n, dim = samples.shape
    start = torch.randperm(n, device=samples.device)[:k] if n >= k else torch.randint(0, n, (k,), device=samples.device)
    means = samples[start]
    counts = torch.zeros(k, dtype=torch.long, device=samples.device)
    squared_norms = samples.pow(2).sum(-1, keepdim=True)
    nearest = torch.empty(n, dtype=torch.long, device=samples.device)
    for _ in range(iters):
        means_sq = means.pow(2).sum(-1)[None]
        for i in range(0, n, chunk):
            part = slice(i, i + chunk)
            nearest[part] = (squared_norms[part] + means_sq - 2 * samples[part] @ means.t()).clamp(min=1e-8).argmin(-1)
        counts = torch.bincount(nearest, minlength=k)
        sums = torch.zeros(k, dim, dtype=samples.dtype, device=samples.device).index_add_(0, nearest, samples)
        empty = counts == 0
        means = torch.where(empty[:, None], means, sums / counts.clamp(min=1)[:, None].to(samples.dtype))
    return means, counts


class Quantizer(nn.Module):
    """Shared helpers for every quantizer."""

    codebook_sizes: list[int]

    @property
    def n_codebooks(self) -> int:
        return len(self.codebook_sizes)

    def bits_per_frame(self, n_q: int | None = None) -> float:
        """log2 bits of one spatial position with the first ``n_q`` codebooks."""
        sizes = self.codebook_sizes[: n_q or self.n_codebooks]
        return float(sum(torch.tensor(sizes, dtype=torch.float64).log2()))

    def _check_input(self, z: Tensor, dim: int) -> None:
        if z.ndim < 3 or z.shape[1] != dim:
            raise ValueError(f"{type(self).__name__} expects (B, {dim}, ...), got {tuple(z.shape)}")

    def _check_codes(self, codes: Tensor) -> None:
        if codes.dtype != torch.long or codes.ndim < 3:
            raise ValueError(f"codes must be int64 (B, n_codebooks, ...), got {codes.dtype} {tuple(codes.shape)}")
        if not 1 <= codes.shape[1] <= self.n_codebooks:
            raise ValueError(f"codes have {codes.shape[1]} codebooks, this quantizer has {self.n_codebooks}")


@configurable
class VQ(Quantizer):
    """One codebook of ``codebook_size`` vectors of size ``dim``.

    Args:
        ema: update the codebook by exponential moving averages of the assigned
            vectors (SoundStream/EnCodec) instead of gradient descent on a codebook loss.
        decay: EMA decay.
        kmeans_init: initialise the codebook from k-means on the first training batch.
        threshold_dead_code: an entry whose EMA usage falls below this many vectors per
            step is replaced by a random vector of the current batch (0 disables). As in
            EnCodec, but capped at 10% of the mean usage (vectors per step / codebook
            size): EnCodec's value (2) assumes thousands of vectors a step, and with small
            batches every live entry would fall below it and be replaced every step.
        commitment_weight: weight of ||z - sg(q)||^2 (the encoder's commitment).
        codebook_weight: weight of ||sg(z) - q||^2 (only without EMA; it trains the codebook).
    """

    def __init__(
        self,
        dim: int,
        codebook_size: int = 1024,
        ema: bool = True,
        decay: float = 0.99,
        kmeans_init: bool = True,
        kmeans_iters: int = 10,
        threshold_dead_code: float = 2.0,
        commitment_weight: float = 0.25,
        codebook_weight: float = 1.0,
        epsilon: float = 1e-5,
    ):
        super().__init__()
        self.dim, self.codebook_size = dim, codebook_size
        self.codebook_sizes = [codebook_size]
        self.ema, self.decay, self.epsilon = ema, decay, epsilon
        self.kmeans_iters, self.threshold_dead_code = kmeans_iters, threshold_dead_code
        self.commitment_weight, self.codebook_weight = commitment_weight, codebook_weight
        # HiFi-Codec's authors initialise uniformly in +-1/K; with k-means on, this is overwritten.
        init = torch.empty(codebook_size, dim).uniform_(-1.0 / codebook_size, 1.0 / codebook_size)
        if ema:
            self.register_buffer("codebook", init)
            # zero usage until seen: entries never assigned are replaced on the first step
            self.register_buffer("cluster_size", torch.zeros(codebook_size))
            self.register_buffer("embed_sum", init.clone())
        else:
            self.codebook = nn.Parameter(init)
        self.register_buffer("initialized", torch.tensor(not kmeans_init))

    # -- codebook maintenance (training only) ---------------------------------------
    @torch.no_grad()
    def _kmeans_init(self, x: Tensor) -> None:
        codebook, counts = _kmeans(x.float(), self.codebook_size, self.kmeans_iters)
        counts = counts.to(codebook)
        if _distributed():  # every rank must start from the same codebook
            dist.broadcast(codebook, src=0)
            dist.broadcast(counts, src=0)
        self.codebook.data.copy_(codebook)
        if self.ema:
            # usage as k-means saw it: entries no vector chose are dead from the start
            self.cluster_size.copy_(counts)
            self.embed_sum.copy_(codebook * counts[:, None])
        self.initialized.fill_(True)

    @torch.no_grad()
    def _ema_update(self, x: Tensor, codes: Tensor) -> None:
        onehot_sum = torch.zeros(self.codebook_size, device=x.device, dtype=x.dtype).index_add_(
            0, codes, torch.ones_like(codes, dtype=x.dtype)
        )
        vector_sum = torch.zeros_like(self.embed_sum).index_add_(0, codes, x)
        if _distributed():
            dist.all_reduce(onehot_sum)
            dist.all_reduce(vector_sum)
        self.cluster_size.mul_(self.decay).add_(onehot_sum, alpha=1 - self.decay)
        self.embed_sum.mul_(self.decay).add_(vector_sum, alpha=1 - self.decay)
        # Laplace smoothing keeps rarely used entries from dividing by ~0.
        n = self.cluster_size.sum()
        smoothed = (self.cluster_size + self.epsilon) / (n + self.codebook_size * self.epsilon) * n
        self.codebook.copy_(self.embed_sum / smoothed[:, None])

    @torch.no_grad()
    def _replace_dead_codes(self, x: Tensor, usage: Tensor, threshold: float) -> None:
        dead = usage < threshold
        n_dead = int(dead.sum())
        if n_dead == 0:
            return
        replacement = x[torch.randint(0, x.shape[0], (n_dead,), device=x.device)]
        if _distributed():
            dist.broadcast(replacement, src=0)
        self.codebook.data[dead] = replacement.to(self.codebook.dtype)
        if self.ema:
            # a sum of `threshold` vectors equal to the replacement: the entry *is* the replacement
            self.embed_sum[dead] = replacement * threshold
            self.cluster_size[dead] = threshold

    # -- contract ---------------------------------------------------------------------
    def _nearest(self, x: Tensor) -> Tensor:
        return _squared_distances(x, self.codebook.detach().to(x.dtype)).argmin(-1)

    def forward(self, z: Tensor) -> QuantizerOutput:
        self._check_input(z, self.dim)
        x = _to_vectors(z).float()
        if self.training and not bool(self.initialized):
            self._kmeans_init(x.detach())
        codes = self._nearest(x.detach())
        if self.training and self.ema:
            self._ema_update(x.detach(), codes)
        quantized = F.embedding(codes, self.codebook).to(x.dtype)
        loss = self.commitment_weight * F.mse_loss(x, quantized.detach())
        if not self.ema and self.training:
            loss = loss + self.codebook_weight * F.mse_loss(quantized, x.detach())
        usage = torch.bincount(codes, minlength=self.codebook_size).float()
        if self.training and self.threshold_dead_code > 0:
            # EMA usage (vectors per step) when available, else this batch's counts.
            threshold = min(self.threshold_dead_code, 0.1 * x.shape[0] / self.codebook_size)
            self._replace_dead_codes(x.detach(), self.cluster_size if self.ema else usage, threshold)
        straight_through = x + (quantized - x).detach()
        probs = usage / usage.sum().clamp(min=1)
        metrics = {
            "perplexity": torch.exp(-(probs * probs.clamp(min=1e-10).log()).sum()).detach(),
            "usage": (usage > 0).float().mean().detach(),
        }
        return QuantizerOutput(
            quantized=_from_vectors(straight_through.to(z.dtype), z.shape),
            codes=_from_vectors(codes[:, None], z.shape),
            loss=loss,
            metrics=metrics,
        )

    def encode(self, z: Tensor, n_q: int | None = None) -> Tensor:
        self._check_input(z, self.dim)
        return _from_vectors(self._nearest(_to_vectors(z).float())[:, None], z.shape)

    def decode(self, codes: Tensor) -> Tensor:
        self._check_codes(codes)
        if codes.numel() and (codes.min() < 0 or codes.max() >= self.codebook_size):
            raise ValueError(f"codes out of range [0, {self.codebook_size})")
        return F.embedding(codes[:, 0], self.codebook).movedim(-1, 1)


def _merge_metrics(outputs: list[QuantizerOutput], prefix: str = "q") -> dict[str, Tensor]:
    metrics = {}
    for i, out in enumerate(outputs):
        metrics.update({f"{prefix}{i}/{k}": v for k, v in out.metrics.items()})
    return metrics


@configurable
class RVQ(Quantizer):
    """Residual VQ: stage i quantizes what stages < i left over.

    Quantizer dropout (SoundStream): in training, with probability
    ``quantizer_dropout`` a step uses only the first n ~ U{min_n_q..n_q} stages, so
    one model serves every bitrate; ``encode(z, n_q=k)`` picks the bitrate at inference.
    ``vq`` holds the keyword arguments of every stage's ``VQ``.
    """

    def __init__(
        self,
        dim: int,
        n_q: int = 8,
        codebook_size: int = 1024,
        quantizer_dropout: float = 0.0,
        min_n_q: int = 1,
        vq: dict | None = None,
    ):
        super().__init__()
        if not 1 <= min_n_q <= n_q:
            raise ValueError(f"need 1 <= min_n_q <= n_q, got {min_n_q}, {n_q}")
        self.dim, self.n_q, self.min_n_q = dim, n_q, min_n_q
        self.quantizer_dropout = quantizer_dropout
        self.stages = nn.ModuleList(VQ(dim, codebook_size, **(vq or {})) for _ in range(n_q))
        self.codebook_sizes = [codebook_size] * n_q

    def _active_stages(self, n_q: int | None) -> int:
        if n_q is not None:
            if not self.min_n_q <= n_q <= self.n_q:
                raise ValueError(f"n_q must be in [{self.min_n_q}, {self.n_q}], got {n_q}")
            return n_q
        if self.training and self.quantizer_dropout > 0:
            return _draw_n_q(self.min_n_q, self.n_q, self.quantizer_dropout)
        return self.n_q

    def forward(self, z: Tensor, n_q: int | None = None) -> QuantizerOutput:
        self._check_input(z, self.dim)
        residual, outputs = z, []
        for stage in self.stages[: self._active_stages(n_q)]:
            out = stage(residual)
            # EnCodec's order: the next stage sees the residual of the straight-through
            # output, so the encoder's gradient passes once (through the first stage).
            residual = residual - out.quantized
            outputs.append(out)
        return QuantizerOutput(
            quantized=sum(o.quantized for o in outputs),
            codes=torch.cat([o.codes for o in outputs], dim=1),
            loss=sum(o.loss for o in outputs) / len(outputs),
            metrics=_merge_metrics(outputs),
        )

    def encode(self, z: Tensor, n_q: int | None = None) -> Tensor:
        self._check_input(z, self.dim)
        n_stages = self._active_stages(n_q) if n_q is not None else self.n_q
        residual, codes = z, []
        for stage in self.stages[:n_stages]:
            c = stage.encode(residual)
            residual = residual - stage.decode(c)
            codes.append(c)
        return torch.cat(codes, dim=1)

    def decode(self, codes: Tensor) -> Tensor:
        self._check_codes(codes)
        return sum(stage.decode(codes[:, i : i + 1]) for i, stage in enumerate(self.stages[: codes.shape[1]]))


@configurable
class GRVQ(Quantizer):
    """HiFi-Codec's group-residual VQ: ``groups`` channel groups, an RVQ of
    ``n_q_per_group`` stages on each (default 2 x 2 x 1024 = 4 codebooks).

    Codes are ordered stage-major — [stage0 group0, stage0 group1, stage1 group0, ...],
    as the authors emit them — so that keeping the first k codebooks keeps whole
    residual stages. ``n_q`` counts codebooks and must be a multiple of ``groups``.
    The authors' quantizer is a plain learned codebook (``vq={"ema": false,
    "kmeans_init": false, "threshold_dead_code": 0}``); EMA, k-means init and dead-code
    replacement are on by default here because they train faster from scratch.
    """

    def __init__(
        self,
        dim: int = 512,
        groups: int = 2,
        n_q_per_group: int = 2,
        codebook_size: int = 1024,
        quantizer_dropout: float = 0.0,
        vq: dict | None = None,
    ):
        super().__init__()
        if dim % groups:
            raise ValueError(f"dim {dim} is not divisible by groups {groups}")
        self.dim, self.groups, self.n_q_per_group = dim, groups, n_q_per_group
        self.group_rvqs = nn.ModuleList(
            RVQ(dim // groups, n_q_per_group, codebook_size, quantizer_dropout, 1, vq) for _ in range(groups)
        )
        self.codebook_sizes = [codebook_size] * (groups * n_q_per_group)

    def _stages(self, n_q: int | None) -> int | None:
        if n_q is None:
            return None
        if n_q % self.groups or not 1 <= n_q // self.groups <= self.n_q_per_group:
            raise ValueError(f"GRVQ n_q must be a multiple of {self.groups} up to {self.n_codebooks}, got {n_q}")
        return n_q // self.groups

    def _interleave(self, group_codes: list[Tensor]) -> Tensor:
        # (G, B, R, ...) -> (B, R*G, ...) stage-major
        return rearrange(torch.stack(group_codes), "g b r ... -> b (r g) ...")

    def forward(self, z: Tensor, n_q: int | None = None) -> QuantizerOutput:
        self._check_input(z, self.dim)
        stages = self._stages(n_q)
        if stages is None and self.training and self.group_rvqs[0].quantizer_dropout > 0:
            stages = self.group_rvqs[0]._active_stages(None)  # one draw shared by all groups
        outputs = [rvq(chunk, stages) for rvq, chunk in zip(self.group_rvqs, z.chunk(self.groups, dim=1))]
        return QuantizerOutput(
            quantized=torch.cat([o.quantized for o in outputs], dim=1),
            codes=self._interleave([o.codes for o in outputs]),
            loss=sum(o.loss for o in outputs) / self.groups,
            metrics={f"g{g}/{k}": v for g, o in enumerate(outputs) for k, v in o.metrics.items()},
        )

    def encode(self, z: Tensor, n_q: int | None = None) -> Tensor:
        self._check_input(z, self.dim)
        stages = self._stages(n_q)
        return self._interleave([rvq.encode(c, stages) for rvq, c in zip(self.group_rvqs, z.chunk(self.groups, 1))])

    def decode(self, codes: Tensor) -> Tensor:
        self._check_codes(codes)
        self._stages(codes.shape[1])
        per_group = rearrange(codes, "b (r g) ... -> g b r ...", g=self.groups)
        return torch.cat([rvq.decode(c) for rvq, c in zip(self.group_rvqs, per_group)], dim=1)


@configurable
class MCRVQ(Quantizer):
    """Language-Codec's masked-channel RVQ.

    The first ``n_masked`` stages run in parallel on the whole latent with all but
    their own channel slice zeroed (slices split ``dim`` evenly: 128 -> [0,42), [42,85),
    [85,128)); the remaining stages quantize the residual ``z - sum(masked)`` as an
    ordinary RVQ. Bandwidth dropout draws n ~ U{n_masked..n_q} stages per step with
    probability ``quantizer_dropout`` (the paper draws 3..8 every step: 1.0).
    Unlike the authors' ``encode()``, which skips the masks, encoding here applies
    them exactly as training does.
    """

    def __init__(
        self,
        dim: int = 128,
        n_q: int = 8,
        n_masked: int = 3,
        codebook_size: int = 1024,
        quantizer_dropout: float = 1.0,
        vq: dict | None = None,
    ):
        super().__init__()
        if not 1 <= n_masked <= n_q:
            raise ValueError(f"need 1 <= n_masked <= n_q, got {n_masked}, {n_q}")
        self.dim, self.n_q, self.n_masked = dim, n_q, n_masked
        self.quantizer_dropout = quantizer_dropout
        bounds = [i * dim // n_masked for i in range(n_masked + 1)]
        masks = torch.zeros(n_masked, dim)
        for i in range(n_masked):
            masks[i, bounds[i] : bounds[i + 1]] = 1.0
        self.register_buffer("masks", masks, persistent=False)
        self.masked_stages = nn.ModuleList(VQ(dim, codebook_size, **(vq or {})) for _ in range(n_masked))
        self.residual = (
            RVQ(dim, n_q - n_masked, codebook_size, 0.0, 1, vq) if n_q > n_masked else None
        )
        self.codebook_sizes = [codebook_size] * n_q

    def _mask(self, z: Tensor, i: int) -> Tensor:
        return z * self.masks[i].view(1, -1, *([1] * (z.ndim - 2)))

    def _residual_stages(self, n_q: int | None) -> int:
        if n_q is None:
            n_q = self.n_q
            if self.training and self.quantizer_dropout > 0:
                n_q = _draw_n_q(self.n_masked, self.n_q, self.quantizer_dropout)
        if not self.n_masked <= n_q <= self.n_q:
            raise ValueError(f"MCRVQ n_q must be in [{self.n_masked}, {self.n_q}], got {n_q}")
        return n_q - self.n_masked

    def forward(self, z: Tensor, n_q: int | None = None) -> QuantizerOutput:
        self._check_input(z, self.dim)
        n_residual = self._residual_stages(n_q)
        outputs = [stage(self._mask(z, i)) for i, stage in enumerate(self.masked_stages)]
        quantized = sum(o.quantized for o in outputs)
        codes = [o.codes for o in outputs]
        losses = [o.loss for o in outputs]
        metrics = _merge_metrics(outputs, "m")
        if n_residual:
            # The residual stages see z minus the masked stages' output, detached
            # (as the authors do): they refine, they do not steer the masked codebooks.
            out = self.residual(z - quantized.detach(), n_residual)
            quantized = quantized + out.quantized
            codes.append(out.codes)
            losses.append(out.loss * n_residual)
            metrics.update({f"r/{k}": v for k, v in out.metrics.items()})
        return QuantizerOutput(quantized, torch.cat(codes, 1), sum(losses) / (self.n_masked + n_residual), metrics)

    def encode(self, z: Tensor, n_q: int | None = None) -> Tensor:
        self._check_input(z, self.dim)
        n_residual = self._residual_stages(n_q if n_q is not None else self.n_q)
        codes = [stage.encode(self._mask(z, i)) for i, stage in enumerate(self.masked_stages)]
        if n_residual:
            masked = sum(stage.decode(c) for stage, c in zip(self.masked_stages, codes))
            codes.append(self.residual.encode(z - masked, n_residual))
        return torch.cat(codes, dim=1)

    def decode(self, codes: Tensor) -> Tensor:
        self._check_codes(codes)
        if codes.shape[1] < self.n_masked:
            raise ValueError(f"MCRVQ needs at least the {self.n_masked} masked codebooks, got {codes.shape[1]}")
        out = sum(stage.decode(codes[:, i : i + 1]) for i, stage in enumerate(self.masked_stages))
        if codes.shape[1] > self.n_masked:
            out = out + self.residual.decode(codes[:, self.n_masked :])
        return out


@torch.no_grad()
def kmeans_shrink(codebook: Tensor, k: int, iters: int = 50, seed: int = 0) -> tuple[Tensor, Tensor]:
    """Cluster a trained (K, D) codebook into ``k`` entries.

    Returns ``(smaller_codebook (k, D), index_map (K,))`` where ``index_map[i]`` is the
    new entry nearest to old entry ``i``: old codes map to new codes by lookup, without
    re-running the encoder.
    """
    if codebook.ndim != 2:
        raise ValueError(f"codebook must be (K, D), got {tuple(codebook.shape)}")
    if not 1 <= k <= codebook.shape[0]:
        raise ValueError(f"k must be in [1, {codebook.shape[0]}], got {k}")
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        data = codebook.detach().float()
        if k == data.shape[0]:
            centroids = data.clone()
        else:
            centroids, _ = _kmeans(data, k, iters)
    finally:
        torch.random.set_rng_state(generator_state)
    index_map = _squared_distances(data, centroids).argmin(-1)
    return centroids.to(codebook.dtype), index_map
