"""SemantiCodec benchmark: ultra-low-bitrate speech next to Codec 2, Opus and our other
codecs at their lowest rates, plus the paper's "richer semantics" claim as a probe.

One run, same process, same held-out files, one thread:

    python benchmarks/semantic_codec.py --model M [--model M2 ...] [--corpus data/speech] [--limit 8]
        [--steps S] [--sampler ddim|dpm] [--speed-settings ddim:50 dpm:10 dpm:20]
        [--hificodec hificodec-16k] [--languagecodec languagecodec-16k]
        [--probe-voices 12] [--probe-voices-train 8] [--long-minutes 1 3] [--out benchmarks/results] [--quick]

``--model``: SemantiCodec models (one per token rate; anything ``codecgen.load`` takes).
Sections:
- Quality on held-out REAL speech (``CORPUS/val/*_real_*.wav``, the first ``--limit``):
  each model through its ``.cgc`` file (file kbps, payload kbps), decoded with its own
  sampler settings unless ``--steps`` / ``--sampler``; its ceilings: the vocoder on the
  ground-truth mel, and the VAE's reconstruction of that mel through the vocoder. Anchors:
  Codec 2 700C and 1200 (ffmpeg's libcodec2; 700C frames are byte-padded, so the file's
  bytes are counted), Opus at 6 kbps (its lowest useful voip rate), ``--hificodec`` at
  ``--n-q 2`` and ``--languagecodec`` at ``--n-q 3``. PESQ-WB, STOI, mel distance, SI-SDR
  after aligning each setting's constant delay (``benchmarks/audio_codecs.py``'s scoring).
- Decode speed against sampler steps (``--speed-settings``), on the first held-out file:
  seconds, x real time, PESQ-WB and STOI; encode speed.
- Semantic probe: the digits zero..nine spoken by espeak-ng voices at two speeds; a
  multinomial logistic regression on bag-of-token histograms is trained on the first
  ``--probe-voices-train`` of ``--probe-voices`` voices and tested on the others. Features: each model's semantic
  tokens, its acoustic tokens, both; the HiFi-Codec codes (``--n-q 2``) and Language-Codec
  codes (``--n-q 3``) as the same kind of histogram. Chance is 10 %.
- Long files: ``infer.py encode`` / ``decode`` (``dpm``, 10 steps) as child processes on
  ``--long-minutes`` of concatenated held-out speech: wall time and peak RSS.

Writes ``OUT/semantic_codec.md`` and ``.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from _common import fmt, one_thread, plain, table
from audio_codecs import (ROOT, anchor_specs, bench_anchors, bench_long, bench_ours, build_long_wavs, ffmpeg_codecs,
                          ffmpeg_noop_seconds, list_files, long_table, rd_table, read_mono, resample, score_setting,
                          summarise)

import codecgen
from codecgen.codecs import bitstream
from codecgen.nn import entropy

DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
PROBE_VOICES = ("en-us", "en-gb", "en+f3", "en+m7", "en-gb-scotland+f2", "en-029+m3", "en-gb-x-rp+m3", "en-us+f2",
                "en+f4", "en-gb-x-gbclan+m2", "en-us+m1", "en-gb-x-gbcwmd+f5")
PROBE_WPM = (140, 190)
GOAL_PROBE_POINTS, GOAL_DEC_XRT, GOAL_ENC_XRT, GOAL_KBPS = 15.0, 1.0, 10.0, 1.4


# ----------------------------------------------------------------------------- quality
def load_semantic(name: str):
    model = codecgen.load(name)
    if not hasattr(model, "sampler_settings"):
        sys.exit(f"error: {name} is a {model.model_name}, not a SemantiCodec model")
    return model


def bench_semantic(model, label: str, files: list[Path], sampler: dict) -> list[dict]:
    """Per-file records of the codec through its file, and of its two ceilings."""
    settings = model.sampler_settings(sampler.get("steps"), None, sampler.get("name"), 0)
    name = f"{model.tokens_per_second} tok/s, {settings['name']} {settings['steps']}"
    records, pairs = {name: [], "ceiling: vocoder(mel)": [], "ceiling: vocoder(VAE(mel))": []}, {}
    for path in tqdm(files, desc=label, file=sys.stderr, leave=False):
        ref, sr = read_mono(path)
        x = torch.from_numpy(np.ascontiguousarray(resample(ref, sr, model.sample_rate)))[None, None]
        t0 = time.perf_counter()
        codes = model.encode(x)
        t_enc = time.perf_counter() - t0
        header, payload = model.pack_codes(codes, x.shape[-1], sr, len(ref), steps=settings["steps"],
                                           sampler=settings["name"])
        data = bitstream.pack(header, payload)
        back = model.unpack_codes(*bitstream.unpack(data))
        t0 = time.perf_counter()
        y = torch.cat(list(model.decode_chunks(back, x.shape[-1], header)), -1)
        t_dec = time.perf_counter() - t0
        code_model = entropy.EntropyModel.from_header({**header["entropy"], "codebook_sizes": header["codebook_sizes"]})
        base = {"codec": label, "subset": "real", "file": path.name, "seconds": len(ref) / sr}
        records[name].append(base | {
            "family": "ours", "setting": name, "nominal_kbps": model.bitrate() / 1000, "file_bytes": len(data),
            "payload_bytes": len(payload), "table_bytes": len(header["entropy"].get("levels", "")),
            "enc_s": t_enc, "dec_s": t_dec, "roundtrip_ok": bool(torch.equal(back.cpu(), codes.cpu())),
            "code_model": code_model.kind, "frames": codes.shape[-1],
            "est_bits": entropy.information_bits(codes, code_model),
            "raw_bits": codes.shape[-1] * sum(math.log2(k) for k in model.codebook_sizes)})
        pairs.setdefault(name, []).append((ref, resample(y[0].clamp(-1, 1).numpy(), model.sample_rate, sr)))
        with torch.no_grad():
            mel = model.vae.mel_image(x)
            t0 = time.perf_counter()
            direct = model.vocoder(mel[:, 0].transpose(1, 2))
            t_voc = time.perf_counter() - t0
            t0 = time.perf_counter()
            through_vae = model.vocoder(model.vae.decode(model.vae.encode(mel))[:, 0].transpose(1, 2))
            t_vae = time.perf_counter() - t0
        for key, wave, seconds in (("ceiling: vocoder(mel)", direct, t_voc),
                                   ("ceiling: vocoder(VAE(mel))", through_vae, t_vae)):
            records[key].append(base | {"family": "ceiling", "setting": key, "nominal_kbps": float("nan"),
                                        "file_bytes": 0, "payload_bytes": 0, "enc_s": t_enc, "dec_s": seconds})
            pairs.setdefault(key, []).append((ref, resample(wave[0, 0].clamp(-1, 1).numpy(), model.sample_rate, sr)))
    out, sr = [], read_mono(files[0])[1]  # the held-out corpus has one rate
    for key, rs in records.items():
        score_setting(rs, pairs[key], sr)
        out += rs
    return out


# ----------------------------------------------------------------------------- speed
def bench_speed(model, label: str, path: Path, settings: list[tuple[str, int]]) -> list[dict]:
    from codecgen import metrics

    ref, sr = read_mono(path)
    x = torch.from_numpy(np.ascontiguousarray(resample(ref, sr, model.sample_rate)))[None, None]
    seconds = x.shape[-1] / model.sample_rate
    model.decode(model.encode(x[..., : model.window_samples]), steps=1)  # first calls allocate
    t0 = time.perf_counter()
    codes = model.encode(x)
    enc = time.perf_counter() - t0
    rows = []
    for name, steps in settings:
        t0 = time.perf_counter()
        y = model.decode(codes, x.shape[-1], steps=steps, sampler=name)
        dec = time.perf_counter() - t0
        deg = y[0, 0].clamp(-1, 1).numpy()
        ref16 = x[0, 0].numpy()
        rows.append({"codec": label, "file": path.name, "seconds": seconds, "sampler": name, "steps": steps,
                     "enc_s": enc, "enc_xrt": seconds / enc, "dec_s": dec, "dec_xrt": seconds / dec,
                     "pesq": metrics.pesq_wb(ref16, deg, model.sample_rate),
                     "stoi": metrics.stoi(ref16, deg, model.sample_rate)})
    return rows


# ----------------------------------------------------------------------------- probe
def probe_audio(sample_rate: int, voices: tuple[str, ...], speeds: tuple[int, ...]) -> list[tuple[int, str, np.ndarray]]:
    """(digit, voice, waveform) for every digit, voice and speed."""
    from codecgen.datamodules.signals import espeak

    items = []
    for voice in tqdm(voices, desc="probe audio", file=sys.stderr, leave=False):
        for wpm in speeds:
            for d, word in enumerate(DIGITS):
                items.append((d, voice, espeak(word, voice=voice, sr=sample_rate, wpm=wpm)))
    return items


def histograms(code_rows: list[np.ndarray], sizes: list[int]) -> np.ndarray:
    """Bag-of-tokens features: per stream, token counts / frames, streams side by side."""
    feats = []
    for codes in code_rows:  # (streams, frames)
        parts = [np.bincount(codes[i], minlength=k)[:k] / max(1, codes.shape[1]) for i, k in enumerate(sizes)]
        feats.append(np.concatenate(parts))
    return np.stack(feats).astype(np.float32)


def linear_probe(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray) -> float:
    """Test accuracy (%) of a multinomial logistic regression (L2 1e-3, LBFGS, 200 steps) on
    standardised features."""
    mean, std = train_x.mean(0), train_x.std(0) + 1e-6
    a, b = torch.from_numpy((train_x - mean) / std), torch.from_numpy((test_x - mean) / std)
    ya = torch.from_numpy(train_y).long()
    torch.manual_seed(0)
    layer = torch.nn.Linear(a.shape[1], len(DIGITS))
    opt = torch.optim.LBFGS(layer.parameters(), max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(layer(a), ya) + 1e-3 * layer.weight.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        return 100.0 * float((layer(b).argmax(-1).numpy() == test_y).mean())


def bench_probe(features: dict[str, tuple], items: list, train_voices: set[str]) -> list[dict]:
    """``features``: name -> (encode(wave (1, 1, T)) -> codes (streams, frames), sizes, which streams)."""
    labels = np.array([d for d, _, _ in items])
    is_train = np.array([v in train_voices for _, v, _ in items])
    rows = []
    for name, (encode, sizes, streams) in features.items():
        codes = [encode(torch.from_numpy(w)[None, None])[streams] for _, _, w in  # (streams, frames)
                 tqdm(items, desc=f"probe {name}", file=sys.stderr, leave=False)]
        x = histograms([c.cpu().numpy() for c in codes], [sizes[i] for i in streams])
        acc = linear_probe(x[is_train], labels[is_train], x[~is_train], labels[~is_train])
        rows.append({"features": name, "dims": x.shape[1], "train": int(is_train.sum()), "test": int((~is_train).sum()),
                     "accuracy": acc})
    return rows


# ----------------------------------------------------------------------------- report
def goals(rows: list[dict], speed: list[dict], probe: list[dict], labels: list[str]) -> list[str]:
    lines = []
    real = [r for r in rows if r["subset"] == "real"]
    c2 = next((r for r in real if r["codec"] == "Codec 2" and r["setting"] == "mode 1200"), None)
    for label in labels:
        ours = [r for r in real if r["codec"] == label and r["family"] == "ours"]
        for r in ours:
            if c2 is None:
                lines.append(f"- {label} vs Codec 2 1200: not measured (no libcodec2)")
                continue
            ok = r["kbps"] <= GOAL_KBPS and r["pesq"] > c2["pesq"] and r["stoi"] > c2["stoi"]
            lines.append(f"- {label} ({r['setting']}) at {r['kbps']:.3f} kbps (file) vs Codec 2 1200 at "
                         f"{c2['kbps']:.3f}: PESQ-WB {r['pesq']:.2f} vs {c2['pesq']:.2f}, STOI {r['stoi']:.3f} vs "
                         f"{c2['stoi']:.3f}: {'**met**' if ok else '**NOT MET**'}")
        sem = next((p for p in probe if p["features"] == f"{label} semantic"), None)
        hifi = next((p for p in probe if p["features"].startswith("HiFiCodec")), None)
        if sem and hifi:
            gap = sem["accuracy"] - hifi["accuracy"]
            lines.append(f"- {label}: digit probe, semantic tokens {sem['accuracy']:.1f} % vs HiFi-Codec codes "
                         f"{hifi['accuracy']:.1f} % ({gap:+.1f} points; goal +{GOAL_PROBE_POINTS:g}): "
                         f"{'**met**' if gap >= GOAL_PROBE_POINTS else '**NOT MET**'}")
        dpm10 = next((s for s in speed if s["codec"] == label and s["sampler"] == "dpm" and s["steps"] == 10), None)
        if dpm10:
            ok = dpm10["dec_xrt"] >= GOAL_DEC_XRT and dpm10["enc_xrt"] >= GOAL_ENC_XRT
            lines.append(f"- {label}: decode {dpm10['dec_xrt']:.2f}x real time at DPM-Solver 10 steps (goal "
                         f">= {GOAL_DEC_XRT:g}x), encode {dpm10['enc_xrt']:.1f}x (goal >= {GOAL_ENC_XRT:g}x): "
                         f"{'**met**' if ok else '**NOT MET**'}")
    return lines


def parse(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", action="append", required=True, help="a SemantiCodec model (repeat for more rates)")
    p.add_argument("--corpus", type=Path, default=ROOT / "data" / "speech")
    p.add_argument("--limit", type=int, default=8, help="held-out real files (default 8; --quick 2)")
    p.add_argument("--steps", type=int, help="decode steps for the quality table (default: the model's)")
    p.add_argument("--sampler", choices=("ddim", "dpm", "ddpm"), help="(default: the model's)")
    p.add_argument("--speed-settings", nargs="*", default=["ddim:50", "dpm:10", "dpm:20"])
    p.add_argument("--hificodec", default="hificodec-16k")
    p.add_argument("--languagecodec", default="languagecodec-16k")
    p.add_argument("--probe-voices", type=int, default=len(PROBE_VOICES), help=f"2..{len(PROBE_VOICES)} (--quick 4)")
    p.add_argument("--probe-voices-train", type=int, default=8, help="the first N voices train (--quick 3)")
    p.add_argument("--long-minutes", type=float, nargs="*", default=[1, 3])
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    p.add_argument("--quick", action="store_true",
                   help="2 files, one speed setting, 4 probe voices at one speed, no long files (smoke test)")
    args = p.parse_args(argv)
    args.probe_speeds = PROBE_WPM
    if args.quick:
        quick_speed = [s for s in args.speed_settings if s == "dpm:10"] or args.speed_settings[:1]
        args.limit, args.speed_settings, args.long_minutes = min(args.limit, 2), quick_speed, []
        args.probe_voices, args.probe_voices_train, args.probe_speeds = 4, 3, PROBE_WPM[:1]
    try:
        args.speed = [(s.split(":")[0], int(s.split(":")[1])) for s in args.speed_settings]
    except (IndexError, ValueError):
        p.error("--speed-settings: sampler:steps, e.g. dpm:10")
    if not 1 <= args.probe_voices_train < args.probe_voices <= len(PROBE_VOICES) or args.limit < 1:
        p.error(f"need 1 <= --probe-voices-train < --probe-voices <= {len(PROBE_VOICES)}, and --limit >= 1")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    one_thread()
    started = time.perf_counter()
    files = list_files(args.corpus, args.limit)["real"]
    if not files:
        sys.exit(f"error: no held-out *_real_* files under {args.corpus}")
    loaded = [load_semantic(m) for m in args.model]
    models = {f"SemantiCodec {m.tokens_per_second} tok/s ({Path(name).name})": m for m, name in zip(loaded, args.model)}
    sampler = {"steps": args.steps, "name": args.sampler}
    records, speed, others = [], [], {}
    for label, model in models.items():
        records += bench_semantic(model, label, files, sampler)
        speed += bench_speed(model, label, files[0], args.speed)
    for name, n_q in ((args.hificodec, 2), (args.languagecodec, 3)):
        if name:
            others[name] = codecgen.load(name)
            rs, _ = bench_ours(others[name], f"{others[name].model_name} ({Path(name).name})", {"real": files}, [n_q])
            records += rs
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        specs = anchor_specs(*ffmpeg_codecs(), opus_kbps=(6,), codec2_modes=("700C", 1200))
        anchor_records, anchor_speed = bench_anchors(specs, {"real": files}, tmp, None, ffmpeg_noop_seconds(tmp))
        records += anchor_records
        long_rows = []
        if args.long_minutes:
            wavs = build_long_wavs(files, args.long_minutes, tmp)
            long_rows = bench_long({label: m for label, m in zip(models, args.model)}, wavs, tmp,
                                   ("--steps", "10", "--scheduler", "dpm"))
    rows = summarise(records, anchor_speed)
    features = {}
    for label, model in models.items():
        sizes = model.codebook_sizes
        encode = (lambda w, m=model: m.encode(w)[0])  # (2, frames)
        features |= {f"{label} semantic": (encode, sizes, [0]), f"{label} acoustic": (encode, sizes, [1]),
                     f"{label} both": (encode, sizes, [0, 1])}
    for name, n_q in ((args.hificodec, 2), (args.languagecodec, 3)):
        if name:
            m = others[name]
            features[f"{m.model_name} codes (--n-q {n_q})"] = (
                lambda w, m=m, n_q=n_q: m.encode(w, n_q=n_q)[0], m.quantizer.codebook_sizes[:n_q], list(range(n_q)))
    voices = PROBE_VOICES[: args.probe_voices]
    probe = bench_probe(features, probe_audio(16000, voices, args.probe_speeds), set(voices[: args.probe_voices_train]))
    goal_lines = goals(rows, speed, probe, list(models))
    text = "\n\n".join([
        "# SemantiCodec on held-out real speech",
        f"{len(files)} files from `{args.corpus}`; one thread. Models: {', '.join(f'`{m}`' for m in args.model)}.",
        rd_table(rows, "real", speed=False),
        "Ceilings: the vocoder on the ground-truth mel, and on the VAE's reconstruction of it (no tokens).",
        "## Decode speed against sampler steps",
        table(["codec", "sampler", "steps", "seconds of audio", "encode xRT", "decode s", "decode xRT", "PESQ-WB",
               "STOI"], [[r["codec"], r["sampler"], str(r["steps"]), fmt(r["seconds"], 1), fmt(r["enc_xrt"], 1),
                          fmt(r["dec_s"], 1), fmt(r["dec_xrt"], 2), fmt(r["pesq"]), fmt(r["stoi"], 3)] for r in speed]),
        "## Semantic probe: spoken digits, voices held out",
        table(["features", "dims", "train", "test", "accuracy %"],
              [[p["features"], str(p["dims"]), str(p["train"]), str(p["test"]), fmt(p["accuracy"], 1)] for p in probe]),
        f"{len(voices)} espeak-ng voices x {len(args.probe_speeds)} speed(s) x 10 digits; trained on the first "
        f"{args.probe_voices_train} voices, tested on the others; chance 10 %.",
        "## Long files (infer.py, DPM-Solver 10 steps)",
        long_table(long_rows) if long_rows else "Not run (--long-minutes empty).",
        "## Goals", "\n".join(goal_lines) or "- nothing measured",
        f"_Runtime {time.perf_counter() - started:.0f} s._"]) + "\n"
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "semantic_codec.md").write_text(text)
    (args.out / "semantic_codec.json").write_text(json.dumps(plain(
        {"args": {k: str(v) for k, v in vars(args).items()}, "rows": rows, "speed": speed, "probe": probe,
         "long": long_rows, "goals": goal_lines, "per_file": records}), indent=1))


if __name__ == "__main__":
    main()
