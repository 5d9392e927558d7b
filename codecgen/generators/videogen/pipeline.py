"""VideoGen assembled: text -> reference image -> key-frame latents -> flow-based temporal upsampling -> video
(Li et al. 2023, "VideoGen: A Reference-Guided Latent Diffusion Approach for High Definition Text-to-Video
Generation").

``VideoGen`` holds the four trained stages as one model (one export, one shipped folder):
``TextToImage`` (the reference), ``ReferenceVideoDiffusion`` (key frames every ``stride``-th frame of
the training clips), a ``FlowEstimator`` (RAFT-small) and the enhanced decoder (an
``AutoencoderKLTemporalDecoder``). ``VideoGen.from_stages`` builds it from the stages' runs or exports.

``generate_video`` yields the frames one by one (to a streaming writer):

1. the reference image: drawn by the text-to-image model, given by the user, or none;
2. ``frames + 1`` key-frame latents by the key-frame model (one more than shown, so the last shown
   key frame has its in-between frames too; ours);
3. the key frames decoded by the image decoder, the flows between neighbours both ways by RAFT,
   brought to the latent grid (averaged over each latent cell, divided by the VAE's factor), and
   ``upsample - 1`` latents between each pair by softmax splatting (``nn.frame_interpolation``), with
   brightness constancy measured on the decoded frames;
4. ``frames x upsample`` latents decoded by the enhanced video decoder (``decoder="video"``) or
   frame by frame by the image decoder (``"image"``); the video runs at ``output_fps(upsample)``
   (the key frames' rate, fps / stride, times ``upsample``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from codecgen.config import configurable
from codecgen.module import Module
from codecgen.nn.frame_interpolation import interpolate_frames

DECODERS = ("video", "image")


@configurable
class VideoGen(Module):
    """The assembled text-to-video model (see the module docstring).

    Args:
        text_to_image: a trained ``TextToImage``.
        keyframes: a trained ``ReferenceVideoDiffusion`` in the same latent space.
        flow: a trained ``FlowEstimator``.
        video_decoder: a trained ``AutoencoderKLTemporalDecoder`` whose encoder is that latent space's.
        stride: frames of the training clips between two key frames.
        fps: the training clips' frame rate (the key frames' rate x stride).
    """

    modality = "video"
    inference_modules = ("text_to_image", "keyframes", "flow", "video_decoder")

    def __init__(self, text_to_image: nn.Module, keyframes: nn.Module, flow: nn.Module, video_decoder: nn.Module,
                 stride: int = 4, fps: float = 16.0) -> None:
        super().__init__()
        if text_to_image.vae.config != keyframes.vae.config or text_to_image.image_size != keyframes.frame_size:
            raise ValueError("the text-to-image and key-frame models must share one latent space and frame size")
        if stride < 1 or fps <= 0:
            raise ValueError(f"stride must be >= 1 and fps > 0, got {stride}, {fps}")
        self.text_to_image, self.keyframes = text_to_image, keyframes
        self.flow, self.video_decoder = flow, video_decoder
        self.stride, self.fps = stride, fps

    @classmethod
    def from_stages(cls, text_to_image: str, keyframes: str, flow: str, video_decoder: str, stride: int = 4,
                    fps: float = 16.0) -> VideoGen:
        """Assemble from the stages' checkpoints or exports (their inference weights: the EMA's where kept)."""
        from codecgen import hub
        from codecgen.generators.videogen.flow_training import FlowTraining
        from codecgen.generators.videogen.keyframes import ReferenceVideoDiffusion
        from codecgen.generators.videogen.text_to_image import TextToImage
        from codecgen.generators.videogen.video_decoder import VideoDecoderTraining

        stages = {}
        for role, path, kind in (("text_to_image", text_to_image, TextToImage),
                                 ("keyframes", keyframes, ReferenceVideoDiffusion), ("flow", flow, FlowTraining),
                                 ("video_decoder", video_decoder, VideoDecoderTraining)):
            model = hub.load(path)
            if not isinstance(model, kind):
                raise ValueError(f"{role} {path} holds a {type(model).__name__}, not a {kind.__name__}")
            stages[role] = hub.inference_copy(model)
        decoder = stages["video_decoder"].vae
        encoder_keys = {k: v for k, v in decoder.state_dict().items() if k.startswith(("encoder.", "quant_conv."))}
        mine = stages["keyframes"].vae.state_dict()
        if any(k not in mine or not torch.equal(mine[k], v) for k, v in encoder_keys.items()):
            raise ValueError(f"video_decoder {video_decoder}'s encoder is not the key-frame model's VAE encoder: "
                             "train it with that model's vae_ckpt")
        return cls(stages["text_to_image"], stages["keyframes"], stages["flow"].estimator, decoder, stride, fps)

    @property
    def frame_size(self) -> int:
        return self.keyframes.frame_size

    def output_fps(self, upsample: int) -> float:
        """Frames a second of a video upsampled by ``upsample``: key frames come at fps / stride."""
        return self.fps / self.stride * upsample


def key_flows(model: VideoGen, frames: Tensor) -> tuple[Tensor, Tensor]:
    """Decoded key frames (K, 3, H, W) in [-1, 1] -> flows k -> k+1 and k+1 -> k (K-1, 2, H, W) in pixels."""
    a, b = frames[:-1], frames[1:]
    return model.flow.estimate(a, b), model.flow.estimate(b, a)


def to_latent_grid(x: Tensor, factor: int, is_flow: bool = False) -> Tensor:
    """Pixels (N, C, H, W) -> the latent grid (N, C, H / f, W / f): averaged per cell (flows also divided by f)."""
    out = F.avg_pool2d(x, factor)
    return out / factor if is_flow else out


def generate_video(model: VideoGen, prompt: str, frames: int = 8, upsample: int = 4, reference: Tensor | None = None,
                   use_reference: bool = True, decoder: str = "video", num_steps: int = 25, guidance: float = 3.0,
                   seed: int = 0, scheduler: str | None = None,
                   progress: Callable[[str, int, int], None] | None = None) -> Iterator[Tensor]:
    """Frames (3, H, W) in [0, 1], ``frames`` x ``upsample`` of them, for ``prompt`` (see the module docstring).

    ``reference``: an image (3, H, W) in [-1, 1] at the model's frame size (None: drawn from the text);
    ``use_reference=False``: no reference at all. ``progress(stage, done, total)`` reports each stage."""
    if frames < 1 or upsample < 1 or upsample & (upsample - 1):
        raise ValueError(f"frames must be >= 1 and upsample a power of two, got {frames}, {upsample}")
    if decoder not in DECODERS:
        raise ValueError(f"decoder must be one of {', '.join(DECODERS)}, got {decoder!r}")
    report = progress or (lambda stage, done, total: None)
    keys = model.keyframes
    model.keyframes.text_encoder.tokenize([prompt])  # a bad prompt fails before any work
    with torch.no_grad():
        if use_reference and reference is None:
            reference = model.text_to_image.generate([prompt], num_steps, guidance, seed, scheduler,
                                                     progress=lambda d, t: report("reference image", d, t))[0]
        refs = reference[None].to(model.device) if use_reference else None
        count = frames + 1 if upsample > 1 else frames
        latents = keys.generate([prompt], refs, count, num_steps, guidance, seed + 1, scheduler,
                                progress=lambda d, t: report("key frames", d, t)).samples[0]  # (C, K, h, w)
        latents = latents.transpose(0, 1)  # (K, C, h, w)
        if upsample > 1:
            report("temporal upsampling", 0, 1)
            decoded = keys.decode_latents(latents)
            forward, backward = key_flows(model, decoded)
            f = keys.vae_factor
            latents = interpolate_frames(latents, to_latent_grid(forward, f, True), to_latent_grid(backward, f, True),
                                         upsample, guides=to_latent_grid(decoded, f))[: frames * upsample]
            report("temporal upsampling", 1, 1)
        total = latents.shape[0]
        report("decoding", 0, total)
        if decoder == "video":  # the temporal decoder sees the whole clip at once
            from codecgen.generators.videogen.video_decoder import decode_video

            chunks = iter([decode_video(model.video_decoder, (latents / keys.latent_scale)[None])[0]])
        else:  # frame by frame, decoded a few at a time as the writer takes them
            chunks = (keys.decode_latents(latents[i : i + 8]) for i in range(0, total, 8))
        done = 0
        for chunk in chunks:
            for frame in chunk:
                done += 1
                report("decoding", done, total)
                yield (frame + 1) / 2
