"""VideoGen (text -> reference image -> key frames -> flow upsampling -> video decoder): every tiny stage trains
through train.py and lowers its loss, the stages assemble into one model, a fixed seed gives the same video,
flow upsampling rebuilds a moving square's middle frame, the CLI writes frames x upsample frames, bad input."""

import random

import numpy as np
import pytest
import torch

from conftest import ROOT

CONFIGS = ROOT / "configs" / "videogen"


def test_the_stages_share_one_latent_space_and_the_scale_is_measured_once(videogen_stages):
    stages = videogen_stages
    import codecgen

    t2i, keys = codecgen.load(str(stages["text_to_image"])), codecgen.load(str(stages["keyframes"]))
    ae = codecgen.load(str(stages["autoencoder"]))
    for model in (t2i, keys):
        assert float(model.latent_scale) != 1.0
        assert torch.equal(model.vae.encoder.conv_in.weight, ae.vae.encoder.conv_in.weight)


def test_a_fixed_seed_gives_the_same_video_and_frames_times_upsample_frames(videogen_model):
    import codecgen
    from codecgen.generators.videogen.pipeline import VideoGen, generate_video

    model = codecgen.load(str(videogen_model))
    assert isinstance(model, VideoGen)

    def video(seed, **kw):
        return torch.stack(list(generate_video(model, "a red circle moves left", frames=3, upsample=2, num_steps=3,
                                               seed=seed, **kw)))

    first = video(0)
    assert first.shape == (6, 3, 32, 32) and 0 <= first.min() and first.max() <= 1
    assert torch.equal(first, video(0)) and not torch.equal(first, video(1))
    assert video(0, decoder="image").shape == first.shape
    assert video(0, use_reference=False).shape == first.shape
    with pytest.raises(ValueError, match="power of two"):
        next(generate_video(model, "a red circle moves left", upsample=3))


def test_the_reference_and_its_flag_reach_the_key_frame_denoiser():
    import yaml

    from codecgen.config import build

    torch.manual_seed(0)
    model = build(yaml.safe_load(open(CONFIGS / "keyframes_tiny.yaml"))["model"]).eval()
    x = torch.randn(2, 4, 3, 8, 8)
    t = torch.tensor([500, 500])
    ids = model.text_encoder.tokenize(["a red circle moves left"] * 2)
    ref = torch.randn(2, 4, 8, 8)
    with torch.no_grad():
        base = model.denoise(x, t, {"ids": ids, "reference": ref, "present": torch.ones(2)})
        other = model.denoise(x, t, {"ids": ids, "reference": ref * 0, "present": torch.ones(2)})
        absent = model.denoise(x, t, {"ids": ids, "reference": ref * 0, "present": torch.zeros(2)})
        uncond = model.unconditional({"ids": ids, "reference": ref, "present": torch.ones(2)})
    assert base.shape == x.shape and not torch.allclose(base, other) and not torch.allclose(other, absent)
    assert uncond["ids"].abs().sum() == 0 and uncond["reference"].abs().sum() == 0 and uncond["present"].sum() == 0


def test_flow_upsampling_rebuilds_a_moving_squares_middle_frame():
    from codecgen.datamodules.corpora.captioned_video import ClipAttributes, render_objects
    from codecgen.nn.frame_interpolation import interpolate, interpolate_frames

    background = np.full((64, 64, 3), 60.0, np.float32)
    background[:, :, 1] = np.linspace(20, 120, 64)[None]  # a gentle ramp: brightness constancy has texture
    video, flow, _ = render_objects(ClipAttributes("objects", "moves right", 1, "square", "red"), background, 9,
                                    random.Random(2))
    frames = torch.from_numpy(video).permute(0, 3, 1, 2).float() / 127.5 - 1
    a, b, middle = frames[3:4], frames[5:6], frames[4:5]
    step = torch.from_numpy(flow[3]).permute(2, 0, 1)[None]  # constant speed: two steps are twice one
    inside = step.norm(dim=1, keepdim=True) > 0
    forward = 2 * step
    backward = -2 * torch.roll(step, shifts=int(round(2 * float(step[0, 0][inside[0, 0]].mean()))), dims=-1)

    def psnr(x):
        return float(-10 * torch.log10(((x - middle) / 2).square().mean()))

    flow_psnr = psnr(interpolate(a, b, forward, backward, 0.5))
    assert flow_psnr > 30 and flow_psnr > psnr((a + b) / 2) + 6 and flow_psnr > psnr(a) + 6
    # x4 between two key frames: the key frames pass through, the right number in between
    out = interpolate_frames(frames[[0, 4]], 4 * step, -4 * torch.roll(step, 4 * 0, dims=-1), 4)
    assert out.shape[0] == 5 and torch.equal(out[0], frames[0]) and torch.equal(out[-1], frames[4])


