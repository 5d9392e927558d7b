"""SemantiCodec's ``.cgc`` files and long audio: what ``SemantiCodec`` needs to go through the
shared ``infer.py encode`` / ``decode`` verbs like the other audio codecs (``chunk_plan``,
``encode_chunks``, ``pack_codes``, ``unpack_codes``, ``decode_chunks``, ``compress``,
``decompress``).

The header is the audio header (``codecgen.codecs.audio.base.AUDIO_SCHEMA``: codes (1, 2,
frames), the two vocabularies, the entropy model) plus ``sampler``: the sampler, its steps,
the guidance scale and the seed the decoder uses unless told otherwise, so a file decodes the
same every time (DDIM with eta 0 by default). Codes are entropy-coded with a uniform model or
a histogram sent in the header, whichever makes the smaller file.

Long files: encoding reads ``chunk_windows`` whole windows at a time (no context is needed:
windows never overlap); decoding streams ``decode_stream``'s pieces, so memory is bounded by
a group of windows whatever the file's length, and a file decodes exactly as ``decode``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import torch
from torch import Tensor

from codecgen.codecs import bitstream
from codecgen.codecs.audio.base import AUDIO_SCHEMA, check_waveform
from codecgen.codecs.base import CodecError
from codecgen.codecs.limits import DecodeLimits
from codecgen.codecs.limits import resolve as resolve_limits
from codecgen.nn import entropy

SAMPLERS = ("ddim", "dpm", "ddpm")
MAX_SEED = 2**32 - 1
MAX_GUIDANCE = 100.0
SEMANTIC_SCHEMA = bitstream.Object({
    **AUDIO_SCHEMA.fields,
    "sampler": bitstream.Object({"name": bitstream.Str(choices=SAMPLERS), "steps": bitstream.Int(1, 1000),
                                 "guidance": bitstream.Number(0.0, MAX_GUIDANCE), "seed": bitstream.Int(0, MAX_SEED)}),
})


class SemantiCodecFiles:
    """A mixin for ``SemantiCodec`` (see the module docstring)."""

    chunk_windows: int = 8  # decoding windows per piece of a long file

    def sampler_settings(self, steps: int | None = None, guidance: float | None = None, sampler: str | None = None,
                         seed: int = 0) -> dict:
        settings = {"name": sampler or self.sampler, "steps": self.steps if steps is None else steps,
                    "guidance": float(self.guidance if guidance is None else guidance), "seed": seed}
        try:
            SEMANTIC_SCHEMA.fields["sampler"].check(settings, "sampler")
        except bitstream.BitstreamError as error:
            raise CodecError(str(error)) from None
        return settings

    # -- encoding ----------------------------------------------------------------------
    def chunk_plan(self) -> tuple[int, int]:
        """(chunk, context) in samples: whole windows, no context (windows do not overlap)."""
        return self.chunk_windows * self.window_samples, 0

    @torch.no_grad()
    def encode_chunks(self, chunks: Iterable[tuple[Tensor, int, int]], n_q: int | None = None) -> tuple[Tensor, int]:
        """Codes (1, 2, frames) and the length of a stream of ``(window, left, n_valid)``
        (``iter_audio_chunks`` with ``chunk_plan()`` sizes). ``n_q`` must be None (2 or
        nothing: both token streams are needed)."""
        if n_q not in (None, 2):
            raise CodecError(f"SemantiCodec sends both of its token streams; --n-q {n_q} is not possible")
        codes, length = [], 0
        for window, left, n_valid in chunks:
            if left or (n_valid < window.shape[-1]) or (codes and length % self.window_samples):
                raise ValueError("SemantiCodec chunks must be whole windows without context (chunk_plan())")
            codes.append(self.encode(window.reshape(1, 1, -1)))
            length += n_valid
        if not codes:
            raise CodecError("empty audio: nothing to encode")
        return torch.cat(codes, -1), length

    def pack_codes(self, codes: Tensor, length: int, source_sample_rate: int | None = None,
                   source_length: int | None = None, **sampler) -> tuple[dict, bytes]:
        """(header, payload) of codes (1, 2, frames) for ``length`` samples; ``sampler``:
        ``sampler_settings``' arguments, recorded for the decoder."""
        sizes = self.codebook_sizes
        models = [entropy.uniform_model(sizes), entropy.fit_histogram(codes, sizes)]
        model = min(models, key=lambda m: entropy.information_bits(codes, m) / 8 + m.header_bytes())
        header = {
            "modality": "audio", "model": self.model_name, "weights_hash": self.weights_hash(),
            "sample_rate": self.sample_rate, "source_sample_rate": source_sample_rate or self.sample_rate,
            "length": length, "source_length": source_length or length, "codes_shape": list(codes.shape),
            "codebook_sizes": list(sizes),
            "entropy": {k: v for k, v in model.to_header().items() if k != "codebook_sizes"},
            "sampler": self.sampler_settings(**sampler),
        }
        return header, entropy.encode(codes, model)

    def compress(self, x: Tensor, **sampler) -> bytes:
        """One waveform (1, T) or (1, 1, T) at ``sample_rate`` -> ``.cgc`` bytes."""
        x = check_waveform(x.reshape(1, 1, -1))
        return bitstream.pack(*self.pack_codes(self.encode(x), x.shape[-1], **sampler))

    # -- decoding ----------------------------------------------------------------------
    def unpack_codes(self, header: dict, payload: bytes, limits: DecodeLimits | None = None) -> Tensor:
        """Check a header against this model and ``limits`` before allocating anything, then
        decode its codes (1, 2, frames). The sampler settings stay in the header."""
        bitstream.check_header(header, SEMANTIC_SCHEMA, "audio")
        if header["weights_hash"] != self.weights_hash():
            raise CodecError(f"this file was written by model {header['model']} with weights "
                             f"{header['weights_hash']}; the model given is {self.model_name} with weights "
                             f"{self.weights_hash()}: use the model that encoded it")
        if header["sample_rate"] != self.sample_rate:
            raise bitstream.BitstreamError(f"file sample rate {header['sample_rate']} != model's {self.sample_rate}")
        if header["codebook_sizes"] != list(self.codebook_sizes) or header["codes_shape"][:2] != [1, 2]:
            raise bitstream.BitstreamError("the file's codes do not fit this model (two streams of "
                                           f"{self.codebook_sizes} codes)")
        length, source_rate, source_length = header["length"], header["source_sample_rate"], header["source_length"]
        if header["codes_shape"][2] != self.frames_for(length):
            raise bitstream.BitstreamError(f"length {length} does not match {header['codes_shape'][2]} frames")
        if abs(length * source_rate - source_length * self.sample_rate) > self.hop_length * source_rate:
            raise bitstream.BitstreamError(
                f"length {length} at {self.sample_rate} Hz does not match {source_length} samples at {source_rate} Hz")
        resolve_limits(limits).check_seconds(max(length / self.sample_rate, source_length / source_rate))
        if header["entropy"]["kind"] == "prior":
            raise bitstream.BitstreamError("SemantiCodec files send their code model: 'prior' is not one")
        try:
            model = entropy.EntropyModel.from_header({**header["entropy"], "codebook_sizes": header["codebook_sizes"]})
            return entropy.decode(payload, tuple(header["codes_shape"]), model).to(self.device)
        except ValueError as error:
            raise bitstream.BitstreamError(f"corrupt payload: {error}") from None

    @torch.no_grad()
    def decode_chunks(self, codes: Tensor, length: int, header: dict | None = None, progress=None,
                      **sampler) -> Iterator[Tensor]:
        """Waveform pieces (1, n) adding up to ``length`` samples (``decode_stream``). Sampler
        settings: the arguments given (not None), else the file's ``header``, else the model's."""
        chosen = {**(header or {}).get("sampler", {}), **{k: v for k, v in sampler.items() if v is not None}}
        settings = self.sampler_settings(chosen.get("steps"), chosen.get("guidance"), chosen.get("name"),
                                         chosen.get("seed", 0))
        done = 0
        for piece in self.decode_stream(codes, settings["steps"], settings["guidance"], settings["name"],
                                        settings["seed"], progress):
            piece = piece[0, :, : max(0, length - done)].cpu()
            done += piece.shape[-1]
            if piece.shape[-1]:
                yield piece

    def decompress(self, data: bytes, limits: DecodeLimits | None = None, **sampler) -> Tensor:
        """``.cgc`` bytes -> waveform (1, T); ``sampler`` overrides the file's settings."""
        header, payload = bitstream.unpack(data)
        codes = self.unpack_codes(header, payload, limits)
        return torch.cat(list(self.decode_chunks(codes, header["length"], header, **sampler)), -1)

    def tokens(self, x: Tensor) -> Tensor:
        """One waveform -> an int64 (frames, 2) array (semantic, acoustic), for language models."""
        return self.encode(check_waveform(x.reshape(1, 1, -1)))[0].t().contiguous()
