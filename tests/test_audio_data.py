"""Tests for the audio datamodule and file readers (codecgen.datamodules.audio / signals)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio.functional as AF

from codecgen.datamodules.audio import (
    AudioDataModule,
    audio_info,
    iter_audio_chunks,
    load_audio,
)
from codecgen.datamodules.corpora.common import Package
from codecgen.datamodules.signals import noise, tone, write_test_corpus

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("corpus")
    write_test_corpus(root, n_files=8, sr=16000, seconds=1.5)
    return root


@pytest.fixture(scope="module")
def stereo_44k(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    """A 44.1 kHz stereo file whose channels differ, and the mono mix it should become."""
    left, right = tone(440.0, 1.3, 44100), noise(1.3, 44100, seed=3)
    path = tmp_path_factory.mktemp("stereo") / "stereo.wav"
    sf.write(path, np.stack([left, right], axis=1), 44100, subtype="FLOAT")
    return path, (left + right) / 2


def _names(files) -> set[str]:
    return {f.path.name for f in files}


def test_split_is_disjoint_complete_and_deterministic(corpus: Path) -> None:
    dm = AudioDataModule(root=str(corpus), segment_seconds=0.5, batch_size=2, val_fraction=0.25)
    dm.setup("fit")
    train, val = _names(dm.train_files), _names(dm.val_files)
    assert train and val and not train & val
    assert train | val == {p.name for p in corpus.glob("*.wav")}
    again = AudioDataModule(root=str(corpus), segment_seconds=0.5, batch_size=2, val_fraction=0.25)
    again.setup("fit")
    assert _names(again.train_files) == train and _names(again.val_files) == val


def test_tiny_val_fraction_still_gives_one_val_file(corpus: Path) -> None:
    dm = AudioDataModule(root=str(corpus), val_fraction=1e-6)
    dm.setup("fit")
    assert len(dm.val_files) == 1 and len(dm.train_files) == 7


def test_train_val_folders_are_used_as_the_split(tmp_path: Path) -> None:
    write_test_corpus(tmp_path / "train", n_files=3, seconds=0.5)
    write_test_corpus(tmp_path / "val", n_files=2, seconds=0.5)
    dm = AudioDataModule(root=str(tmp_path))
    dm.setup("fit")
    assert all(f.path.parent.name == "train" for f in dm.train_files) and len(dm.train_files) == 3
    assert all(f.path.parent.name == "val" for f in dm.val_files) and len(dm.val_files) == 2


def test_batches_are_float32_b1t_and_cut_to_hop(corpus: Path) -> None:
    dm = AudioDataModule(root=str(corpus), segment_seconds=0.51, batch_size=3, hop=320, samples_per_epoch=6)
    dm.setup("fit")
    assert dm.segment_samples == 8000  # 8160 samples rounded down to 25 hops of 320
    batch = next(iter(dm.train_dataloader()))
    assert batch.shape == (3, 1, 8000) and batch.dtype == torch.float32
    assert len(dm.train_dataloader()) == 2  # samples_per_epoch / batch_size, drop_last
    val = next(iter(dm.val_dataloader()))
    assert val.shape[1] == 1 and val.shape[2] % 320 == 0 and val.shape[2] <= 4 * 16000


def test_segment_shorter_than_hop_is_rejected(corpus: Path) -> None:
    with pytest.raises(ValueError, match="shorter than one hop"):
        AudioDataModule(root=str(corpus), segment_seconds=0.01, hop=320)


def test_train_offsets_are_random_and_val_is_fixed(corpus: Path) -> None:
    dm = AudioDataModule(root=str(corpus), segment_seconds=0.25, val_fraction=0.25)
    dm.setup("fit")
    speech = next(i for i, f in enumerate(dm.train_files) if "speech" in f.path.name)
    torch.manual_seed(0)
    draws = [dm.train_set[speech] for _ in range(4)]
    assert any(not torch.equal(draws[0], d) for d in draws[1:])
    assert torch.equal(dm.val_set[0], dm.val_set[0])
    first = load_audio(dm.val_files[0].path, 16000)[:, : dm.val_segment_samples]
    torch.testing.assert_close(dm.val_set[0][:, : first.shape[1]], first)


def test_stereo_44k_is_mixed_down_and_resampled(tmp_path: Path, stereo_44k: tuple[Path, np.ndarray]) -> None:
    path, mono = stereo_44k
    x = load_audio(path, 16000)
    expected = AF.resample(torch.from_numpy(mono).unsqueeze(0), 44100, 16000)
    assert x.shape == expected.shape == (1, int(np.ceil(len(mono) * 16000 / 44100)))
    torch.testing.assert_close(x, expected, atol=1e-5, rtol=0)
    # Through the datamodule: the only file is used for both splits, at 16 kHz.
    (tmp_path / "one").mkdir()
    (tmp_path / "one" / "s.wav").write_bytes(path.read_bytes())
    with pytest.warns(UserWarning, match="only one audio file"):
        dm = AudioDataModule(root=str(tmp_path / "one"), segment_seconds=0.5, batch_size=1)
        dm.setup("fit")
    assert dm.train_set[0].shape == (1, 8000)
    seg = dm.val_set[0]  # the whole 1.3 s file: under the 4 s cap
    assert seg.shape == (1, 20800)
    torch.testing.assert_close(seg, expected[:, :20800], atol=1e-5, rtol=0)


def test_short_files_are_zero_padded_and_flac_is_read(tmp_path: Path) -> None:
    sf.write(tmp_path / "a.flac", tone(300.0, 0.2, 22050), 22050)
    sf.write(tmp_path / "b.wav", tone(500.0, 0.2, 16000), 16000)
    dm = AudioDataModule(root=str(tmp_path), segment_seconds=0.5, val_segment_seconds=0.5, batch_size=1)
    dm.setup("fit")
    for seg in (dm.train_set[0], dm.val_set[0]):
        assert seg.shape == (1, 8000)
        assert seg[:, 3300:].abs().max() == 0 and seg[:, :3000].abs().max() > 0.1


def test_empty_files_are_skipped_with_a_warning(tmp_path: Path) -> None:
    write_test_corpus(tmp_path, n_files=3, seconds=0.5)
    sf.write(tmp_path / "empty.wav", np.zeros(0, dtype=np.float32), 16000)
    with pytest.warns(UserWarning, match="empty"):
        dm = AudioDataModule(root=str(tmp_path))
        dm.setup("fit")
    assert "empty.wav" not in _names(dm.train_files) | _names(dm.val_files)


def test_missing_and_empty_roots_raise_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="prepare speech"):
        AudioDataModule(root=str(tmp_path / "nope")).setup("fit")
    (tmp_path / "notes.txt").write_text("no audio here")
    with pytest.raises(ValueError, match="no wav/flac/ogg files under .*prepare speech"):
        AudioDataModule(root=str(tmp_path)).setup("fit")


def test_corrupt_file_in_corpus_is_named_in_the_error(tmp_path: Path) -> None:
    write_test_corpus(tmp_path, n_files=2, seconds=0.5)
    (tmp_path / "broken.wav").write_bytes(np.random.default_rng(0).bytes(2000))
    with pytest.raises(ValueError, match="broken.wav"):
        AudioDataModule(root=str(tmp_path)).setup("fit")


def _reassemble(path: Path, sr: int, chunk: int, context: int) -> torch.Tensor:
    parts = []
    for x, left, n_valid in iter_audio_chunks(path, sr, chunk, context):
        assert x.dtype == torch.float32 and x.shape[0] == 1
        assert 0 <= left <= context and 0 <= x.shape[1] - left - n_valid <= context
        assert 0 < n_valid <= chunk
        parts.append(x[:, left : left + n_valid])
    return torch.cat(parts, dim=1)


@pytest.mark.parametrize("chunk, context", [(1000, 0), (3333, 500), (7000, 4000), (10**6, 100)])
def test_chunks_reassemble_exactly_at_the_same_rate(corpus: Path, chunk: int, context: int) -> None:
    path = sorted(corpus.glob("*speech*.wav"))[0]
    whole = load_audio(path, 16000)
    assert torch.equal(_reassemble(path, 16000, chunk, context), whole)


@pytest.mark.parametrize("sr, chunk, context", [(16000, 1000, 0), (16000, 2999, 320), (24000, 4096, 1024)])
def test_chunks_reassemble_closely_when_resampled(
    stereo_44k: tuple[Path, np.ndarray], sr: int, chunk: int, context: int
) -> None:
    path, _ = stereo_44k
    whole = load_audio(path, sr)
    got = _reassemble(path, sr, chunk, context)
    assert got.shape == whole.shape
    torch.testing.assert_close(got, whole, atol=1e-3, rtol=0)


def test_chunk_context_is_real_signal(corpus: Path) -> None:
    path = sorted(corpus.glob("*speech*.wav"))[0]
    whole = load_audio(path, 16000)
    for i, (x, left, n_valid) in enumerate(iter_audio_chunks(path, 16000, 5000, 700)):
        start = i * 5000 - left
        assert torch.equal(x, whole[:, start : start + x.shape[1]])


def test_audio_info_and_its_errors(tmp_path: Path, stereo_44k: tuple[Path, np.ndarray]) -> None:
    path, mono = stereo_44k
    assert audio_info(path) == (44100, len(mono), 2)
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(np.random.default_rng(1).bytes(4096))
    with pytest.raises(ValueError, match="corrupt.wav"):
        audio_info(corrupt)
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0, dtype=np.float32), 16000)
    with pytest.raises(ValueError, match="no audio frames"):
        audio_info(empty)
    with pytest.raises(ValueError):
        next(iter_audio_chunks(empty, 16000, 1000))
    with pytest.raises(FileNotFoundError):
        load_audio(tmp_path / "missing.wav", 16000)


# --------------------------------------------------------------------------- speech corpus builder


def _prompt_package(root: Path, prefix: str, n: int) -> Package:
    """An extracted prompt package like the real one of ``prefix`` (it-menardi: 8 kHz WAV, es-co:
    8 kHz GSM), with ``n`` 0.3-s tones, a silence/ folder and an empty prompt (both skipped)."""
    import shutil
    import subprocess

    from codecgen.datamodules.corpora.speech import PROMPT_PACKAGES

    spec = next(p for p in PROMPT_PACKAGES if p.prefix == prefix)
    sounds = root / "usr/share/asterisk/sounds" / ("it_IT_f_Menardi" if prefix == "it-menardi" else "es")
    for sub in ("digits", "silence"):
        (sounds / sub).mkdir(parents=True)
    one = root / f"one{spec.suffix}"
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-f", "lavfi", "-i", "sine=f=300:d=0.3", "-ar", "8000",
                    "-ac", "1", "-f", {".wav": "wav", ".gsm": "gsm"}[spec.suffix], str(one)], check=True)
    for i in range(n):
        shutil.copy(one, sounds / ("digits" if i % 2 else "") / f"prompt{i:02d}{spec.suffix}")
    shutil.copy(one, sounds / "silence" / f"1{spec.suffix}")
    (sounds / f"empty{spec.suffix}").touch()
    doc = root / "usr/share/doc" / spec.package
    doc.mkdir(parents=True)
    (doc / "copyright").write_text(f"copyright of {spec.package}\n")
    return Package(spec.package, "1.0", root)


@pytest.mark.parametrize("prefix", ["it-menardi", "es-co"])
def test_8khz_prompts_become_16khz_band_limited_wavs(tmp_path: Path, prefix: str) -> None:
    import shutil

    from codecgen.datamodules.corpora.speech import add_asterisk

    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg is not installed")
    pkg = _prompt_package(tmp_path / "pkg", prefix, 6)
    for split in ("train", "val"):
        (tmp_path / "out" / split).mkdir(parents=True)
    src = add_asterisk(prefix, pkg, tmp_path / "out", min_val=2, workers=2)
    files = sorted((tmp_path / "out").rglob("*.wav"))
    assert len(files) == 6 and src.files["val"] >= 2 and src.files["train"] + src.files["val"] == 6
    assert all(f.name.startswith(f"{prefix}_real_") and "prompt" in f.name for f in files)  # no silence/, no empty
    assert {f.name for f in files} >= {f"{prefix}_real_digits-prompt01.wav", f"{prefix}_real_prompt00.wav"}
    info = sf.info(str(files[0]))
    assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
    assert abs(info.duration - 0.3) < 0.03
    x, _ = sf.read(files[0])
    spectrum = np.abs(np.fft.rfft(x)) ** 2
    assert spectrum[len(spectrum) // 2 :].sum() < 1e-4 * spectrum.sum()  # nothing above 4 kHz: a clean upsampling
    expected = {"it-menardi": ("Paola Dal Zot", "CC-BY-SA-3.0"), "es-co": ("July E. Jiménez", "GPL-2")}[prefix]
    assert expected[0] in src.credit and src.licence.startswith(expected[1])


def test_speech_corpus_credits_the_prompt_packages_and_warns_for_missing_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    from codecgen.datamodules.corpora import speech

    if shutil.which("ffmpeg") is None or shutil.which("espeak-ng") is None:
        pytest.skip("ffmpeg and espeak-ng are needed")
    fakes = {p: _prompt_package(tmp_path / p, p, 6) for p in ("it-menardi", "es-co")}
    by_package = {pkg.name: pkg for pkg in fakes.values()}

    def fetch(name: str, cache: Path):
        if name not in by_package:
            raise RuntimeError("no network in tests")
        return by_package[name]

    monkeypatch.setattr(speech, "fetch_deb", fetch)
    out = speech.build_speech(tmp_path / "speech", minutes=0, espeak_minutes=0.02, workers=2)
    val = {f.name for f in (out / "val").glob("*.wav")}
    assert any(n.startswith("it-menardi_real_") for n in val) and any(n.startswith("es-co_real_") for n in val)
    readme = (out / "README.md").read_text()
    assert "could not get Debian package asterisk-core-sounds-en-g722" in readme
    assert "`asterisk-prompt-it-menardi-wav` 1.0 (it_IT_f_Menardi)" in readme and "Paola Dal Zot" in readme
    assert "`asterisk-prompt-es-co` 1.0 (es)" in readme and "| GPL-2 |" in readme
    assert (out / "licenses" / "asterisk-prompt-es-co.copyright").is_file()
    assert (out / "licenses" / "asterisk-prompt-it-menardi-wav.copyright").is_file()
    assert (out / ".complete").exists()
