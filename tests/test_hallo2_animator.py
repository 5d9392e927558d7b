"""Hallo2's animation model: its two training stages, classifier-free guidance, the frozen stages
it takes from their own runs, and the clip-by-clip long-video loop."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import column, fit_run

import codecgen
from codecgen.config import build
from codecgen.datamodules.portraits import PortraitClipDataModule
from codecgen.generators.hallo2.animate import animate_portrait, clip_count
from codecgen.generators.hallo2.animator import HOP, PortraitAnimator, box_region

ROOT = Path(__file__).resolve().parent.parent
STAGE1_TINY = ROOT / "configs" / "hallo2" / "stage1_tiny.yaml"
STAGE2_TINY = ROOT / "configs" / "hallo2" / "stage2_tiny.yaml"


def tiny_animator(stage: int = 2, **overrides) -> PortraitAnimator:
    spec = yaml.safe_load(open(STAGE2_TINY))["model"]
    spec["init_args"].update(stage=stage, **overrides)
    return build(spec)


def clip_batch(root: Path, frames: int = 8, batch_size: int = 2) -> dict[str, torch.Tensor]:
    data = PortraitClipDataModule(str(root), frames=frames, motion_frames=2, audio_margin=2, batch_size=batch_size)
    data.setup("fit")
    return next(iter(data.train_dataloader()))


def fit_fixed_batch(model: PortraitAnimator, batch: dict, noise: torch.Tensor, t: torch.Tensor,
                    steps: int = 30) -> list[float]:
    """AdamW on one batch at fixed noise and timesteps (conditions recomputed each step); the losses."""
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    losses = []
    for _ in range(steps):
        x0, cond = model.latents_and_condition(batch)
        loss = model.denoising_loss(x0, cond, noise, t)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss))
    return losses


def test_box_regions_cover_the_box_its_growth_and_the_lips():
    boxes = torch.tensor([[8.0, 8.0, 24.0, 24.0]])
    face = box_region(boxes, 32)
    assert face.shape == (1, 32, 32) and face.sum() == 16 * 16
    grown = box_region(boxes, 32, expand=1.5)
    assert grown.sum() == 24 * 24 and (grown >= face).all()
    lips = box_region(boxes, 32, (0.25, 0.5, 0.75, 1.0))
    assert lips.sum() == 8 * 8 and lips[0, 16:24, 12:20].all()


def test_each_stage_trains_only_its_parts_and_the_sizes_are_checked():
    one, two = tiny_animator(1), tiny_animator(2)
    trained = lambda m: {n.split(".")[0] for n, p in m.named_parameters() if p.requires_grad}  # noqa: E731
    assert trained(one) == {"unet", "reference_net", "face_locator", "identity_proj", "label_encoder"}
    assert trained(two) == {"unet", "audio_proj", "audio_attention"}
    motion = lambda m: {"motion_modules" in n for n, p in m.unet.named_parameters() if p.requires_grad}  # noqa: E731
    assert motion(one) == {False} and motion(two) == {True}
    assert not any(p.requires_grad for p in two.vae.parameters()) and not two.audio_encoder.training
    with pytest.raises(ValueError, match="cross-attention width"):
        tiny_animator(label_encoder={"class_path": "codecgen.nn.expression_text.LabelTextEncoder",
                                     "init_args": {"dim": 8, "layers": 1, "heads": 2}})
    with pytest.raises(ValueError, match="window"):
        tiny_animator(audio_margin=1)
    with pytest.raises(ValueError, match="stage"):
        tiny_animator(3)


def test_stage2_learns_a_fixed_batch_and_its_audio_starts_silent(tiny_portraits):
    torch.manual_seed(0)
    model = tiny_animator(2, lr=3e-3)
    batch = clip_batch(tiny_portraits)
    model.train()
    model.eval()  # the frozen parts; fixed draws below (no motion-frame augmentation in eval mode)
    x0, cond = model.latents_and_condition(batch)
    assert x0.shape == (2, 4, 8, 12, 12) and cond["audio"].shape == (2, 8, 4, 16)
    assert cond["reference"].shape == (2, 3, 4, 12, 12) and cond["labels"].shape[:2] == (2, 8)
    noise, t = torch.randn_like(x0), torch.tensor([300, 700])
    silent = dict(cond, audio=torch.zeros_like(cond["audio"]))
    with torch.no_grad():  # zero-initialised audio attention: speech has no effect yet
        torch.testing.assert_close(model.denoise(x0, t, cond), model.denoise(x0, t, silent))
    losses = fit_fixed_batch(model, batch, noise, t)  # the audio projection is in the graph
    assert np.mean(losses[-3:]) < 0.7 * np.mean(losses[:3])
    with torch.no_grad():
        x0, cond = model.latents_and_condition(batch)
        silent = dict(cond, audio=torch.zeros_like(cond["audio"]))
        assert (model.denoise(x0, t, cond) - model.denoise(x0, t, silent)).abs().max() > 1e-4


def test_stage1_learns_single_frames_of_a_fixed_batch(tiny_portraits):
    torch.manual_seed(0)
    model = tiny_animator(1).eval()  # fixed draws: no reference dropout
    batch = clip_batch(tiny_portraits, frames=1, batch_size=4)
    x0, cond = model.latents_and_condition(batch)
    assert x0.shape[1:] == (4, 1, 12, 12) and "audio" not in cond and cond["reference"].shape[1] == 1
    noise, t = torch.randn_like(x0), torch.tensor([100, 400, 700, 900])[: len(x0)]
    losses = fit_fixed_batch(model, batch, noise, t)  # the identity projection and labels are in the graph
    assert np.mean(losses[-3:]) < 0.6 * np.mean(losses[:3])
    assert model.label_encoder.embed.weight.grad is not None  # the labels' encoder trains in stage 1


def test_guidance_drops_speech_identity_and_labels_but_keeps_the_reference(tiny_portraits):
    model = tiny_animator(2).eval()
    with torch.no_grad():
        _, cond = model.latents_and_condition(clip_batch(tiny_portraits))
    dropped = model.drop_condition(cond, torch.tensor([True, False]))
    for key in ("audio", "identity", "labels"):
        assert dropped[key][0].abs().sum() == 0 and torch.equal(dropped[key][1], cond[key][1])
    for key in ("reference", "face_mask", "lip_mask"):
        assert torch.equal(dropped[key], cond[key])


def test_a_fresh_run_takes_the_frozen_stages_from_their_own_models(tmp_path):
    from codecgen import hub
    from codecgen.frame_vae import FrameVAE

    model = tiny_animator(1)
    vae_spec = yaml.safe_load(open(STAGE2_TINY))["model"]["init_args"]["vae"]
    trained = FrameVAE(build(vae_spec), discriminator=None)
    trained.export(tmp_path / "vae")
    model.vae_ckpt = str(tmp_path / "vae")
    assert not torch.equal(model.vae.encoder.conv_in.weight, trained.vae.encoder.conv_in.weight)
    model._load_stages(hub)
    assert torch.equal(model.vae.encoder.conv_in.weight, trained.vae.encoder.conv_in.weight)
    model.vae_ckpt, model.audio_ckpt = None, str(tmp_path / "vae")
    with pytest.raises(ValueError, match="audio_ckpt .* holds a FrameVAE, not a PhonemePretraining"):
        model._load_stages(hub)


@pytest.fixture(scope="module")
def two_stages(tiny_portraits, tmp_path_factory) -> tuple[Path, Path]:
    """Stage 1 (30 steps, lowering its held-out loss) then stage 2 from it (10 steps), through
    train.py: their last checkpoints."""
    root = tmp_path_factory.mktemp("animator")
    rows, first = fit_run(STAGE1_TINY, root / "one", "--data.init_args.root", str(tiny_portraits))
    val = column(rows, "val/loss")  # noise and timesteps fixed per batch: comparable across validations
    assert len(column(rows, "train/loss")) == 30 and val[-1] < 0.95 * val[0]
    rows, last = fit_run(STAGE2_TINY, root / "two", "--data.init_args.root", str(tiny_portraits),
                         "--model.init_args.init_from", str(first), "--trainer.max_steps", "10")
    # stage 2 trains zero-initialised parts only: 10 steps move its held-out loss too little to
    # show; it learns in test_stage2_learns_a_fixed_batch_and_its_audio_starts_silent
    assert len(column(rows, "train/loss")) == 10 and column(rows, "val/loss")
    return first, last


def test_two_stages_through_train_py_then_a_video_clip_by_clip(tiny_portraits, two_stages):
    first, last = two_stages
    one, two = codecgen.load(str(first)), codecgen.load(str(last))
    assert isinstance(two, PortraitAnimator) and two.stage == 2
    assert float(one.latent_scale) != 1.0 and torch.equal(one.latent_scale, two.latent_scale)  # measured once
    state1, state2 = one.inference_state_dict(), two.inference_state_dict()
    spatial = "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.weight"
    motion = "unet.down_blocks.0.motion_modules.0.module.proj_out.weight"  # wrapped: MotionFrameContext
    assert torch.equal(state1[spatial], state2[spatial])  # frozen in stage 2
    assert torch.equal(state1["reference_net.conv_in.weight"], state2["reference_net.conv_in.weight"])
    assert state1[motion].abs().sum() == 0 and state2[motion].abs().sum() > 0

    data = PortraitClipDataModule(str(tiny_portraits), frames=1, motion_frames=0, audio_margin=0)
    data.setup("fit")
    sample = data.val_set[0]
    speech = np.random.default_rng(0).standard_normal(int(1.1 * 16000)).astype(np.float32) * 0.1
    total, clips = clip_count(len(speech), 8)
    assert (total, clips) == (28, 4)
    done = []
    run = lambda seed: list(animate_portrait(two, sample["reference"], sample["face_box"].tolist(), speech,  # noqa: E731
                                             frames_per_clip=8, num_steps=2, guidance=2.0, seed=seed,
                                             progress=lambda k, n: done.append((k, n))))
    video = run(0)
    assert [len(c) for c in video] == [8, 8, 8, 4] and video[0].shape[1:] == (48, 48, 3)
    assert video[0].dtype == torch.uint8 and done[-1] == (4, 4)
    again, other = run(0), run(1)
    assert all(torch.equal(a, b) for a, b in zip(video, again))
    assert not torch.equal(video[1], other[1])


def test_animation_refuses_bad_input():
    model = tiny_animator(2).eval()
    portrait, box = torch.zeros(3, 48, 48), [8, 8, 40, 40]
    with pytest.raises(ValueError, match="non-empty mono"):
        next(animate_portrait(model, portrait, box, np.zeros(0)))
    with pytest.raises(ValueError, match="NaN"):
        next(animate_portrait(model, portrait, box, np.full(HOP * 3, np.nan)))
    with pytest.raises(ValueError, match="expression labels for 3 frames"):
        next(animate_portrait(model, portrait, box, np.zeros(HOP * 3), expressions=[0, 1]))
    with pytest.raises(ValueError, match="stage-2"):
        next(animate_portrait(tiny_animator(1), portrait, box, np.zeros(HOP * 3)))
    with pytest.raises(ValueError, match=r"\(3, H, W\)"):
        next(animate_portrait(model, torch.zeros(48, 48), box, np.zeros(HOP * 3)))


# -- infer.py animate ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def portrait_and_speech(tiny_portraits, tmp_path_factory) -> tuple[Path, Path, str]:
    """A held-out portrait (PNG), half a second of 44.1 kHz 16-bit stereo "speech", and the face box."""
    import soundfile as sf

    from codecgen.datamodules.image import save_image

    root = tmp_path_factory.mktemp("animate")
    data = PortraitClipDataModule(str(tiny_portraits), frames=1, motion_frames=0, audio_margin=0)
    data.setup("fit")
    sample = data.val_set[0]
    save_image((sample["reference"] + 1) / 2, root / "portrait.png")
    noise = np.random.default_rng(0).standard_normal((22050, 2)).astype(np.float32) * 0.1
    sf.write(str(root / "speech.wav"), noise, 44100, subtype="PCM_16")
    box = ",".join(f"{v:.0f}" for v in sample["face_box"].tolist())
    return root / "portrait.png", root / "speech.wav", box


def _streams(path: Path) -> tuple[list, np.ndarray, int]:
    """A video file's frames (H, W, 3 uint8) and its sound (samples, channels) with its rate."""
    import av

    with av.open(str(path)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(container.streams.video[0])]
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        sound = np.concatenate([f.to_ndarray().reshape(len(f.layout.channels), -1) if not f.format.is_packed
                                else f.to_ndarray().reshape(-1, len(f.layout.channels)).T
                                for f in container.decode(stream)], axis=1).T
        return frames, sound, stream.rate


