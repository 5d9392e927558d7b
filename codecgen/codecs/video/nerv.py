"""Video codecs from neural representations: NeRV (Chen et al. 2021), HNeRV (Chen et al.
2023, "HNeRV: A Hybrid Neural Representation for Videos") and their boosted versions
(Zhang et al. 2024, "Boosting Neural Representations for Videos with a Conditional
Decoder").

Encoding a video means fitting a network to it; the file is the network. One
LightningModule fits one clip, in two stages chosen by ``stage``:
1. ``fit``: the decoder (and, for HNeRV, the ConvNeXt content encoder) learn the frames
   with ``loss_weights`` over L1, 1 - MS-SSIM and the 2-D FFT L1. The default is the boost
   paper's scale, 60 (0.7 L1 + 0.3 (1 - MS-SSIM)) (HNeRV's code default 0.7 L1 + 0.3
   (1 - SSIM), times 60), so that ``rate_lambda`` weighs bits as in the paper; the boosted
   recipe adds 1 x the FFT L1. At the end, every frame's embedding is computed once and
   kept (HNeRV);
2. ``quantize``: optional magnitude pruning (``prune_ratio``), then quantization-aware fine-tuning with learnable-step quantizers
   (``weight_bits`` for decoder weights, ``embed_bits`` for embeddings) and the boost
   paper's consistent entropy minimisation: a per-tensor Gaussian rate, weighted by
   ``rate_lambda`` while above ``target_bits_per_param``.
``compress`` then range-codes the quantized integers with the same Gaussians: the
``.cgc`` file holds the decoder's architecture (a JSON spec), every tensor's step and
statistics, and the coded integers, so decoding needs no checkpoint. ``DecodedVideo``
reads one: the header against ``VIDEO_SCHEMA``, the decoder's arguments against
``DECODER_SCHEMAS``, sizes against ``DecodeLimits``, before anything is allocated.

``recipe`` holds each paper's training choices (decoder options, loss, optimiser, lr):
HNeRV / NeRV with Adam at 1e-3, the boost with Adan (``codecgen.nn.optim``) at 3e-3, both
with HNeRV's 10 % linear warm-up then cosine decay.

Deviation: one step per tensor (HNeRV picks per-tensor or per-axis, whichever errs
less): per-tensor steps keep the header small, which matters at these rates.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from codecgen.codecs import bitstream
from codecgen.codecs.base import Codec, CodecError
from codecgen.codecs.limits import DecodeLimits
from codecgen.codecs.limits import resolve as resolve_limits
from codecgen.config import MOVED, build, class_path, configurable, init_spec, resolve_class
from codecgen.metrics import batch_psnr
from codecgen.nn.losses import FrequencyLoss, ms_ssim
from codecgen.nn.nerv import ACTIVATIONS, HNeRVDecoder, NeRVDecoder
from codecgen.nn.optim import Adan, warmup_cosine
from codecgen.nn.weight_compression import GaussianRate, WeightQuantizer, decode_tensors, encode_tensors
from codecgen.seeding import unseeded_run

STAGES = ("fit", "quantize")
OPTIMIZERS = ("adam", "adan")
LOSS_SCALE = 60.0  # the boost paper's weight on its L1 + MS-SSIM mix
MAX_DECODER_PARAMS = 200_000_000
MAX_CODED_VALUES = 1 << 28  # decoder weights + embeddings in one file
MAX_FRAMES, MAX_SIDE, MAX_FPS, MAX_TENSORS = 1_000_000, 1 << 14, 1000.0, 4096

# The video file's header, every field (codecgen.codecs.bitstream: types and ranges). The
# decoder spec's arguments are checked against their class's own schema (DECODER_SCHEMAS).
_TENSOR_RECORD = bitstream.Object(
    {
        "name": bitstream.Str(),
        "shape": bitstream.List(bitstream.Int(0, MAX_CODED_VALUES), 0, bitstream.MAX_SHAPE_DIMS),
        "bits": bitstream.Int(2, 16),
        "mean": bitstream.Number(-(2.0**15), 2.0**15),
        "std": bitstream.Number(0.0, 2.0**16, open_lo=True),
        "step": bitstream.Number(0.0, 1e6, open_lo=True),
        "kept": bitstream.Int(0, MAX_CODED_VALUES),
    },
    optional=("kept",),
)
_DECODER_ARGS = {
    "strides": bitstream.List(bitstream.Int(1, 16), 1, 8),
    "stem_channels": bitstream.Int(1, 4096),
    "reduction": bitstream.Number(0.1, 16.0),
    "min_channels": bitstream.Int(1, 4096),
    "activation": bitstream.Maybe(bitstream.Str(choices=ACTIVATIONS)),
    "boosted": bitstream.Bool(),
    "extra_blocks": bitstream.Maybe(bitstream.List(bitstream.Int(0, 16), 1, 8)),
    "n_freqs": bitstream.Int(1, 1024),
    "pe_base": bitstream.Number(0.0, 16.0, open_lo=True),
}
# every argument optional: the constructor's default stands in for one a file omits
DECODER_SCHEMAS = {
    HNeRVDecoder: bitstream.Object(
        {**_DECODER_ARGS, "embed_channels": bitstream.Int(1, 1024), "k_min": bitstream.Int(1, 15),
         "k_max": bitstream.Int(1, 15)},
        optional=(*_DECODER_ARGS, "embed_channels", "k_min", "k_max")),
    NeRVDecoder: bitstream.Object(
        {**_DECODER_ARGS, "frame_size": bitstream.List(bitstream.Int(1, MAX_SIDE), 2, 2),
         "kernel": bitstream.Int(1, 15)},
        optional=(*_DECODER_ARGS, "frame_size", "kernel")),
}
DECODER_TYPES = tuple(DECODER_SCHEMAS)  # a file's decoder spec may name these and nothing else
_PATHS = {class_path(cls) for cls in DECODER_TYPES}
DECODER_PATHS = tuple(sorted(_PATHS | {old for old, new in MOVED.items() if new in _PATHS}))  # with moved names
MAX_AUDIO_BYTES = 1 << 30
# A sound track carried with the video: a whole audio ``.cgc`` file (its own header names
# the model and its weights' hash), appended after the video payload. ``model`` is the
# shipped audio model that wrote it, so decoding needs no --model; ``offset`` the seconds
# from the first frame to the first sample (>= 0: the sound never starts before the picture).
SOUND_TRACK_SCHEMA = bitstream.Object({
    "model": bitstream.Str(max_len=200, min_len=1),
    "bytes": bitstream.Int(1, MAX_AUDIO_BYTES),
    "offset": bitstream.Number(0.0, 1e6),
})
VIDEO_SCHEMA = bitstream.Object({
    "modality": bitstream.Str(choices=("video",)),
    "decoder": bitstream.Object({"class_path": bitstream.Str(choices=DECODER_PATHS),
                                "init_args": bitstream.Object({}, open=True)}),
    "frames": bitstream.Int(1, MAX_FRAMES),
    "size": bitstream.List(bitstream.Int(1, MAX_SIDE), 2, 2),  # [width, height]
    "fps": bitstream.Number(0.0, MAX_FPS, open_lo=True),
    "tensors": bitstream.List(_TENSOR_RECORD, 1, MAX_TENSORS),
    "audio": SOUND_TRACK_SCHEMA,
}, optional=("audio",))


def with_audio(data: bytes, audio_file: bytes, model: str, offset: float = 0.0) -> bytes:
    """A video ``.cgc`` file with a coded sound track (a whole audio ``.cgc`` file written
    by the shipped audio model ``model``) appended to its payload and described in
    ``header["audio"]``."""
    header, payload = bitstream.unpack(data)
    if "audio" in header:  # replace the sound track a file already carries
        payload = payload[: -header.pop("audio")["bytes"]]
    header["audio"] = SOUND_TRACK_SCHEMA.check({"model": model, "bytes": len(audio_file), "offset": float(offset)}, "audio")
    return bitstream.pack(header, payload + audio_file)


def _key(name: str) -> str:
    return name.replace(".", "__")


@configurable
class NeRVVideoCodec(Codec):
    """Fits ``decoder`` (an ``HNeRVDecoder`` with ``encoder``, or a ``NeRVDecoder``) to
    one clip of ``n_frames`` frames of ``frame_size`` (H, W)."""

    modality = "video"
    inference_modules = ("decoder", "embeddings")

    def __init__(
        self,
        decoder: nn.Module,
        encoder: nn.Module | None = None,
        n_frames: int | None = None,
        frame_size: Sequence[int] | None = None,
        fps: float | None = None,
        loss_weights: dict[str, float] | None = None,
        lr: float = 1e-3,
        optimizer: str = "adam",
        warmup_fraction: float = 0.1,
        weight_bits: int = 8,
        embed_bits: int = 6,
        rate_lambda: float = 0.0,
        target_bits_per_param: float = 4.0,
        prune_ratio: float = 0.0,
        stage: str = "fit",
        init_from: str | None = None,
    ):
        super().__init__()
        if stage not in STAGES:
            raise ValueError(f"stage must be one of {STAGES}, got {stage!r}")
        self.hybrid = hasattr(decoder, "embed_channels")
        if self.hybrid and encoder is None:
            raise ValueError("an HNeRV decoder needs its content encoder")
        self.decoder, self.encoder = decoder, encoder
        self.embeddings = nn.Parameter(torch.zeros(0))
        self.n_frames, self.frame_size, self.fps = 0, None, None
        if n_frames is not None and frame_size is not None:
            self._set_clip(n_frames, frame_size, fps if fps is not None else 25.0)
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {optimizer!r}")
        self.optimizer_name = optimizer
        default = {"l1": 0.7 * LOSS_SCALE, "ms_ssim": 0.3 * LOSS_SCALE, "fft": 0.0}
        self.loss_weights = default | dict(loss_weights or {})
        self.fft_loss = FrequencyLoss()
        self.lr, self.warmup_fraction = lr, warmup_fraction
        self.weight_bits, self.embed_bits = weight_bits, embed_bits
        self.rate_lambda, self.target_bits_per_param = rate_lambda, target_bits_per_param
        self.stage, self.init_from = stage, init_from
        if not 0.0 <= prune_ratio < 1.0:
            raise ValueError(f"prune_ratio must be in [0, 1), got {prune_ratio}")
        self.prune_ratio = prune_ratio
        self.prune_masks = nn.Module()  # one 0/1 buffer per pruned weight, named like the quantizers
        self.quantizers = nn.ModuleDict()
        self.rate = GaussianRate()
        # a quantize-stage checkpoint holds quantizer steps: build the quantizers to load them
        self._register_load_state_dict_pre_hook(self._quantizers_for_state)

    def _quantizers_for_state(self, state_dict, prefix, *args) -> None:
        for key, value in state_dict.items():  # pruning masks: buffers of the checkpoint's shapes
            if key.startswith(prefix + "prune_masks."):
                self.prune_masks.register_buffer(key[len(prefix + "prune_masks."):], torch.zeros_like(value))
        if not len(self.quantizers) and any(k.startswith(prefix + "quantizers.") for k in state_dict):
            self.build_quantizers()

    @torch.no_grad()
    def prune(self, ratio: float) -> None:
        """Magnitude pruning (NeRV's compression pipeline): zero the smallest ``ratio`` of
        all decoder weight matrices/kernels (biases kept), and keep them zero from now on."""
        weights = {n: p for n, p in self.decoder.named_parameters() if p.ndim > 1}
        magnitudes = torch.cat([p.abs().flatten() for p in weights.values()])
        k = int(ratio * magnitudes.numel())
        if k == 0:
            return
        threshold = magnitudes.float().kthvalue(k).values
        for name, p in weights.items():
            mask = (p.abs() > threshold).to(p.dtype)
            self.prune_masks.register_buffer(_key(name), mask)
            p.mul_(mask)

    def _masked(self, name: str, p: Tensor) -> Tensor:
        mask = getattr(self.prune_masks, _key(name), None)
        return p if mask is None else p * mask

    def _set_clip(self, n_frames: int, frame_size: Sequence[int], fps: float) -> None:
        """Size the codec for its clip. With ``train.py`` the clip's shape comes from the data
        module in ``setup``; it is then written into the recorded constructor arguments, so
        the checkpoint rebuilds with the right embedding table."""
        self.n_frames, self.frame_size, self.fps = int(n_frames), tuple(int(v) for v in frame_size), float(fps)
        h, w = self.frame_size
        decoder = self.decoder
        if h % decoder.factor or w % decoder.factor:
            raise ValueError(f"frame size {self.frame_size} is not divisible by the decoder's factor {decoder.factor}")
        if not self.hybrid and tuple(decoder.frame_size) != self.frame_size:
            raise ValueError(f"the NeRV generator makes {decoder.frame_size} frames, the clip is {self.frame_size}")
        grid = (decoder.embed_channels, h // decoder.factor, w // decoder.factor) if self.hybrid else (0,)
        if tuple(self.embeddings.shape) != ((self.n_frames,) + grid if self.hybrid else (0, 0)):
            self.embeddings = nn.Parameter(torch.zeros((self.n_frames if self.hybrid else 0, *grid),
                                                       device=self.embeddings.device))
        clip = {"n_frames": self.n_frames, "frame_size": list(self.frame_size), "fps": self.fps}
        self._init_spec["init_args"].update(clip)

    def setup(self, stage: str) -> None:
        super().setup(stage)
        if self.frame_size is None:
            data = getattr(self.trainer, "datamodule", None)
            if data is None or not hasattr(data, "n_frames"):
                raise ValueError("n_frames and frame_size are needed (or a VideoDataModule to read them from)")
            data.setup(stage)
            self._set_clip(data.n_frames, data.frame_size, data.fps)

    # -- the represented video ------------------------------------------------------------
    def times(self, index: Tensor) -> Tensor:
        return index.float() / max(self.n_frames - 1, 1)

    def _weights(self) -> dict[str, Tensor]:
        """The decoder's parameters, quantized (straight-through) once quantizers exist."""
        params = {n: self._masked(n, p) for n, p in self.decoder.named_parameters()}
        return {n: self.quantizers[_key(n)](p) if _key(n) in self.quantizers else p for n, p in params.items()}

    def _embedding(self, index: Tensor) -> Tensor:
        e = self.embeddings[index]
        return self.quantizers["embeddings"](e) if "embeddings" in self.quantizers else e

    def render(self, index: Tensor, frames: Tensor | None = None) -> Tensor:
        """Frames (B, 3, H, W) in [0, 1] for frame numbers ``index`` (B,). While fitting an
        HNeRV, ``frames`` gives the encoder its input; otherwise stored embeddings are used."""
        t = self.times(index)
        weights = self._weights()
        if not self.hybrid:
            return torch.func.functional_call(self.decoder, weights, (t,))
        emb = self.encoder(frames) if frames is not None else self._embedding(index)
        return torch.func.functional_call(self.decoder, weights, (emb, t if self.decoder.boosted else None))

    # -- training -------------------------------------------------------------------------
    def configure_model(self) -> None:
        if self.init_from and not getattr(self, "_initialised", False):
            from codecgen import hub

            source = hub.load(self.init_from, map_location=self.device)
            self.load_state_dict(source.state_dict(), strict=False)
        self._initialised = True
        if self.stage == "quantize" and self.prune_ratio > 0 and not len(list(self.prune_masks.buffers())):
            self.prune(self.prune_ratio)
        if self.stage == "quantize" and not len(self.quantizers):
            self.build_quantizers()

    def build_quantizers(self) -> None:
        """Learnable-step quantizers for every decoder weight (and the embeddings)."""
        for name, p in self.decoder.named_parameters():
            self.quantizers[_key(name)] = WeightQuantizer(p.detach(), self.weight_bits)
        if self.hybrid:
            self.quantizers["embeddings"] = WeightQuantizer(self.embeddings.detach(), self.embed_bits)

    def configure_optimizers(self):
        params = [p for p in self.parameters() if p.requires_grad]
        if self.stage == "fit" and self.hybrid:
            params = [p for p in params if p is not self.embeddings]  # computed after fitting
        if self.optimizer_name == "adan":
            opt = Adan(params, lr=self.lr)
        else:
            opt = torch.optim.Adam(params, lr=self.lr, betas=(0.9, 0.999))
        total = max(1, self.trainer.estimated_stepping_batches)
        return [opt], [warmup_cosine(opt, total, int(self.warmup_fraction * total))]  # HNeRV's schedule

    def distortion(self, y: Tensor, x: Tensor) -> dict[str, Tensor]:
        losses = {"l1": F.l1_loss(y, x)}
        if self.loss_weights.get("ms_ssim", 0):
            losses["ms_ssim"] = 1 - ms_ssim(y.float(), x.float(), data_range=1.0)
        if self.loss_weights.get("fft", 0):
            losses["fft"] = self.fft_loss(y, x)
        return losses

    def rate_bits(self) -> Tensor:
        scaled = {n: p / self.quantizers[_key(n)].step.abs() for n, p in self.decoder.named_parameters()}
        if self.hybrid:
            scaled["embeddings"] = self.embeddings / self.quantizers["embeddings"].step.abs()
        return self.rate(scaled)

    def n_coded_params(self) -> int:
        return sum(p.numel() for p in self.decoder.parameters()) + self.embeddings.numel()

    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        x, index = batch["frame"], batch["index"]
        y = self.render(index, x if self.stage == "fit" and self.hybrid else None)
        losses = self.distortion(y, x)
        total = sum(self.loss_weights.get(k, 0.0) * v for k, v in losses.items())
        if self.stage == "quantize" and self.rate_lambda > 0:
            bits = self.rate_bits()
            bpp = bits / (self.n_frames * self.frame_size[0] * self.frame_size[1])
            if float(bits.detach()) / self.n_coded_params() > self.target_bits_per_param:
                total = total + self.rate_lambda * bpp
            self.log("train/bpp_estimate", bpp.detach(), batch_size=x.shape[0])
        self.log_dict({f"train/{k}": v.detach() for k, v in losses.items()}, batch_size=x.shape[0])
        self.log("loss", total.detach(), prog_bar=True, batch_size=x.shape[0])
        return total

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        x, index = batch["frame"], batch["index"]
        y = self.render(index, x if self.stage == "fit" and self.hybrid else None)
        self.log("val/psnr", batch_psnr(y, x), prog_bar=True, batch_size=x.shape[0])

    @torch.no_grad()
    def store_embeddings(self, frames: Tensor, index: Tensor) -> None:
        """HNeRV: keep each frame's embedding (computed once the encoder is fitted)."""
        if self.hybrid:
            self.embeddings.data[index] = self.encoder(frames.to(self.device)).to(self.embeddings)

    def on_train_end(self) -> None:
        if self.stage == "fit" and self.hybrid:
            datamodule = self.trainer.datamodule
            for batch in datamodule.val_dataloader():  # every frame, in order
                self.store_embeddings(batch["frame"], batch["index"].to(self.embeddings.device))

    # -- the file ---------------------------------------------------------------------------
    def quantized_integers(self) -> tuple[dict[str, Tensor], dict[str, int], dict[str, float]]:
        if not len(self.quantizers):
            self.build_quantizers()
        ints, bits, steps = {}, {}, {}
        named = {n: self._masked(n, p) for n, p in self.decoder.named_parameters()}
        if self.hybrid:
            named["embeddings"] = self.embeddings
        for name, p in named.items():
            quant = self.quantizers[_key(name)]
            ints[name] = quant.integers(p.detach().cpu().float())
            bits[name] = quant.bits
            steps[name] = float(quant.step.detach().abs().clamp(min=1e-8).float().cpu())
        return ints, bits, steps

    @property
    def downsampling_factor(self) -> int:
        """Pixels per side of a frame per position of the decoder's first feature map."""
        return int(self.decoder.factor)

    def compress(self, video: Tensor | None = None, fps: float = 25.0, epochs: int = 300, quant_epochs: int = 30,
                 batch_size: int = 2, progress: bool = False) -> bytes:
        """``.cgc`` bytes: the decoder spec + its coded quantized tensors.

        Without ``video``: this codec's own fitted clip. With ``video`` ((T, 3, H, W) in
        [0, 1]): a NeRV codec is fitted per clip, so a copy of this codec's networks is
        fitted to it (both stages, this codec's recipe: loss weights, optimiser, lr;
        ``fit_clip``) and that copy's file is returned; this codec is left unchanged."""
        if video is not None:
            return self.fit(video, fps, epochs, quant_epochs, batch_size, progress).compress()
        if self.frame_size is None or (self.hybrid and not bool(self.embeddings.detach().abs().sum())):
            raise CodecError("this codec holds no fitted clip: fit it first (compress(video) or train.py)")
        ints, bits, steps = self.quantized_integers()
        masks = {n: getattr(self.prune_masks, _key(n)) for n in ints if hasattr(self.prune_masks, _key(n))}
        records, payload = encode_tensors(ints, bits, masks)
        for record in records:
            record["step"] = steps[record["name"]]
        header = {"modality": self.modality, "decoder": init_spec(self.decoder), "frames": self.n_frames,
                  "size": [self.frame_size[1], self.frame_size[0]], "fps": self.fps, "tensors": records}
        return bitstream.pack(header, payload)

    def fit(self, video: Tensor, fps: float = 25.0, epochs: int = 300, quant_epochs: int = 30, batch_size: int = 2,
            progress: bool = False) -> "NeRVVideoCodec":
        """A copy of this codec's networks fitted to ``video`` (T, 3, H, W) in [0, 1]: the
        quantization-aware codec ``fit_clip`` returns."""
        import copy

        from codecgen.codecs.video.clip import ClipDataModule

        if not isinstance(video, Tensor) or video.ndim != 4 or video.shape[1] != 3 or video.shape[0] == 0:
            raise CodecError(f"expected a (T, 3, H, W) video, got {getattr(video, 'shape', type(video))}")
        if not torch.isfinite(video).all() or video.min() < 0 or video.max() > 1:
            raise CodecError("video frames must be finite and in [0, 1]")
        data = ClipDataModule(video.float(), fps=fps, batch_size=batch_size)
        encoder = copy.deepcopy(self.encoder) if self.encoder is not None else None
        return fit_clip(data, copy.deepcopy(self.decoder), encoder, epochs, quant_epochs, lr=self.lr,
                        optimizer=self.optimizer_name, loss_weights=self.loss_weights,
                        prune_ratio=self.prune_ratio, accelerator=self.device.type, progress=progress)

    def decompress(self, data: bytes, limits: DecodeLimits | None = None) -> "DecodedVideo":
        """A ``.cgc`` video file as a lazy ``DecodedVideo`` (``frames(start, stop)`` renders
        any range, ``len`` and iteration give every frame): a long clip never has to fit in
        memory. The file holds its own decoder, so this reads any NeRV-family file, whatever
        codec wrote it; ``limits`` bound what the file may ask for (``DecodeLimits``)."""
        return DecodedVideo(data, device=str(self.device), limits=limits)

    def bitrate(self) -> float:
        """Bits per pixel of this codec's fitted clip, from the real coded file:
        8 x file bytes / (frames x H x W). A NeRV codec's rate is only known once fitted."""
        h, w = self.frame_size or (0, 0)
        return 8 * len(self.compress()) / (self.n_frames * h * w)


class DecodedVideo:
    """A ``.cgc`` video file, rebuilt: ``frames(start, stop)`` renders any range.

    Nothing in the file is trusted: the header is checked against ``VIDEO_SCHEMA``, the
    frame count and size against ``limits`` (default ``DEFAULT_LIMITS``: ``max_frames``,
    ``max_frame_pixels``), the decoder spec against its class's schema; the decoder is
    then sized on the meta device and every coded tensor's name and shape checked
    against it before any weight is decoded or allocated."""

    def __init__(self, data: bytes, device: str = "cpu", limits: DecodeLimits | None = None):
        header, payload = bitstream.unpack(data)
        bitstream.check_header(header, VIDEO_SCHEMA, "video")
        self.audio: dict | None = None  # {"model", "offset", "file": the audio .cgc bytes}
        if "audio" in header:
            n = header["audio"]["bytes"]
            if n >= len(payload):
                raise bitstream.BitstreamError(f"the header's audio takes {n} bytes, the payload holds {len(payload)}")
            self.audio = {**header["audio"], "file": payload[-n:]}
            payload = payload[:-n]
        self.n_frames, self.fps = header["frames"], float(header["fps"])
        self.width, self.height = header["size"]
        limits = resolve_limits(limits)
        limits.check_frames(self.n_frames)
        limits.check_frame_pixels(self.width, self.height)
        spec = header["decoder"]
        probe = _build_decoder(spec, "meta")  # sizes the network without allocating it
        expected = self._expected_tensors(probe)
        records = header["tensors"]
        _check_records(records, expected)
        try:
            ints = decode_tensors(records, payload, max_elements=MAX_CODED_VALUES)
        except ValueError as error:
            raise bitstream.BitstreamError(f"corrupt payload: {error}") from None
        steps = {r["name"]: float(r["step"]) for r in records}
        self.decoder = _build_decoder(spec, device).eval()
        state = {name: ints[name].float() * steps[name] for name, _ in self.decoder.named_parameters()}
        self.decoder.load_state_dict(state, strict=False)
        # NHWC: oneDNN's convolutions run ~1.5x faster on CPU than on NCHW tensors
        self.decoder.to(memory_format=torch.channels_last)
        self.hybrid = hasattr(self.decoder, "embed_channels")
        self.embeddings = (ints["embeddings"].float() * steps["embeddings"]).to(device) if self.hybrid else None
        self.device = device

    def _expected_tensors(self, probe: nn.Module) -> dict[str, tuple[int, ...]]:
        """Name -> shape of every tensor the file must code for this decoder and size."""
        n_params = sum(p.numel() for p in probe.parameters())
        if n_params > MAX_DECODER_PARAMS:
            raise bitstream.BitstreamError(
                f"the video decoder has {n_params} parameters, more than {MAX_DECODER_PARAMS}")
        factor, fixed = probe.factor, getattr(probe, "frame_size", None)  # NeRV renders one size
        if self.height % factor or self.width % factor or (fixed is not None and tuple(fixed) != (self.height, self.width)):
            raise bitstream.BitstreamError(f"frame size {self.width}x{self.height} does not fit the decoder")
        expected = {name: tuple(p.shape) for name, p in probe.named_parameters()}
        if hasattr(probe, "embed_channels"):  # HNeRV: one embedding per frame
            expected["embeddings"] = (self.n_frames, probe.embed_channels, self.height // factor, self.width // factor)
        total = sum(math.prod(shape) for shape in expected.values())
        if total > MAX_CODED_VALUES:
            raise bitstream.BitstreamError(f"the video holds {total} coded values, more than {MAX_CODED_VALUES}")
        return expected

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """(T, 3, H, W), as the decoded video would have as one tensor."""
        return self.n_frames, 3, self.height, self.width

    def __len__(self) -> int:
        return self.n_frames

    def __iter__(self):
        return self.frames()

    @torch.no_grad()
    def frames(self, start: int = 0, stop: int | None = None, batch: int = 8):
        """Yield frames (3, H, W) in [0, 1] for frame numbers [start, stop)."""
        stop = self.n_frames if stop is None else stop
        if not 0 <= start < stop <= self.n_frames:
            raise CodecError(f"frame range {start}:{stop} outside 0:{self.n_frames}")
        for first in range(start, stop, batch):
            index = torch.arange(first, min(first + batch, stop), device=self.device)
            t = index.float() / max(self.n_frames - 1, 1)
            if self.hybrid:
                y = self.decoder(self.embeddings[index], t if self.decoder.boosted else None)
            else:
                y = self.decoder(t)
            yield from y.float().cpu()


def _build_decoder(spec: dict, device: str) -> nn.Module:
    """A file's decoder from its spec, on ``device`` ("meta": shapes only). Only the codec's
    decoder classes, with arguments their schema allows; any failure is a BitstreamError."""
    try:
        cls = resolve_class(spec["class_path"])
    except ValueError as error:
        raise bitstream.BitstreamError(f"bad video decoder spec: {error}") from None
    schema = DECODER_SCHEMAS.get(cls)
    if schema is None:
        names = ", ".join(c.__name__ for c in DECODER_TYPES)
        raise bitstream.BitstreamError(f"bad video decoder spec: {spec['class_path']!r} is not one of {names}")
    schema.check(spec["init_args"], "decoder.init_args")
    try:
        with torch.device(device):
            return build(spec, allowed=DECODER_TYPES, everywhere=True)
    except (TypeError, ValueError, RuntimeError, OverflowError) as error:
        raise bitstream.BitstreamError(f"bad video decoder spec: {error}") from None


def _check_records(records: list[dict], expected: dict[str, tuple[int, ...]]) -> None:
    """The header's tensor records code exactly the ``expected`` tensors, each in its range."""
    names = [r["name"] for r in records]
    if len(set(names)) != len(names):
        raise bitstream.BitstreamError("a tensor is coded twice")
    if set(names) != set(expected):
        missing, unknown = sorted(set(expected) - set(names)), sorted(set(names) - set(expected))
        raise bitstream.BitstreamError(f"tensors missing {missing[:4]} or unknown {unknown[:4]} for this decoder")
    for r in records:
        shape, half = tuple(r["shape"]), 2.0 ** (r["bits"] - 1)
        if shape != expected[r["name"]]:
            raise bitstream.BitstreamError(
                f"tensor {r['name']} has shape {list(shape)}, the decoder needs {list(expected[r['name']])}")
        if r.get("kept", 0) > math.prod(shape) or not -half <= r["mean"] <= half:
            raise bitstream.BitstreamError(f"corrupt tensor record for {r['name']}")


def recipe(boosted: bool, hybrid: bool, n_stages: int) -> dict:
    """Each paper's training choices for a decoder with ``n_stages`` upsampling stages:
    ``decoder`` (extra keyword arguments for the decoder), ``loss_weights``, ``optimizer``
    and ``lr``. HNeRV / NeRV: Adam at 1e-3, 60 (0.7 L1 + 0.3 (1 - MS-SSIM)). The boost
    (its released scripts): TAT + sine, one extra stride-1 block in each of the last three
    stages (``dec_blks 1 1 2 2 2``), 3x3 kernels for HNeRV (``pshuffel_3x3``), + 1 x FFT L1,
    Adan at 3e-3."""
    weights = {"l1": 0.7 * LOSS_SCALE, "ms_ssim": 0.3 * LOSS_SCALE, "fft": 0.0}
    if not boosted:
        return {"decoder": {}, "loss_weights": weights, "optimizer": "adam", "lr": 1e-3}
    decoder = {"boosted": True, "extra_blocks": ([0] * n_stages + [1, 1, 1])[-n_stages:]}
    if hybrid:
        decoder["k_max"] = 3
    return {"decoder": decoder, "loss_weights": weights | {"fft": 1.0}, "optimizer": "adan", "lr": 3e-3}


def fit_clip(datamodule, decoder: nn.Module, encoder: nn.Module | None, epochs: int, quant_epochs: int,
             lr: float = 1e-3, optimizer: str = "adam", loss_weights: dict[str, float] | None = None,
             quant_lr: float = 5e-4, quant_optimizer: str = "adam", rate_lambda: float = 0.05, prune_ratio: float = 0.0,
             accelerator: str = "auto", progress: bool = True, callbacks: list | None = None) -> NeRVVideoCodec:
    """Both stages on one clip (``datamodule`` must be set up: ``n_frames``, ``frame_size``,
    ``fps``); returns the quantization-aware codec, ready for ``compress``. What
    ``infer.py encode-video`` runs; ``train.py`` runs the same stages from configs. The
    quantization-aware stage runs ``quant_optimizer`` at ``quant_lr`` (the boost's CEM:
    5e-4). Deviation: Adam there for every model, boosted too. Measured (0.3 M HNeRV, 8
    epochs): with Adan the rate term wins more (2.6 vs 3.4 bits/param, -0.5 dB), a
    different rate-distortion trade-off that would blur the comparison of fitted models."""
    import lightning as L

    def trainer(max_epochs: int, extra: list | None = None) -> L.Trainer:
        return L.Trainer(max_epochs=max_epochs, accelerator=accelerator, devices=1, logger=False,
                         enable_checkpointing=False, enable_progress_bar=progress, enable_model_summary=False,
                         limit_val_batches=0, callbacks=extra or [])

    common = dict(n_frames=datamodule.n_frames, frame_size=datamodule.frame_size, fps=datamodule.fps,
                  loss_weights=loss_weights)
    fitted = NeRVVideoCodec(decoder, encoder, stage="fit", lr=lr, optimizer=optimizer, **common)
    with unseeded_run():  # the same fit whatever the caller's process trained before
        trainer(epochs, callbacks).fit(fitted, datamodule)
        quantized = NeRVVideoCodec(decoder, encoder, stage="quantize", rate_lambda=rate_lambda,
                                   prune_ratio=prune_ratio, lr=quant_lr, optimizer=quant_optimizer, **common)
        quantized.load_state_dict(fitted.state_dict(), strict=False)
        if prune_ratio > 0:
            quantized.prune(prune_ratio)
        trainer(quant_epochs).fit(quantized, datamodule)
    return quantized.eval()
