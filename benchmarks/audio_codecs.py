"""Audio codec benchmark: our codecs at every bitrate they support next to Opus and Codec 2.

One run, same process, same held-out files, one thread:

    python benchmarks/audio_codecs.py [--models hificodec-16k languagecodec-16k]
        [--corpus data/speech] [--limit N] [--long-minutes 10] [--out benchmarks/results]

``--models`` takes anything ``codecgen.load`` takes (shipped names, exported folders,
``.ckpt`` files). Files: ``CORPUS/val/*.wav`` in sorted order; ``*_real_*`` are recorded
prompts (main table), ``*espeak*`` synthetic (second table); ``--limit N`` keeps the first
N of each. Prints markdown tables (rate-distortion, bits, long files, goals) and writes
``OUT/audio_codecs.md``, ``OUT/audio_codecs.json`` (raw numbers, per file) and
``OUT/audio_rd.png``.

- Ours: ``model.encode`` / ``model.decode`` timed in-process (model load excluded), the
  ``.cgc`` bytes from ``bitstream.pack(*model.pack_codes(...))`` (file and payload-only
  kbps), and a bits check: ideal ``entropy.information_bits`` under the code model the file
  carries vs the real payload vs the raw ``frames x sum log2 K``; plus a "corpus prior"
  variant (one histogram fitted leave-one-out on the codes of the other held-out files,
  not stored in the file) showing what a model-level prior would save.
- Anchors: ffmpeg libopus (``-application voip``, Ogg) and libcodec2 (8 kHz mono, ``.c2``)
  run as subprocesses; their times minus the time of an ffmpeg no-op on a tiny file.
- Long files: ``infer.py encode`` / ``decode`` as subprocesses on concatenated held-out
  audio of 1, 3 and ``--long-minutes`` minutes: wall time and the child's peak RSS
  (``/usr/bin/time -f %M``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_var] = "1"  # one thread everywhere, children included

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402
import torch  # noqa: E402
from tqdm import tqdm  # noqa: E402

from _common import fmt, plain, table  # noqa: E402
from _common import machine_info as common_machine_info, one_thread  # noqa: E402

import codecgen  # noqa: E402
from codecgen import metrics  # noqa: E402
from codecgen.codecs import bitstream  # noqa: E402
from codecgen.nn import entropy  # noqa: E402

OPUS_KBPS = (6, 9, 12)
CODEC2_MODES = (1200, 2400, 3200)
FFMPEG = ["ffmpeg", "-nostdin", "-hide_banner", "-v", "error", "-y"]
METRIC_KEYS = ("pesq", "stoi", "mel", "si_sdr")
MAX_DELAY_S = 0.05  # search +-50 ms for a codec's delay
SPEED_CLIP_S = 60.0  # anchors' speed is timed on this much concatenated held-out speech
REPEATS_OURS, REPEATS_ANCHOR = 2, 3  # timings: the fastest of these many runs
GOAL_ENC_XRT, GOAL_DEC_XRT, GOAL_BITS_TOL = 20.0, 10.0, 0.02


# ----------------------------------------------------------------------------- set-up
def machine_info() -> dict:
    ffmpeg_version = "absent"
    if shutil.which("ffmpeg"):
        out = subprocess.run(["ffmpeg", "-version"], capture_output=True, text=True).stdout
        ffmpeg_version = out.split("\n", 1)[0].replace("ffmpeg version ", "").split(" ")[0]
    return common_machine_info() | {"ffmpeg": ffmpeg_version}


def list_files(corpus: Path, limit: int | None) -> dict[str, list[Path]]:
    folder = corpus / "val" if (corpus / "val").is_dir() else corpus
    files = sorted(folder.glob("*.wav"))
    if not files:
        sys.exit(f"error: no held-out .wav files under {folder}")
    sets = {"real": [f for f in files if "_real_" in f.name], "espeak": [f for f in files if "espeak" in f.name]}
    if limit is not None:
        sets = {k: v[:limit] for k, v in sets.items()}
    return sets


def read_mono(path: Path) -> tuple[np.ndarray, int]:
    wav, sr = sf.read(str(path), dtype="float32", always_2d=True)
    return wav.mean(axis=1), sr


def resample(x: np.ndarray, sr: int, target: int) -> np.ndarray:
    if sr == target:
        return x
    import torchaudio.functional as AF

    return AF.resample(torch.from_numpy(np.ascontiguousarray(x)), sr, target).numpy()


def score(ref: np.ndarray, deg: np.ndarray, sr: int) -> dict:
    return {"pesq": metrics.pesq_wb(ref, deg, sr), "stoi": metrics.stoi(ref, deg, sr),
            "mel": metrics.mel_distance(ref, deg, sr), "si_sdr": metrics.si_sdr(ref, deg)}


def estimate_delay(pairs: list[tuple[np.ndarray, np.ndarray]], max_lag: int) -> int:
    """The one lag (samples, positive = decoded output late) that maximises the sum over
    files of the normalised cross-correlation: a codec setting's constant delay."""
    lags = np.arange(-max_lag, max_lag + 1)
    total = np.zeros(len(lags))
    for ref, deg in pairs:
        nfft = 1 << (len(ref) + len(deg)).bit_length()
        corr = np.fft.irfft(np.conj(np.fft.rfft(ref, nfft)) * np.fft.rfft(deg, nfft), nfft)  # sum ref[n] deg[n+k]
        total += corr[lags % nfft] / (np.linalg.norm(ref) * np.linalg.norm(deg) + 1e-12)
    return int(lags[np.argmax(total)])


