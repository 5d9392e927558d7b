"""Neural video representations: NeRV (Chen et al. 2021, "NeRV: Neural
Representations for Videos"), HNeRV (Chen et al. 2023, "HNeRV: A Hybrid Neural
Representation for Videos"; code: haochen-rye/HNeRV) and the conditional-decoder
boost (Zhang et al. 2024, "Boosting Neural Representations for Videos with a
Conditional Decoder"; code: Xinjie-Q/Boosting-NeRV).

A video is overfitted by a decoder that maps a per-frame input to the frame:
- ``NeRVDecoder``: the frame index t in [0, 1] -> positional encoding -> a
  linear stem reshaped to (C0, h0, w0) -> pixel-shuffle blocks -> RGB;
- ``HNeRVDecoder``: a tiny per-frame content embedding (from ``ConvNeXtEncoder``)
  -> 1x1 stem conv -> pixel-shuffle blocks with growing kernels -> RGB.
Both output ``tanh(x) * 0.5 + 0.5`` in [0, 1], as HNeRV's ``OutImg``. With
``boosted=True`` both become the boost paper's conditional decoders: a shared
``TimeEmbedding`` of t conditions a ``TemporalAffine`` (TAT) after the stem and after
every block, blocks use the sine activation, and ``extra_blocks`` adds stride-1 3x3
blocks per stage (the boost code's ``dec_blks 1 1 2 2 2``). The boost code also caps
the boosted HNeRV's kernels at 3x3 (``pshuffel_3x3``): ``k_max=3``, which
``codecgen.codecs.video.nerv.recipe`` sets.

HNeRV's ``model_size`` counts decoder + all frames' embeddings, so
``hnerv_for_budget`` / ``nerv_for_budget`` solve the stem width for a parameter
budget (HNeRV solves a quadratic; we search the exact count over integer widths).

Deviations, each for a reason:
- channel rule as HNeRV's code: ``max(round(prev / reduction), min_channels)``;
  the NeRV baseline uses the same rule and HNeRV's PE path (one linear stem, the
  1x1 conv on the 160-d PE in HNeRV's ``model_all.py``), not NeRV's deeper MLP.
- ``ConvNeXtEncoder`` ends with a 1x1 conv to ``embed_channels`` (HNeRV instead
  makes its last stage ``embed_channels`` wide) and omits ConvNeXt's layer scale.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from codecgen.config import configurable

ACTIVATIONS = ("gelu", "sine")


class Sine(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return torch.sin(x)


def _activation(name: str) -> nn.Module:
    if name == "gelu":
        return nn.GELU()
    if name == "sine":
        return Sine()
    raise ValueError(f"activation must be one of {ACTIVATIONS}, got {name!r}")


def _check_strides(strides: Sequence[int]) -> list[int]:
    strides = [int(s) for s in strides]
    if not strides or any(s < 1 for s in strides):
        raise ValueError(f"strides must be a non-empty sequence of positive ints, got {strides}")
    return strides


def _extra(extra_blocks: Sequence[int] | None, n_stages: int) -> list[int]:
    if extra_blocks is None:
        return [0] * n_stages
    extra = [int(e) for e in extra_blocks]
    if len(extra) != n_stages or any(e < 0 for e in extra):
        raise ValueError(f"extra_blocks needs {n_stages} non-negative ints (one per stage), got {extra}")
    return extra


def stage_channels(stem_channels: int, n_stages: int, reduction: float = 1.2, min_channels: int = 12) -> list[int]:
    """HNeRV's widths: each stage ``max(round(prev / reduction), min_channels)``."""
    if stem_channels < 1 or reduction <= 0 or min_channels < 1:
        raise ValueError("need stem_channels >= 1, reduction > 0 and min_channels >= 1")
    widths, width = [], stem_channels
    for _ in range(n_stages):
        width = int(max(round(width / reduction), min_channels))
        widths.append(width)
    return widths