def test_infer_animate_writes_the_video_with_the_speech(two_stages, portrait_and_speech, tmp_path):
    import soundfile as sf

    from codecgen.cli.parser import infer_main

    portrait, speech, box = portrait_and_speech
    base = ["animate", "--model", str(two_stages[1]), "--image", str(portrait), "--audio", str(speech),
            "--steps", "2", "--face-box", box, "--quiet"]
    assert infer_main([*base, str(tmp_path / "talk.mp4"), "--expression", "happy@0,sad@0.3"]) == 0
    frames, sound, rate = _streams(tmp_path / "talk.mp4")
    assert len(frames) == 13 and frames[0].shape == (48, 48, 3)  # 0.5 s at 25 fps, rounded up
    assert sound.shape[1] == 2 and rate == 44100
    # .mkv carries the sound losslessly (FLAC): the input's samples exactly, and the same seed the same pictures
    assert infer_main([*base, str(tmp_path / "talk.mkv")]) == 0
    assert infer_main([*base, str(tmp_path / "again.mkv")]) == 0
    frames, sound, rate = _streams(tmp_path / "talk.mkv")
    source, _ = sf.read(str(speech), dtype="int16")
    assert len(frames) == 13 and rate == 44100 and np.array_equal(sound.astype(np.int16), source)
    again, _, _ = _streams(tmp_path / "again.mkv")
    assert all(np.array_equal(a, b) for a, b in zip(frames, again))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["again.mkv", "talk.mkv", "talk.mp4"]  # no temporaries


