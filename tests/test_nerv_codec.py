"""NeRV-family video codec: fitting, quantization-aware stage, the file, range decoding."""

import math

import pytest
import torch
import lightning as L

from codecgen.codecs import bitstream
from codecgen.codecs.video.nerv import DecodedVideo, NeRVVideoCodec
from codecgen.nn.nerv import ConvNeXtEncoder, HNeRVDecoder, NeRVDecoder

T, H, W = 6, 32, 32


def _clip() -> torch.Tensor:
    """A moving colour gradient with a bright square: (T, 3, H, W) in [0, 1]."""
    y, x = torch.meshgrid(torch.linspace(0, 1, H), torch.linspace(0, 1, W), indexing="ij")
    frames = []
    for t in range(T):
        r = (x + 0.1 * t) % 1.0
        g = y
        b = 0.5 + 0.5 * torch.sin(6 * x + t)
        f = torch.stack([r, g, b])
        f[:, 4 + t : 10 + t, 8:14] = 1.0
        frames.append(f)
    return (torch.stack(frames) * 255).round() / 255


@pytest.fixture(scope="module")
def clip_file(tmp_path_factory):
    from codecgen.datamodules.video import write_video

    path = tmp_path_factory.mktemp("clip") / "clip.mkv"
    write_video(_clip(), path, fps=10.0)
    return path


def _codec(kind: str, stage: str = "fit", init_from=None, **kw) -> NeRVVideoCodec:
    torch.manual_seed(0)
    strides = (4, 2, 2)
    if kind.startswith("hnerv"):
        decoder = HNeRVDecoder(embed_channels=4, strides=strides, stem_channels=24, boosted=kind.endswith("boosted"))
        encoder = ConvNeXtEncoder(strides=strides, dims=8, depths=1, embed_channels=4)
    else:
        decoder = NeRVDecoder(frame_size=(H, W), strides=strides, stem_channels=24, boosted=kind.endswith("boosted"))
        encoder = None
    return NeRVVideoCodec(decoder, encoder, n_frames=T, frame_size=(H, W), fps=10.0, lr=3e-3, stage=stage,
                          init_from=init_from, **kw)


def _fit(model, clip_file, steps: int, tmp_path):
    from codecgen.datamodules.video import VideoDataModule

    data = VideoDataModule(video=str(clip_file), batch_size=2)
    trainer = L.Trainer(max_steps=steps, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                        default_root_dir=tmp_path)
    trainer.fit(model, data)
    path = tmp_path / f"{model.stage}.ckpt"
    trainer.save_checkpoint(path)
    return path


def _psnr(model) -> float:
    clip = _clip()
    with torch.no_grad():
        y = model.render(torch.arange(T), clip if model.hybrid and not model.embeddings.abs().sum() else None)
    return -10 * math.log10(float(((y - clip) ** 2).mean()))


@pytest.mark.parametrize("kind", ["nerv", "nerv-boosted", "hnerv", "hnerv-boosted"])
def test_each_model_fits_a_clip_and_codes_it_exactly(kind, clip_file, tmp_path):
    model = _codec(kind)
    before = _psnr(model)
    ckpt = _fit(model, clip_file, 150, tmp_path)
    after = _psnr(model.eval())
    assert after > before + 3, (before, after)
    if model.hybrid:  # embeddings were stored once fitting ended
        assert model.embeddings.abs().sum() > 0

    quantized = _codec(kind, stage="quantize", init_from=str(ckpt), rate_lambda=0.05)
    _fit(quantized, clip_file, 10, tmp_path)
    quantized.eval()
    data = quantized.compress()
    video = DecodedVideo(data)
    ints, bits, steps = quantized.quantized_integers()
    for name, p in video.decoder.named_parameters():  # the file's weights are the dequantized ones, exactly
        assert torch.equal(p.detach(), ints[name].float() * steps[name]), name
    frames = torch.stack(list(video.frames()))
    assert frames.shape == (T, 3, H, W)
    assert -10 * math.log10(float(((frames - _clip()) ** 2).mean())) > before + 3
    middle = torch.stack(list(video.frames(2, 5)))
    assert torch.allclose(middle, frames[2:5], atol=1e-6)
    # 8-bit weights, 6-bit embeddings, entropy coded: well under a third of float32 storage
    assert len(data) < 0.3 * 4 * quantized.n_coded_params()


def test_corrupt_video_files_raise_bitstream_error(clip_file, tmp_path):
    model = _codec("hnerv")
    _fit(model, clip_file, 5, tmp_path)
    data = model.compress()
    header, payload = bitstream.unpack(data)
    with pytest.raises(bitstream.BitstreamError):
        DecodedVideo(data[:-5])
    bad_specs = [
        {**header, "decoder": {"class_path": "os.system", "init_args": {}}},
        {**header, "decoder": {**header["decoder"], "init_args": {**header["decoder"]["init_args"], "stem_channels": 10**6}}},
        {**header, "size": [0, 32]},
        {**header, "frames": 10**9},
        {**header, "tensors": header["tensors"][:-1]},
        {**header, "tensors": [{**header["tensors"][0], "std": -1.0}] + header["tensors"][1:]},
    ]
    for bad in bad_specs:
        with pytest.raises(bitstream.BitstreamError):
            DecodedVideo(bitstream.pack(bad, payload))
    video = DecodedVideo(data)
    with pytest.raises(ValueError):
        list(video.frames(4, 99))