class PositionalEncoding(nn.Module):
    """t in [0, 1] (B,) -> (B, 2 n_freqs): [sin(base^k pi t)]_k ++ [cos(base^k pi t)]_k
    (HNeRV's ``pe_1.25_80``, the boost paper's 160-d PE)."""

    def __init__(self, n_freqs: int = 80, base: float = 1.25):
        super().__init__()
        if n_freqs < 1 or base <= 0:
            raise ValueError(f"need n_freqs >= 1 and base > 0, got {n_freqs}, {base}")
        self.out_dim = 2 * n_freqs
        # A buffer so it follows .to(device); not persistent: it is derived from the args.
        self.register_buffer("freqs", base ** torch.arange(n_freqs, dtype=torch.float64) * math.pi, persistent=False)

    def forward(self, t: Tensor) -> Tensor:
        if t.ndim != 1:
            raise ValueError(f"expected frame positions of shape (B,), got {tuple(t.shape)}")
        # float64 product: base^79 pi ~ 4e8, where float32 phase error would be large.
        phase = t.double()[:, None] * self.freqs.double()
        dtype = t.dtype if t.is_floating_point() else torch.get_default_dtype()
        return torch.cat([torch.sin(phase), torch.cos(phase)], dim=-1).to(dtype)


class NeRVBlock(nn.Module):
    """conv(k, padding k//2) -> PixelShuffle(scale) -> activation; no norm (HNeRV)."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int = 3, scale: int = 1, activation: str = "gelu"):
        super().__init__()
        if kernel < 1 or kernel % 2 == 0:
            raise ValueError(f"kernel must be a positive odd int, got {kernel}")
        self.kernel, self.scale, self.out_ch = kernel, scale, out_ch
        self.conv = nn.Conv2d(in_ch, out_ch * scale * scale, kernel, padding=kernel // 2)
        self.shuffle = nn.PixelShuffle(scale) if scale > 1 else nn.Identity()
        self.act = _activation(activation)

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.shuffle(self.conv(x)))


class TimeEmbedding(nn.Module):
    """Boost paper: PE(t) (160-d) -> Linear -> sin -> Linear -> sin (160 -> 64 -> 32)."""

    def __init__(self, n_freqs: int = 80, base: float = 1.25, hidden: int = 64, out_dim: int = 32):
        super().__init__()
        self.pe = PositionalEncoding(n_freqs, base)
        self.fc1 = nn.Linear(self.pe.out_dim, hidden)
        self.fc2 = nn.Linear(hidden, out_dim)
        self.out_dim = out_dim

    def forward(self, t: Tensor) -> Tensor:
        return torch.sin(self.fc2(torch.sin(self.fc1(self.pe(t)))))


class _SFT(nn.Module):
    """x * (1 + gamma(t)) + beta(t); gamma and beta are each t_dim -> t_dim -> ReLU ->
    channels (the boost code's SFT layer: two 1x1 convs on the (B, t_dim, 1, 1) condition)."""

    def __init__(self, t_dim: int, channels: int):
        super().__init__()
        self.gamma = nn.Sequential(nn.Linear(t_dim, t_dim), nn.ReLU(), nn.Linear(t_dim, channels))
        self.beta = nn.Sequential(nn.Linear(t_dim, t_dim), nn.ReLU(), nn.Linear(t_dim, channels))

    def forward(self, x: Tensor, t_emb: Tensor) -> Tensor:
        return torch.addcmul(self.beta(t_emb)[:, :, None, None], x, 1 + self.gamma(t_emb)[:, :, None, None])


class TemporalAffine(nn.Module):
    """The boost paper's TAT: x + conv3(SFT1(GELU(conv3(SFT0(x, t))))), where t is the
    ``TimeEmbedding`` of the frame. PyTorch's default init, as the boost code."""

    def __init__(self, channels: int, t_dim: int = 32):
        super().__init__()
        self.sft0 = _SFT(t_dim, channels)
        self.conv0 = nn.Conv2d(channels, channels, 3, padding=1)
        self.sft1 = _SFT(t_dim, channels)
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor, t_emb: Tensor) -> Tensor:
        if t_emb.ndim != 2 or t_emb.shape[0] != x.shape[0]:
            raise ValueError(f"t_emb must be (B, d_t) with B={x.shape[0]}, got {tuple(t_emb.shape)}")
        h = F.gelu(self.conv0(self.sft0(x, t_emb)))
        return x + self.conv1(self.sft1(h, t_emb))