def align(ref: np.ndarray, deg: np.ndarray, delay: int) -> tuple[np.ndarray, np.ndarray]:
    if delay > 0:
        deg = deg[delay:]
    elif delay < 0:
        ref = ref[-delay:]
    n = min(len(ref), len(deg))
    return ref[:n], deg[:n]


def score_setting(records: list[dict], pairs: list[tuple[np.ndarray, np.ndarray]], sr: int) -> None:
    """Shift every decoded file by the setting's delay, then score it (in place)."""
    delay = estimate_delay(pairs, int(MAX_DELAY_S * sr))
    for record, (ref, deg) in zip(records, pairs):
        record["delay_ms"] = 1000 * delay / sr
        record.update(score(*align(ref, deg, delay), sr))


def valid_n_q(quantizer) -> list[int]:
    """Every number of codebooks the quantizer can code with."""
    n = quantizer.n_codebooks
    if getattr(quantizer, "groups", None):  # GRVQ: whole stages across all groups
        return list(range(quantizer.groups, n + 1, quantizer.groups))
    if getattr(quantizer, "n_masked", None):  # MCRVQ: the masked stages always run
        return list(range(quantizer.n_masked, n + 1))
    return list(range(getattr(quantizer, "min_n_q", 1), n + 1))


# ----------------------------------------------------------------------------- ours
def bench_ours(model, label: str, sets: dict[str, list[Path]], n_qs: list[int] | None = None) -> tuple[list[dict], dict]:
    """Per-file records for every valid n_q (or those of ``n_qs``), and the codes (for the corpus prior)."""
    records, codes_by = [], {}
    sr_model = model.sample_rate
    warm = torch.zeros(1, 1, sr_model)
    warm[..., ::97] = 0.1
    n_qs = valid_n_q(model.quantizer) if n_qs is None else n_qs
    for n_q in n_qs:  # first calls allocate; keep them out of the timings
        model.decode(model.encode(warm, n_q=n_q))
    todo = [(s, f) for s in sets for f in sets[s]]
    for n_q in n_qs:
        sizes = model.quantizer.codebook_sizes[:n_q]
        setting, pairs = [], []
        for subset, path in tqdm(todo, desc=f"{label} n_q={n_q}", file=sys.stderr, leave=False):
            ref, sr = read_mono(path)
            x = torch.from_numpy(np.ascontiguousarray(resample(ref, sr, sr_model)))[None, None]
            t_enc = t_dec = math.inf
            for _ in range(REPEATS_OURS):
                t0 = time.perf_counter()
                codes = model.encode(x, n_q=n_q)
                t_enc = min(t_enc, time.perf_counter() - t0)
                t0 = time.perf_counter()
                y = model.decode(codes, x.shape[-1])
                t_dec = min(t_dec, time.perf_counter() - t0)
            t0 = time.perf_counter()
            header, payload = model.pack_codes(codes, x.shape[-1], sr, len(ref))
            data = bitstream.pack(header, payload)
            t_pack = time.perf_counter() - t0
            back = model.unpack_codes(*bitstream.unpack(data))  # the file must give the codes back exactly
            code_model = model.code_model(header)
            table_bytes = len(header["entropy"].get("levels", ""))
            pairs.append((ref, resample(y[0, 0].clamp(-1, 1).numpy(), sr_model, sr)))
            codes_by[(n_q, path.name)] = codes.cpu()
            setting.append({
                "codec": label, "family": "ours", "setting": f"n_q={n_q}", "n_q": n_q, "subset": subset,
                "file": path.name, "seconds": len(ref) / sr,
                "nominal_kbps": model.bitrate(n_q) / 1000,
                "file_bytes": len(data), "payload_bytes": len(payload), "table_bytes": table_bytes,
                "enc_s": t_enc, "dec_s": t_dec, "pack_s": t_pack, "roundtrip_ok": bool(torch.equal(back.cpu(), codes.cpu())),
                "code_model": code_model.kind, "frames": codes.shape[-1],
                "est_bits": entropy.information_bits(codes, code_model),
                "raw_bits": codes.shape[-1] * sum(math.log2(k) for k in sizes),
            })
        score_setting(setting, pairs, sr)
        records += setting
    return records, codes_by


