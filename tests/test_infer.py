"""infer.py on audio (verbs `encode` / `decode`): round trips at any rate / channels, chunking, --n-q, clear errors."""

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import codecgen
import codecgen.nn.entropy
import infer
from codecgen.codecs import bitstream
from codecgen.datamodules.signals import espeak

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def speech_wav(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("audio") / "speech.wav"
    x = espeak("the quick brown fox jumps over the lazy dog near the river bank", sr=16000)
    sf.write(path, x, 16000, subtype="PCM_16")
    return path


def encode(model, src, dst, *extra) -> int:
    return infer.main(["encode", "--model", str(model), str(src), str(dst), "--quiet", *extra])


def decode(model, src, dst, *extra) -> int:
    return infer.main(["decode", "--model", str(model), str(src), str(dst), "--quiet", *extra])


def test_encode_decode_returns_the_input_length(tiny_checkpoint, speech_wav, tmp_path):
    cgc, wav = tmp_path / "a.cgc", tmp_path / "a.wav"
    assert encode(tiny_checkpoint, speech_wav, cgc) == 0
    assert decode(tiny_checkpoint, cgc, wav) == 0
    assert sf.info(str(wav)).frames == sf.info(str(speech_wav)).frames
    assert sf.info(str(wav)).samplerate == 16000
    header, payload = bitstream.read(cgc)
    assert header["model"] == "HiFiCodec" and header["codes_shape"][1] == 4
    # the file holds exactly the codes the model produces for this input
    model = codecgen.load(tiny_checkpoint)
    x = torch.from_numpy(sf.read(str(speech_wav), dtype="float32")[0])[None, None]
    assert torch.equal(model.unpack_codes(header, payload), model.encode(x))


def test_any_rate_and_stereo_come_back_at_the_source_rate_and_length(tiny_checkpoint, speech_wav, tmp_path):
    x, _ = sf.read(str(speech_wav), dtype="float32")
    import torchaudio.functional as AF

    y = AF.resample(torch.from_numpy(x), 16000, 44100).numpy()
    stereo = tmp_path / "stereo44k.flac"
    sf.write(stereo, np.stack([y, 0.5 * y], axis=1), 44100)
    cgc, out = tmp_path / "s.cgc", tmp_path / "s.wav"
    assert encode(tiny_checkpoint, stereo, cgc) == 0
    assert decode(tiny_checkpoint, cgc, out) == 0
    info = sf.info(str(out))
    assert (info.samplerate, info.frames, info.channels) == (44100, len(y), 1)


def test_long_input_is_coded_in_chunks_like_the_whole(tiny_checkpoint, speech_wav, tmp_path):
    model = codecgen.load(tiny_checkpoint)
    model.chunk_seconds, model.context_seconds = 0.3, 0.2  # many chunks on a short file
    from codecgen.datamodules.audio import iter_audio_chunks, load_audio

    chunk, context = model.chunk_plan()
    codes, length = model.encode_chunks(iter_audio_chunks(speech_wav, 16000, chunk, context))
    whole = model.encode(load_audio(speech_wav, 16000)[None])
    assert length == sf.info(str(speech_wav)).frames
    # HiFi-Codec's encoder GroupNorms over time, so its codes depend on the window it sees
    # and chunked codes need not equal whole-file codes; their layout must.
    assert codes.shape == whole.shape
    pieces = list(model.decode_chunks(codes, length))
    assert len(pieces) > 3 and sum(p.shape[-1] for p in pieces) == length
    # the decoder is convolutional only: with context around each chunk, seams vanish
    chunked = torch.cat(pieces, dim=-1)
    full = model.decode(codes, length)[0]
    assert torch.allclose(chunked, full, atol=1e-4)


def test_n_q_lowers_bitrate_and_file_size(tiny_checkpoint, speech_wav, tmp_path):
    full, half = tmp_path / "full.cgc", tmp_path / "half.cgc"
    assert encode(tiny_checkpoint, speech_wav, full) == 0
    assert encode(tiny_checkpoint, speech_wav, half, "--n-q", "2") == 0
    assert bitstream.read(half)[0]["codes_shape"][1] == 2
    assert len(bitstream.read(half)[1]) < len(bitstream.read(full)[1])
    assert half.stat().st_size < full.stat().st_size
    assert decode(tiny_checkpoint, half, tmp_path / "half.wav") == 0
    assert encode(tiny_checkpoint, speech_wav, tmp_path / "bad.cgc", "--n-q", "3") == 2  # GRVQ: whole stages


def test_info_prints_the_header(tiny_checkpoint, speech_wav, tmp_path, capsys):
    cgc = tmp_path / "i.cgc"
    encode(tiny_checkpoint, speech_wav, cgc)
    assert infer.main(["info", str(cgc)]) == 0
    out = capsys.readouterr().out
    assert '"weights_hash"' in out and '"kbps"' in out


def assert_one_line_error(capsys, *words):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:"), err
    for word in words:
        assert word in err[0], err[0]


def test_bad_audio_inputs_fail_cleanly(tiny_checkpoint, tmp_path, capsys):
    out = tmp_path / "out.cgc"
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF" + bytes(range(200)))
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0, dtype=np.float32), 16000)
    nan = tmp_path / "nan.wav"
    sf.write(nan, np.full(4000, np.nan, dtype=np.float32), 16000, subtype="FLOAT")
    for bad, word in [(tmp_path / "missing.wav", "missing.wav"), (corrupt, "corrupt.wav"), (empty, "no audio"), (nan, "NaN")]:
        assert encode(tiny_checkpoint, bad, out) == 2
        assert_one_line_error(capsys, word)
        assert not out.exists()
        assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]  # no temp left behind