class _LayerNorm2d(nn.LayerNorm):
    """LayerNorm over channels of a (B, C, H, W) tensor (ConvNeXt's channels_first)."""

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class ConvNeXtBlock2d(nn.Module):
    """depthwise 7x7 -> LayerNorm (channels-last) -> Linear 4x -> GELU -> Linear, residual."""

    def __init__(self, dim: int):
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pw1 = nn.Linear(dim, 4 * dim)
        self.pw2 = nn.Linear(4 * dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        h = self.norm(self.dwconv(x).permute(0, 2, 3, 1))
        return x + self.pw2(F.gelu(self.pw1(h))).permute(0, 3, 1, 2)


@configurable
class ConvNeXtEncoder(nn.Module):
    """HNeRV's content encoder: (B, 3, H, W) -> (B, embed_channels, H / prod(strides),
    W / prod(strides)). Stage i: a stride-s_i conv (kernel s_i; LayerNorm after the stem,
    before the others, as ConvNeXt) then ``depths[i]`` ConvNeXt blocks."""

    def __init__(
        self,
        in_channels: int = 3,
        strides: Sequence[int] = (5, 4, 4, 2, 2),
        dims: int | Sequence[int] = 64,
        depths: int | Sequence[int] = 1,
        embed_channels: int = 16,
    ):
        super().__init__()
        strides = _check_strides(strides)
        n = len(strides)
        dims = [int(dims)] * n if isinstance(dims, int) else [int(d) for d in dims]
        depths = [int(depths)] * n if isinstance(depths, int) else [int(d) for d in depths]
        if len(dims) != n or len(depths) != n or min(dims) < 1 or min(depths) < 0:
            raise ValueError(f"dims and depths need {n} entries (>= 1 and >= 0), got {dims}, {depths}")
        self.in_channels, self.embed_channels = in_channels, embed_channels
        self.factor = math.prod(strides)
        layers: list[nn.Module] = []
        width = in_channels
        for i, (s, d, depth) in enumerate(zip(strides, dims, depths)):
            if i == 0:
                layers += [nn.Conv2d(width, d, s, stride=s), _LayerNorm2d(d, eps=1e-6)]
            else:
                layers += [_LayerNorm2d(width, eps=1e-6), nn.Conv2d(width, d, s, stride=s)]
            layers += [ConvNeXtBlock2d(d) for _ in range(depth)]
            width = d
        self.body = nn.Sequential(*layers)
        self.proj = nn.Conv2d(width, embed_channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"expected (B, {self.in_channels}, H, W), got {tuple(x.shape)}")
        if x.shape[-2] % self.factor or x.shape[-1] % self.factor:
            raise ValueError(f"frame size {tuple(x.shape[-2:])} is not divisible by prod(strides)={self.factor}")
        return self.proj(self.body(x))


class _UpStages(nn.Module):
    """The shared decoder trunk: per stage an upsampling NeRVBlock and ``extra`` stride-1
    3x3 blocks; then the 3x3 head and tanh * 0.5 + 0.5. Boosted: a TAT after the stem and
    after every block (the boost code's ``res_sft`` in every NeRV block)."""

    def __init__(self, in_ch, widths, strides, kernels, activation, extra, boosted, time_kwargs):
        super().__init__()
        self.stages = nn.ModuleList()
        self.time = TimeEmbedding(**time_kwargs) if boosted else None
        self.stem_tat = TemporalAffine(in_ch, self.time.out_dim) if boosted else None
        self.tats = nn.ModuleList()  # per stage, one TAT per block (boosted)
        width = in_ch
        for out, s, k, n_extra in zip(widths, strides, kernels, extra):
            blocks = [NeRVBlock(width, out, k, s, activation)]
            blocks += [NeRVBlock(out, out, 3, 1, activation) for _ in range(n_extra)]
            self.stages.append(nn.Sequential(*blocks))
            if boosted:
                self.tats.append(nn.ModuleList(TemporalAffine(out, self.time.out_dim) for _ in blocks))
            width = out
        self.head = nn.Conv2d(width, 3, 3, padding=1)

    def forward(self, x: Tensor, t: Tensor | None) -> Tensor:
        if self.time is None:
            for stage in self.stages:
                x = stage(x)
        else:
            if t is None:
                raise ValueError("a boosted decoder needs the frame positions t (B,)")
            t_emb = self.time(t.to(x.dtype))
            x = self.stem_tat(x, t_emb)
            for stage, tats in zip(self.stages, self.tats):
                for block, tat in zip(stage, tats):
                    x = tat(block(x), t_emb)
        return torch.tanh(self.head(x)) * 0.5 + 0.5


def _default_activation(activation: str | None, boosted: bool) -> str:
    # The boost paper's decoders use sine; HNeRV's use GELU.
    return activation if activation is not None else ("sine" if boosted else "gelu")


@configurable
class NeRVDecoder(nn.Module):
    """NeRV: t (B,) in [0, 1] -> frames (B, 3, H, W) in [0, 1]. PE(t) -> linear stem
    reshaped to (stem_channels, H / prod(strides), W / prod(strides)) -> activation ->
    one ``kernel`` block per stride (pixel shuffle) -> head."""

    def __init__(
        self,
        frame_size: Sequence[int] = (64, 64),
        strides: Sequence[int] = (2, 2, 2),
        stem_channels: int = 64,
        kernel: int = 3,
        reduction: float = 1.2,
        min_channels: int = 12,
        activation: str | None = None,
        boosted: bool = False,
        extra_blocks: Sequence[int] | None = None,
        n_freqs: int = 80,
        pe_base: float = 1.25,
    ):
        super().__init__()
        strides = _check_strides(strides)
        height, width = (int(v) for v in frame_size)
        factor = math.prod(strides)
        if height % factor or width % factor or height < 1 or width < 1:
            raise ValueError(f"frame size {(height, width)} is not divisible by prod(strides)={factor}")
        self.frame_size, self.boosted, self.factor = (height, width), boosted, factor
        self.strides = tuple(strides)
        self.h0, self.w0, self.stem_channels = height // factor, width // factor, stem_channels
        activation = _default_activation(activation, boosted)
        self.pe = PositionalEncoding(n_freqs, pe_base)
        self.stem = nn.Linear(self.pe.out_dim, stem_channels * self.h0 * self.w0)
        self.stem_act = _activation(activation)
        widths = stage_channels(stem_channels, len(strides), reduction, min_channels)
        self.trunk = _UpStages(stem_channels, widths, strides, [kernel] * len(strides), activation,
                               _extra(extra_blocks, len(strides)), boosted, {"n_freqs": n_freqs, "base": pe_base})

    def forward(self, t: Tensor) -> Tensor:
        x = self.stem_act(self.stem(self.pe(t)))
        x = x.view(t.shape[0], self.stem_channels, self.h0, self.w0)
        return self.trunk(x, t)


@configurable
class HNeRVDecoder(nn.Module):
    """HNeRV: embedding (B, embed_channels, h0, w0) [+ t (B,) when boosted] -> frames
    (B, 3, h0 prod(strides), w0 prod(strides)) in [0, 1]. A 1x1 stem conv + activation to
    ``stem_channels``, then block i with kernel ``min(k_min + 2 i, k_max)`` and upscale
    ``strides[i]``."""

    def __init__(
        self,
        embed_channels: int = 16,
        strides: Sequence[int] = (5, 4, 4, 2, 2),
        stem_channels: int = 64,
        k_min: int = 1,
        k_max: int = 5,
        reduction: float = 1.2,
        min_channels: int = 12,
        activation: str | None = None,
        boosted: bool = False,
        extra_blocks: Sequence[int] | None = None,
        n_freqs: int = 80,
        pe_base: float = 1.25,
    ):
        super().__init__()
        strides = _check_strides(strides)
        if k_min < 1 or k_min % 2 == 0 or k_max < k_min:
            raise ValueError(f"need an odd k_min >= 1 and k_max >= k_min, got {k_min}, {k_max}")
        self.embed_channels, self.boosted, self.strides = embed_channels, boosted, tuple(strides)
        self.factor = math.prod(strides)
        activation = _default_activation(activation, boosted)
        self.stem = nn.Sequential(nn.Conv2d(embed_channels, stem_channels, 1), _activation(activation))
        kernels = [min(k_min + 2 * i, k_max) for i in range(len(strides))]
        widths = stage_channels(stem_channels, len(strides), reduction, min_channels)
        self.trunk = _UpStages(stem_channels, widths, strides, kernels, activation,
                               _extra(extra_blocks, len(strides)), boosted, {"n_freqs": n_freqs, "base": pe_base})

    def forward(self, embedding: Tensor, t: Tensor | None = None) -> Tensor:
        if embedding.ndim != 4 or embedding.shape[1] != self.embed_channels:
            raise ValueError(f"expected (B, {self.embed_channels}, h0, w0), got {tuple(embedding.shape)}")
        return self.trunk(self.stem(embedding), t)


# ---------------------------------------------------------------- parameter budget

def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def embedding_params(n_frames: int, embed_channels: int, h0: int, w0: int) -> int:
    """Numbers stored for all frames' HNeRV embeddings (part of HNeRV's model_size)."""
    return n_frames * embed_channels * h0 * w0


def solve_stem_channels(build: Callable[[int], nn.Module | int], target_params: int,
                        low: int = 4, high: int = 4096) -> int:
    """The stem width in [low, high] whose parameter count is closest to the target.

    ``build(width)`` returns a module (built on the meta device: no memory, no init
    cost) or a count. Counts are nondecreasing in width (every stage width is a
    monotone function of it), so bisect for the first width reaching the target and
    compare it with its predecessor.
    """
    if low < 1 or high < low:
        raise ValueError(f"need 1 <= low <= high, got {low}, {high}")

    def count(width: int) -> int:
        with torch.device("meta"):
            built = build(width)
        return built if isinstance(built, int) else count_parameters(built)

    lo, hi = low, high
    if count(hi) < target_params:
        return hi
    while lo < hi:
        mid = (lo + hi) // 2
        if count(mid) >= target_params:
            hi = mid
        else:
            lo = mid + 1
    if lo > low and abs(count(lo - 1) - target_params) <= abs(count(lo) - target_params):
        return lo - 1
    return lo


class BudgetError(ValueError):
    """No architecture reaches the parameter budget; the message names the nearest one and
    the flags (``--strides``, ``--embed-channels``, ``--model-size``) that reach it."""


def stride_options(strides: Sequence[int], frame_size: Sequence[int]) -> list[list[int]]:
    """``strides`` first, then ways to shrink the stem for a small budget: a larger first
    stride and/or one or two more stages of 2, keeping prod(strides) a divisor of both
    sides (at most 8 stages, each stride at most 16), in order of growing prod(strides)."""
    strides = _check_strides(strides)
    height, width = (int(v) for v in frame_size)
    options = []
    for extra in range(3):
        for grow in (1, 2, 3, 4):
            cand = [strides[0] * grow, *strides[1:], *([2] * extra)]
            factor = math.prod(cand)
            if cand[0] <= 16 and len(cand) <= 8 and height % factor == 0 and width % factor == 0:
                options.append(cand)
    rest = sorted((c for c in options if c != strides), key=lambda c: (math.prod(c), len(c)))
    return [strides] + rest


def _staged(kw: dict, strides: Sequence[int]) -> dict:
    """``kw`` with ``extra_blocks`` (one per stage) fitted to added stages: those get none
    after the given ones, which keep theirs (the boost's blocks sit at the last stages)."""
    extra = kw.get("extra_blocks")
    if extra is None or len(extra) >= len(strides):
        return kw
    return kw | {"extra_blocks": [*extra, *([0] * (len(strides) - len(extra)))]}


def _flags(strides: Sequence[int], embed_channels: int | None) -> str:
    flag = "--strides " + ",".join(str(s) for s in strides)
    return flag + (f" --embed-channels {embed_channels}" if embed_channels is not None else "")


def _for_budget(target: int, options: list[tuple[list[int], int | None]], build, extra_params) -> nn.Module:
    """The first (strides, embed_channels) option whose best stem width lands within 5 % of
    ``target``; else BudgetError naming the smallest and largest reachable sizes."""
    smallest = largest = None
    given = extra_params(*options[0])
    why = (f"the embeddings alone take {given} parameters with {_flags(*options[0])}, over the {target} budget; "
           if given >= target else "")
    for strides, embed in options:
        fixed = extra_params(strides, embed)
        if fixed >= target:
            continue
        stem = solve_stem_channels(lambda c: count_parameters(build(strides, embed, c)) + fixed, target)
        with torch.device("meta"):
            total = count_parameters(build(strides, embed, stem)) + fixed
            low = count_parameters(build(strides, embed, 4)) + fixed
        if abs(total - target) <= 0.05 * target:
            return build(strides, embed, stem)
        if smallest is None or low < smallest[0]:
            smallest = (low, strides, embed)
        if largest is None or total > largest[0]:
            largest = (total, strides, embed)
    if smallest is None:
        raise BudgetError(f"cannot reach {target} parameters: {why}fewer frames or a smaller budget per frame")
    if smallest[0] > target:
        size, strides, embed = smallest
        raise BudgetError(f"cannot reach {target} parameters within 5%: {why}the smallest reachable model at this "
                          f"frame size has {size} ({size / 1e6:.4f} M: --model-size {size / 1e6:.4f} "
                          f"{_flags(strides, embed)})")
    size, strides, embed = largest
    raise BudgetError(f"cannot reach {target} parameters within 5%: closest is {size} "
                      f"(--model-size {size / 1e6:.4f} {_flags(strides, embed)})")


def hnerv_for_budget(model_size_millions: float, n_frames: int, frame_size: Sequence[int],
                     strides: Sequence[int], embed_channels: int = 16, **kw) -> HNeRVDecoder:
    """An ``HNeRVDecoder`` whose params + all ``n_frames`` embeddings are within 5% of
    ``model_size_millions`` * 1e6 (HNeRV's model_size). ``kw`` goes to the decoder.

    When ``strides`` / ``embed_channels`` cannot reach a small budget, larger or more
    strides (:func:`stride_options`) and then fewer embedding channels are tried; the
    decoder's ``strides`` and ``embed_channels`` say what was chosen."""
    strides = _check_strides(strides)
    factor = math.prod(strides)
    height, width = (int(v) for v in frame_size)
    if height % factor or width % factor:
        raise ValueError(f"frame size {(height, width)} is not divisible by prod(strides)={factor}")
    target = int(round(model_size_millions * 1e6))
    embeds = [embed_channels] + [e for e in (8, 4, 2, 1) if e < embed_channels]
    options = [(s, e) for e in embeds for s in stride_options(strides, frame_size)]

    def params(s, e):
        f = math.prod(s)
        return embedding_params(n_frames, e, height // f, width // f)

    return _for_budget(target, options, lambda s, e, c: HNeRVDecoder(e, s, c, **_staged(kw, s)), params)


def nerv_for_budget(model_size_millions: float, frame_size: Sequence[int], strides: Sequence[int],
                    **kw) -> NeRVDecoder:
    """A ``NeRVDecoder`` within 5% of ``model_size_millions`` * 1e6 parameters, with larger
    or more strides (:func:`stride_options`) when ``strides`` cannot reach it."""
    target = int(round(model_size_millions * 1e6))
    options = [(s, None) for s in stride_options(strides, frame_size)]
    return _for_budget(target, options, lambda s, e, c: NeRVDecoder(frame_size, s, c, **_staged(kw, s)),
                       lambda s, e: 0)