def corpus_prior(records: list[dict], codes_by: dict, model) -> None:
    """Leave-one-out: one histogram per codebook from the codes of every other held-out
    file (both subsets), then each file's ideal bits and real payload under it."""
    for n_q in sorted({r["n_q"] for r in records}):
        rows = [r for r in records if r["n_q"] == n_q]
        sizes = model.quantizer.codebook_sizes[:n_q]
        counts = {r["file"]: np.stack([np.bincount(c, minlength=k) for c, k in
                                       zip(codes_by[(n_q, r["file"])][0].numpy(), sizes)]) for r in rows}
        total = sum(counts.values())
        for r in rows:
            codes = codes_by[(n_q, r["file"])]
            others = total - counts[r["file"]]
            prior = entropy.EntropyModel("histogram", list(sizes), [entropy.quantize_counts(c) for c in others])
            r["prior_est_bits"] = entropy.information_bits(codes, prior)
            r["prior_payload_bytes"] = len(entropy.encode(codes, prior))


# ----------------------------------------------------------------------------- anchors
def ffmpeg_codecs() -> tuple[set[str], set[str]]:
    if not shutil.which("ffmpeg"):
        return set(), set()

    def names(flag: str) -> set[str]:
        out = subprocess.run(["ffmpeg", "-hide_banner", flag], capture_output=True, text=True).stdout
        return {line.split()[1] for line in out.splitlines()[1:] if len(line.split()) > 1}

    return names("-encoders"), names("-decoders")