def test_infer_animate_refuses_bad_input_with_one_line_and_no_output(two_stages, portrait_and_speech, tmp_path,
                                                                     capsys):
    import soundfile as sf

    from codecgen.cli.parser import infer_main

    portrait, speech, box = portrait_and_speech
    model = str(two_stages[1])
    empty, silent, short = tmp_path / "empty.wav", tmp_path / "silent.wav", tmp_path / "short.wav"
    sf.write(str(empty), np.zeros((0, 1), np.float32), 16000)
    sf.write(str(silent), np.zeros((16000, 1), np.float32), 16000)
    sf.write(str(short), np.full((1600, 1), 0.1, np.float32), 16000)
    grey = tmp_path / "grey.png"
    from codecgen.datamodules.image import save_image

    save_image(torch.full((3, 64, 64), 0.5), grey)
    existing = tmp_path / "old.mp4"
    existing.write_bytes(b"keep")
    ok = {"--image": str(portrait), "--audio": str(speech), "--face-box": box}
    cases = [
        ({"--audio": str(empty)}, [], "no audio"),
        ({"--audio": str(silent)}, [], "silent"),
        ({"--audio": str(short)}, [], "at least 0.2 s"),
        ({"--audio": str(grey)}, [], "cannot read speech"),
        ({"--image": str(speech)}, [], "cannot"),
        ({}, ["--steps", "0"], "--steps"),
        ({}, ["--guidance", "-1"], "--guidance"),
        ({}, ["--expression", "bored@0"], "unknown expression"),
        ({}, ["--expression", "happy@9"], "after the audio"),
        ({}, ["--max-seconds", "0.1"], "over --max-seconds"),
        ({}, ["--frames-per-clip", "40"], "frames_per_clip"),
        ({"--face-box": "1,2,3"}, [], "four"),
        ({"--face-box": None, "--image": str(grey)}, [], "no face found"),
        ({}, ["OUT.avi"], "unsupported video output"),
        ({}, [str(existing)], "exists"),
    ]
    for changes, extra, message in cases:
        options = {**ok, **changes}
        flags = [x for k, v in options.items() if v is not None for x in (k, v)]
        out = [e for e in extra if e.endswith((".avi", ".mp4"))] or [str(tmp_path / "a.mp4")]
        extra = [e for e in extra if not e.endswith((".avi", ".mp4"))]
        out = [str(tmp_path / "a.avi")] if out == ["OUT.avi"] else out
        assert infer_main(["animate", "--model", model, *flags, *extra, *out, "--quiet"]) == 2, message
        err = capsys.readouterr().err.strip()
        assert err.startswith("error:") and message in err and "\n" not in err, (message, err)
    flags = [x for k, v in ok.items() for x in (k, v)]
    assert infer_main(["animate", "--model", str(two_stages[0]), *flags, str(tmp_path / "a.mp4"), "--quiet"]) == 2
    assert "stage-2" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.wav", "grey.png", "old.mp4", "short.wav",
                                                          "silent.wav"]
    assert existing.read_bytes() == b"keep"


