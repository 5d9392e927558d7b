"""SemantiCodec's stages: the Kaldi front end, the AudioMAE (patch layout, features, MAE loss,
a user's local weights) and its pre-training through ``train.py`` on the tiny config."""

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from torchaudio.compliance import kaldi

from codecgen.codecs.audio.semanticodec.mae import AudioMAEPretraining
from codecgen.nn.audiomae import AudioMAE, load_audiomae_weights
from codecgen.nn.fbank import AUDIOSET_MEAN, AUDIOSET_STD, KaldiFbank, fit_frames
from tests.conftest import ROOT, sine_sweep

pytestmark = [pytest.mark.filterwarnings("ignore:.*does not have many workers")]

MAE_TINY = ROOT / "configs" / "semanticodec" / "mae_tiny.yaml"


def tiny_mae(**kwargs) -> AudioMAE:
    args = dict(num_frames=64, num_mel_bins=128, embed_dim=32, depth=3, num_heads=2, decoder_embed_dim=32,
                decoder_depth=1, decoder_num_heads=2)
    return AudioMAE(**(args | kwargs))


def fit(config: Path, corpus: Path, root: Path, *extra: str) -> tuple[list[dict], Path]:
    from train import train_main

    cli = train_main(["fit", "--config", str(config), "--data.init_args.root", str(corpus),
                      "--trainer.default_root_dir", str(root), "--trainer.enable_progress_bar", "false",
                      "--trainer.log_every_n_steps", "1", "--trainer.logger", "CSVLogger",
                      "--trainer.logger.save_dir", str(root), *extra])
    rows = list(csv.DictReader(open(next(root.rglob("metrics.csv")))))
    return rows, Path(cli.trainer.checkpoint_callback.last_model_path)


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


def test_mae_pretraining_trains_through_train_py_and_its_loss_falls(tiny_corpus, tmp_path):
    rows, last = fit(MAE_TINY, tiny_corpus, tmp_path, "--trainer.max_steps", "40")
    losses = [float(r["train/mae"]) for r in rows if r.get("train/mae")]
    assert len(losses) == 40 and np.median(losses[-8:]) < 0.85 * np.median(losses[:8]), losses
    assert any(r.get("val/mae") for r in rows) and last.is_file()
    import codecgen

    model = codecgen.load(str(last))
    assert isinstance(model, AudioMAEPretraining) and model.mae.grid == (4, 8)