def timed(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    return time.perf_counter() - t0


def ffmpeg_noop_seconds(tmp: Path) -> float:
    """Median wall time of ffmpeg reading a 0.1 s wav into the null muxer: process start-up."""
    tiny = tmp / "tiny.wav"
    sf.write(str(tiny), np.zeros(1600, dtype=np.float32), 16000)
    return statistics.median(timed(FFMPEG + ["-threads", "1", "-i", str(tiny), "-f", "null", "-"]) for _ in range(7))


def ogg_payload_bytes(data: bytes) -> int:
    """Bytes of the Opus audio packets in an Ogg Opus file (no Ogg pages, no OpusHead/OpusTags)."""
    packets, current, pos = [], 0, 0
    while pos + 27 <= len(data):
        if data[pos : pos + 4] != b"OggS":
            raise ValueError("not an Ogg stream")
        n_seg = data[pos + 26]
        lacing = data[pos + 27 : pos + 27 + n_seg]
        pos += 27 + n_seg + sum(lacing)
        for size in lacing:
            current += size
            if size < 255:
                packets.append(current)
                current = 0
    return sum(packets[2:])


def codec2_payload_bytes(data: bytes) -> int:
    if data[:3] != b"\xc0\xde\xc2":
        raise ValueError("not a .c2 file")
    return len(data) - 7  # magic (3), version (2), mode (1), flags (1)


def anchor_specs(encoders: set[str], decoders: set[str], opus_kbps=OPUS_KBPS, codec2_modes=CODEC2_MODES) -> list[dict]:
    """ffmpeg settings of the anchors found (Codec 2 modes: 3200 ... 1200 or "700C")."""
    specs = []
    if "libopus" in encoders and ({"libopus", "opus"} & decoders):
        for k in opus_kbps:
            specs.append({"codec": "Opus", "setting": f"{k}k voip", "nominal_kbps": float(k), "ext": ".ogg",
                          "enc": ["-c:a", "libopus", "-b:a", f"{k}k", "-application", "voip"],
                          "payload": ogg_payload_bytes})
    else:
        print("ffmpeg has no libopus encoder/decoder: skipping the Opus anchor", file=sys.stderr)
    if "libcodec2" in encoders and "libcodec2" in decoders:
        for mode in codec2_modes:
            bps = int(str(mode).rstrip("C"))
            specs.append({"codec": "Codec 2", "setting": f"mode {mode}", "nominal_kbps": bps / 1000, "ext": ".c2",
                          "enc": ["-ar", "8000", "-ac", "1", "-c:a", "libcodec2", "-mode", str(mode)],
                          "payload": codec2_payload_bytes})
    else:
        print("ffmpeg has no libcodec2 encoder/decoder: skipping the Codec 2 anchor", file=sys.stderr)
    return specs


def ffmpeg_round_trip(spec: dict, src: Path, coded: Path, back: Path, sr: int) -> tuple[float, float]:
    t_enc = timed(FFMPEG + ["-threads", "1", "-i", str(src), *spec["enc"], "-threads", "1", str(coded)])
    t_dec = timed(FFMPEG + ["-threads", "1", "-i", str(coded), "-ar", str(sr), "-ac", "1", "-threads", "1", str(back)])
    return t_enc, t_dec


def bench_anchors(specs: list[dict], sets: dict[str, list[Path]], tmp: Path, clip: Path | None,
                  noop_s: float) -> tuple[list[dict], list[dict]]:
    """Per-file records (quality, size, per-file times) and one speed row per setting,
    timed on ``clip`` (start-up amortised, then the no-op time subtracted)."""
    records, speed = [], []
    todo = [(s, f) for s in sets for f in sets[s]]
    for spec in specs:
        label = f"{spec['codec']} {spec['setting']}"
        coded, back = tmp / f"anchor{spec['ext']}", tmp / "anchor_back.wav"
        setting, pairs = [], []
        for subset, path in tqdm(todo, desc=label, file=sys.stderr, leave=False):
            ref, sr = read_mono(path)
            t_enc, t_dec = ffmpeg_round_trip(spec, path, coded, back, sr)
            data = coded.read_bytes()
            deg, sr2 = read_mono(back)
            assert sr2 == sr, (sr2, sr)
            pairs.append((ref, deg))
            setting.append({
                "codec": spec["codec"], "family": "anchor", "setting": spec["setting"], "subset": subset,
                "file": path.name, "seconds": len(ref) / sr, "nominal_kbps": spec["nominal_kbps"],
                "file_bytes": len(data), "payload_bytes": spec["payload"](data),
                "enc_s": t_enc, "dec_s": t_dec,
            })
        score_setting(setting, pairs, sr)
        records += setting
        if clip is not None:
            info = sf.info(str(clip))
            runs = [ffmpeg_round_trip(spec, clip, coded, back, info.samplerate) for _ in range(REPEATS_ANCHOR)]
            enc, dec = min(r[0] for r in runs), min(r[1] for r in runs)
            speed.append({"codec": spec["codec"], "setting": spec["setting"], "clip_seconds": info.duration,
                          "enc_s": enc, "dec_s": dec, "noop_s": noop_s,
                          "enc_xrt": info.duration / max(enc - noop_s, 1e-6),
                          "dec_xrt": info.duration / max(dec - noop_s, 1e-6),
                          "enc_xrt_raw": info.duration / enc, "dec_xrt_raw": info.duration / dec})
    return records, speed


# ----------------------------------------------------------------------------- summary
def summarise(records: list[dict], speed: list[dict]) -> list[dict]:
    """One row per codec x setting x subset: rates and our speeds over the summed
    duration, anchors' speeds from the speed clip, metrics as means over files (NaN PESQ
    excluded and counted)."""
    clip = {(r["codec"], r["setting"]): r for r in speed}
    groups: dict[tuple, list[dict]] = {}
    for r in records:
        groups.setdefault((r["codec"], r["setting"], r["subset"]), []).append(r)
    rows = []
    for (codec, setting, subset), rs in groups.items():
        seconds = sum(r["seconds"] for r in rs)
        n = len(rs)
        enc_s, dec_s = sum(r["enc_s"] for r in rs), sum(r["dec_s"] for r in rs)
        row = {"codec": codec, "setting": setting, "subset": subset, "family": rs[0]["family"],
               "n_q": rs[0].get("n_q"), "files": n, "seconds": seconds, "nominal_kbps": rs[0]["nominal_kbps"],
               "kbps": 8 * sum(r["file_bytes"] for r in rs) / seconds / 1000,
               "payload_kbps": 8 * sum(r["payload_bytes"] for r in rs) / seconds / 1000,
               "kbps_mean_per_file": statistics.fmean(8 * r["file_bytes"] / r["seconds"] / 1000 for r in rs),
               "delay_ms": rs[0]["delay_ms"], "enc_s": enc_s, "dec_s": dec_s,
               "enc_xrt": seconds / enc_s, "dec_xrt": seconds / dec_s}
        if row["family"] == "anchor":  # per-file ffmpeg calls are mostly start-up: use the clip
            c = clip.get((codec, setting))
            row["enc_xrt"], row["dec_xrt"] = (c["enc_xrt"], c["dec_xrt"]) if c else (float("nan"), float("nan"))
        for key in METRIC_KEYS:
            values = [r[key] for r in rs if not math.isnan(r[key])]
            row[key] = statistics.fmean(values) if values else float("nan")
            row[f"{key}_n"] = len(values)
        if row["family"] == "ours":
            row["roundtrip_ok"] = all(r["roundtrip_ok"] for r in rs)
            for key in ("est_bits", "raw_bits"):
                row[key] = sum(r[key] for r in rs)
            row["payload_bits"] = 8 * sum(r["payload_bytes"] for r in rs)
            row["file_bits"] = 8 * sum(r["file_bytes"] for r in rs)
            row["table_bits"] = 8 * sum(r["table_bytes"] for r in rs)
            row["histogram_files"] = sum(r["code_model"] == "histogram" for r in rs)
            if all("prior_est_bits" in r for r in rs):
                row["prior_est_bits"] = sum(r["prior_est_bits"] for r in rs)
                row["prior_payload_bits"] = 8 * sum(r["prior_payload_bytes"] for r in rs)
        rows.append(row)
    return rows


def rd_table(rows: list[dict], subset: str, speed: bool) -> str:
    header = ["codec", "setting", "nominal kbps", "kbps (file)", "kbps (payload)", "PESQ-WB", "STOI",
              "mel dist", "SI-SDR dB", "delay ms"] + (["enc xRT", "dec xRT"] if speed else [])
    body = []
    for r in sorted((r for r in rows if r["subset"] == subset), key=lambda r: (r["family"] != "ours", r["codec"], r["nominal_kbps"])):
        pesq = fmt(r["pesq"]) + ("" if r["pesq_n"] == r["files"] else f" ({r['pesq_n']}/{r['files']})")
        line = [r["codec"], r["setting"], fmt(r["nominal_kbps"]), fmt(r["kbps"]), fmt(r["payload_kbps"]), pesq,
                fmt(r["stoi"], 3), fmt(r["mel"], 3), fmt(r["si_sdr"], 1), fmt(r["delay_ms"], 1)]
        if speed:
            line += [fmt(r["enc_xrt"], 1), fmt(r["dec_xrt"], 1)]
        body.append(line)
    return table(header, body)


def bits_table(rows: list[dict], subset: str) -> str:
    header = ["codec", "n_q", "files (histogram)", "ideal bits", "payload bits", "payload/ideal", "raw bits",
              "payload/raw", "(payload+table)/raw", "file/raw", "prior ideal bits", "prior payload bits", "prior payload/raw",
              "prior payload kbps", "file round trip"]
    body = []
    for r in sorted((r for r in rows if r["subset"] == subset and r["family"] == "ours"), key=lambda r: (r["codec"], r["n_q"])):
        prior = "prior_payload_bits" in r
        body.append([
            r["codec"], str(r["n_q"]), f"{r['files']} ({r['histogram_files']})", f"{r['est_bits']:.0f}",
            str(r["payload_bits"]), fmt(r["payload_bits"] / r["est_bits"], 4), f"{r['raw_bits']:.0f}",
            fmt(r["payload_bits"] / r["raw_bits"], 4), fmt((r["payload_bits"] + r["table_bits"]) / r["raw_bits"], 4),
            fmt(r["file_bits"] / r["raw_bits"], 3),
            f"{r['prior_est_bits']:.0f}" if prior else "-", str(r["prior_payload_bits"]) if prior else "-",
            fmt(r["prior_payload_bits"] / r["raw_bits"], 4) if prior else "-",
            fmt(r["prior_payload_bits"] / r["seconds"] / 1000, 3) if prior else "-",
            "exact" if r["roundtrip_ok"] else "MISMATCH",
        ])
    return table(header, body)


# ----------------------------------------------------------------------------- long files
def build_long_wavs(sets_all: list[Path], minutes: list[float], tmp: Path, prefix: str = "long") -> dict[float, Path]:
    """Held-out files concatenated (in order, repeated as needed) to each length."""
    sr = sf.info(str(sets_all[0])).samplerate
    pieces = []
    need = int(max(minutes) * 60 * sr)
    have, i = 0, 0
    while have < need:
        wav, file_sr = read_mono(sets_all[i % len(sets_all)])
        wav = resample(wav, file_sr, sr)
        pieces.append(wav)
        have += len(wav)
        i += 1
    audio = np.concatenate(pieces)
    out = {}
    for m in minutes:
        path = tmp / f"{prefix}_{m:g}min.wav"
        sf.write(str(path), audio[: int(m * 60 * sr)], sr, subtype="PCM_16")
        out[m] = path
    return out


def run_child(cmd: list[str], tmp: Path) -> tuple[float, float]:
    """(wall seconds, peak RSS in MiB) of one child process, via /usr/bin/time -f %M."""
    stats = tmp / "time.txt"
    t0 = time.perf_counter()
    proc = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", str(stats), *cmd], cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")
    peak_kib = int(stats.read_text().strip().splitlines()[-1])
    return wall, peak_kib / 1024