def _infer(*args: str) -> int:
    from infer import main

    return main(list(args))


def test_train_py_stages_then_pack_and_decode_a_range(clip_file, tmp_path):
    from conftest import ROOT
    from train import train_main

    config = str(ROOT / "configs" / "hnerv" / "tiny.yaml")
    common = ["--config", config, "--data.init_args.video", str(clip_file), "--trainer.enable_progress_bar", "false"]
    cli = train_main(["fit", *common, "--trainer.default_root_dir", str(tmp_path / "fit")])
    fit_ckpt = cli.trainer.checkpoint_callback.last_model_path
    cli = train_main(["fit", *common, "--trainer.default_root_dir", str(tmp_path / "q"), "--trainer.max_epochs", "3",
                      "--model.init_args.stage", "quantize", "--model.init_args.init_from", fit_ckpt])
    ckpt = cli.trainer.checkpoint_callback.last_model_path
    cgc, whole, part = tmp_path / "clip.cgc", tmp_path / "whole", tmp_path / "part"
    assert _infer("pack-video", "--model", ckpt, str(cgc), "--quiet") == 0
    assert _infer("decode-video", str(cgc), str(whole), "--quiet") == 0
    assert _infer("decode-video", str(cgc), str(part), "--frames", "2:4", "--quiet") == 0
    from codecgen.datamodules.video import load_video

    full, sub = load_video(whole), load_video(part)
    assert full.shape == (T, 3, H, W) and sub.shape == (2, 3, H, W)
    assert torch.equal(sub, full[2:4])
    assert _infer("decode-video", str(cgc), str(tmp_path / "x.avi"), "--quiet") == 2
    assert _infer("decode-video", str(cgc), str(tmp_path / "y.mkv"), "--frames", "5:99", "--quiet") == 2
    assert not (tmp_path / "y.mkv").exists()


def test_encode_video_cli_fits_and_writes(clip_file, tmp_path):
    out = tmp_path / "v.cgc"
    assert _infer("encode-video", str(clip_file), str(out), "--model-size", "0.03", "--strides", "4,2,2",
                  "--epochs", "3", "--quant-epochs", "1", "--quiet") == 0
    assert bitstream.read(out)[0]["frames"] == T
    assert _infer("encode-video", str(clip_file), str(tmp_path / "w.cgc"), "--strides", "5,5", "--quiet") == 2


def test_encode_video_cli_boosted_uses_the_boost_recipe(clip_file, tmp_path):
    out = tmp_path / "b.cgc"
    assert _infer("encode-video", str(clip_file), str(out), "--model-size", "0.1", "--strides", "4,2,2", "--boosted",
                  "--epochs", "2", "--quant-epochs", "1", "--quiet") == 0
    spec = bitstream.read(out)[0]["decoder"]["init_args"]
    assert spec["boosted"] and spec["k_max"] == 3 and spec["extra_blocks"] == [1, 1, 1]
    frames = torch.stack(list(DecodedVideo(out.read_bytes()).frames()))
    assert frames.shape == (T, 3, H, W) and torch.isfinite(frames).all()


def test_pruned_weights_stay_zero_through_training_and_the_file(clip_file, tmp_path):
    from codecgen.codecs.video.nerv import fit_clip
    from codecgen.datamodules.video import VideoDataModule

    data = VideoDataModule(video=str(clip_file), batch_size=2)
    data.setup("fit")
    results = {}
    for ratio in (0.0, 0.5):
        model = _codec("hnerv")
        codec = fit_clip(data, model.decoder, model.encoder, epochs=8, quant_epochs=3, lr=3e-3, prune_ratio=ratio,
                         accelerator="cpu", progress=False)
        video = DecodedVideo(codec.compress())
        weights = torch.cat([p.flatten() for p in video.decoder.parameters() if p.ndim > 1])
        results[ratio] = (float((weights == 0).float().mean()), len(codec.compress()))
        if ratio:  # a pruned checkpoint reloads with its masks
            path = tmp_path / "pruned.ckpt"
            torch.save({"state_dict": codec.state_dict()}, path)
            again = _codec("hnerv", stage="quantize", prune_ratio=ratio)
            again.load_state_dict(torch.load(path, weights_only=True)["state_dict"])
            for (name, mask), (name2, mask2) in zip(again.prune_masks.named_buffers(), codec.prune_masks.named_buffers()):
                assert name == name2 and torch.equal(mask, mask2)
    assert results[0.5][0] >= 0.5 > results[0.0][0]
    assert results[0.5][1] < results[0.0][1]
