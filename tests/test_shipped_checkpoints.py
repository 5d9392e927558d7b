"""The checkpoints the project ships load by name and code a file with no training."""

import json

import pytest
import soundfile as sf
import torch

import codecgen
from codecgen import metrics
import infer
from codecgen.codecs import bitstream
from codecgen.datamodules.signals import espeak
from codecgen.hub import SHIPPED_DIR, shipped_models

torch.set_num_threads(1)
SHIPPED = {"hificodec-16k": "HiFiCodec", "languagecodec-16k": "LanguageCodec"}


def test_the_project_ships_its_audio_checkpoints():
    assert set(SHIPPED) <= set(shipped_models())
    for name in SHIPPED:
        folder = SHIPPED_DIR / name
        assert (folder / "MODEL_CARD.md").is_file()
        assert (folder / "model.safetensors").stat().st_size < 20 * 2**20


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_checkpoint_loads_by_name_and_round_trips_a_file(name, tmp_path):
    model = codecgen.load(name)
    assert type(model).__name__ == SHIPPED[name] and not model.training
    assert model.weights_hash() == json.loads((SHIPPED_DIR / name / "config.json").read_text())["weights_hash"]
    wav, cgc, out = tmp_path / "in.wav", tmp_path / "x.cgc", tmp_path / "out.wav"
    speech = espeak("shipped checkpoints work out of the box", sr=16000)
    sf.write(wav, speech, 16000)
    assert infer.main(["encode", "--model", name, str(wav), str(cgc), "--quiet"]) == 0
    assert infer.main(["decode", "--model", name, str(cgc), str(out), "--quiet"]) == 0
    assert bitstream.read(cgc)[0]["model"] == SHIPPED[name]
    decoded, sr = sf.read(str(out), dtype="float32")
    assert sr == 16000 and len(decoded) == len(speech)
    # a trained codec reproduces speech: its spectrum is far closer than noise of equal power
    noise = torch.randn(len(speech)).numpy() * speech.std()
    assert metrics.mel_distance(speech, decoded, 16000) < 0.5 * metrics.mel_distance(speech, noise, 16000)


HALLO2 = {"hallo2-small": "PortraitAnimator", "hallo2-small-hq": "FaceRestorer", "hallo2-probe": "FaceProbe"}


@pytest.mark.parametrize("name", sorted(HALLO2))
def test_shipped_hallo2_models_load_by_name_with_their_cards(name):
    folder = SHIPPED_DIR / name
    assert (folder / "MODEL_CARD.md").is_file() and (folder / "model.safetensors").stat().st_size < 40 * 2**20
    model = codecgen.load(name)
    assert type(model).__name__ == HALLO2[name] and not model.training
    assert model.weights_hash() == json.loads((folder / "config.json").read_text())["weights_hash"]


def test_shipped_hallo2_animates_a_portrait_with_no_training(tmp_path):
    import numpy as np

    from codecgen.generators.hallo2.animate import animate_portrait

    model = codecgen.load("hallo2-small")
    assert model.stage == 2 and model.frame_size == 96
    portrait = torch.rand(3, 96, 96) * 2 - 1
    speech = espeak("hello there", sr=16000)[: 16000 // 2]
    clips = list(animate_portrait(model, portrait, [24, 20, 72, 76], np.asarray(speech), num_steps=1, seed=0))
    frames = torch.cat(clips)
    assert frames.shape == (13, 96, 96, 3) and frames.dtype == torch.uint8 and frames.float().std() > 1
