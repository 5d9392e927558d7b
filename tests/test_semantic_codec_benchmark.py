"""benchmarks/semantic_codec.py end to end (--quick) on two held-out-like files, with a tiny
untrained SemantiCodec (its k-means centroids drawn from its own features), the shipped
HiFi-Codec and Language-Codec, and whichever ffmpeg anchors exist: its tables, probe and JSON."""

import json
import shutil
import sys

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml

from tests.conftest import ROOT, sine_sweep

pytest.importorskip("diffusers")
sys.path.insert(0, str(ROOT / "benchmarks"))

import semantic_codec  # noqa: E402

pytestmark = [pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from codecgen.config import build

    tmp = tmp_path_factory.mktemp("scbench")
    (tmp / "speech" / "val").mkdir(parents=True)
    for i in range(2):
        wave = sine_sweep(1, 24000 + 4000 * i)[0, 0].numpy()
        sf.write(tmp / "speech" / "val" / f"p_real_{i}.wav", wave, 16000)
    torch.manual_seed(0)
    model = build(yaml.safe_load(open(ROOT / "configs" / "semanticodec" / "tiny.yaml"))["model"])
    model.tokenizer.fit_kmeans([sine_sweep(2, model.window_samples) * s for s in (0.3, 0.6, 0.9)], iters=3)
    folder = model.export(tmp / "tiny_codec")
    semantic_codec.main(["--model", str(folder), "--corpus", str(tmp / "speech"), "--steps", "2", "--sampler",
                         "dpm", "--speed-settings", "dpm:2", "--out", str(tmp / "out"), "--quick"])
    return tmp, json.loads((tmp / "out" / "semantic_codec.json").read_text())


def test_quality_rows_hold_the_codec_its_ceilings_and_the_low_rate_codecs(run):
    tmp, result = run
    codecs = {(r["codec"], r["setting"]) for r in result["rows"]}
    ours = [r for r in result["rows"] if r["family"] == "ours" and r["codec"].startswith("SemantiCodec")]
    assert len(ours) == 1 and ours[0]["roundtrip_ok"] and ours[0]["setting"] == "50 tok/s, dpm 2"
    assert 0 < ours[0]["payload_bits"] <= ours[0]["raw_bits"] + 64  # at most the uniform code (+ coder flush)
    assert {s for c, s in codecs if c.startswith("SemantiCodec")} >= {"ceiling: vocoder(mel)",
                                                                        "ceiling: vocoder(VAE(mel))"}
    assert any(s == "n_q=2" for _, s in codecs) and any(s == "n_q=3" for _, s in codecs)
    if shutil.which("ffmpeg"):
        assert any(c in ("Opus", "Codec 2") for c, _ in codecs)
    for r in result["rows"]:
        assert np.isfinite(r["stoi"]) and r["files"] == 2


def test_speed_probe_and_report(run):
    tmp, result = run
    assert [(s["sampler"], s["steps"]) for s in result["speed"]] == [("dpm", 2)] and result["speed"][0]["dec_xrt"] > 0
    names = [p["features"] for p in result["probe"]]
    assert any(n.endswith(" semantic") for n in names) and any("HiFiCodec codes" in n for n in names)
    for p in result["probe"]:
        assert p["train"] == 30 and p["test"] == 10 and 0 <= p["accuracy"] <= 100
    text = (tmp / "out" / "semantic_codec.md").read_text()
    for heading in ("## Decode speed", "## Semantic probe", "## Long files", "## Goals"):
        assert heading in text
    assert "digit probe" in text and "vs Codec 2 1200" in text


def test_bad_arguments_are_one_error():
    for argv in (["--model", "x", "--speed-settings", "dpm"], ["--model", "x", "--probe-voices-train", "12"]):
        with pytest.raises(SystemExit) as error:
            semantic_codec.main(argv)
        assert error.value.code == 2
