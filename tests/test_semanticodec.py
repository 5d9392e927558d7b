"""SemantiCodec's stages: the Kaldi front end, the AudioMAE (patch layout, features, MAE loss,
a user's local weights) and its pre-training through ``train.py`` on the tiny config; the
semantic tokenizer (token-rate merges, k-means through ``infer.py fit-kmeans``); the mel VAE; the vocoder; the codec trained on them
(stage 5: codes, bitrate, seeded decoding, joins, checkpoints, bad input)."""

from pathlib import Path

import numpy as np
import pytest
import torch
from torchaudio.compliance import kaldi

from conftest import ROOT, column, fit_run, sine_sweep

import codecgen
import infer
from codecgen.codecs.audio.semanticodec.codec import SemantiCodec
from codecgen.codecs.audio.semanticodec.mae import AudioMAEPretraining
from codecgen.codecs.audio.semanticodec.mel_vae import MelVAE, semanticodec_mel
from codecgen.codecs.audio.semanticodec.vocoder import MelVocoder
from codecgen.codecs.audio.semanticodec.tokenizer import SemanticTokenizer
from codecgen.nn.audiomae import AudioMAE, load_audiomae_weights
from codecgen.nn.fbank import AUDIOSET_MEAN, AUDIOSET_STD, KaldiFbank, fit_frames

pytestmark = [pytest.mark.filterwarnings("ignore:.*does not have many workers")]

MAE_TINY = ROOT / "configs" / "semanticodec" / "mae_tiny.yaml"
VAE_TINY = ROOT / "configs" / "semanticodec" / "mel_vae_tiny.yaml"
VOCODER_TINY = ROOT / "configs" / "semanticodec" / "vocoder_tiny.yaml"
CODEC_TINY = ROOT / "configs" / "semanticodec" / "tiny.yaml"


def tiny_mae(**kwargs) -> AudioMAE:
    args = dict(num_frames=64, num_mel_bins=128, embed_dim=32, depth=3, num_heads=2, decoder_embed_dim=32,
                decoder_depth=1, decoder_num_heads=2)
    return AudioMAE(**(args | kwargs))


def fit(config: Path, corpus: Path, root: Path, *extra: str) -> tuple[list[dict], Path]:
    return fit_run(config, root, "--data.init_args.root", str(corpus), *extra)


# -- front end ---------------------------------------------------------------------------
def test_fbank_is_kaldis_on_the_mean_removed_wave_normalised_with_audioset_statistics():
    wave = sine_sweep(2, 16000) + 0.1  # a DC offset the front end removes
    fbank = KaldiFbank()
    out = fbank(wave)
    assert out.shape == (2, fbank.num_frames(16000), 128) == (2, 98, 128)
    w = wave[1, 0] - wave[1, 0].mean()
    direct = kaldi.fbank(w[None], htk_compat=True, sample_frequency=16000, use_energy=False, window_type="hanning",
                         num_mel_bins=128, dither=0.0, frame_shift=10)
    torch.testing.assert_close(out[1], (direct - AUDIOSET_MEAN) / (2 * AUDIOSET_STD))
    assert fbank.num_frames(fbank.samples_for(64)) == 64 and fbank.num_frames(fbank.samples_for(64) - 1) == 63
    assert fit_frames(out, 128).shape[1] == 128 and (fit_frames(out, 128)[:, 98:] == 0).all()
    assert torch.equal(fit_frames(out, 10), out[:, :10])


def test_fbank_refuses_bad_shapes_and_too_short_audio():
    fbank = KaldiFbank()
    with pytest.raises(ValueError, match="expected waveforms"):
        fbank(torch.zeros(2, 2, 16000))
    with pytest.raises(ValueError, match="shorter than one 400-sample frame"):
        fbank(torch.zeros(1, 1, 399))


