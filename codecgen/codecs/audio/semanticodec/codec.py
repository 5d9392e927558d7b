"""SemantiCodec (Liu et al. 2024, "SemantiCodec: An Ultra Low Bitrate Semantic Audio Codec for
General Sound"; inference code haoheliu/SemantiCodec-inference): stage 5, the codec itself.

Each frame carries two tokens: a semantic one (the frozen ``SemanticTokenizer``: AudioMAE
features -> nearest k-means centroid) and an acoustic one (``AcousticEncoder``: BiLSTM over
[feature, centroid] -> VQ). The decoder is a latent diffusion model: a diffusers
``UNet2DConditionModel`` denoises the latent of the frozen ``MelVAE`` while cross-attending to
one condition vector per frame, [acoustic code vector, semantic centroid, 192-d sinusoidal
position of the frame in its window]; the VAE decodes the mel and the frozen ``MelVocoder``
makes the waveform. v-prediction, 1000 steps, scaled_linear betas 0.0015..0.0195 (the
scheduler in the config); sampled with DDIM 50 steps and classifier-free guidance 2.0 by
default, the unconditional branch zeroing the codes' vectors and keeping the positions.

Training (the authors released none): the acoustic encoder, its VQ and the UNet jointly, on
window-long segments: the diffusion loss of ``Generator`` plus the VQ's commitment loss
(``vq_weight``); condition dropout for the guidance. The three frozen stages come from their
own runs (``tokenizer_ckpt``, ``vae_ckpt``, ``vocoder_ckpt``: read at the start of a fresh run
only; a trained codec carries every weight). The VAE's latents are scaled to unit variance,
measured on the first batch (LDM's ``scale_by_std``). The UNet's weights are averaged (EMA,
sampled with and exported); the acoustic encoder is not: its outputs must stay those its VQ
codebook was fitted to.

Geometry. A window is the tokenizer's: ``N`` mel frames of 10 ms (the paper 1024, 10.24 s).
Its frames are AudioMAE patch blocks, time-major: ``rows`` blocks along time, ``cols`` along
frequency, so a row of ``cols`` frames covers 160 ms (320 ms at 25 tokens/s). Codes run
(B, 2, frames) with whole rows; encoding windows do not overlap (no token is sent twice).
Decoding runs windows at a hop of ``rows - overlap`` rows (``overlap_seconds``, 0.64 s as the
authors), each conditioned on the codes under it, frames past the end unconditional, and
cross-fades the decoded mels linearly over the overlap; the vocoder runs on the cross-faded
mel in pieces with 0.5 s of context (``decode_stream``: memory bounded by a group of
windows for any length): the joins have no steps. Sampling is deterministic for a seed
(``seed`` and the window's index seed its noise, whatever the batching).
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor, nn

from codecgen.codecs.audio.base import check_waveform
from codecgen.codecs.audio.semanticodec.acoustic import AcousticEncoder
from codecgen.codecs.audio.semanticodec.files import SemantiCodecFiles
from codecgen.codecs.audio.semanticodec.mel_vae import MelVAE
from codecgen.codecs.audio.semanticodec.tokenizer import SemanticTokenizer
from codecgen.codecs.audio.semanticodec.vocoder import MelVocoder
from codecgen.codecs.base import Codec, CodecError
from codecgen.config import configurable
from codecgen.generators.base import Generator, check_num_steps
from codecgen.nn.diffusion import make_scheduler, sample
from codecgen.nn.quantizers import VQ
from codecgen.nn.vit import sincos_1d

VOCODER_CONTEXT_FRAMES = 50  # mel frames (0.5 s) of context on each side of a vocoded piece


@configurable
class SemantiCodec(SemantiCodecFiles, Generator, Codec):
    """Args:
        unet: ``diffusers.UNet2DConditionModel`` over the VAE latent (in and out channels =
            its latent channels), ``cross_attention_dim`` = quantizer dim + tokenizer dim +
            ``position_dim`` (paper: 64 ch, mult [1, 2, 3, 5], 2 blocks, attention at /2 /4 /8).
        scheduler: the diffusers scheduler (paper: DDPM, 1000 steps, scaled_linear
            0.0015..0.0195, v_prediction).
        tokenizer, vae, vocoder: the frozen stages 2-4.
        acoustic: ``AcousticEncoder`` (feature_dim = the tokenizer's frame width).
        quantizer: the acoustic ``VQ`` (paper: 8192 codes, EMA decay 0.9, commitment 1.0).
        tokenizer_ckpt, vae_ckpt, vocoder_ckpt: exports or checkpoints of the stages, read
            at the start of a fresh run.
        position_dim: width of the frames' position features (192).
        scale_by_std: scale the VAE latents to unit variance (measured on the first batch).
        overlap_seconds: decoding windows' overlap (0.64).
        vq_weight: weight of the VQ's commitment loss in training.
        steps, guidance, sampler: decoding defaults (50, 2.0, "ddim").
        batch_windows: windows sampled at once (memory).
        **kwargs: ``Generator``'s (lr, ema_decay, condition_dropout, ...).
    """

    modality = "audio"
    frozen_modules = ("tokenizer", "vae", "vocoder")  # trained stages, always in inference mode
    inference_modules = ("unet", "tokenizer", "vae", "vocoder", "acoustic", "quantizer")

    def __init__(self, unet: nn.Module, scheduler, tokenizer: SemanticTokenizer, vae: MelVAE, vocoder: MelVocoder,
                 acoustic: AcousticEncoder, quantizer: VQ, tokenizer_ckpt: str | None = None,
                 vae_ckpt: str | None = None, vocoder_ckpt: str | None = None, position_dim: int = 192,
                 scale_by_std: bool = True, overlap_seconds: float = 0.64, vq_weight: float = 1.0, steps: int = 50,
                 guidance: float = 2.0, sampler: str = "ddim", batch_windows: int = 8, **kwargs):
        super().__init__(unet, scheduler, **kwargs)
        self.tokenizer = tokenizer.requires_grad_(False).eval()
        self.vae = vae.requires_grad_(False).eval()
        self.vocoder = vocoder.requires_grad_(False).eval()
        self.acoustic, self.quantizer = acoustic, quantizer
        self.tokenizer_ckpt, self.vae_ckpt, self.vocoder_ckpt = tokenizer_ckpt, vae_ckpt, vocoder_ckpt
        self.position_dim, self.scale_by_std, self.vq_weight = position_dim, scale_by_std, vq_weight
        self.overlap_seconds, self.batch_windows = overlap_seconds, batch_windows
        check_num_steps(steps, self.scheduler)
        self.steps, self.guidance, self.sampler = steps, guidance, sampler
        self._check_geometry()
        self.overlap_rows = round(overlap_seconds * self.sample_rate / self.samples_per_row)
        if not 0 <= self.overlap_rows < self.rows:
            raise ValueError(f"overlap_seconds {overlap_seconds} must be shorter than a window "
                             f"({self.window_samples / self.sample_rate:g} s)")
        positions = sincos_1d(position_dim, torch.arange(self.tokenizer.frames_per_window)).float()
        self.register_buffer("positions", positions, persistent=False)
        self.register_buffer("latent_scale", torch.ones(()))
        self._measure_scale, self._vq = False, None

    def _check_geometry(self) -> None:
        tok, vae, voc = self.tokenizer, self.vae, self.vocoder
        hops = {tok.fbank.hop, vae.mel.hop_length, voc.mel.hop_length}
        rates = {tok.fbank.sample_rate, voc.sample_rate}
        if len(hops) != 1 or len(rates) != 1 or vae.mel.n_mels != voc.mel.n_mels:
            raise ValueError(f"the stages disagree on the mel: hops {sorted(hops)}, sample rates {sorted(rates)}, "
                             f"bins {vae.mel.n_mels} (VAE) vs {voc.mel.n_mels} (vocoder)")
        if self.acoustic.feature_dim != tok.dim or self.acoustic.out_dim != self.quantizer.dim:
            raise ValueError(f"the acoustic encoder must take {tok.dim}-d frames and give {self.quantizer.dim}-d "
                             f"vectors, got {self.acoustic.feature_dim} and {self.acoustic.out_dim}")
        config = self.unet.config
        if config.in_channels != vae.latent_channels or config.out_channels != vae.latent_channels:
            raise ValueError(f"the UNet must take and give the VAE's {vae.latent_channels} latent channels")
        want = self.quantizer.dim + tok.dim + self.position_dim
        if config.cross_attention_dim != want:
            raise ValueError(f"the UNet's cross_attention_dim must be {want} (acoustic {self.quantizer.dim} + "
                             f"semantic {tok.dim} + position {self.position_dim}), got {config.cross_attention_dim}")
        frames, bins, f = tok.mae.num_frames, vae.mel.n_mels, vae.factor
        unet_factor = 2 ** (len(config.block_out_channels) - 1)
        if frames % (f * unet_factor) or bins % (f * unet_factor):
            raise ValueError(f"a window's {frames} x {bins} mel must divide by the VAE ({f}) times the UNet "
                             f"({unet_factor}) downsampling")

    # -- geometry ---------------------------------------------------------------------------
    @property
    def sample_rate(self) -> int:
        return self.vocoder.sample_rate

    @property
    def hop_length(self) -> int:
        return self.vae.mel.hop_length

    @property
    def window_samples(self) -> int:
        return self.tokenizer.mae.num_frames * self.hop_length

    @property
    def rows(self) -> int:
        return self.tokenizer.frame_grid[0]

    @property
    def cols(self) -> int:
        return self.tokenizer.frame_grid[1]

    @property
    def samples_per_row(self) -> int:
        return self.window_samples // self.rows

    @property
    def downsampling_factor(self) -> int:
        """Samples per row of frames (every ``cols`` frames cover this many samples)."""
        return self.samples_per_row

    @property
    def frame_rate(self) -> float:
        return self.tokenizer.frame_rate

    @property
    def tokens_per_second(self) -> int:
        return self.tokenizer.tokens_per_second

    @property
    def codebook_sizes(self) -> list[int]:
        return [self.tokenizer.n_clusters, self.quantizer.codebook_size]

    def bitrate(self) -> float:
        """Bits per second with a uniform code model: frame rate x (log2 V_sem + log2 V_ac)."""
        return self.frame_rate * sum(math.log2(k) for k in self.codebook_sizes)

    def nominal_rate(self) -> dict:
        return {"value": self.bitrate(), "unit": "bps"}

    def frames_for(self, num_samples: int) -> int:
        """Code frames for ``num_samples`` samples: whole rows."""
        return math.ceil(num_samples / self.samples_per_row) * self.cols

    def latent_shape(self, batch: int) -> tuple[int, ...]:
        f = self.vae.factor
        return (batch, self.vae.latent_channels, self.tokenizer.mae.num_frames // f, self.vae.mel.n_mels // f)

    # -- encoding ---------------------------------------------------------------------------
    def _semantic(self, windows: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Windows (B, 1, window_samples) -> (features, semantic tokens, their centroids)."""
        features = self.tokenizer.features(windows)
        tokens = self.tokenizer.tokens(features)
        return features, tokens, self.tokenizer.centroids(tokens)

    def _acoustic_vectors(self, features: Tensor, centroids: Tensor) -> Tensor:
        """(B, frames, quantizer dim): the acoustic encoder's output, before the VQ."""
        return self.acoustic(torch.cat([features, centroids], -1))

    @torch.no_grad()
    def encode(self, x: Tensor) -> Tensor:
        """Waveforms (B, 1, T) at ``sample_rate`` -> int64 codes (B, 2, frames_for(T)):
        semantic tokens, then acoustic tokens."""
        x = check_waveform(x).to(self.device)
        b, length, ws = x.shape[0], x.shape[-1], self.window_samples
        n = math.ceil(length / ws)
        windows = torch.nn.functional.pad(x, (0, n * ws - length)).view(b * n, 1, ws)
        parts = []
        for batch in windows.split(self.batch_windows):
            features, semantic, centroids = self._semantic(batch)
            acoustic = self.quantizer.encode(self._acoustic_vectors(features, centroids).transpose(1, 2))[:, 0]
            parts.append(torch.stack([semantic, acoustic], 1))
        codes = torch.cat(parts).view(b, n, 2, -1).permute(0, 2, 1, 3).reshape(b, 2, -1)
        return codes[..., : self.frames_for(length)]

    # -- conditions -------------------------------------------------------------------------
    def condition(self, codes: Tensor, valid: Tensor) -> Tensor:
        """Codes (B, 2, frames_per_window) and which frames are real (B, frames) -> the
        cross-attention condition (B, frames, C); unreal frames keep only their position."""
        semantic = self.tokenizer.centroids(codes[:, 0])
        acoustic = self.quantizer.decode(codes[:, 1:]).transpose(1, 2)
        features = torch.cat([acoustic, semantic], -1) * valid[..., None].to(semantic.dtype)
        return torch.cat([features, self.positions[None].expand(codes.shape[0], -1, -1).to(features)], -1)

    def drop_condition(self, cond: Tensor, mask: Tensor) -> Tensor:
        """Classifier-free guidance's unconditional input: the codes' vectors zeroed, the
        positions kept (the authors' choice)."""
        keep = (~mask).to(cond.dtype)[:, None, None]
        width = cond.shape[-1] - self.position_dim
        return torch.cat([cond[..., :width] * keep, cond[..., width:]], -1)

    def denoise(self, x_t: Tensor, t: Tensor, cond: Tensor) -> Tensor:
        return self.unet(x_t, t, encoder_hidden_states=cond).sample

    # -- decoding ---------------------------------------------------------------------------
    def _check_codes(self, codes: Tensor) -> Tensor:
        if codes.ndim != 3 or codes.shape[1] != 2 or codes.dtype != torch.int64:
            raise CodecError(f"expected int64 codes (B, 2, frames), got {codes.dtype} {tuple(codes.shape)}")
        if codes.shape[-1] == 0 or codes.shape[-1] % self.cols:
            raise CodecError(f"codes must be whole rows of {self.cols} frames, got {codes.shape[-1]} frames")
        for i, k in enumerate(self.codebook_sizes):
            if int(codes[:, i].min()) < 0 or int(codes[:, i].max()) >= k:
                raise CodecError(f"{('semantic', 'acoustic')[i]} codes must be in [0, {k})")
        return codes

    def window_starts(self, total_rows: int) -> list[int]:
        """First rows of the decoding windows: a hop of rows - overlap, the last one reaching
        the end (one window for anything up to a window)."""
        hop = self.rows - self.overlap_rows
        starts = [0]
        while starts[-1] + self.rows < total_rows:
            starts.append(starts[-1] + hop)
        return starts

    def _window_codes(self, codes: Tensor, start_row: int) -> tuple[Tensor, Tensor]:
        """The codes under a window from ``start_row`` (padded past the end) and their mask."""
        f, c = self.tokenizer.frames_per_window, self.cols
        part = codes[..., start_row * c : start_row * c + f]
        valid = torch.zeros(codes.shape[0], f, dtype=torch.bool, device=codes.device)
        valid[:, : part.shape[-1]] = True
        return torch.nn.functional.pad(part, (0, f - part.shape[-1])), valid

    def _crossfade(self, n_frames: int, first: bool, last: bool) -> Tensor:
        """Mel-frame weights of one window: linear ramps over the overlap at inner ends."""
        ramp = self.overlap_rows * self.tokenizer.mae.num_frames // self.rows
        w = torch.ones(n_frames)
        if ramp:
            up = (torch.arange(ramp) + 0.5) / ramp
            if not first:
                w[:ramp] = up
            if not last:
                w[-ramp:] = up.flip(0)
        return w

    @torch.no_grad()
    def decode(self, codes: Tensor, length: int | None = None, steps: int | None = None,
               guidance: float | None = None, sampler: str | None = None, seed: int = 0,
               progress=None) -> Tensor:
        """Codes (B, 2, frames) -> waveforms (B, 1, length) (default: the frames' span).
        ``steps``, ``guidance``, ``sampler`` ("ddim", "dpm", "ddpm") default to the model's;
        ``seed`` (with each window's index) fixes the noise; ``progress(done, total)``."""
        wave = torch.cat(list(self.decode_stream(codes, steps, guidance, sampler, seed, progress)), -1)
        return wave[..., : length if length is not None else wave.shape[-1]]

    @torch.no_grad()
    def decode_stream(self, codes: Tensor, steps: int | None = None, guidance: float | None = None,
                      sampler: str | None = None, seed: int = 0, progress=None) -> Iterator[Tensor]:
        """``decode`` as consecutive waveform pieces (B, 1, n), window group by window group:
        memory is bounded by a group (``batch_windows``) whatever the length. The mel is
        final up to where the next window starts; it is vocoded in blocks of one window hop
        once a vocoder context of final mel lies beyond a block, the rest at the end."""
        codes = self._check_codes(codes.to(self.device))
        steps = self.steps if steps is None else steps
        guidance = self.guidance if guidance is None else guidance
        if guidance < 0:
            raise CodecError(f"guidance must be >= 0, got {guidance}")
        scheduler = make_scheduler(sampler or self.sampler, self.scheduler.config)
        check_num_steps(steps, scheduler)
        b, total_rows = codes.shape[0], codes.shape[-1] // self.cols
        starts = self.window_starts(total_rows)
        per_row, n_window = self.tokenizer.mae.num_frames // self.rows, self.tokenizer.mae.num_frames
        total, ctx = total_rows * per_row, VOCODER_CONTEXT_FRAMES
        mel = torch.zeros(b, 0, self.vae.mel.n_mels, device=self.device)  # frames from `origin` on
        origin, vocoded = 0, 0
        group = max(1, self.batch_windows // b)
        for g in range(0, len(starts), group):
            ks = range(g, min(g + group, len(starts)))
            with self.sampling():
                windows = [self._window_codes(codes, starts[k]) for k in ks]
                cond = self.condition(torch.cat([w[0] for w in windows]), torch.cat([w[1] for w in windows]))
                noise = torch.cat([torch.randn(self.latent_shape(1), generator=torch.Generator().manual_seed(
                    seed * 1_000_003 + k)).expand(b, -1, -1, -1) for k in ks]).to(self.device, self.dtype)
                latents = sample(self.denoise, scheduler, noise.shape, steps, cond=cond,
                                 uncond=self.unconditional(cond) if guidance != 1.0 else None, guidance=guidance,
                                 latents=noise, device=self.device, dtype=noise.dtype)
                mels = self.vae.decode(latents / self.latent_scale)[:, 0].view(len(ks), b, n_window, -1)
            for k, m in zip(ks, mels):
                a = starts[k] * per_row - origin
                grow = a + n_window - mel.shape[1]
                if grow > 0:
                    mel = torch.cat([mel, mel.new_zeros(b, grow, mel.shape[-1])], 1)
                w = self._crossfade(n_window, k == 0, k == len(starts) - 1).to(m)
                mel[:, a : a + n_window] += m * w[:, None]
            if progress is not None:
                progress(ks[-1] + 1, len(starts))
            last = ks[-1] == len(starts) - 1
            final = total if last else starts[ks[-1] + 1] * per_row  # no later window reaches before this
            # vocoded in blocks of one window hop on a fixed grid: the same pieces whatever the grouping
            block = (self.rows - self.overlap_rows) * per_row
            upto = final if last else (final - ctx) // block * block
            if upto > vocoded:
                lo = max(origin, vocoded - ctx)
                piece = self.vocoder(mel[:, lo - origin : min(final, upto + ctx) - origin].transpose(1, 2))
                yield piece[..., (vocoded - lo) * self.hop_length : (upto - lo) * self.hop_length]
                vocoded = upto
                keep_from = max(origin, vocoded - ctx)  # the next piece's left context onwards
                mel, origin = mel[:, keep_from - origin :], keep_from

    # -- training ---------------------------------------------------------------------------
    def training_only_args(self) -> tuple[str, ...]:
        return (*super().training_only_args(), "tokenizer_ckpt", "vae_ckpt", "vocoder_ckpt")

    def inference_state_dict(self) -> dict[str, Tensor]:
        return {**super().inference_state_dict(), "latent_scale": self.latent_scale}

    def configure_optimizers(self):
        return torch.optim.AdamW([*self.unet.parameters(), *self.acoustic.parameters()], lr=self.lr)

    def latents_and_condition(self, batch: Tensor) -> tuple[Tensor, Tensor]:
        if batch.shape[-1] < self.window_samples:
            raise ValueError(f"training segments must hold a window ({self.window_samples} samples), "
                             f"got {batch.shape[-1]}: set data.segment_seconds to "
                             f"{self.window_samples / self.sample_rate:g}")
        x = batch[..., : self.window_samples]
        with torch.no_grad():
            features, _, centroids = self._semantic(x)
            z = self.vae.encode(self.vae.mel_image(x), sample=True) * self.latent_scale
        q = self.quantizer(self._acoustic_vectors(features, centroids).transpose(1, 2))
        self._vq = q  # its commitment loss joins the diffusion loss in training_step
        cond = torch.cat([q.quantized.transpose(1, 2), centroids], -1)
        return z, torch.cat([cond, self.positions[None].expand(x.shape[0], -1, -1).to(cond)], -1)

    def training_step(self, batch: Tensor, batch_idx: int) -> Tensor:
        loss = super().training_step(batch, batch_idx)
        q, self._vq = self._vq, None
        self.log_dict({"train/vq": q.loss.detach(), "vq/perplexity": q.metrics["perplexity"]},
                      batch_size=batch.shape[0])
        return loss + self.vq_weight * q.loss

    def on_fit_start(self) -> None:
        self._measure_scale = False
        self._weights_hash = None
        if self.trainer.ckpt_path is not None:
            return  # a resumed run: everything is in the checkpoint
        from codecgen.hub import load_stage_weights

        for stage, path, role, kind in ((self.tokenizer, self.tokenizer_ckpt, "tokenizer_ckpt", SemanticTokenizer),
                                        (self.vae, self.vae_ckpt, "vae_ckpt", MelVAE),
                                        (self.vocoder, self.vocoder_ckpt, "vocoder_ckpt", MelVocoder)):
            if path:
                load_stage_weights(stage, path, kind, role, self.device)
            else:
                rank_zero_warn(f"{role} is not set: that stage is UNTRAINED (randomly initialised)")
        if not bool(self.tokenizer.kmeans.fitted):
            raise ValueError("the tokenizer's k-means centroids are not fitted: give tokenizer_ckpt a tokenizer "
                             "exported by `python infer.py fit-kmeans`")
        self._measure_scale = self.scale_by_std

    def on_train_batch_start(self, batch, batch_idx: int) -> None:
        super().on_train_batch_start(batch, batch_idx)
        if self._measure_scale:  # LDM's scale_by_std, on the first batch of a fresh run
            self._measure_scale = False
            with torch.no_grad():
                z = self.vae.encode(self.vae.mel_image(batch[..., : self.window_samples]), sample=True)
            self.latent_scale.fill_(1.0 / float(z.float().std().clamp(min=1e-8)))