def bench_long(models: dict[str, str], wavs: dict[float, Path], tmp: Path, decode_args: tuple[str, ...] = ()) -> list[dict]:
    rows = []
    jobs = [(label, m) for label in models for m in sorted(wavs)]
    for label, minutes in tqdm(jobs, desc="long files", file=sys.stderr, leave=False):
        src = wavs[minutes]
        coded, back = tmp / "long.cgc", tmp / "long_back.wav"
        for p in (coded, back):
            p.unlink(missing_ok=True)
        infer = [sys.executable, str(ROOT / "infer.py")]
        enc_wall, enc_rss = run_child(infer + ["encode", "--model", models[label], str(src), str(coded), "--quiet"], tmp)
        dec_wall, dec_rss = run_child(infer + ["decode", "--model", models[label], str(coded), str(back), "--quiet",
                                               *decode_args], tmp)
        seconds = sf.info(str(src)).frames / sf.info(str(src)).samplerate
        rows.append({"codec": label, "minutes": minutes, "seconds": seconds,
                     "kbps": 8 * coded.stat().st_size / seconds / 1000,
                     "enc_wall_s": enc_wall, "enc_peak_rss_mib": enc_rss, "enc_xrt": seconds / enc_wall,
                     "dec_wall_s": dec_wall, "dec_peak_rss_mib": dec_rss, "dec_xrt": seconds / dec_wall,
                     "length_ok": sf.info(str(back)).frames == sf.info(str(src)).frames})
    return rows