# -- AudioMAE ----------------------------------------------------------------------------
def test_patches_run_time_major_and_features_average_the_last_blocks():
    torch.manual_seed(0)
    mae = tiny_mae().eval()
    spec = torch.randn(2, 1, 64, 128)
    patches = mae.patchify(spec)
    assert patches.shape == (2, 32, 256) and mae.grid == (4, 8)
    # patch 9 = time row 1, frequency column 1
    assert torch.equal(patches[:, 9], spec[:, 0, 16:32, 16:32].reshape(2, 256))
    feats = mae.features(spec)
    assert feats.shape == (2, 32, 32)
    # by hand: the mean of the normed outputs of the last 3 blocks, CLS dropped
    x = torch.cat([(mae.cls_token + mae.pos_embed[:, :1]).expand(2, -1, -1),
                   mae.patch_embed(spec) + mae.pos_embed[:, 1:]], 1)
    outs = []
    for block in mae.blocks:
        x = block(x)
        outs.append(mae.norm(x))
    torch.testing.assert_close(feats, torch.stack(outs[-3:]).mean(0)[:, 1:])
    # a change in one patch's pixels moves that patch's token most
    changed = spec.clone()
    changed[:, :, 16:32, 16:32] += 3
    moved = (mae.features(changed) - feats).norm(dim=-1).mean(0)
    assert int(moved.argmax()) == 9


def test_mae_loss_counts_masked_patches_only_and_falls_on_a_fixed_batch():
    torch.manual_seed(0)
    mae = tiny_mae()
    spec = KaldiFbank()(sine_sweep(4, KaldiFbank().samples_for(64)))[:, None]
    loss, pred, mask = mae.pretraining_loss(spec, 0.75)
    assert pred.shape == (4, 32, 256) and mask.shape == (4, 32)
    assert (mask.sum(1) == 24).all()  # 75 % of 32 patches hidden, in every item
    opt = torch.optim.AdamW(mae.parameters(), lr=3e-3)
    losses = []
    for step in range(60):
        torch.manual_seed(step % 4)  # four fixed masks, cycled
        loss, _, _ = mae.pretraining_loss(spec, 0.75)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert np.mean(losses[-4:]) < 0.7 * np.mean(losses[:4]), losses


def test_user_audiomae_weights_load_by_the_authors_key_names(tmp_path):
    torch.manual_seed(0)
    source = tiny_mae()
    path = tmp_path / "pretrained.pth"
    torch.save({"model": {**source.state_dict(), "head.weight": torch.zeros(3, 32)}, "epoch": 1}, path)
    target = tiny_mae(decoder_depth=0)  # an encoder only: the checkpoint's decoder is left over
    unused = load_audiomae_weights(target, path)
    assert "head.weight" in unused and "decoder_pred.weight" in unused
    spec = torch.randn(1, 1, 64, 128)
    torch.testing.assert_close(target.features(spec), source.eval().features(spec))
    # through the pre-training stage's init_weights
    stage = AudioMAEPretraining(tiny_mae(), init_weights=str(path))
    torch.testing.assert_close(stage.mae.features(spec), source.features(spec))
    assert stage.spec(inference_only=True)["init_args"]["init_weights"] is None
    # a checkpoint of another size, or without the encoder, is one clear error
    with pytest.raises(ValueError, match="does not fit"):
        load_audiomae_weights(tiny_mae(embed_dim=64), path)
    torch.save({"model": {"blocks.0.norm1.weight": torch.ones(32)}}, path)
    with pytest.raises(ValueError, match="lacks"):
        load_audiomae_weights(target, path)


def test_mae_refuses_wrong_windows_and_ratios():
    mae = tiny_mae()
    with pytest.raises(ValueError, match="expected filterbanks"):
        mae.features(torch.zeros(1, 1, 63, 128))
    with pytest.raises(ValueError, match="mask_ratio"):
        mae.pretraining_loss(torch.zeros(1, 1, 64, 128), 1.0)
    with pytest.raises(ValueError, match="whole 16-patches"):
        AudioMAE(num_frames=60)
    with pytest.raises(ValueError, match="no decoder"):
        tiny_mae(decoder_depth=0).pretraining_loss(torch.zeros(1, 1, 64, 128))


@pytest.fixture(scope="module")
def mae_run(tiny_corpus, tmp_path_factory):
    return fit(MAE_TINY, tiny_corpus, tmp_path_factory.mktemp("mae"), "--trainer.max_steps", "40")


