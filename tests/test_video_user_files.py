"""Video on users' real files: sound tracks longer or shorter than the pictures (the
container's duration is the longest stream's), variable frame rates, small budgets, and
the sound carried through encode / decode."""

import shutil
import subprocess
import warnings

import pytest

from codecgen.datamodules.video import load_video, probe_video

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg")


def _ffmpeg(*args):
    subprocess.run(["ffmpeg", "-v", "error", "-y", *map(str, args)], check=True)


def _clip(tmp_path, frames=12, audio_seconds=None, name="clip.mkv"):
    """64x64 test pattern at 24 fps, with a 440 Hz tone of ``audio_seconds`` muxed beside it."""
    video = tmp_path / f"pictures_{name}"
    _ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x64:rate=24", "-frames:v", frames, "-c:v", "ffv1", video)
    if audio_seconds is None:
        return video
    tone, out = tmp_path / "tone.wav", tmp_path / name
    _ffmpeg("-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=16000:duration={audio_seconds}", tone)
    _ffmpeg("-i", video, "-i", tone, "-c:v", "copy", "-c:a", "flac", out)
    return out


@pytest.mark.parametrize("audio_seconds", [1.0, 0.2])
def test_frames_counted_against_the_video_stream(tmp_path, audio_seconds):
    """12 frames (0.5 s) beside a 1 s (or 0.2 s) tone: not truncated, every frame loads."""
    clip = _clip(tmp_path, audio_seconds=audio_seconds)
    info = probe_video(clip)
    assert (info.frames, info.fps, info.variable_rate) == (12, 24.0, False)
    assert len(info.other_streams) == 1 and info.other_streams[0].startswith("audio #1 (flac")
    assert load_video(clip).shape == (12, 3, 64, 64)


