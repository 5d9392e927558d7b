"""Hallo2's stages: the audio encoder (wav2vec 2.0 features at the video's frame rate, pre-trained
here on frame-wise phonemes) and its data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import column, fit_run

import codecgen
from codecgen.datamodules.portrait_clips import ClipMeta, TimedLabel
from codecgen.datamodules.portraits import (
    IGNORE,
    PHONEME_CLASSES,
    PortraitAudioDataModule,
    frame_labels,
    phoneme_class,
)
from codecgen.generators.hallo2.audio_encoder import PhonemePretraining
from codecgen.nn.wav2vec2 import Wav2Vec2Features, load_wav2vec2_weights

ROOT = Path(__file__).resolve().parent.parent
AUDIO_TINY = ROOT / "configs" / "hallo2" / "audio_tiny.yaml"
TINY_CONV = [(8, 10, 5), (8, 3, 2), (8, 3, 2), (8, 3, 2), (8, 3, 2), (8, 2, 2), (8, 2, 2)]


def tiny_wav2vec2(**kwargs) -> Wav2Vec2Features:
    args = dict(conv_layers=TINY_CONV, dim=16, num_layers=2, num_heads=2, ffn_dim=32, pos_conv_kernel=8,
                pos_conv_groups=2, dropout=0.0)
    return Wav2Vec2Features(**(args | kwargs))


# -- phoneme labels ------------------------------------------------------------------------
def test_phoneme_classes_ignore_stress_and_length_and_fall_back_sensibly():
    index = PHONEME_CLASSES.index
    assert phoneme_class("ˈaɪ") == index("aɪ") and phoneme_class("ɑː") == index("ɑ")
    assert phoneme_class("g") == index("ɡ") and phoneme_class("dʒ") == index("dʒ")
    assert phoneme_class("aɪə") == index("aɪ")  # longer symbols fall back to their first two characters
    assert phoneme_class("") == index("sil") and phoneme_class("ʀ") == index("other")
    meta = ClipMeta(frames=5, size=32, identity="x", source="t", face_box=(1.0, 1.0, 30.0, 30.0),
                    phonemes=[TimedLabel("m", 0.04, 0.1), TimedLabel("ɑː", 0.1, 0.16)])
    # frame centres at 0.02, 0.06, 0.10, 0.14, 0.18 s
    assert frame_labels(meta).tolist() == [0, index("m"), index("ɑ"), index("ɑ"), 0]


def test_portrait_audio_windows_are_aligned_and_padded(tiny_portraits):
    data = PortraitAudioDataModule(str(tiny_portraits), seconds=1.0, batch_size=2)
    data.setup()
    item = data.val_set[0]
    assert item["audio"].shape == (16000,) and item["phonemes"].shape == (25,)
    assert item["phonemes"].dtype == torch.int64 and (item["phonemes"] != IGNORE).all()
    assert torch.equal(data.val_set[0]["audio"], item["audio"])  # validation windows are fixed
    long = PortraitAudioDataModule(str(tiny_portraits), seconds=60.0, batch_size=1)
    long.setup()
    padded = long.val_set[0]
    frames = long.val_set.metas[0].frames
    assert (padded["phonemes"][frames:] == IGNORE).all() and (padded["phonemes"][:frames] != IGNORE).all()
    assert padded["audio"][frames * 640 :].abs().max() == 0
    with pytest.raises(FileNotFoundError, match="prepare portraits"):
        PortraitAudioDataModule("/nonexistent/portraits").setup()


# -- wav2vec 2.0 at the frame rate ---------------------------------------------------------
def test_wav2vec2_features_are_every_layer_at_the_requested_frame_count():
    torch.manual_seed(0)
    model = tiny_wav2vec2().eval()
    wave = torch.randn(2, 16000)
    out = model(wave, 25)
    assert out.shape == (2, 25, 2, 16)
    assert model(wave).shape == (2, 49, 2, 16)  # without a frame count: the CNN's own 50 Hz (unpadded)
    # Loudness does not matter: the input is normalised per utterance.
    torch.testing.assert_close(model(3.0 * wave, 25), out, atol=1e-4, rtol=1e-4)
    base = Wav2Vec2Features()
    assert (base.hop, base.receptive) == (320, 400)
    assert round(sum(p.numel() for p in base.parameters()) / 1e6, 1) == 94.4  # wav2vec2-base
    with pytest.raises(ValueError, match="N >= "):
        model(torch.randn(1, 300))
    with pytest.raises(ValueError, match="conv_layers"):
        tiny_wav2vec2(conv_layers=[(8, 0, 5)])


def test_local_wav2vec2_weights_load_with_torchaudio_or_hugging_face_names(tmp_path):
    from safetensors.torch import save_file

    torch.manual_seed(1)
    source, target = tiny_wav2vec2().eval(), tiny_wav2vec2().eval()
    wave = torch.randn(1, 8000)
    torch.save(source.model.state_dict(), tmp_path / "ta.pt")
    load_wav2vec2_weights(target, tmp_path / "ta.pt")
    torch.testing.assert_close(target(wave, 10), source(wave, 10))
    # Hugging Face's layout: a "wav2vec2." prefix, the projection outside the encoder, the
    # transformer directly under "encoder.", weight norm's legacy names, and a CTC head.
    hf = {}
    for key, value in source.model.state_dict().items():
        key = key.replace("encoder.feature_projection.", "feature_projection.").replace("encoder.transformer.", "encoder.")
        key = key.replace("parametrizations.weight.original0", "weight_g")
        key = key.replace("parametrizations.weight.original1", "weight_v")
        hf["wav2vec2." + key] = value.contiguous()
    hf["lm_head.weight"] = torch.zeros(4, 16)
    save_file(hf, str(tmp_path / "hf.safetensors"))
    fresh = tiny_wav2vec2().eval()
    load_wav2vec2_weights(fresh, tmp_path / "hf.safetensors")
    torch.testing.assert_close(fresh(wave, 10), source(wave, 10))
    with pytest.raises(ValueError, match="does not fit"):
        load_wav2vec2_weights(tiny_wav2vec2(dim=24, num_heads=2), tmp_path / "ta.pt")
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="cannot read"):
        load_wav2vec2_weights(target, tmp_path / "bad.pt")
    torch.save({"model": object()}, tmp_path / "pickle.pt")  # weights_only refuses arbitrary objects
    with pytest.raises(ValueError, match="cannot read"):
        load_wav2vec2_weights(target, tmp_path / "pickle.pt")


def test_audio_encoder_learns_phonemes_through_train_py(tiny_portraits, tmp_path):
    rows, last = fit_run(AUDIO_TINY, tmp_path, "--data.init_args.root", str(tiny_portraits),
                         "--trainer.max_steps", "40")
    ce = column(rows, "train/ce")
    assert len(ce) == 40 and np.mean(ce[-5:]) < 0.8 * np.mean(ce[:5])
    val = column(rows, "val/ce")
    assert val[-1] < val[0]
    model = codecgen.load(str(last))
    assert isinstance(model, PhonemePretraining) and not model.training
    batch = torch.randn(1, 16000)
    assert model.logits(batch, 25).shape == (1, 25, len(PHONEME_CLASSES))


def test_portrait_clip_samples_line_up_motion_frames_audio_and_masks(tiny_portraits):
    import soundfile as sf

    from codecgen.datamodules.portraits import PortraitClipDataModule
    from codecgen.datamodules.video import load_video

    data = PortraitClipDataModule(str(tiny_portraits), frames=6, motion_frames=2, audio_margin=2, batch_size=2)
    data.setup()
    dataset = data.train_set
    item = dataset[(0, 7)]
    clip, meta = dataset.clips[0], dataset.metas[0]
    video = load_video(clip / "video.mkv") * 2 - 1
    # Find where the sample starts: its frames and motion frames are consecutive frames of the clip.
    start = next(t for t in range(2, meta.frames - 5) if torch.equal(video[t : t + 6], item["frames"]))
    assert torch.equal(item["motion"], video[start - 2 : start])
    wave, _ = sf.read(clip / "audio.wav", dtype="float32")
    lo = (start - 2) * 640
    expected = np.zeros(10 * 640, np.float32)
    piece = wave[max(0, lo) : lo + 10 * 640]
    expected[max(0, -lo) : max(0, -lo) + len(piece)] = piece
    np.testing.assert_allclose(item["audio"].numpy(), expected, atol=1e-6)
    assert item["face_mask"].shape == (6, 48, 48) and item["lip_mask"].any()
    assert (item["lip_mask"] & ~item["face_mask"]).sum() <= 12
    assert item["expression"].shape == (6,) and item["identity"] >= 0
    assert dataset[(0, 7)]["frames"].equal(item["frames"])  # a draw's seed fixes the sample
    # A clip too short for its motion frames: the reference stands in for them, at 32 px.
    small = PortraitClipDataModule(str(tiny_portraits), frames=dataset.metas[0].frames, motion_frames=2, size=32)
    small.setup()
    short = small.train_set[(0, 1)]
    assert short["frames"].shape[-1] == 32 and torch.equal(short["motion"][0], short["reference"])
    assert short["face_mask"].shape[-1] == 32


# -- identity ------------------------------------------------------------------------------
IDENTITY_TINY = ROOT / "configs" / "hallo2" / "identity_tiny.yaml"


def test_face_crop_takes_the_box_and_pads_at_the_edges():
    from codecgen.nn.face_crop import crop_face

    frame = torch.arange(64.0).repeat(64, 1)[None].expand(3, -1, -1)  # value = x
    crop = crop_face(frame, (16, 16, 48, 48), 32, margin=1.0)
    torch.testing.assert_close(crop[0, 0], torch.arange(16.0, 48.0) + 0.0, atol=0.51, rtol=0)
    edge = crop_face(frame, (-20, 0, 12, 32), 32, margin=1.0)  # half outside: the border pixel repeats
    assert edge[0, 5, :10].eq(0).all() and edge[0, 5, -1] > 8


def test_arcface_margin_and_identity_scores():
    from codecgen.generators.hallo2.identity import identity_scores
    from codecgen.nn.face_embedder import ArcMarginHead, FaceEmbedder

    torch.manual_seed(0)
    embedder = FaceEmbedder(widths=(8, 16), dim=16, size=16).eval()
    e = embedder(torch.rand(3, 3, 40, 40) * 2 - 1)  # any crop size: resized to the embedder's
    assert e.shape == (3, 16) and torch.allclose(e.norm(dim=1), torch.ones(3))
    head = ArcMarginHead(16, 5)
    labels = torch.tensor([0, 1, 2])
    with_margin, plain = head(e, labels), head(e)
    assert (with_margin[torch.arange(3), labels] < plain[torch.arange(3), labels]).all()
    others = torch.ones_like(plain, dtype=torch.bool)
    others[torch.arange(3), labels] = False
    assert torch.equal(with_margin[others], plain[others])  # only the true class pays the margin
    centres = torch.nn.functional.normalize(torch.randn(3, 8), dim=1)
    points = torch.nn.functional.normalize(centres.repeat_interleave(4, 0) + 0.05 * torch.randn(12, 8), dim=1)
    scores = identity_scores(points, torch.arange(3).repeat_interleave(4))
    assert scores["nn_accuracy"] == 1.0 and scores["gap"] > 0.5


def test_identity_encoder_trains_and_separates_held_out_people(tiny_portraits, tmp_path):
    from codecgen.generators.hallo2.identity import IdentityPretraining

    rows, last = fit_run(IDENTITY_TINY, tmp_path, "--data.init_args.root", str(tiny_portraits),
                         "--trainer.max_steps", "40")
    loss = column(rows, "train/arcface")
    assert np.mean(loss[-5:]) < 0.5 * np.mean(loss[:5])
    gap = column(rows, "val/gap")  # held-out identities: within-person minus between-person cosine
    assert gap[-1] > gap[0] and gap[-1] > 0.1
    model = codecgen.load(str(last))
    assert isinstance(model, IdentityPretraining)
    assert model.embedder(torch.zeros(2, 3, 32, 32)).shape == (2, 32)


# -- frame VAE -----------------------------------------------------------------------------
VAE_TINY = ROOT / "configs" / "hallo2" / "vae_tiny.yaml"


def test_frame_vae_learns_portrait_frames_with_its_gan(tiny_portraits, tmp_path):
    from codecgen.frame_vae import FrameVAE

    rows, last = fit_run(VAE_TINY, tmp_path, "--data.init_args.root", str(tiny_portraits))
    l1 = column(rows, "train/l1")
    assert np.mean(l1[-5:]) < 0.7 * np.mean(l1[:5])
    assert column(rows, "train/disc")  # the PatchGAN switched on at its step
    psnr = column(rows, "val/psnr")
    assert psnr[-1] > psnr[0]
    vae = codecgen.load(str(last))
    assert isinstance(vae, FrameVAE) and vae.factor == 4 and vae.latent_channels == 4
    z = vae.encode(torch.zeros(1, 3, 48, 48))
    assert z.shape == (1, 4, 12, 12) and vae.decode(z).shape == (1, 3, 48, 48)
    with pytest.raises(ValueError, match="multiple of the VAE's factor"):
        vae.images({"frames": torch.zeros(1, 1, 3, 50, 50)})


def test_frame_vae_refuses_a_vae_that_is_not_rgb():
    from diffusers import AutoencoderKL

    from codecgen.frame_vae import FrameVAE

    with pytest.raises(ValueError, match="RGB"):
        FrameVAE(AutoencoderKL(in_channels=1, out_channels=1, block_out_channels=(8,), norm_num_groups=8))


# -- motion frames (long duration) ---------------------------------------------------------
@pytest.mark.parametrize("mode, unit", [("patch", 4), ("pixel", 1)])
def test_motion_frame_drop_masks_have_the_rate_and_keep_the_face(mode, unit):
    from codecgen.nn.motion_frame_augment import drop_mask, face_region

    boxes = torch.tensor([[64.0, 64.0, 160.0, 176.0]] * 64)  # pixels of a 256-px frame
    keep = face_region(boxes, 32, 32, 256.0)  # a 32 x 32 latent: f8
    assert keep[0, 8:22, 8:20].all() and not keep[0, :7].any() and not keep[0, :, 21:].any()
    generator = torch.Generator().manual_seed(0)
    mask = drop_mask((64, 2, 32, 32), mode, 0.25, 4, keep, generator)
    assert (mask[keep[:, None].expand_as(mask)] == 1).all()  # nothing of the face is dropped
    free = ~keep[:, None].expand_as(mask)
    if mode == "patch":  # whole 4 x 4 patches, each kept or dropped as one
        blocks = mask.unfold(2, 4, 4).unfold(3, 4, 4)
        assert ((blocks.amin((-1, -2)) == blocks.amax((-1, -2)))).all()
        free = free & (_touches_kept(keep, 4)[:, None] == 0)  # the patches touching no face position
    rate = 1 - mask[free].mean()
    assert abs(float(rate) - 0.25) < 0.02
    assert drop_mask((2, 2, 8, 8), "none", 0.25, 4).eq(1).all()
    with pytest.raises(ValueError, match="mode"):
        drop_mask((1, 1, 4, 4), "blur", 0.25, 2)


def _touches_kept(keep, unit):
    """Each position -> whether its unit x unit patch touches the kept region."""
    pooled = torch.nn.functional.max_pool2d(keep.float()[:, None], unit)[:, 0]
    return pooled.repeat_interleave(unit, 1).repeat_interleave(unit, 2)


def test_motion_frames_are_noised_by_the_schedule_and_seeded():
    from diffusers import DDIMScheduler

    from codecgen.nn.motion_frame_augment import augment_motion_frames

    scheduler = DDIMScheduler(rescale_betas_zero_snr=True, timestep_spacing="trailing", prediction_type="v_prediction")
    latents = torch.randn(8, 2, 4, 16, 16)
    a = augment_motion_frames(latents, "none", scheduler=scheduler, generator=torch.Generator().manual_seed(1))
    b = augment_motion_frames(latents, "none", scheduler=scheduler, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and not torch.equal(a, latents)
    # t < 50 of 1000: a light corruption, the signal dominates.
    assert torch.nn.functional.cosine_similarity(a.flatten(1), latents.flatten(1)).min() > 0.9
    clean = augment_motion_frames(latents, "patch", drop_rate=0.5, patch_size=2, noise_timesteps=0)
    assert (clean == 0).float().mean() > 0.4
    with pytest.raises(ValueError, match="scheduler"):
        augment_motion_frames(latents, "none")


# -- audio conditioning --------------------------------------------------------------------
def test_audio_windows_and_projection_give_tokens_per_frame():
    from codecgen.nn.audio_conditioning import AudioProj, audio_windows

    feats = torch.arange(10.0)[None, :, None, None].expand(2, 10, 3, 4)  # frame index as the value
    windows = audio_windows(feats, margin=2)
    assert windows.shape == (2, 6, 5, 3, 4)
    assert windows[0, 0, :, 0, 0].tolist() == [0, 1, 2, 3, 4] and windows[0, 5, 2, 0, 0] == 7  # centred
    proj = AudioProj(window=5, layers=3, dim=4, hidden=16, tokens=8, out_dim=12)
    assert proj(windows).shape == (2, 6, 8, 12)
    # The authors' sizes: 5 x 12 x 768 -> 512 -> 512 -> 32 x 768, LayerNorm(768).
    expected = (46080 * 512 + 512) + (512 * 512 + 512) + (512 * 32 * 768 + 32 * 768) + 2 * 768
    assert sum(p.numel() for p in AudioProj().parameters()) == expected
    with pytest.raises(ValueError, match="leave none"):
        audio_windows(feats[:, :4], margin=2)
    with pytest.raises(ValueError, match="windows"):
        proj(torch.zeros(1, 2, 5, 3, 5))


def test_hierarchical_audio_attention_starts_as_identity_and_acts_only_in_its_regions():
    from codecgen.nn.audio_conditioning import HierarchicalAudioAttention

    torch.manual_seed(0)
    attention = HierarchicalAudioAttention(channels=8, context_dim=6, heads=2, weights=(0.0, 1.0, 1.0))
    x, audio = torch.randn(2, 8, 8, 8), torch.randn(2, 4, 6)
    face = torch.zeros(2, 32, 32)
    face[:, 8:24, 8:24] = 1
    lips = torch.zeros(2, 32, 32)
    lips[:, 16:20, 12:20] = 1
    assert torch.equal(attention(x, audio, face, lips), x)  # zero-initialised: no change at first
    opt = torch.optim.SGD(attention.parameters(), lr=0.5)
    target = torch.randn_like(x)
    for _ in range(3):
        loss = (attention(x, audio, face, lips) - target).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    changed = (attention(x, audio, face, lips) - x).abs().sum(1) > 1e-6  # (2, 8, 8)
    inside = torch.nn.functional.interpolate(face[:, None], size=(8, 8), mode="area")[:, 0] > 0
    assert changed.any() and not changed[~inside].any()  # the full term is weighted 0 here


# -- reference attention -------------------------------------------------------------------
def _tiny_unets():
    from diffusers import MotionAdapter, UNet2DConditionModel, UNetMotionModel

    cfg = dict(sample_size=8, in_channels=4, out_channels=4, block_out_channels=(16, 32), layers_per_block=1,
               down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D",
                                                                                      "CrossAttnUpBlock2D"),
               cross_attention_dim=16, attention_head_dim=2, norm_num_groups=8)
    adapter = MotionAdapter(block_out_channels=(16, 32), motion_layers_per_block=1, motion_num_attention_heads=2,
                            motion_norm_num_groups=8, motion_max_seq_length=8)
    return UNet2DConditionModel(**cfg), UNetMotionModel.from_unet2d(UNet2DConditionModel(**cfg), adapter)


def test_reference_attention_joins_each_samples_reference_to_its_frames():
    from codecgen.nn.reference_attention import install_reference_attention

    torch.manual_seed(0)
    reference_net, denoiser = _tiny_unets()
    bank = install_reference_attention(reference_net, denoiser)
    x, t = torch.randn(2, 4, 3, 8, 8), torch.tensor([10, 10])
    text = torch.randn(6, 4, 16)  # (samples x frames, tokens, dim): UNetMotionModel's layout
    plain = denoiser(x, t, encoder_hidden_states=text).sample  # empty bank: the plain denoiser
    refs, ref_text = torch.randn(2, 4, 8, 8), torch.randn(2, 4, 16)
    reference_net(refs, torch.zeros(2), encoder_hidden_states=ref_text)
    assert len(bank) == 4  # every spatial self-attention of the tiny UNet
    joined = denoiser(x, t, encoder_hidden_states=text).sample
    assert (joined - plain).abs().max() > 1e-3
    # Sample 0's frames see only reference 0: a new reference 1 leaves them as they were.
    reference_net(torch.stack([refs[0], torch.randn(4, 8, 8)]), torch.zeros(2), encoder_hidden_states=ref_text)
    again = denoiser(x, t, encoder_hidden_states=text).sample
    torch.testing.assert_close(again[0], joined[0])
    assert not torch.allclose(again[1], joined[1], atol=1e-4)
    bank.enabled = False
    torch.testing.assert_close(denoiser(x, t, encoder_hidden_states=text).sample, plain)
    # Gradients reach the reference net through the denoiser's attention.
    bank.enabled = True
    reference_net.zero_grad()
    reference_net(refs, torch.zeros(2), encoder_hidden_states=torch.randn(2, 4, 16))
    denoiser(x, t, encoder_hidden_states=text).sample.square().mean().backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in reference_net.parameters())


def test_reference_attention_needs_matching_layers():
    from diffusers import UNet2DConditionModel

    from codecgen.nn.reference_attention import install_reference_attention

    reference_net, denoiser = _tiny_unets()
    other = UNet2DConditionModel(sample_size=8, in_channels=4, out_channels=4, block_out_channels=(16,),
                                 layers_per_block=1, down_block_types=("CrossAttnDownBlock2D",),
                                 up_block_types=("CrossAttnUpBlock2D",), cross_attention_dim=16, attention_head_dim=2,
                                 norm_num_groups=8)
    with pytest.raises(ValueError, match="same spatial self-attentions"):
        install_reference_attention(other, denoiser)


def test_motion_frames_enter_the_motion_modules_on_the_time_axis():
    from codecgen.nn.motion_frame_context import install_motion_frame_context
    from codecgen.nn.reference_attention import install_reference_attention

    torch.manual_seed(0)
    reference_net, denoiser = _tiny_unets()
    bank = install_reference_attention(reference_net, denoiser)
    wrapped = install_motion_frame_context(reference_net, denoiser, bank)
    assert len(wrapped) == 7 and all("motion_modules" in w for w in wrapped)  # 2 down, 4 up, 1 in the middle
    for name, p in denoiser.named_parameters():  # AnimateDiff zero-initialises its output: wake it up
        if "motion_modules" in name and "proj_out" in name:
            torch.nn.init.normal_(p, std=0.1)
    x, t, text = torch.randn(2, 4, 3, 8, 8), torch.tensor([10, 10]), torch.randn(6, 4, 16)
    ref_text = torch.randn(2, 4, 16)

    def run(motion: torch.Tensor | None) -> torch.Tensor:
        items = refs[:, None] if motion is None else torch.cat([refs[:, None], motion], 1)  # (B, 1 + M, ...)
        bank.per_sample = items.shape[1]
        reference_net(items.flatten(0, 1), torch.zeros(items.shape[0] * items.shape[1]),
                      encoder_hidden_states=ref_text.repeat_interleave(items.shape[1], 0))
        return denoiser(x, t, encoder_hidden_states=text).sample

    refs, motion = torch.randn(2, 4, 8, 8), torch.randn(2, 2, 4, 8, 8)
    alone, with_motion = run(None), run(motion)
    assert with_motion.shape == alone.shape == (2, 4, 3, 8, 8)  # the motion frames are cut off again
    assert (with_motion - alone).abs().max() > 1e-3
    other = motion.clone()
    other[1] = torch.randn(2, 4, 8, 8)
    changed = run(other)
    torch.testing.assert_close(changed[0], with_motion[0])  # each sample continues its own motion
    assert not torch.allclose(changed[1], with_motion[1], atol=1e-4)


# -- expression labels ---------------------------------------------------------------------
def test_expression_schedule_parses_times_and_refuses_bad_labels():
    from codecgen.nn.expression_text import EXPRESSIONS, parse_expression_schedule

    labels = parse_expression_schedule("happy@0:00, sad@0:01.5,angry@2", seconds=3.0, fps=10)
    assert len(labels) == 30
    assert labels[:15] == [EXPRESSIONS.index("happy")] * 15 and labels[15:20] == [EXPRESSIONS.index("sad")] * 5
    assert labels[20:] == [EXPRESSIONS.index("angry")] * 10
    assert parse_expression_schedule("surprised@1", 2.0, 10)[:10] == [0] * 10  # neutral before the first
    for bad, message in [("smug@0", "unknown expression"), ("happy@0:70:1x", "bad time"),
                         ("happy@2,sad@1", "increase"), ("happy@5", "after the audio"), (" , ", "empty")]:
        with pytest.raises(ValueError, match=message):
            parse_expression_schedule(bad, 3.0)


def test_label_text_encoder_gives_distinct_tokens_per_label():
    from codecgen.nn.expression_text import EXPRESSION_PHRASES, LabelTextEncoder, tokenize_phrase

    torch.manual_seed(0)
    encoder = LabelTextEncoder(dim=16, layers=1, heads=2)
    tokens = encoder(torch.arange(5))
    assert tokens.shape[:2] == (5, max(len(p.split()) for p in EXPRESSION_PHRASES.values()))
    pooled = tokens.sum(1)
    assert torch.cdist(pooled, pooled).masked_fill(torch.eye(5, dtype=torch.bool), 1.0).min() > 1e-3
    assert tokens[0, len(EXPRESSION_PHRASES["neutral"].split()):].abs().max() == 0  # padding is zero
    with pytest.raises(ValueError, match="unknown words"):
        tokenize_phrase("a smug face")
    with pytest.raises(ValueError, match="indices"):
        encoder(torch.tensor([5]))


# -- face locator --------------------------------------------------------------------------
def test_face_locator_starts_at_zero_and_steers_the_denoisers_first_features():
    from codecgen.nn.face_locator import FaceLocator, attach_face_locator

    torch.manual_seed(0)
    _, denoiser = _tiny_unets()
    locator = FaceLocator(out_channels=16, block_out_channels=(4, 8, 8))  # f4: 32-px masks -> 8 x 8
    features = attach_face_locator(denoiser)
    mask = torch.zeros(2, 32, 32)
    mask[:, 8:24, 8:24] = 1
    x, t, text = torch.randn(2, 4, 3, 8, 8), torch.tensor([5, 5]), torch.randn(6, 4, 16)
    plain = denoiser(x, t, encoder_hidden_states=text).sample
    features.value = locator(mask)
    assert features.value.shape == (2, 16, 8, 8) and features.value.abs().max() == 0  # zero at the start
    torch.testing.assert_close(denoiser(x, t, encoder_hidden_states=text).sample, plain)
    torch.nn.init.normal_(locator.conv_out.weight, std=0.1)
    features.value = locator(mask)
    assert (denoiser(x, t, encoder_hidden_states=text).sample - plain).abs().max() > 1e-3
    features.value = torch.zeros(2, 8, 8, 8)
    with pytest.raises(ValueError, match="do not fit"):
        denoiser(x, t, encoder_hidden_states=text)


# -- benchmark probe -----------------------------------------------------------------------
PROBE_TINY = ROOT / "configs" / "hallo2" / "probe_tiny.yaml"


def test_face_probe_learns_mouth_opening_and_expression(tiny_portraits, tmp_path):
    from codecgen.generators.hallo2.face_probe import FaceProbe

    rows, last = fit_run(PROBE_TINY, tmp_path, "--data.init_args.root", str(tiny_portraits),
                         "--trainer.max_steps", "40")
    for name in ("train/jaw", "train/expression"):
        values = column(rows, name)
        assert np.mean(values[-5:]) < 0.6 * np.mean(values[:5]), name
    assert column(rows, "val/expression_accuracy")
    probe = codecgen.load(str(last))
    assert isinstance(probe, FaceProbe)
    jaw, logits = probe(torch.zeros(3, 3, 48, 48), torch.tensor([[8.0, 8.0, 40.0, 40.0]] * 3))
    assert jaw.shape == (3,) and ((jaw >= 0) & (jaw <= 1)).all() and logits.shape == (3, 5)


def test_clip_frame_cache_gives_the_decoded_frames_and_stays_within_its_budget(tiny_portraits):
    from codecgen.datamodules.portrait_clips import list_clips
    from codecgen.datamodules.portraits import ClipFrameCache
    from codecgen.datamodules.video import load_video

    clips = list_clips(tiny_portraits)[:3]
    direct = load_video(clips[0] / "video.mkv", 3, 7) * 2 - 1
    cache = ClipFrameCache(10 * 2**30)
    torch.testing.assert_close(cache.frames(clips[0], 3, 7, None), direct, atol=1e-6, rtol=0)
    torch.testing.assert_close(ClipFrameCache(0).frames(clips[0], 3, 7, None), direct)
    one_clip = cache.bytes
    small = ClipFrameCache(one_clip + 1)
    for clip in clips:
        small.frames(clip, 0, 1, None)
    # Room for about one clip: each new clip pushed out the least recently used one.
    assert len(small.clips) == 1 and next(iter(small.clips))[0] == clips[-1]


def test_identity_projection_gives_four_tokens_per_face():
    from codecgen.nn.face_embedder import IdentityProj

    proj = IdentityProj()
    assert proj(torch.randn(3, 512)).shape == (3, 4, 768)
    assert sum(p.numel() for p in proj.parameters()) == 512 * 3072 + 3072 + 2 * 768  # the authors' ImageProjModel