def test_mae_pretraining_trains_through_train_py_and_its_loss_falls(mae_run):
    rows, last = mae_run
    losses = column(rows, "train/mae")
    assert len(losses) == 40 and np.median(losses[-8:]) < 0.85 * np.median(losses[:8]), losses
    assert any(r.get("val/mae") for r in rows) and last.is_file()
    model = codecgen.load(str(last))
    assert isinstance(model, AudioMAEPretraining) and model.mae.grid == (4, 8)


# -- semantic tokenizer ------------------------------------------------------------------
@pytest.mark.parametrize("rate, merge, frames_per_second", [(100, (1, 1), 50.0), (50, (1, 2), 25.0),
                                                            (25, (2, 2), 12.5)])
def test_token_rates_concatenate_neighbouring_patches(rate, merge, frames_per_second):
    torch.manual_seed(0)
    tok = SemanticTokenizer(tiny_mae(decoder_depth=0), tokens_per_second=rate, n_clusters=4).eval()
    wave = sine_sweep(2, tok.window_samples)
    feats = tok.features(wave)
    rows, cols = 4 // merge[0], 8 // merge[1]
    assert feats.shape == (2, rows * cols, 32 * merge[0] * merge[1]) and tok.frame_rate == frames_per_second
    patches = tok.mae.features(fit_frames(tok.fbank(wave), 64)[:, None]).view(2, 4, 8, 32)
    r, c = rows - 1, cols - 1  # the last frame: its block's patches, row by row
    block = patches[:, r * merge[0] : (r + 1) * merge[0], c * merge[1] : (c + 1) * merge[1]].reshape(2, -1)
    torch.testing.assert_close(feats[:, -1], block)
    assert tok.features(wave[..., :1000]).shape == feats.shape  # a short input is padded to the window
    with pytest.raises(ValueError, match="at most"):
        tok.features(sine_sweep(1, tok.window_samples + 1))


def test_kmeans_is_deterministic_and_tokens_round_trip_through_centroids():
    torch.manual_seed(0)
    tok = SemanticTokenizer(tiny_mae(decoder_depth=0), tokens_per_second=50, n_clusters=16)
    with pytest.raises(ValueError, match="not fitted"):
        tok.tokens(torch.zeros(1, 2, tok.dim))
    windows = [sine_sweep(2, tok.window_samples) * (0.2 + 0.2 * i) for i in range(4)]
    stats = tok.fit_kmeans(windows, iters=10, seed=3)
    assert stats["vectors"] == 4 * 2 * 16 and 1 < stats["used_clusters"] <= 16
    again = SemanticTokenizer(tiny_mae(decoder_depth=0), tokens_per_second=50, n_clusters=16)
    again.load_state_dict({k: v for k, v in tok.state_dict().items() if not k.startswith("kmeans")}, strict=False)
    again.fit_kmeans(windows, iters=10, seed=3)
    assert torch.equal(again.kmeans.centroids, tok.kmeans.centroids)
    tokens = tok.tokens(tok.features(windows[1]))
    assert tokens.dtype == torch.int64 and tokens.shape == (2, 16)
    assert torch.equal(tok.tokens(tok.centroids(tokens)), tokens)  # every centroid is its own nearest
    with pytest.raises(ValueError, match="semantic tokens must be in"):
        tok.centroids(torch.tensor([[16]]))
    with pytest.raises(ValueError, match="cannot make 16 clusters"):
        tok.fit_kmeans(windows[:1], max_vectors=8)