def test_existing_output_is_never_overwritten_without_the_flag(tiny_checkpoint, speech_wav, tmp_path, capsys):
    out = tmp_path / "exists.cgc"
    out.write_bytes(b"precious")
    assert encode(tiny_checkpoint, speech_wav, out) == 2
    assert_one_line_error(capsys, "--overwrite")
    assert out.read_bytes() == b"precious"
    assert encode(tiny_checkpoint, speech_wav, out, "--overwrite") == 0
    assert bitstream.read(out)


def test_bad_cgc_files_and_wrong_model_are_refused(tiny_checkpoint, speech_wav, tmp_path, capsys):
    good = tmp_path / "good.cgc"
    encode(tiny_checkpoint, speech_wav, good)
    data = good.read_bytes()
    truncated = tmp_path / "truncated.cgc"
    truncated.write_bytes(data[: len(data) // 2])
    flipped = tmp_path / "flipped.cgc"
    flipped.write_bytes(data[:-10] + bytes([data[-10] ^ 0xFF]) + data[-9:])
    foreign = tmp_path / "foreign.cgc"
    foreign.write_bytes(b"OggS" + data[4:])
    out = tmp_path / "out.wav"
    for bad, word in [(truncated, "truncated"), (flipped, "CRC"), (foreign, "magic")]:
        assert decode(tiny_checkpoint, bad, out) == 2
        assert_one_line_error(capsys, word)
        assert not out.exists()

    # the same architecture with other weights: refused by the weights hash in the header
    other = codecgen.load(tiny_checkpoint)
    with torch.no_grad():
        for p in other.decoder.parameters():
            p.add_(0.01)
    from codecgen import hub

    other_dir = hub.export(other, tmp_path / "other-model")
    assert decode(other_dir, good, out) == 2
    assert_one_line_error(capsys, "weights")
    assert not out.exists()


def test_unsupported_output_and_missing_folder(tiny_checkpoint, speech_wav, tmp_path, capsys):
    good = tmp_path / "good.cgc"
    encode(tiny_checkpoint, speech_wav, good)
    assert decode(tiny_checkpoint, good, tmp_path / "out.mp3") == 2
    assert_one_line_error(capsys, "unsupported")
    assert encode(tiny_checkpoint, speech_wav, tmp_path / "no" / "such" / "dir.cgc") == 2
    assert_one_line_error(capsys, "does not exist")
    assert infer.main(["encode", "--model", "no-such-model", str(speech_wav), str(tmp_path / "x.cgc")]) == 2
    assert_one_line_error(capsys, "no model")


def test_code_prior_travels_in_the_model_not_the_file(tiny_checkpoint, tiny_corpus, speech_wav, tmp_path):
    folder = tmp_path / "with-prior"
    assert infer.main(["fit-prior", "--model", str(tiny_checkpoint), str(tiny_corpus), str(folder), "--quiet"]) == 0
    plain, fitted = codecgen.load(tiny_checkpoint), codecgen.load(folder)
    assert fitted.code_prior.fitted and not plain.code_prior.fitted
    assert fitted.weights_hash() != plain.weights_hash()  # the prior is part of what decodes a file
    x = torch.from_numpy(sf.read(str(speech_wav), dtype="float32")[0])[None, None]
    codes = fitted.encode(x)
    header, payload = fitted.pack_codes(codes, x.shape[-1])
    # the file is no bigger than it would be with the prior (the cheapest code model wins)
    import json

    prior = fitted.code_prior.entropy_model(codes.shape[1])
    with_prior = len(codecgen.nn.entropy.encode(codes, prior)) + len('{"kind":"prior"}')
    assert len(payload) + len(json.dumps(header["entropy"], separators=(",", ":"))) <= with_prior + 8
    assert torch.equal(fitted.unpack_codes(header, payload), codes)
    cgc, wav = tmp_path / "p.cgc", tmp_path / "p.wav"
    assert encode(folder, speech_wav, cgc) == 0
    assert decode(folder, cgc, wav) == 0
    assert decode(tiny_checkpoint, cgc, tmp_path / "other.wav") == 2  # a model without that prior is refused


def test_the_verbs_and_aliases_on_a_trained_checkpoint(tiny_checkpoint, speech_wav, tmp_path, capsys):
    from codecgen.cli import infer_main, train_main

    assert infer.main is infer_main and callable(train_main)  # the package's entry points
    cgc = tmp_path / "v.cgc"
    assert encode(tiny_checkpoint, speech_wav, cgc) == 0
    # an audio file needs its model: one line that says so (no shipped model wrote it)
    assert infer.main(["decode", str(cgc), str(tmp_path / "x.wav"), "--quiet"]) == 2
    assert_one_line_error(capsys, "needs the model", "--model MODEL")
    # the image-era alias decodes audio too, as `decode` does
    out = tmp_path / "alias.wav"
    assert infer.main(["decompress", "--model", str(tiny_checkpoint), str(cgc), str(out), "--quiet"]) == 0
    assert decode(tiny_checkpoint, cgc, tmp_path / "verb.wav") == 0
    assert out.read_bytes() == (tmp_path / "verb.wav").read_bytes()