def test_portraits_of_any_size_are_framed_around_the_face(tmp_path):
    from codecgen.cli.animate import FRAME_MARGIN, frame_portrait
    from codecgen.cli.files import UserError
    from codecgen.datamodules.image import save_image

    image = torch.zeros(3, 1500, 2000)
    image[0, 100:500, 1700:2000] = 1.0  # a red "face" at the right edge
    save_image(image, tmp_path / "big.png")
    frame, box = frame_portrait(tmp_path / "big.png", "1700,100,2000,500", 48)
    assert frame.shape == (3, 48, 48) and frame.min() >= -1 and frame.max() <= 1
    side = 48 / FRAME_MARGIN  # the face's larger side in the frame, centred
    torch.testing.assert_close(box, torch.tensor([24 - side * 300 / 800, 24 - side / 2, 24 + side * 300 / 800,
                                                  24 + side / 2]), atol=1e-3, rtol=0)
    assert frame[0, 24, 24] > 0.9 and frame[1, 24, 24] < -0.9  # the face is at the centre
    assert frame[0, 24, 47] > 0.9  # past the image's edge: edge-padded, not black
    save_image(torch.zeros(3, 20, 20), tmp_path / "tiny.png")
    with pytest.raises(UserError, match="at least"):
        frame_portrait(tmp_path / "tiny.png", "2,2,12,12", 48)
    with pytest.raises(UserError, match="outside"):
        frame_portrait(tmp_path / "tiny.png", "2,2,30,12", 48)