def test_fit_kmeans_cli_exports_a_tokenizer_deterministically(mae_run, tiny_corpus, tmp_path, capsys):
    _, last = mae_run
    args = ["fit-kmeans", "--model", str(last), str(tiny_corpus), "--tokens-per-second", "25", "--clusters", "8",
            "--iters", "5", "--quiet"]
    assert infer.main([*args[:4], str(tmp_path / "a"), *args[4:]]) == 0
    assert infer.main([*args[:4], str(tmp_path / "b"), *args[4:]]) == 0
    a, b = codecgen.load(str(tmp_path / "a")), codecgen.load(str(tmp_path / "b"))
    assert isinstance(a, SemanticTokenizer) and a.tokens_per_second == 25 and a.n_clusters == 8
    assert a.weights_hash() == b.weights_hash() and bool(a.kmeans.fitted)
    stage = codecgen.load(str(last))
    spec = torch.randn(1, 1, 64, 128)
    torch.testing.assert_close(a.mae.features(spec), stage.mae.features(spec))  # stage 1's encoder, frozen
    assert not any(k.startswith("mae.decoder") for k in a.state_dict())
    # bad input: one line, exit 2, nothing written over
    capsys.readouterr()
    assert infer.main([*args[:4], str(tmp_path / "a"), *args[4:]]) == 2
    assert "exists" in capsys.readouterr().err
    assert infer.main(["fit-kmeans", "--model", str(tmp_path / "a"), str(tiny_corpus), str(tmp_path / "c")]) == 2
    assert "needs a SemantiCodec stage-1 model" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert infer.main([*args[:3], str(tmp_path / "empty"), str(tmp_path / "d"), *args[4:]]) == 2
    assert "no wav/flac/ogg files" in capsys.readouterr().err and not (tmp_path / "d").exists()


# -- mel VAE -------------------------------------------------------------------------------
def test_semanticodec_mel_makes_one_frame_per_hop():
    mel = semanticodec_mel()
    out = mel(sine_sweep(2, 16000))
    assert out.shape == (2, 64, 100) and torch.isfinite(out).all() and out.min() >= np.log(1e-5) - 1e-6
    # the sweep's energy moves up the bins over time
    assert out[0, :, 90].argmax() > out[0, :, 10].argmax()


@pytest.fixture(scope="module")
def vae_run(tiny_corpus, tmp_path_factory):
    return fit(VAE_TINY, tiny_corpus, tmp_path_factory.mktemp("vae"), "--trainer.max_steps", "30")


def test_mel_vae_trains_through_train_py_with_its_gan_and_round_trips_shapes(vae_run):
    rows, last = vae_run
    l1 = column(rows, "train/l1")
    assert len(l1) == 30 and np.median(l1[-6:]) < 0.7 * np.median(l1[:6]), l1
    assert any(r.get("train/disc") for r in rows) and any(r.get("train/gan_weight") for r in rows)  # from step 15
    assert any(r.get("val/mel_l1") for r in rows)
    vae = codecgen.load(str(last)).eval()
    assert isinstance(vae, MelVAE) and vae.factor == 2 and vae.latent_channels == 8
    mel = vae.mel_image(sine_sweep(1, 16000 + 100))  # 100 frames, cut to a multiple of the factor
    assert mel.shape == (1, 1, 100, 64)
    z = vae.encode(mel)
    assert z.shape == (1, 8, 50, 32) and torch.equal(z, vae.encode(mel))  # the posterior's mean: deterministic
    assert vae.decode(z).shape == mel.shape
    assert vae.spec(inference_only=True)["init_args"]["discriminator"] is None


def test_mel_vae_refuses_a_vae_of_other_channels():
    from diffusers import AutoencoderKL

    vae = AutoencoderKL(in_channels=3, out_channels=3, block_out_channels=(8,), norm_num_groups=8)
    with pytest.raises(ValueError, match="one channel"):
        MelVAE(vae)


# -- vocoder -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def vocoder_run(tiny_corpus, tmp_path_factory):
    return fit(VOCODER_TINY, tiny_corpus, tmp_path_factory.mktemp("vocoder"), "--trainer.max_steps", "30")


def test_vocoder_trains_through_train_py_with_its_gan(vocoder_run):
    rows, last = vocoder_run
    mel = column(rows, "train/mel")
    assert len(mel) == 30 and np.median(mel[-6:]) < 0.8 * np.median(mel[:6]), mel
    assert any(r.get("train/disc") for r in rows) and any(r.get("val/mel_distance") for r in rows)
    vocoder = codecgen.load(str(last)).eval()
    assert isinstance(vocoder, MelVocoder)
    with torch.no_grad():
        wave = vocoder(vocoder.mel(sine_sweep(1, 16000)))
    assert wave.shape == (1, 1, 16000) and wave.abs().max() <= 1


