"""SemantiCodec's semantic tokens (stage 2): the frozen AudioMAE's features, grouped for the
token rate, each replaced by its nearest k-means centroid (Liu et al. 2024, "SemantiCodec").

Token rates count both of SemantiCodec's streams (a semantic and an acoustic token per frame),
so a frame rate is half of it. AudioMAE's 16x16 patches of 10 ms frames make 6.25 patch rows a
second, 8 patches each over 128 mel bins: 50 patches a second. At 100 tokens/s every patch is a
frame; at 50 two neighbours along frequency are concatenated (1x2); at 25 a 2x2 block (two rows,
two frequency neighbours), so a frame's feature is 1, 2 or 4 patch features wide. Frames run
time-major like the patches.

The authors released neither their k-means procedure nor its data. Ours (``fit_kmeans``,
``python infer.py fit-kmeans``): Lloyd's algorithm (``codecgen.nn.quantizers._kmeans``, k
distinct random vectors to start, a seed for the draw) on features of windows spread over a
folder of training audio; the centroids live in this module's state (``kmeans.centroids``), so
an export of it is a complete tokenizer.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor, nn

from codecgen.config import build, configurable, init_spec
from codecgen.module import Module
from codecgen.nn.audiomae import AudioMAE
from codecgen.nn.fbank import KaldiFbank, fit_frames
from codecgen.nn.quantizers import _kmeans

# token rate (both streams) -> patches merged into one frame: (rows, frequency neighbours)
MERGES = {100: (1, 1), 50: (1, 2), 25: (2, 2)}


class KMeansCodebook(nn.Module):
    """Centroids (k, dim) and whether they were fitted; nearest-centroid lookup in chunks."""

    def __init__(self, n_clusters: int, dim: int):
        super().__init__()
        self.register_buffer("centroids", torch.zeros(n_clusters, dim))
        self.register_buffer("fitted", torch.tensor(False))

    def nearest(self, x: Tensor, chunk: int = 8192) -> Tensor:
        """(..., dim) -> int64 (...): the index of the nearest centroid (Euclidean)."""
        if not bool(self.fitted):
            raise ValueError("the k-means centroids are not fitted yet: run `python infer.py fit-kmeans` first")
        flat, c = x.reshape(-1, x.shape[-1]).float(), self.centroids.float()
        c_norms = c.pow(2).sum(-1)
        out = torch.empty(flat.shape[0], dtype=torch.long, device=x.device)
        for start in range(0, flat.shape[0], chunk):
            part = flat[start : start + chunk]
            out[start : start + chunk] = (c_norms[None] - 2 * part @ c.t()).argmin(-1)  # + |x|^2: same argmin
        return out.view(x.shape[:-1])


@configurable
class SemanticTokenizer(Module):
    """Waveform windows -> semantic frames (features, token ids, centroids).

    Args:
        mae: the AudioMAE encoder (``decoder_depth=0``; its weights come from stage 1).
        fbank: its front end (``KaldiFbank`` with ``mae.num_mel_bins`` bins by default).
        tokens_per_second: 100, 50 or 25 (both streams; see the module docstring).
        n_clusters: the semantic vocabulary (paper: 4096-32768).
    """

    modality = "audio"
    inference_modules = ("fbank", "mae", "kmeans")

    def __init__(self, mae: AudioMAE, fbank: KaldiFbank | None = None, tokens_per_second: int = 100,
                 n_clusters: int = 1024):
        super().__init__()
        if tokens_per_second not in MERGES:
            raise ValueError(f"tokens_per_second must be one of {sorted(MERGES)}, got {tokens_per_second}")
        if n_clusters < 2:
            raise ValueError(f"n_clusters must be at least 2, got {n_clusters}")
        self.mae = mae
        self.fbank = fbank if fbank is not None else KaldiFbank(num_mel_bins=mae.num_mel_bins)
        self.tokens_per_second, self.n_clusters = tokens_per_second, n_clusters
        self.merge = MERGES[tokens_per_second]
        rows, cols = mae.grid
        if rows % self.merge[0] or cols % self.merge[1]:
            raise ValueError(f"the {rows} x {cols} patch grid does not split into {self.merge[0]} x {self.merge[1]} "
                             f"blocks for {tokens_per_second} tokens/s")
        self.frame_grid = (rows // self.merge[0], cols // self.merge[1])
        self.dim = mae.embed_dim * self.merge[0] * self.merge[1]
        self.kmeans = KMeansCodebook(n_clusters, self.dim)
        self.requires_grad_(False)  # a frozen stage: nothing here is trained by gradient

    @classmethod
    def from_pretraining(cls, stage: Module, tokens_per_second: int = 100, n_clusters: int = 1024) -> SemanticTokenizer:
        """A tokenizer on the encoder of a stage-1 model (``AudioMAEPretraining``); unfitted."""
        spec = init_spec(stage.mae)
        encoder = build({"class_path": spec["class_path"], "init_args": {**spec["init_args"], "decoder_depth": 0}})
        own = encoder.state_dict()
        encoder.load_state_dict({k: v for k, v in stage.mae.state_dict().items() if k in own})
        return cls(encoder, build(init_spec(stage.fbank)), tokens_per_second, n_clusters)

    # -- frames ------------------------------------------------------------------------
    @property
    def window_samples(self) -> int:
        return self.fbank.samples_for(self.mae.num_frames)

    @property
    def frames_per_window(self) -> int:
        return self.frame_grid[0] * self.frame_grid[1]

    @property
    def frame_rate(self) -> float:
        """Semantic frames per second (half the token rate)."""
        seconds = self.mae.num_frames * self.fbank.hop / self.fbank.sample_rate
        return self.frames_per_window / seconds

    def features(self, wave: Tensor) -> Tensor:
        """Waveforms (B, 1, T), T <= ``window_samples`` (shorter: zero-padded filterbank) ->
        (B, frames_per_window, dim), frames time-major."""
        if wave.shape[-1] > self.window_samples:
            raise ValueError(f"a window holds at most {self.window_samples} samples, got {wave.shape[-1]}")
        if wave.shape[-1] < self.window_samples:  # pad the wave, so short inputs make whole frames
            wave = torch.nn.functional.pad(wave, (0, self.window_samples - wave.shape[-1]))
        spec = fit_frames(self.fbank(wave), self.mae.num_frames)[:, None]
        patches = self.mae.features(spec)  # (B, rows * cols, D), time-major
        b, d, (rows, cols), (mr, mc) = patches.shape[0], patches.shape[-1], self.mae.grid, self.merge
        x = patches.view(b, rows // mr, mr, cols // mc, mc, d).permute(0, 1, 3, 2, 4, 5)
        return x.reshape(b, self.frames_per_window, self.dim)

    def tokens(self, features: Tensor) -> Tensor:
        """(B, frames, dim) -> int64 (B, frames): nearest centroids."""
        return self.kmeans.nearest(features)

    def centroids(self, tokens: Tensor) -> Tensor:
        """int64 (B, frames) -> (B, frames, dim)."""
        if tokens.numel() and (int(tokens.min()) < 0 or int(tokens.max()) >= self.n_clusters):
            raise ValueError(f"semantic tokens must be in [0, {self.n_clusters})")
        return self.kmeans.centroids[tokens]

    def nominal_rate(self) -> dict:
        bits = torch.tensor(float(self.n_clusters)).log2().item()
        return {"value": self.frame_rate * bits, "unit": "bps"}

    # -- k-means -----------------------------------------------------------------------
    @torch.no_grad()
    def fit_kmeans(self, windows: Iterable[Tensor], max_vectors: int = 200_000, iters: int = 30,
                   seed: int = 0) -> dict:
        """Fit the centroids on the features of ``windows`` (each (B, 1, <= window_samples)),
        keeping at most ``max_vectors`` frames spread evenly over them. Deterministic for a
        seed and the same windows. Returns {"vectors", "used_clusters"}."""
        self.eval()
        feats = [self.features(w).reshape(-1, self.dim) for w in windows]
        if not feats:
            raise ValueError("no audio to fit k-means on")
        x = torch.cat(feats)
        if x.shape[0] > max_vectors:
            x = x[torch.linspace(0, x.shape[0] - 1, max_vectors).round().long()]
        if x.shape[0] < self.n_clusters:
            raise ValueError(f"{x.shape[0]} feature vectors cannot make {self.n_clusters} clusters: give more audio")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            centroids, counts = _kmeans(x, self.n_clusters, iters)
        self.kmeans.centroids.copy_(centroids)
        self.kmeans.fitted.fill_(True)
        self._weights_hash = None
        return {"vectors": int(x.shape[0]), "used_clusters": int((counts > 0).sum())}