def test_the_temporal_decoder_starts_as_the_image_decoder():
    import yaml

    from codecgen.config import build
    from codecgen.generators.videogen.video_decoder import decode_video, temporal_decoder_from_image_decoder

    spec = yaml.safe_load(open(CONFIGS / "video_decoder_tiny.yaml"))["model"]["init_args"]
    torch.manual_seed(0)
    temporal, image = build(spec["vae"]).eval(), build(spec["image_vae"]).eval()
    temporal_decoder_from_image_decoder(temporal, image)
    z = torch.randn(2, 3, 4, 8, 8)
    with torch.no_grad():
        expected = image.decode(z.flatten(0, 1)).sample.clamp(-1, 1).unflatten(0, (2, 3))
        assert torch.allclose(decode_video(temporal, z), expected, atol=1e-5)


def test_cli_writes_the_video_and_refuses_bad_input(videogen_model, tmp_path, capsys):
    import infer
    from codecgen.datamodules.image import save_image
    from codecgen.datamodules.video import probe_video

    out = tmp_path / "v.mp4"
    args = ["text-to-video", "--model", str(videogen_model), "--frames", "3", "--upsample", "4", "--steps", "3",
            "--quiet"]
    assert infer.main([*args, "two blue squares grow", str(out)]) == 0
    info = probe_video(out)
    assert (info.frames, info.width, info.fps) == (12, 32, 16.0)
    save_image(torch.rand(3, 40, 60), tmp_path / "ref.png")
    assert infer.main([*args, "a red circle moves left", str(tmp_path / "r.mkv"), "--reference",
                       str(tmp_path / "ref.png"), "--decoder", "image"]) == 0
    assert probe_video(tmp_path / "r.mkv").frames == 12
    capsys.readouterr()
    save_image(torch.rand(3, 8, 8), tmp_path / "tiny.png")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    bad = [
        (["   ", str(tmp_path / "a.mp4")], "empty"),
        (["a purple hexagon moves left", str(tmp_path / "a.mp4")], "outside the model's vocabulary: purple, hexagon"),
        (["a red circle moves left", str(tmp_path / "a.mp4"), "--upsample", "3"], "power of two"),
        (["a red circle moves left", str(tmp_path / "a.mp4"), "--reference", str(tmp_path / "broken.png")],
         "cannot read"),
        (["a red circle moves left", str(tmp_path / "a.mp4"), "--reference", str(tmp_path / "tiny.png")],
         "too small"),
        (["a red circle moves left", str(out)], "exists"),
        (["a red circle moves left", str(tmp_path / "a.gif")], "unsupported"),
    ]
    for extra, message in bad:
        assert infer.main([*args, *extra]) == 2, message
        assert message in capsys.readouterr().err
        assert not (tmp_path / "a.mp4").exists()
    assert probe_video(out).frames == 12  # the existing output is untouched
    assert infer.main(["text-to-video", "--model", "hificodec-16k", "a red circle moves left",
                       str(tmp_path / "a.mp4"), "--quiet"]) == 2
    assert "not an assembled VideoGen" in capsys.readouterr().err


@pytest.mark.parametrize("size", ["tiny", "small", "paper"])
def test_each_sizes_stages_fit_together(size):
    # the chain loads one stage's weights into the next: one latent space, one text encoder, matching widths
    import yaml

    def model_of(name):
        return yaml.safe_load(open(CONFIGS / f"{name}_{size}.yaml"))["model"]["init_args"]

    vae = model_of("autoencoder")["vae"]["init_args"]
    t2i, keys, decoder = model_of("text_to_image"), model_of("keyframes"), model_of("video_decoder")
    assert t2i["vae"]["init_args"] == keys["vae"]["init_args"] == decoder["image_vae"]["init_args"] == vae
    assert not vae["use_post_quant_conv"] and vae["norm_num_groups"] == 32 and vae["layers_per_block"] == 2
    temporal = decoder["vae"]["init_args"]
    assert all(temporal[k] == vae[k] for k in ("block_out_channels", "layers_per_block", "latent_channels",
                                                "down_block_types"))
    assert t2i["text_encoder"] == keys["text_encoder"]  # init_text_from copies one into the other
    text = t2i["text_encoder"]["init_args"]
    c = vae["latent_channels"]
    for model, channels in ((t2i, c), (keys, 2 * c + 1)):
        unet = model["unet"]["init_args"]
        assert unet["cross_attention_dim"] == text["dim"] and unet["in_channels"] == channels
    from codecgen.datamodules.corpora.captioned_video import caption_vocabulary

    assert set(caption_vocabulary()) <= set(text["vocabulary"])
    if size != "paper":  # the paper sizes are for GPUs: building them here takes minutes and gigabytes
        from codecgen.config import build

        for name in ("autoencoder", "text_to_image", "keyframes", "flow", "video_decoder", "classifier"):
            build(yaml.safe_load(open(CONFIGS / f"{name}_{size}.yaml"))["model"])