def test_vocoder_refuses_a_generator_that_does_not_fit_the_mel():
    from codecgen.nn.hifigan import HiFiGANGenerator

    with pytest.raises(ValueError, match="hop of 320"):
        MelVocoder(HiFiGANGenerator(in_channels=64, upsample_initial_channel=16, upsample_rates=(8, 5, 4, 2)))
    with pytest.raises(ValueError, match="takes 80 channels"):
        MelVocoder(HiFiGANGenerator(in_channels=80, upsample_initial_channel=16, upsample_rates=(5, 4, 4, 2),
                                    upsample_kernel_sizes=(11, 8, 8, 4)))


def test_vocos_generator_vocodes_the_mel_and_learns():
    """The small config's Vocos generator: a mel in, the same span of samples out, and a
    few mel-loss steps on one batch lower its loss."""
    from codecgen.nn.vocos import VocosDecoder

    torch.manual_seed(0)
    vocoder = MelVocoder(VocosDecoder(input_channels=64, dim=32, intermediate_dim=64, num_layers=2,
                                      adanorm_num_embeddings=None, n_fft=640, hop_length=160))
    x = sine_sweep(2, 8000)
    mel = vocoder.mel(x)
    assert vocoder(mel).shape == (2, 1, 8000)
    with pytest.raises(ValueError, match="takes 64 channels at a hop of 320"):
        MelVocoder(VocosDecoder(input_channels=64, dim=32, intermediate_dim=64, num_layers=1,
                                adanorm_num_embeddings=None, n_fft=1280, hop_length=320))
    opt = torch.optim.Adam(vocoder.generator.parameters(), 1e-3)
    losses = []
    for _ in range(30):
        loss = vocoder.mel_loss(vocoder(mel), x)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]


# -- the codec -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def codec_run(mae_run, vae_run, vocoder_run, tiny_corpus, tmp_path_factory):
    """Stages 1-4 as above (the tokenizer at the tiny codec's 50 tokens/s and 16 centroids),
    then the tiny codec trained 40 steps on them through train.py."""
    root = tmp_path_factory.mktemp("codec")
    assert infer.main(["fit-kmeans", "--model", str(mae_run[1]), str(tiny_corpus), str(root / "tokenizer"),
                       "--tokens-per-second", "50", "--clusters", "16", "--iters", "5", "--quiet"]) == 0
    rows, last = fit(CODEC_TINY, tiny_corpus, root / "run", "--trainer.max_steps", "40",
                     "--model.init_args.tokenizer_ckpt", str(root / "tokenizer"),
                     "--model.init_args.vae_ckpt", str(vae_run[1]), "--model.init_args.vocoder_ckpt", str(vocoder_run[1]))
    return rows, last, root / "tokenizer"


@pytest.fixture(scope="module")
def codec(codec_run) -> SemantiCodec:
    return codecgen.load(str(codec_run[1]))


def test_codec_trains_through_train_py_on_the_frozen_stages(codec_run, codec, vae_run):
    rows, last, tokenizer = codec_run
    loss = column(rows, "train/loss")
    val = column(rows, "val/loss")  # fixed noise and timesteps
    assert len(loss) == 40 and len(val) >= 10 and any(r.get("train/vq") for r in rows), val
    assert np.mean(val[-3:]) < 0.85 * val[0], val  # measured: 0.97 -> 0.76
    # the frozen stages are the runs' own weights, carried in the codec's checkpoint
    assert torch.equal(codec.tokenizer.kmeans.centroids, codecgen.load(str(tokenizer)).kmeans.centroids)
    vae = codecgen.load(str(vae_run[1]))
    assert all(torch.equal(v, vae.vae.state_dict()[k]) for k, v in codec.vae.vae.state_dict().items())
    assert float(codec.latent_scale) != 1.0  # measured on the first batch