def long_table(rows: list[dict]) -> str:
    header = ["codec", "minutes", "kbps (file)", "encode s", "encode xRT", "encode peak RSS MiB",
              "decode s", "decode xRT", "decode peak RSS MiB", "length kept"]
    return table(header, [[r["codec"], f"{r['minutes']:g}", fmt(r["kbps"], 3), fmt(r["enc_wall_s"], 1),
                           fmt(r["enc_xrt"], 1), f"{r['enc_peak_rss_mib']:.0f}", fmt(r["dec_wall_s"], 1),
                           fmt(r["dec_xrt"], 1), f"{r['dec_peak_rss_mib']:.0f}", "yes" if r["length_ok"] else "NO"]
                          for r in rows])


# ----------------------------------------------------------------------------- goals
def goals(rows: list[dict], long_rows: list[dict]) -> list[str]:
    real = [r for r in rows if r["subset"] == "real"]
    ours = [r for r in real if r["family"] == "ours"]
    opus = [r for r in real if r["codec"] == "Opus"]
    codec2 = [r for r in real if r["codec"] == "Codec 2" and r["setting"] == "mode 3200"]
    lines = []

    def versus(a: dict, b: dict, key: str, digits: int) -> str:
        if math.isnan(a[key]) or math.isnan(b[key]):
            return f"{key.upper()} n/a"
        d = a[key] - b[key]
        return (f"{key.upper()} {a[key]:.{digits}f} vs {b[key]:.{digits}f} "
                f"({d:+.{digits}f}: {'beats' if d > 0 else 'does NOT beat'})")

    for codec in sorted({r["codec"] for r in ours}):
        mine = [r for r in ours if r["codec"] == codec]
        top = max(mine, key=lambda r: r["n_q"])
        name = f"{codec} {top['setting']} ({top['kbps']:.2f} kbps)"
        if opus:
            o = min(opus, key=lambda r: abs(r["kbps"] - top["kbps"]))
            lines.append(f"- {name} vs Opus {o['setting']} ({o['kbps']:.2f} kbps, the closest rate): "
                         f"{versus(top, o, 'pesq', 2)}; {versus(top, o, 'stoi', 3)}")
        else:
            lines.append(f"- {name} vs Opus: Opus not measured (no libopus)")
        low = [r for r in mine if r["nominal_kbps"] <= 3.2 + 1e-9]
        if codec2 and low:
            r = max(low, key=lambda r: r["nominal_kbps"])
            c = codec2[0]
            lines.append(f"- {codec} {r['setting']} ({r['kbps']:.2f} kbps) vs Codec 2 3.2 kbps ({c['kbps']:.2f} kbps): "
                         f"{versus(r, c, 'pesq', 2)}; {versus(r, c, 'stoi', 3)}")
        elif not low:
            lines.append(f"- {codec} vs Codec 2 3.2 kbps: no rate at or below 3.2 kbps nominal")
        enc, dec = min(r["enc_xrt"] for r in mine), min(r["dec_xrt"] for r in mine)
        lines.append(f"- {codec} speed (slowest rate, one thread): encode {enc:.1f}x "
                     f"({'meets' if enc >= GOAL_ENC_XRT else 'MISSES'} >= {GOAL_ENC_XRT:g}x), decode {dec:.1f}x "
                     f"({'meets' if dec >= GOAL_DEC_XRT else 'MISSES'} >= {GOAL_DEC_XRT:g}x)")
        for r in sorted(mine, key=lambda r: r["n_q"]):
            ratio, raw = r["payload_bits"] / r["est_bits"], r["payload_bits"] / r["raw_bits"]
            lines.append(f"- {codec} {r['setting']} bits: payload/ideal {ratio:.4f} "
                         f"({'within' if abs(ratio - 1) <= GOAL_BITS_TOL else 'NOT within'} {GOAL_BITS_TOL:.0%}), "
                         f"payload/raw {raw:.4f} ({'below' if raw < 1 else 'NOT below'} raw)"
                         + (f"; per-file histogram table included {(r['payload_bits'] + r['table_bits']) / r['raw_bits']:.4f}"
                            f" vs a corpus prior {r['prior_payload_bits'] / r['raw_bits']:.4f} of raw"
                            if "prior_payload_bits" in r else ""))
        mine_long = sorted((r for r in long_rows if r["codec"] == codec), key=lambda r: r["minutes"])
        if len(mine_long) >= 2:
            a, b = mine_long[0], mine_long[-1]
            grow = max(b["enc_peak_rss_mib"] / a["enc_peak_rss_mib"], b["dec_peak_rss_mib"] / a["dec_peak_rss_mib"])
            lines.append(f"- {codec} memory {a['minutes']:g} -> {b['minutes']:g} min: peak RSS x{grow:.2f} "
                         f"({'flat' if grow < 1.25 else 'GROWS'}; encode {a['enc_peak_rss_mib']:.0f} -> "
                         f"{b['enc_peak_rss_mib']:.0f} MiB, decode {a['dec_peak_rss_mib']:.0f} -> {b['dec_peak_rss_mib']:.0f} MiB)")
    return lines