def test_infer_animate_upscale_pastes_the_restored_face_into_larger_frames(two_stages, portrait_and_speech,
                                                                           tmp_path, capsys):
    from codecgen.cli.parser import infer_main

    spec = yaml.safe_load(open(ROOT / "configs" / "hallo2" / "restorer_tiny.yaml"))["model"]
    build(spec).export(tmp_path / "restorer")  # untrained: the command's path is what is tested
    portrait, speech, box = portrait_and_speech
    base = ["animate", "--model", str(two_stages[1]), "--image", str(portrait), "--audio", str(speech),
            "--steps", "1", "--face-box", box, "--quiet", "--upscale"]
    assert infer_main([*base, "--restorer", str(tmp_path / "restorer"), str(tmp_path / "big.mp4")]) == 0
    frames, _, _ = _streams(tmp_path / "big.mp4")
    assert len(frames) == 13 and frames[0].shape == (96, 96, 3)
    assert infer_main([*base, str(tmp_path / "none.mp4")]) == 2
    assert "--upscale needs --restorer" in capsys.readouterr().err
    assert infer_main([*base, "--restorer", str(two_stages[1]), str(tmp_path / "none.mp4")]) == 2
    assert "not a Hallo2 face restorer" in capsys.readouterr().err
    assert not (tmp_path / "none.mp4").exists()