def test_codes_and_bitrate_follow_the_vocabularies(codec):
    assert codec.bitrate() == 25.0 * (np.log2(16) + np.log2(32)) == 225.0
    assert codec.frame_rate == 25.0 and codec.cols == 4 and codec.samples_per_row == 2560
    x = sine_sweep(2, 16000)
    codes = codec.encode(x)
    assert codes.dtype == torch.int64 and codes.shape == (2, 2, 28)  # 7 rows of 160 ms, 4 frames each
    assert int(codes[:, 0].max()) < 16 and int(codes[:, 1].max()) < 32
    assert torch.equal(codes, codec.encode(x)) and torch.equal(codes[1:], codec.encode(x[1:]))  # batch-free


def test_decoding_is_seeded_batch_free_and_has_no_step_at_the_joins(codec):
    x = sine_sweep(2, 40000)  # 2.5 s: four decoding windows of 0.64 s, overlapping by 0.32 s
    codes = codec.encode(x)
    assert len(codec.window_starts(codes.shape[-1] // codec.cols)) == 7
    y = codec.decode(codes, 40000, steps=3, seed=1)
    assert y.shape == (2, 1, 40000) and torch.isfinite(y).all()
    assert torch.equal(y, codec.decode(codes, 40000, steps=3, seed=1))
    assert not torch.equal(y, codec.decode(codes, 40000, steps=3, seed=2))
    codec.batch_windows = 3
    try:
        torch.testing.assert_close(codec.decode(codes, 40000, steps=3, seed=1), y)
    finally:
        codec.batch_windows = 8
    step = y[..., 1:] - y[..., :-1]
    joins = [s * codec.samples_per_row for s in codec.window_starts(codes.shape[-1] // codec.cols)[1:]]
    joins += [j + codec.overlap_rows * codec.samples_per_row for j in joins]  # where each fade ends
    near = torch.zeros(step.shape[-1], dtype=torch.bool)
    for j in joins:
        near[max(0, j - 160) : j + 160] = True
    assert step[..., near].abs().max() <= step[..., ~near].abs().max()


def test_codec_exports_and_decodes_the_same(codec, tmp_path):
    folder = codec.export(tmp_path / "export")
    again = codecgen.load(str(folder))
    assert again.weights_hash() == codec.weights_hash() and float(again.latent_scale) == float(codec.latent_scale)
    codes = codec.encode(sine_sweep(1, 8000))
    torch.testing.assert_close(again.decode(codes, steps=2), codec.decode(codes, steps=2))
    assert again.spec()["init_args"]["vae_ckpt"] is None


def test_codec_refuses_bad_audio_codes_and_settings(codec):
    from codecgen.codecs.base import CodecError

    codes = codec.encode(sine_sweep(1, 8000))
    for bad, words in ((codes.float(), "int64"), (codes[:, :1], "(B, 2, frames)"), (codes[..., :3], "whole rows"),
                       (codes.clone().fill_(16), "semantic codes must be in [0, 16)")):
        with pytest.raises(CodecError, match=words.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
            codec.decode(bad)
    with pytest.raises(CodecError, match="guidance"):
        codec.decode(codes, guidance=-1)
    with pytest.raises(ValueError, match="num_steps"):
        codec.decode(codes, steps=0)
    with pytest.raises(CodecError, match="empty"):
        codec.encode(torch.zeros(1, 1, 0))
    with pytest.raises(CodecError, match="NaN"):
        codec.encode(torch.full((1, 1, 100), float("nan")))


# -- files ---------------------------------------------------------------------------------
def test_codes_round_trip_bit_exactly_through_the_file_with_the_sampler_in_the_header(codec):
    from codecgen.codecs import bitstream

    x = sine_sweep(1, 12345)
    data = codec.compress(x, steps=3, guidance=1.5, sampler="dpm", seed=7)
    header, payload = bitstream.unpack(data)
    assert header["sampler"] == {"name": "dpm", "steps": 3, "guidance": 1.5, "seed": 7}
    assert torch.equal(codec.unpack_codes(header, payload), codec.encode(x))
    assert 8 * len(payload) <= codec.encode(x).shape[-1] * (4 + 5) + 64  # at most the uniform rate
    y = codec.decompress(data)
    assert y.shape == (1, 12345) and torch.equal(y, codec.decompress(data))  # repeatable
    torch.testing.assert_close(y, codec.decode(codec.encode(x), 12345, steps=3, guidance=1.5, sampler="dpm", seed=7)[0])
    assert not torch.equal(codec.decompress(data, seed=8), y)  # a decode flag overrides the file
    assert codec.tokens(x).shape == (codec.frames_for(12345), 2)


def test_streamed_decoding_is_the_whole_decode(codec):
    codes = codec.encode(sine_sweep(1, 40000))
    whole = codec.decode(codes, 40000, steps=2, seed=3)
    codec.batch_windows = 2  # seven windows in four groups: pieces as soon as mel is final
    try:
        pieces = list(codec.decode_chunks(codes, 40000, steps=2, seed=3))
    finally:
        codec.batch_windows = 8
    assert len(pieces) >= 2 and sum(p.shape[-1] for p in pieces) == 40000
    torch.testing.assert_close(torch.cat(pieces, -1), whole[0])


@pytest.mark.parametrize("field, value, words", [
    ("weights_hash", "0" * 16, "use the model that encoded it"),
    ("codebook_sizes", [16, 64], "do not fit this model"),
    ("codes_shape", [1, 2, 400], "does not match"),
    ("length", 10**12, "does not match"),
    ("sampler", {"name": "ddim", "steps": 0, "guidance": 2.0, "seed": 0}, "steps"),
    ("sampler", {"name": "euler", "steps": 5, "guidance": 2.0, "seed": 0}, "name"),
    ("sampler", {"name": "ddim", "steps": 5, "guidance": 2.0}, "seed"),
    ("entropy", {"kind": "prior"}, "prior"),
])
def test_hostile_headers_are_one_clear_error(codec, field, value, words):
    from codecgen.codecs import bitstream

    header, payload = bitstream.unpack(codec.compress(sine_sweep(1, 8000)))
    with pytest.raises(ValueError, match=words):
        codec.unpack_codes({**header, field: value}, payload)


def test_truncated_payload_and_bad_settings_are_refused(codec):
    from codecgen.codecs import bitstream
    from codecgen.codecs.base import CodecError

    header, payload = bitstream.unpack(codec.compress(sine_sweep(1, 8000)))
    with pytest.raises(bitstream.BitstreamError, match="corrupt payload"):
        codec.unpack_codes(header, payload[: len(payload) // 2])
    with pytest.raises(CodecError, match="guidance"):
        codec.compress(sine_sweep(1, 8000), guidance=float("nan"))
    with pytest.raises(CodecError, match="both of its token streams"):
        codec.encode_chunks(iter([]), n_q=1)


# -- command line ----------------------------------------------------------------------------
def test_cli_encodes_decodes_repeatably_and_writes_tokens(codec, tmp_path, capsys):
    import soundfile as sf

    folder = codec.export(tmp_path / "model")
    src = tmp_path / "in.wav"
    wave = sine_sweep(1, 26460, 22050)[0, 0].numpy()  # 1.2 s at 22.05 kHz: resampled to 16 kHz and back
    sf.write(src, np.stack([wave, wave], 1), 22050)  # stereo: mixed down
    assert infer.main(["encode", "--model", str(folder), str(src), str(tmp_path / "a.cgc"), "--quiet"]) == 0
    out = tmp_path / "a.wav"
    args = ["decode", "--model", str(folder), str(tmp_path / "a.cgc"), str(out), "--steps", "2", "--quiet"]
    assert infer.main(args) == 0
    first = out.read_bytes()
    assert infer.main([*args, "--overwrite"]) == 0 and out.read_bytes() == first  # the file's seed
    decoded, rate = sf.read(out)
    assert rate == 22050 and decoded.shape == (26460,)
    assert infer.main([*args, "--overwrite", "--seed", "5"]) == 0 and out.read_bytes() != first
    assert infer.main(["tokens", "--model", str(folder), str(src), str(tmp_path / "t.npy"), "--quiet"]) == 0
    tokens = np.load(tmp_path / "t.npy")
    assert tokens.dtype == np.int64 and tokens.shape == (codec.frames_for(19200), 2)  # 1.2 s at 16 kHz
    # bad settings and wrong models: one line, exit 2, nothing written
    capsys.readouterr()
    for extra, words in ((["--steps", "0"], "steps"), (["--guidance", "-1"], "guidance")):
        assert infer.main([*args[:4], str(tmp_path / "b.wav"), *extra, "--quiet"]) == 2
        assert words in capsys.readouterr().err and not (tmp_path / "b.wav").exists()
    assert infer.main(["tokens", "--model", str(folder), str(src), str(tmp_path / "t.txt")]) == 2
    assert ".npy" in capsys.readouterr().err
    assert infer.main(["encode", "--model", str(folder), str(src), str(tmp_path / "c.cgc"), "--tokens-per-second",
                       "100", "--quiet"]) == 2
    assert "codes at 50 tokens/s, not 100" in capsys.readouterr().err and not (tmp_path / "c.cgc").exists()
    assert infer.main(["encode", "--model", str(folder), str(src), str(tmp_path / "c.cgc"), "--tokens-per-second",
                       "50", "--quiet"]) == 0


def test_sampling_flags_are_refused_for_a_codec_that_does_not_sample(tiny_checkpoint, tmp_path, capsys):
    import soundfile as sf

    src = tmp_path / "in.wav"
    sf.write(src, sine_sweep(1, 8000)[0, 0].numpy(), 16000)
    assert infer.main(["encode", "--model", str(tiny_checkpoint), str(src), str(tmp_path / "a.cgc"), "--quiet"]) == 0
    capsys.readouterr()
    assert infer.main(["decode", "--model", str(tiny_checkpoint), str(tmp_path / "a.cgc"), str(tmp_path / "a.wav"),
                       "--steps", "4", "--quiet"]) == 2
    assert "decodes without sampling" in capsys.readouterr().err and not (tmp_path / "a.wav").exists()
    assert infer.main(["tokens", "--model", str(tiny_checkpoint), str(src), str(tmp_path / "t.npy")]) == 2
    assert "SemantiCodec" in capsys.readouterr().err


# -- configs -------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["mae_small", "mae_paper", "mel_vae_small", "mel_vae_paper", "vocoder_small",
                                  "vocoder_paper", "small", "paper"])
def test_small_and_paper_configs_build(name):
    import yaml

    from codecgen.config import build

    model = build(yaml.safe_load(open(ROOT / "configs" / "semanticodec" / f"{name}.yaml"))["model"])
    if name == "paper":  # the authors' sizes: their UNet (55.6 M), 1.3 kbps at 100 tokens/s
        assert round(sum(p.numel() for p in model.unet.parameters()) / 1e6, 1) == 55.6
        assert model.bitrate() == 1300.0 and model.tokens_per_second == 100
    if name == "small":
        assert model.bitrate() == 575.0 and model.latent_shape(1) == (1, 8, 64, 16)


@pytest.mark.parametrize("size", ["tiny", "small", "paper"])
def test_each_codec_config_holds_the_stages_its_stage_configs_train(size):
    # the chain loads the stage runs' weights into the codec's stages: their architectures must be the same
    import yaml

    def model_of(name):
        return yaml.safe_load(open(ROOT / "configs" / "semanticodec" / f"{name}.yaml"))["model"]["init_args"]

    codec = model_of(size)
    assert codec["vae"]["init_args"]["vae"] == model_of(f"mel_vae_{size}")["vae"]
    assert codec["vocoder"]["init_args"]["generator"] == model_of(f"vocoder_{size}")["generator"]
    mae = {k: v for k, v in model_of(f"mae_{size}")["mae"]["init_args"].items() if not k.startswith("decoder")}
    assert {k: v for k, v in codec["tokenizer"]["init_args"]["mae"]["init_args"].items()
            if not k.startswith("decoder")} == mae