def test_cut_file_is_still_refused(tmp_path):
    clip = _clip(tmp_path, frames=24)
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(clip.read_bytes()[: clip.stat().st_size // 2])
    with pytest.raises(ValueError, match="cut.mkv"):
        load_video(cut)


def test_variable_frame_rate_is_coded_at_its_average_rate(tmp_path):
    """8 frames at 12 fps then 8 at 24 fps: 16 frames over 1 s -> 16 fps, with a warning."""
    vfr = tmp_path / "vfr.mkv"
    _ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x64:rate=24", "-frames:v", 16, "-vf",
            "setpts='if(lt(N,8),N*2,16+(N-8))/24/TB'", "-fps_mode", "passthrough", "-c:v", "ffv1", vfr)
    with pytest.warns(UserWarning, match="variable frame rate.*16.0"):
        info = probe_video(vfr)
    assert info.variable_rate and info.frames == 16 and abs(info.fps - 16.0) < 0.1
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a constant rate warns nothing
        assert not probe_video(_clip(tmp_path)).variable_rate


def test_budget_solver_picks_strides_that_reach_a_small_budget():
    """256x256 at 0.05 M: --strides 4,2,2,2 alone bottoms out near 85 k parameters."""
    from codecgen.nn.nerv import BudgetError, count_parameters, hnerv_for_budget, nerv_for_budget

    nerv = nerv_for_budget(0.05, (256, 256), [4, 2, 2, 2])
    assert abs(count_parameters(nerv) - 50_000) <= 2_500 and nerv.strides != (4, 2, 2, 2)
    hnerv = hnerv_for_budget(0.05, 200, (256, 256), [4, 2, 2, 2])
    h0 = 256 // (hnerv.factor)
    total = count_parameters(hnerv) + 200 * hnerv.embed_channels * h0 * h0
    assert abs(total - 50_000) <= 2_500
    with pytest.raises(BudgetError, match=r"smallest reachable model.*--model-size 0\.\d+ --strides [\d,]+"):
        nerv_for_budget(0.001, (64, 64), [4, 2, 2, 2])
    assert nerv_for_budget(0.2, (64, 64), [4, 2, 2]).strides == (4, 2, 2)  # reachable: flags kept


def test_encode_warns_of_dropped_sound_and_fits_a_small_budget(tmp_path, capsys):
    import infer

    clip = _clip(tmp_path, audio_seconds=1.0)
    out = tmp_path / "clip.cgc"
    fit = ["--arch", "nerv", "--strides", "4,2,2", "--epochs", "1", "--quant-epochs", "1"]
    assert infer.main(["encode-video", str(clip), str(out), "--model-size", "0.001", *fit]) != 0
    assert "smallest reachable model" in capsys.readouterr().err and not out.exists()
    assert infer.main(["encode-video", str(clip), str(out), "--model-size", "0.03", *fit]) == 0
    assert "dropping audio #1 (flac, 1.00 s)" in capsys.readouterr().err
    back = tmp_path / "back.mkv"
    assert infer.main(["decode", str(out), str(back), "--quiet"]) == 0
    assert probe_video(back).frames == 12


def _sound_seconds(path):
    """Seconds of sound in the first audio stream, by decoding every sample."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        return sum(frame.samples for frame in container.decode(stream)) / stream.rate


def test_sound_track_is_carried_and_muxed_back(tmp_path, capsys):
    import infer
    from codecgen.codecs import bitstream
    from codecgen.codecs.video.nerv import DecodedVideo, with_audio

    clip = _clip(tmp_path, audio_seconds=1.0)  # 0.5 s of pictures, 1 s of sound
    out = tmp_path / "clip.cgc"
    assert infer.main(["encode-video", str(clip), str(out), "--arch", "nerv", "--model-size", "0.03", "--strides",
                       "4,2,2", "--epochs", "1", "--quant-epochs", "1", "--audio-model", "languagecodec-16k",
                       "--quiet"]) == 0
    assert "dropping" not in capsys.readouterr().err
    sound = DecodedVideo(out.read_bytes()).audio
    assert sound["model"] == "languagecodec-16k" and sound["offset"] == 0.0
    for name in ("back.mkv", "back.mp4"):
        back = tmp_path / name
        assert infer.main(["decode", str(out), str(back), "--quiet"]) == 0
        assert probe_video(back).frames == 12
        assert abs(_sound_seconds(back) - 1.0) <= 1024 / 16000  # one AAC frame; FLAC is exact to the hop
    part = tmp_path / "part.mkv"
    assert infer.main(["decode", str(out), str(part), "--frames", "3:9", "--quiet"]) == 0
    assert abs(_sound_seconds(part) - 0.25) <= 0.02 and probe_video(part).frames == 6

    # a sound track whose header names another model than the one that coded it: one error, no output
    header, payload = bitstream.unpack(out.read_bytes())
    wrong = tmp_path / "wrong.cgc"
    wrong.write_bytes(with_audio(out.read_bytes(), sound["file"], "hificodec-16k"))
    bad = tmp_path / "bad.mkv"
    assert infer.main(["decode", str(wrong), str(bad), "--quiet"]) != 0
    assert "use the model that encoded it" in capsys.readouterr().err
    assert not bad.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    header["audio"] = {"model": "languagecodec-16k", "bytes": 1 << 29, "offset": 0.0}
    with pytest.raises(bitstream.BitstreamError, match="audio"):
        DecodedVideo(bitstream.pack(header, payload))


def test_sound_starting_after_the_first_frame_keeps_its_offset(tmp_path):
    import av

    from codecgen.datamodules.video import extract_audio, mux_audio

    pictures = _clip(tmp_path)
    tone, late = tmp_path / "tone.wav", tmp_path / "late.mkv"
    _ffmpeg("-f", "lavfi", "-i", "sine=frequency=440:sample_rate=16000:duration=0.5", tone)
    _ffmpeg("-i", pictures, "-itsoffset", "0.25", "-i", tone, "-c:v", "copy", "-c:a", "flac", late)
    wav = tmp_path / "sound.wav"
    offset = extract_audio(late, wav)
    assert abs(offset - 0.25) < 0.01
    out = mux_audio(pictures, wav, tmp_path / "out.mkv", offset)
    with av.open(str(out)) as container:
        audio = container.streams.audio[0]
        first = next(iter(container.decode(audio)))
        assert abs(float(first.pts * first.time_base) - 0.25) < 0.01
    assert abs(_sound_seconds(out) - 0.5) < 0.01
    assert extract_audio(pictures, tmp_path / "none.wav") is None  # no sound track: nothing to carry
