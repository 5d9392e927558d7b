"""Language-Codec: trains through the CLI, masked stages see only their slice, --n-q sets the rate."""

import csv
import math
from pathlib import Path

import pytest
import soundfile as sf
import torch

import codecgen
import infer
from codecgen.codecs import bitstream
from codecgen.codecs.audio.languagecodec import LanguageCodec
from codecgen.datamodules.signals import espeak
from tests.conftest import ROOT

torch.set_num_threads(1)
TINY = str(ROOT / "configs" / "languagecodec" / "tiny.yaml")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from train import train_main

    root = tmp_path_factory.mktemp("lc_run")
    # two voiced 0.4 s clips (= the training segment): a fixed batch, served through the real
    # CLI and datamodule, that the tiny model can fit; validation on one of them
    corpus = root / "speech"
    (corpus / "train").mkdir(parents=True)
    (corpus / "val").mkdir()
    for i, text in enumerate(["the first training sentence for the codec", "and here is a second one"]):
        speech = espeak(text, voice=["en-us", "en+f3"][i], sr=16000)
        start = (abs(speech) > 1e-2).nonzero()[0][0]  # skip leading digital silence
        sf.write(corpus / "train" / f"{i}.wav", speech[start : start + 6400], 16000)
    sf.write(corpus / "val" / "0.wav", sf.read(corpus / "train" / "0.wav")[0], 16000)
    cli = train_main([
        "fit", "--config", TINY, "--data.root", str(corpus), "--trainer.default_root_dir", str(root),
        "--trainer.enable_progress_bar", "false", "--trainer.max_steps", "60", "--trainer.log_every_n_steps", "1",
        "--trainer.logger", "CSVLogger", "--trainer.logger.save_dir", str(root),
        "--data.init_args.segment_seconds", "0.4", "--model.init_args.disc_start_step", "1000",
    ])
    ckpt = Path(cli.trainer.checkpoint_callback.last_model_path or cli.trainer.checkpoint_callback.best_model_path)
    return root, ckpt


def test_tiny_language_codec_trains_through_the_cli_and_its_loss_falls(trained):
    root, ckpt = trained
    rows = list(csv.DictReader(open(next(root.rglob("metrics.csv")))))
    mel = [float(r["train/mel"]) for r in rows if r.get("train/mel")]
    assert len(mel) >= 50
    assert sorted(mel[-10:])[5] < 0.8 * sorted(mel[:10])[5], mel[::5]  # medians: robust to odd segments
    model = codecgen.load(ckpt)
    assert isinstance(model, LanguageCodec) and not model.training


def test_paper_defaults():
    model = LanguageCodec()
    assert model.sample_rate == 24000 and model.hop_length == 320
    assert model.quantizer.codebook_sizes == [1024] * 8 and model.quantizer.n_masked == 3
    assert model.bitrate() == pytest.approx(6000.0)
    assert model.bitrate(n_q=4) == pytest.approx(3000.0)


def test_masked_stages_only_see_their_channel_slice(trained):
    model = codecgen.load(trained[1])
    z = model.encoder(torch.randn(1, 1, 3200) * 0.1)
    codes = model.quantizer.encode(z)
    dim, n_masked = z.shape[1], model.quantizer.n_masked
    bounds = [i * dim // n_masked for i in range(n_masked + 1)]
    for i in range(n_masked):
        other = z + torch.randn_like(z)
        other[:, bounds[i] : bounds[i + 1]] = z[:, bounds[i] : bounds[i + 1]]
        assert torch.equal(model.quantizer.encode(other)[:, i], codes[:, i])


def test_bandwidth_is_a_decoder_condition(trained):
    model = codecgen.load(trained[1])
    x = torch.randn(1, 1, 3200) * 0.1
    codes = model.encode(x)
    assert codes.shape[1] == 8
    quantized = model.quantizer.decode(codes)
    assert not torch.allclose(model.decode_latent(quantized, 8), model.decode_latent(quantized, 3))


def test_n_q_changes_the_bitrate_and_the_file_size(trained, tmp_path):
    ckpt = trained[1]
    wav = tmp_path / "speech.wav"
    sf.write(wav, espeak("language codec bitrate test sentence number one", sr=16000), 16000)
    sizes = {}
    for n_q in (3, 5, 8):
        cgc = tmp_path / f"{n_q}.cgc"
        assert infer.main(["encode", "--model", str(ckpt), str(wav), str(cgc), "--n-q", str(n_q), "--quiet"]) == 0
        header, payload = bitstream.read(cgc)
        assert header["codes_shape"][1] == n_q
        sizes[n_q] = cgc.stat().st_size
        out = tmp_path / f"{n_q}.wav"
        assert infer.main(["decode", "--model", str(ckpt), str(cgc), str(out), "--quiet"]) == 0
        assert sf.info(str(out)).frames == sf.info(str(wav)).frames
    assert sizes[3] < sizes[5] < sizes[8]
    assert infer.main(["encode", "--model", str(ckpt), str(wav), str(tmp_path / "x.cgc"), "--n-q", "2", "--quiet"]) == 2


def test_validation_logs_the_learning_curve_scores_and_their_ceiling(trained, tmp_path):
    """Held-out PESQ/STOI for the codec and for the decoder fed the unquantized latent,
    readable by benchmarks/learning_curves.py (table + plot)."""
    from benchmarks.learning_curves import main as curves_main
    from benchmarks.learning_curves import read_scalars

    root, _ = trained
    curves = read_scalars(root)
    for tag in ("val/mel_distance", "val/pesq", "val/stoi", "val/ceiling_mel_distance", "val/ceiling_pesq",
                "val/ceiling_stoi"):
        assert tag in curves, sorted(curves)
        values = list(curves[tag].values())
        assert all(math.isfinite(v) for v in values)
    assert all(1.0 <= v <= 4.7 for v in curves["val/pesq"].values())
    assert all(0.0 <= v <= 1.0 for v in curves["val/ceiling_stoi"].values())
    curves_main([str(root), "--name", "tiny", "--out", str(tmp_path), "--metrics", "val/pesq", "val/ceiling_pesq"])
    assert (tmp_path / "curves_tiny.png").stat().st_size > 0
    assert "val/ceiling_pesq" in (tmp_path / "curves_tiny.md").read_text()
