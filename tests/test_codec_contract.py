"""The Codec contract, the same for every modality: encode / decode on batches, compress /
decompress through the file, downsampling_factor, bitrate (docs/architecture.md)."""

from __future__ import annotations

import pytest
import torch

import codecgen
from codecgen.codecs.base import CodecError
from codecgen.codecs.video.nerv import DecodedVideo, NeRVVideoCodec
from codecgen.nn.nerv import ConvNeXtEncoder, HNeRVDecoder

torch.set_num_threads(1)


def _clip(t: int = 4, h: int = 32, w: int = 32) -> torch.Tensor:
    y, x = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    return torch.stack([torch.stack([(x + 0.1 * i) % 1, y, 0.5 + 0.4 * torch.sin(5 * x + i)]) for i in range(t)])


def _video_codec() -> NeRVVideoCodec:
    torch.manual_seed(0)
    strides = (4, 2, 2)
    return NeRVVideoCodec(HNeRVDecoder(embed_channels=4, strides=strides, stem_channels=16),
                          ConvNeXtEncoder(strides=strides, dims=8, depths=1, embed_channels=4), lr=3e-3)


def test_video_codec_compress_fits_a_copy_and_decompress_is_lazy():
    codec = _video_codec()
    before = {k: v.clone() for k, v in codec.decoder.state_dict().items()}
    video = _clip()
    with pytest.raises(CodecError, match="no fitted clip"):
        codec.compress()
    data = codec.compress(video, fps=12.0, epochs=3, quant_epochs=1)
    # the template is unchanged: fitting worked on a copy
    assert all(torch.equal(before[k], v) for k, v in codec.decoder.state_dict().items())
    decoded = codec.decompress(data)
    assert isinstance(decoded, DecodedVideo) and decoded.n_frames == 4 and decoded.fps == 12.0
    frames = torch.stack(list(decoded.frames()))
    assert frames.shape == video.shape and frames.min() >= 0 and frames.max() <= 1
    # bitrate is the real coded rate of a fitted codec
    fitted = codec.fit(video, fps=12.0, epochs=3, quant_epochs=1)
    assert fitted.bitrate() == pytest.approx(8 * len(fitted.compress()) / (4 * 32 * 32))
    assert codec.downsampling_factor == 16 == fitted.downsampling_factor


def test_video_codec_refuses_bad_clips():
    codec = _video_codec()
    for bad in (torch.rand(4, 1, 32, 32), torch.rand(0, 3, 32, 32), torch.full((2, 3, 32, 32), float("nan")),
                torch.rand(2, 3, 32, 32) * 3):
        with pytest.raises(CodecError):
            codec.compress(bad, epochs=1, quant_epochs=1)


def test_every_shipped_codec_states_its_downsampling_factor_and_rate():
    audio = codecgen.load("hificodec-16k")
    assert audio.downsampling_factor == audio.hop_length == 320
    assert audio.nominal_rate() == {"value": audio.bitrate(), "unit": "bps"}
    image = codecgen.load("vqgan-f16")
    assert image.downsampling_factor == 16
    assert image.nominal_rate()["unit"] == "bpp"


def test_image_encode_and_compress_take_the_same_range():
    image_codec = codecgen.load("vqgan-f16")
    torch.manual_seed(0)
    image = torch.rand(3, 32, 48)
    grid = image_codec.encode_image(image, 64)
    codes = image_codec.encode(image[None], 64)  # the same [0, 1] image, as a batch
    assert torch.equal(codes[0, 0], grid)
    back = image_codec.decode(codes, 64)
    assert back.shape == (1, 3, 32, 48) and back.min() >= 0 and back.max() <= 1
    assert torch.equal(back[0], image_codec.decode_image(grid, 32, 48, 64))
    assert torch.equal(image_codec.decompress(image_codec.compress(image, 64)), back[0])
