"""Waveform codecs trained as GANs: encoder -> quantizer -> decoder, plus discriminators.

This is the recipe HiFi-Codec, EnCodec, DAC and Language-Codec share, written once:
- ``encode`` / ``decode`` on batches, ``compress`` / ``decompress`` through the
  ``.cgc`` container, and ``encode_chunks`` / ``decode_chunks`` for files of any length
  with bounded memory (each chunk is coded with real signal around it as context,
  and only its own frames are kept, so chunk seams are inaudible);
- the training step: HiFi-GAN's waveform GAN step (``codecgen.codecs.audio.gan``) with
  the quantizer's loss as one more weighted term.

Subclasses name the paper and set defaults; a codec whose decoder takes more than
the quantized latent (Language-Codec's bandwidth id) overrides ``decode_latent``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from codecgen.codecs import bitstream
from codecgen.codecs.base import Codec, CodecError
from codecgen.codecs.limits import DecodeLimits
from codecgen.codecs.limits import resolve as resolve_limits
from codecgen.nn import entropy
from codecgen.codecs.audio.gan import WaveformGANTraining

DEFAULT_LOSS_WEIGHTS = {"mel": 45.0, "vq": 1.0, "adversarial": 1.0, "feature_matching": 2.0}
MAX_SAMPLE_RATE = 1_000_000
MAX_SAMPLES = 1 << 40
ENTROPY_KINDS = ("uniform", "histogram", "prior")  # "prior": the model's own CodePrior, no table sent
# The audio file's header, every field (codecgen.codecs.bitstream: types and ranges).
AUDIO_SCHEMA = bitstream.Object({
    "modality": bitstream.Str(choices=("audio",)),
    "model": bitstream.Str(),
    "weights_hash": bitstream.Str(),
    "sample_rate": bitstream.Int(1, MAX_SAMPLE_RATE),
    "source_sample_rate": bitstream.Int(1, MAX_SAMPLE_RATE),
    "length": bitstream.Int(1, MAX_SAMPLES),
    "source_length": bitstream.Int(1, MAX_SAMPLES),
    "codes_shape": bitstream.List(bitstream.Int(0, MAX_SAMPLES), 3, 3),  # (1, n_q, frames)
    "codebook_sizes": bitstream.List(bitstream.Int(1, entropy.MAX_CODEBOOK_SIZE), 1, entropy.MAX_CODEBOOKS),
    "entropy": bitstream.Object(
        {"kind": bitstream.Str(choices=ENTROPY_KINDS), "levels": bitstream.Str(max_len=bitstream.MAX_HEADER_BYTES)},
        optional=("levels",),
    ),
})


def check_waveform(x: Tensor) -> Tensor:
    """A batch of mono waveforms as (B, 1, T) ((B, T) accepted), or one clear CodecError."""
    if x.ndim == 2:
        x = x[:, None]
    if x.ndim != 3 or x.shape[1] != 1:
        raise CodecError(f"expected a mono waveform (B, 1, T), got shape {tuple(x.shape)}")
    if x.shape[-1] == 0:
        raise CodecError("empty audio: nothing to encode")
    if not torch.isfinite(x).all():
        raise CodecError("audio contains NaN or infinite samples")
    return x


class AudioCodec(WaveformGANTraining, Codec):
    modality = "audio"
    inference_modules = ("encoder", "quantizer", "decoder", "code_prior")

    def __init__(
        self,
        encoder: nn.Module,
        quantizer: nn.Module,
        decoder: nn.Module,
        discriminator: nn.Module | None = None,
        sample_rate: int = 16000,
        mel_loss: nn.Module | None = None,
        loss_weights: dict[str, float] | None = None,
        gan_loss: str = "lsgan",
        lr: float = 2e-4,
        betas: tuple[float, float] = (0.5, 0.9),
        lr_gamma: float = 0.999,
        lr_decay_every: int = 200,
        disc_start_step: int = 0,
        grad_clip: float | None = None,
        log_audio: int = 0,
        chunk_seconds: float = 20.0,
        context_seconds: float = 0.5,
        val_speech_metrics: bool = True,
    ):
        super().__init__()
        self.encoder, self.quantizer, self.decoder = encoder, quantizer, decoder
        self.code_prior = entropy.CodePrior(quantizer.codebook_sizes)  # fitted after training: fit_code_prior
        self.init_waveform_gan(discriminator, sample_rate, mel_loss, loss_weights or DEFAULT_LOSS_WEIGHTS, gan_loss,
                               lr, betas, lr_gamma, lr_decay_every, disc_start_step, grad_clip)
        self.log_audio = log_audio
        self.chunk_seconds, self.context_seconds = chunk_seconds, context_seconds
        self.val_speech_metrics = val_speech_metrics

    # -- rates ------------------------------------------------------------------------
    @property
    def hop_length(self) -> int:
        return self.encoder.hop_length

    @property
    def downsampling_factor(self) -> int:
        return self.hop_length

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.hop_length

    def bitrate(self, n_q: int | None = None) -> float:
        """Bits per second with a uniform code model (the entropy coder does better)."""
        return self.frame_rate * self.quantizer.bits_per_frame(n_q)

    def nominal_rate(self) -> dict:
        return {"value": self.bitrate(), "unit": "bps"}

    # -- batches ----------------------------------------------------------------------
    def _check_waveform(self, x: Tensor) -> Tensor:
        return check_waveform(x)

    def _pad_to_hop(self, x: Tensor) -> Tensor:
        return F.pad(x, (0, -x.shape[-1] % self.hop_length))

    @torch.no_grad()
    def encode(self, x: Tensor, n_q: int | None = None) -> Tensor:
        """(B, 1, T) or (B, T) waveform -> int64 codes (B, n_codebooks, ceil(T / hop))."""
        x = self._check_waveform(x)
        return self.quantizer.encode(self.encoder(self._pad_to_hop(x)), n_q=n_q)

    def decode_latent(self, quantized: Tensor, n_q: int) -> Tensor:
        return self.decoder(quantized)

    @torch.no_grad()
    def decode(self, codes: Tensor, length: int | None = None) -> Tensor:
        """codes (B, n_codebooks, frames) -> waveform (B, 1, frames * hop), cropped to ``length``."""
        y = self.decode_latent(self.quantizer.decode(codes), codes.shape[1])
        return y[..., :length] if length is not None else y

    def forward(self, x: Tensor, n_q: int | None = None):
        """Training-mode pass: (reconstruction cropped to T, QuantizerOutput)."""
        q = self.quantizer(self.encoder(self._pad_to_hop(x)), n_q=n_q)
        return self.decode_latent(q.quantized, q.codes.shape[1])[..., : x.shape[-1]], q

    # -- bytes ------------------------------------------------------------------------
    def header(self, codes: Tensor, length: int, source_sample_rate: int, source_length: int, model) -> dict:
        return {
            "modality": self.modality,
            "model": self.model_name,
            "weights_hash": self.weights_hash(),
            "sample_rate": self.sample_rate,
            "source_sample_rate": source_sample_rate,
            "length": length,
            "source_length": source_length,
            "codes_shape": list(codes.shape),
            "codebook_sizes": list(self.quantizer.codebook_sizes[: codes.shape[1]]),
            # the code model's sizes are the header's codebook_sizes: not stored twice
            "entropy": {k: v for k, v in model.to_header().items() if k != "codebook_sizes"},
        }

    def pack_codes(self, codes: Tensor, length: int, source_sample_rate: int | None = None,
                   source_length: int | None = None) -> tuple[dict, bytes]:
        """Entropy-code ``codes`` (1, n_q, F) with whichever code model makes the smaller
        file: uniform, a histogram sent in the header, or the model's own prior."""
        sizes = self.quantizer.codebook_sizes[: codes.shape[1]]
        candidates = [(entropy.uniform_model(sizes), None), (entropy.fit_histogram(codes, sizes), None)]
        if self.code_prior.fitted:
            candidates.append((self.code_prior.entropy_model(codes.shape[1]), {"kind": "prior"}))

        def cost(candidate) -> float:
            model, header = candidate
            header_bytes = len(json.dumps(header, separators=(",", ":"))) if header else model.header_bytes()
            return entropy.information_bits(codes, model) / 8 + header_bytes

        model, entropy_header = min(candidates, key=cost)
        header = self.header(codes, length, source_sample_rate or self.sample_rate, source_length or length, model)
        if entropy_header is not None:
            header["entropy"] = entropy_header
        return header, entropy.encode(codes, model)

    def code_model(self, header: dict) -> entropy.EntropyModel:
        """The entropy model a file's header names: the model's own prior or a sent table."""
        if header["entropy"].get("kind") == "prior":
            if set(header["entropy"]) != {"kind"}:
                raise ValueError("a 'prior' code model takes no table")
            return self.code_prior.entropy_model(len(header["codebook_sizes"]))
        return entropy.EntropyModel.from_header({**header["entropy"], "codebook_sizes": header["codebook_sizes"]})

    @torch.no_grad()
    def fit_code_prior(self, batches) -> int:
        """Count the codes of an iterable of waveforms (1, 1, T) into the model's prior;
        returns the number of frames counted."""
        frames = 0
        for x in batches:
            codes = self.encode(x.to(self.device))
            self.code_prior.update(codes)
            frames += codes.shape[-1]
        self._weights_hash = None
        return frames

    def unpack_codes(self, header: dict, payload: bytes, limits: DecodeLimits | None = None) -> Tensor:
        """Validate a header against this model and ``limits`` (default ``DEFAULT_LIMITS``),
        then decode the codes it describes. Everything is checked before anything is
        allocated: the schema, the model, the duration against ``limits.max_seconds``, and
        the frame count against what the payload can hold under the file's code model."""
        bitstream.check_header(header, AUDIO_SCHEMA, "audio")
        if header["weights_hash"] != self.weights_hash():
            raise CodecError(
                f"this file was written by model {header['model']} with weights {header['weights_hash']}; "
                f"the model given is {self.model_name} with weights {self.weights_hash()}: use the model that encoded it"
            )
        if header["sample_rate"] != self.sample_rate:
            raise bitstream.BitstreamError(f"file sample rate {header['sample_rate']} != model's {self.sample_rate}")
        shape = tuple(header["codes_shape"])
        if shape[0] != 1 or not 1 <= shape[1] <= self.quantizer.n_codebooks:
            raise bitstream.BitstreamError(f"codes_shape {list(shape)} does not fit this model")
        if header["codebook_sizes"] != list(self.quantizer.codebook_sizes[: shape[1]]):
            raise bitstream.BitstreamError("codebook sizes in the file do not match the model")
        try:  # the quantizer's own rule on how many codebooks it decodes (GRVQ: whole stages), on one frame
            self.quantizer.decode(torch.zeros(1, shape[1], 1, dtype=torch.long, device=self.device))
        except ValueError as error:
            raise bitstream.BitstreamError(f"this model cannot decode {shape[1]} codebooks: {error}") from None
        length, source_rate, source_length = header["length"], header["source_sample_rate"], header["source_length"]
        if shape[2] != math.ceil(length / self.hop_length):
            raise bitstream.BitstreamError(f"length {length} does not match {shape[2]} frames")
        # the model-rate length is the source resampled: the two durations agree within a frame
        if abs(length * source_rate - source_length * self.sample_rate) > self.hop_length * source_rate:
            raise bitstream.BitstreamError(
                f"length {length} at {self.sample_rate} Hz does not match {source_length} samples at {source_rate} Hz")
        limits = resolve_limits(limits)
        limits.check_seconds(max(length / self.sample_rate, source_length / source_rate))
        try:
            model = self.code_model(header)
            return entropy.decode(payload, shape, model).to(self.device)
        except ValueError as error:
            raise bitstream.BitstreamError(f"corrupt payload: {error}") from None

    def compress(self, x: Tensor, n_q: int | None = None) -> bytes:
        """One waveform (1, T) or (1, 1, T) at ``sample_rate`` -> ``.cgc`` bytes."""
        x = self._check_waveform(x.reshape(1, 1, -1))
        codes = self.encode(x, n_q=n_q)
        return bitstream.pack(*self.pack_codes(codes, x.shape[-1]))

    def decompress(self, data: bytes, limits: DecodeLimits | None = None) -> Tensor:
        """``.cgc`` bytes -> waveform (1, T) at ``sample_rate``; ``limits`` as ``unpack_codes``."""
        header, payload = bitstream.unpack(data)
        codes = self.unpack_codes(header, payload, limits)
        return self.decode(codes, header["length"])[0]

    # -- long files -------------------------------------------------------------------
    def chunk_plan(self) -> tuple[int, int]:
        """(chunk, context) in samples, both whole numbers of frames."""
        chunk = max(1, round(self.chunk_seconds * self.frame_rate)) * self.hop_length
        context = math.ceil(self.context_seconds * self.frame_rate) * self.hop_length
        return chunk, context

    @torch.no_grad()
    def encode_chunks(self, chunks: Iterable[tuple[Tensor, int, int]], n_q: int | None = None) -> tuple[Tensor, int]:
        """Encode a stream of ``(window, left_context, n_valid)`` (as
        ``codecgen.datamodules.audio.iter_audio_chunks`` yields, with ``chunk_plan()``
        sizes) into codes (1, n_q, F) and the total length in samples."""
        codes, length = [], 0
        for window, left, n_valid in chunks:
            if left % self.hop_length:
                raise ValueError(f"chunk context {left} is not a whole number of {self.hop_length}-sample frames")
            window = self._check_waveform(window.reshape(1, 1, -1).to(self.device))
            first = left // self.hop_length
            frames = math.ceil(n_valid / self.hop_length)
            codes.append(self.encode(window, n_q=n_q)[..., first : first + frames])
            length += n_valid
        if not codes:
            raise CodecError("empty audio: nothing to encode")
        return torch.cat(codes, dim=-1), length

    @torch.no_grad()
    def decode_chunks(self, codes: Tensor, length: int) -> Iterator[Tensor]:
        """Decode codes (1, n_q, F) chunk by chunk, yielding consecutive (1, n) waveform
        pieces that add up to ``length`` samples; memory is bounded by one chunk."""
        chunk, context = (n // self.hop_length for n in self.chunk_plan())
        total_frames = codes.shape[-1]
        for start in range(0, total_frames, chunk):
            end = min(start + chunk, total_frames)
            lo, hi = max(0, start - context), min(total_frames, end + context)
            y = self.decode(codes[..., lo:hi])[0]
            a = (start - lo) * self.hop_length
            keep = min(end * self.hop_length, length) - start * self.hop_length
            yield y[:, a : a + keep].cpu()

    # -- training ---------------------------------------------------------------------
    def configure_optimizers(self):
        return self.configure_gan_optimizers(
            [p for name in self.inference_modules for p in getattr(self, name).parameters()])

    def training_step(self, batch: Tensor, batch_idx: int):
        y, q = self(batch)
        logs = {f"vq/{k}": v for k, v in q.metrics.items() if k.endswith("perplexity")}
        return self.waveform_gan_step(batch, y, {"vq": q.loss}, logs)

    def validation_step(self, batch: Tensor, batch_idx: int):
        """Held-out scores for the learning curves: the mel distance of the training loss,
        and (``val_speech_metrics``) PESQ-WB and STOI per item, for the codec at full rate
        and for its ceiling, the decoder fed the unquantized latent (``val/ceiling_*``)."""
        x = batch
        n = x.shape[0]
        codes = self.encode(x)
        y = self.decode(codes, x.shape[-1])
        mel = self.mel_loss(y, x)
        self.log("val/mel_distance", mel, prog_bar=True, sync_dist=True, batch_size=n)
        self.log("val/kbps", self.bitrate() / 1000, sync_dist=True, batch_size=n)
        if self.val_speech_metrics:
            ceiling = self.decode_latent(self.encoder(self._pad_to_hop(x)), codes.shape[1])[..., : x.shape[-1]]
            self.log("val/ceiling_mel_distance", self.mel_loss(ceiling, x), sync_dist=True, batch_size=n)
            for key, out in (("val/{}", y), ("val/ceiling_{}", ceiling)):
                for name, value in speech_scores(x, out, self.sample_rate).items():
                    if value is not None:
                        self.log(key.format(name), value, sync_dist=True, batch_size=n)
        if self.log_audio and batch_idx == 0 and hasattr(getattr(self.logger, "experiment", None), "add_audio"):
            for i in range(min(self.log_audio, x.shape[0])):
                self.logger.experiment.add_audio(f"val/{i}", y[i, 0].float().cpu(), self.global_step, self.sample_rate)
        return mel


def speech_scores(ref: Tensor, out: Tensor, sample_rate: int) -> dict[str, float | None]:
    """Mean PESQ-WB and STOI over a batch (B, 1, T), skipping items where a score is
    undefined (PESQ on silence); ``None`` when no item has one."""
    from codecgen import metrics

    pesq, stoi = [], []
    for r, d in zip(ref[:, 0].float().cpu().numpy(), out[:, 0].float().cpu().numpy()):
        if not r.any():
            continue
        value = metrics.pesq_wb(r, d, sample_rate)
        if math.isfinite(value):
            pesq.append(value)
        stoi.append(metrics.stoi(r, d, sample_rate))
    return {"pesq": sum(pesq) / len(pesq) if pesq else None, "stoi": sum(stoi) / len(stoi) if stoi else None}