# ----------------------------------------------------------------------------- plot
def plot(rows: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    real = [r for r in rows if r["subset"] == "real"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, key, name in ((axes[0], "pesq", "PESQ-WB"), (axes[1], "stoi", "STOI")):
        for codec in sorted({r["codec"] for r in real}, key=lambda c: (c in ("Opus", "Codec 2"), c)):
            rs = sorted((r for r in real if r["codec"] == codec), key=lambda r: r["kbps"])
            anchor = rs[0]["family"] == "anchor"
            line, = ax.plot([r["kbps"] for r in rs], [r[key] for r in rs], marker="s" if anchor else "o",
                            linestyle="--" if anchor else "-", label=codec if anchor else f"{codec} (n_q)")
            for r in rs:
                ax.annotate(r["setting"].replace(" voip", "").replace("mode ", "").replace("n_q=", ""), (r["kbps"], r[key]), fontsize=6,
                            xytext=(3, 3), textcoords="offset points", color=line.get_color())
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(matplotlib.ticker.FuncFormatter(
            lambda v, _: f"{v:g}" if round(v, 6) in (2, 3, 4, 6, 8, 20, 30) else ""))
        ax.set_xlabel("kbps (file size, log scale)")
        ax.set_ylabel(name)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ----------------------------------------------------------------------------- main
def load_models(names: list[str]) -> dict[str, tuple[object, str]]:
    models: dict[str, tuple[object, str]] = {}
    for name in names:
        arg = str(Path(name).resolve()) if Path(name).exists() else name
        try:
            model = codecgen.load(arg)
        except Exception as error:  # noqa: BLE001 - report and go on with the others
            print(f"cannot load model {name!r}: {error}; skipping it", file=sys.stderr)
            continue
        if model.modality != "audio":
            print(f"{name!r} is a {model.modality} model, not audio; skipping it", file=sys.stderr)
            continue
        label = model.model_name
        if label in models or any(other.startswith(label + " (") for other in models):
            label = f"{label} ({Path(name).name})"
        models[label] = (model, arg)
    return models


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["hificodec-16k", "languagecodec-16k"])
    parser.add_argument("--corpus", type=Path, default=ROOT / "data" / "speech")
    parser.add_argument("--limit", type=int, default=None, help="first N real and first N espeak files")
    parser.add_argument("--long-minutes", type=float, default=10.0)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()

    one_thread()
    started = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    machine = machine_info()
    sets = list_files(args.corpus, args.limit)
    models = load_models(args.models)
    if not models:
        print("no model could be loaded: the table will hold the anchors only", file=sys.stderr)

    records, anchor_note = [], ""
    with tempfile.TemporaryDirectory(prefix="codecgen_bench_") as tmp_name:
        tmp = Path(tmp_name)
        for label, (model, _) in models.items():
            recs, codes_by = bench_ours(model, label, sets)
            corpus_prior(recs, codes_by, model)
            records += recs
        specs = anchor_specs(*ffmpeg_codecs())
        noop_s, speed = 0.0, []
        if specs:
            noop_s = ffmpeg_noop_seconds(tmp)
            clip = build_long_wavs(sets["real"] or sets["espeak"], [SPEED_CLIP_S / 60], tmp, "speed")[SPEED_CLIP_S / 60]
            anchor_records, speed = bench_anchors(specs, sets, tmp, clip, noop_s)
            records += anchor_records
            anchor_note = (f"Anchor speeds: ffmpeg encode / decode subprocess on a {SPEED_CLIP_S:g} s clip of "
                           f"concatenated held-out prompts (fastest of {REPEATS_ANCHOR}), minus "
                           f"{noop_s * 1000:.0f} ms, the median ffmpeg no-op on a 0.1 s file (process start-up); "
                           "per-file times are in the JSON.")
        minutes = sorted({m for m in (1.0, 3.0, args.long_minutes) if m <= args.long_minutes})
        long_rows = []
        if models and minutes:
            wavs = build_long_wavs(sets["real"] + sets["espeak"], minutes, tmp)
            long_rows = bench_long({label: arg for label, (_, arg) in models.items()}, wavs, tmp)

    rows = summarise(records, speed)
    runtime = time.perf_counter() - started
    secs = {k: sum(sf.info(str(f)).duration for f in v) for k, v in sets.items()}
    corpus_line = (f"Corpus `{args.corpus}` held-out: {len(sets['real'])} real prompts ({secs['real']:.1f} s), "
                   f"{len(sets['espeak'])} espeak ({secs['espeak']:.1f} s)"
                   f"{f' (--limit {args.limit})' if args.limit is not None else ''}. "
                   f"Machine: {machine['nproc']} CPUs, {machine['cpu']}; torch {machine['torch']}, "
                   f"ffmpeg {machine['ffmpeg']}; one thread.")
    models_line = "Models: " + ", ".join(f"{label} = `{arg}`" for label, (_, arg) in models.items())
    footer = ("kbps: total bytes x 8 / total seconds (file = whole `.cgc` / `.ogg` / `.c2`; payload = range-coded "
              "codes / Opus packets without Ogg pages and headers / Codec 2 frames). Metrics: mean over files; "
              "PESQ (k/n) where it returned NaN on some files. Before scoring, each decoded file is shifted by "
              "its codec setting's constant delay (peak of the cross-correlation summed over all files, within "
              f"+-{MAX_DELAY_S * 1000:g} ms; column delay ms). Our speeds: `model.encode` / `model.decode` in "
              f"process per file, one thread (fastest of {REPEATS_OURS}), model load and entropy coding excluded. "
              f"{anchor_note}")
    goal_lines = goals(rows, long_rows)
    sections = [
        "# Audio codecs: rate-distortion on held-out speech", corpus_line, models_line,
        "## Real prompts", rd_table(rows, "real", speed=True), footer,
        "## espeak (synthetic) speech", rd_table(rows, "espeak", speed=False),
        "## Bits (ours, real prompts)",
        bits_table(rows, "real"),
        ("ideal = sum of `entropy.information_bits` under the code model each file carries (`best_model`: "
         "histogram or uniform, count of histogram files in brackets); raw = frames x sum log2 K; table = the "
         "histogram's stored levels in the header; "
         "file/raw includes the JSON header and container. prior = one histogram per codebook fitted "
         "leave-one-out on the codes of all other held-out files (real + espeak) and kept out of the file, "
         "as a model-level prior would be."),
        "## Long files (`infer.py` subprocesses, one thread)",
        long_table(long_rows) if long_rows else "(not run)",
        ("Wall time includes Python start-up and model loading; peak RSS of the child from `/usr/bin/time -f %M`; "
         "input: held-out files concatenated."),
        "## Goals", "\n".join(goal_lines) if goal_lines else "(no model measured)",
        f"_Runtime {runtime:.0f} s._",
    ]
    text = "\n\n".join(sections) + "\n"
    print(text)
    (args.out / "audio_codecs.md").write_text(text)
    plot(rows, args.out / "audio_rd.png", corpus_line.split(". Machine")[0])
    (args.out / "audio_codecs.json").write_text(json.dumps(plain({
        "machine": machine, "args": {k: str(v) for k, v in vars(args).items()},
        "models": {label: arg for label, (_, arg) in models.items()},
        "files": {k: [f.name for f in v] for k, v in sets.items()}, "seconds": secs,
        "ffmpeg_noop_s": noop_s, "anchor_speed": speed, "rows": rows, "per_file": records, "long": long_rows, "goals": goal_lines,
        "runtime_s": runtime,
    }), indent=1))
    print(f"wrote {args.out / 'audio_codecs.md'}, {args.out / 'audio_codecs.json'}, {args.out / 'audio_rd.png'}",
          file=sys.stderr)


if __name__ == "__main__":
    main()
