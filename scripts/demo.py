"""`make demo`: the main job end to end on this machine.

1. the shipped HiFi-Codec and Language-Codec (``checkpoints/``) if present, else (or with
   ``--train``) a small one trained now with ``train.py`` on the default speech corpus;
2. a held-out real utterance encoded and decoded with ``infer.py`` (the user's CLI);
3. one table: real kbps (from the file size), PESQ-WB, STOI, mel distance, SI-SDR,
   and encode/decode speed (x real time, one thread), next to Opus at its lowest rate
   on the same file;
4. images: a held-out photo crop compressed with the shipped VQGAN codec at every
   codebook size through ``infer.py compress`` / ``decompress`` (one file also damaged,
   20% of its indices lost, and restored), next to WebP at 1/4 resolution and JPEG 2000
   at their lowest rates;
5. video: an HNeRV fitted to 24 frames of a held-out clip at 64x64 (about two minutes)
   with ``infer.py encode-video``, decoded with ``decode-video``, next to x265;
6. generators: a 48-px crop of the held-out photo upscaled x4 by the shipped arbitrary-scale
   SR model through ``infer.py upscale`` (its LIIF alone, then with 20 diffusion steps) next
   to bicubic and Lanczos; then ``infer.py generate`` samples two images, each decoded at two
   sizes from one latent;
7. portrait animation: the first frame of a held-out talking portrait (a person the shipped
   Hallo2 model never saw) animated by its speech through ``infer.py animate``, the speech muxed
   in; the benchmark's probe reads the mouth opening of the result against the true jaw track.

Its data: the default corpora under ``data/`` where they are built (``make corpus``,
``make image-corpus``, ``make video-corpus``), else, built first in under a minute, the
few held-out files it uses, the same as in the full corpora, under ``demo_out/data/``
(``codecgen.datamodules.corpora.demo``).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("OMP_NUM_THREADS", "1")

import soundfile as sf  # noqa: E402
import torch  # noqa: E402

from codecgen import metrics  # noqa: E402
from codecgen.hub import SHIPPED_DIR  # noqa: E402

OUT = ROOT / "demo_out"
DATA = ROOT / "data"


def corpus_or_demo(kind: str, build) -> Path:
    """``data/<kind>`` when that corpus is built, else its demo slice ``demo_out/data/<kind>`` (built now)."""
    from codecgen.datamodules.corpora.common import MARKER

    if (DATA / kind / MARKER).exists():
        return DATA / kind
    return build(OUT / "data" / kind)


def demo_data() -> tuple[Path, Path, Path]:
    """(speech, image, video) corpus folders: the full corpora where built, else demo slices."""
    from codecgen.datamodules.corpora import demo

    kinds = ("speech", "images", "video")
    missing = [k for k in kinds if not (DATA / k / demo.MARKER).exists() and not (OUT / "data" / k / demo.MARKER).exists()]
    if missing:
        print(f"== demo data: {', '.join(missing)} corpus not built; its few held-out files the demo uses go to "
              f"{OUT / 'data'} (under a minute: an 11 MB Debian package, one photo, one clip) ==", flush=True)
    speech = corpus_or_demo("speech", lambda out: demo.build_demo_speech(out, DATA / ".cache" / "debs"))
    images = corpus_or_demo("images", demo.build_demo_image)
    video = corpus_or_demo("video", lambda out: demo.build_demo_video(out, images))
    return speech, images, video


def run(cmd: list[str], **kwargs) -> float:
    """Run a command (output shown), return its wall time in seconds."""
    start = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, check=True, **kwargs)
    return time.perf_counter() - start


def train_small(steps: int) -> Path:
    if not (DATA / "speech" / ".complete").exists():
        sys.exit("training needs the full speech corpus (configs/hificodec/small.yaml reads data/speech): "
                 "`make corpus` first, or `make demo-train`")
    run_dir = OUT / "train"
    print(f"== training a small HiFi-Codec for {steps} steps (configs/hificodec/small.yaml; needs the full "
          f"speech corpus, `make corpus`; about {steps / 100:.0f} min on one free core) ==", flush=True)
    run([sys.executable, "train.py", "fit", "--config", "configs/hificodec/small.yaml",
         "--trainer.max_steps", str(steps), "--trainer.default_root_dir", str(run_dir)])
    checkpoints = sorted(run_dir.rglob("last*.ckpt"), key=lambda p: p.stat().st_mtime)
    if not checkpoints:
        sys.exit("training wrote no checkpoint")
    return checkpoints[-1]


def held_out_utterance(corpus: Path) -> Path:
    candidates = sorted((corpus / "val").glob("*real*.wav")) or sorted((corpus / "val").glob("*.wav"))
    if not candidates:
        sys.exit(f"no held-out audio under {corpus / 'val'}: run `make corpus`")
    # the longest of the first few held-out real prompts: a sentence, not a single word
    return max(candidates[:12], key=lambda p: sf.info(str(p)).frames)


def opus_round_trip(src: Path, kbps: float) -> tuple[Path, Path, float, float]:
    coded, back = OUT / f"opus_{kbps:g}k.ogg", OUT / f"opus_{kbps:g}k.wav"
    enc = run(["ffmpeg", "-v", "error", "-y", "-threads", "1", "-i", str(src), "-c:a", "libopus", "-b:a", f"{kbps}k",
               "-application", "voip", str(coded)])
    dec = run(["ffmpeg", "-v", "error", "-y", "-threads", "1", "-i", str(coded), "-ar", "16000", str(back)])
    return coded, back, enc, dec


def scores(reference: Path, decoded: Path, coded: Path, seconds: float, enc_s: float, dec_s: float) -> dict:
    ref, sr = sf.read(str(reference), dtype="float32")
    deg, sr2 = sf.read(str(decoded), dtype="float32")
    assert sr == sr2 == 16000, (sr, sr2)
    n = min(len(ref), len(deg))
    ref, deg = ref[:n], deg[:n]
    return {
        "kbps": 8 * coded.stat().st_size / seconds / 1000,
        "PESQ-WB": metrics.pesq_wb(ref, deg, sr),
        "STOI": metrics.stoi(ref, deg, sr),
        "mel dist": metrics.mel_distance(ref, deg, sr),
        "SI-SDR dB": metrics.si_sdr(ref, deg),
        "enc xRT": seconds / enc_s,
        "dec xRT": seconds / dec_s,
    }


def held_out_crop(corpus: Path, side: int):
    """The centre ``side`` x ``side`` crop (PIL RGB) of the held-out astronaut photo (else the
    first held-out photo), and that photo's name."""
    from PIL import Image

    held_out = sorted((corpus / "val").glob("*.png"))
    photo = next((p for p in held_out if p.stem == "skimage_astronaut"), held_out[0])
    full = Image.open(photo).convert("RGB")
    left, top = (full.width - side) // 2, (full.height - side) // 2
    return full.crop((left, top, left + side, top + side)), photo.name


def image_demo(corpus: Path) -> None:
    import io

    from PIL import Image

    from codecgen.datamodules.image import load_image

    if not (SHIPPED_DIR / "vqgan-f16" / "config.json").is_file():
        print("(no shipped vqgan-f16: image part skipped)")
        return
    crop, photo_name = held_out_crop(corpus, 256)
    crop_path = OUT / "photo_256.png"
    crop.save(crop_path)
    ref, _ = load_image(crop_path)
    print(f"\n== image: 256x256 centre crop of held-out {photo_name}; VQGAN at five codebook sizes "
          "(two or three minutes on 2 cores) ==", flush=True)
    infer = [sys.executable, "infer.py"]
    rows = []
    for k in (1024, 256, 64, 16, 8):
        coded, back = OUT / f"photo_k{k}.cgc", OUT / f"photo_k{k}.png"
        run(infer + ["compress", "--model", "vqgan-f16", str(crop_path), str(coded), "--codebook-size", str(k),
                     "--overwrite", "--quiet"])
        run(infer + ["decompress", "--model", "vqgan-f16", str(coded), str(back), "--overwrite", "--quiet"])
        rows.append((f"vqgan-f16 K={k}", coded.stat().st_size, load_image(back)[0]))
    lossy, restored = OUT / "photo_k256_lost20.cgc", OUT / "photo_k256_restored.png"
    run(infer + ["damage", "--model", "vqgan-f16", str(OUT / "photo_k256.cgc"), str(lossy), "--loss", "0.2",
                 "--overwrite", "--quiet"])
    run(infer + ["decompress", "--model", "vqgan-f16", str(lossy), str(restored), "--restore", "--overwrite", "--quiet"])
    rows.append(("vqgan-f16 K=256, 20% lost, --restore", lossy.stat().st_size, load_image(restored)[0]))
    small = Image.open(crop_path).resize((64, 64), Image.LANCZOS)
    for quality in (0, 20):
        buf = io.BytesIO()
        small.save(buf, "WEBP", quality=quality, method=6)
        up = Image.open(io.BytesIO(buf.getvalue())).convert("RGB").resize((256, 256), Image.LANCZOS)
        up.save(OUT / f"photo_webp_q{quality}.png")
        rows.append((f"WebP q{quality} at 1/4 size + Lanczos", len(buf.getvalue()), load_image(OUT / f"photo_webp_q{quality}.png")[0]))
    buf = io.BytesIO()
    Image.open(crop_path).save(buf, "JPEG2000", quality_mode="rates", quality_layers=[320], irreversible=True)
    Image.open(io.BytesIO(buf.getvalue())).convert("RGB").save(OUT / "photo_j2k.png")
    rows.append(("JPEG 2000, ratio 320", len(buf.getvalue()), load_image(OUT / "photo_j2k.png")[0]))
    print(f"{'codec':42}{'bytes':>7}{'bpp':>8}{'PSNR':>8}{'MS-SSIM':>9}")
    for name, size, img in rows:
        print(f"{name:42}{size:7d}{8 * size / 65536:8.4f}{metrics.psnr(ref, img):8.2f}{metrics.ms_ssim(ref, img):9.3f}")
    print("(bpp from whole files, headers included; benchmarks/image_codecs.py has the full comparison)")


def generator_demo(corpus: Path) -> None:
    from PIL import Image

    from codecgen.datamodules.image import load_image

    shipped = [name for name in ("arbitrary-sr", "arbitrary-gen") if (SHIPPED_DIR / name / "config.json").is_file()]
    if not shipped:
        print("(no shipped arbitrary-sr / arbitrary-gen: generator part skipped)")
        return
    infer = [sys.executable, "infer.py"]
    if "arbitrary-sr" in shipped:
        side, scale = 192, 4
        hr, photo_name = held_out_crop(corpus, side)
        hr_path, lr_path = OUT / "sr_hr.png", OUT / "sr_lr.png"
        hr.save(hr_path)
        hr.resize((side // scale,) * 2, Image.BICUBIC, reducing_gap=None).save(lr_path)
        print(f"\n== upscaling: a {side // scale}-px crop of held-out {photo_name}, x{scale} "
              "(arbitrary-sr; under a minute) ==", flush=True)
        rows = []
        for tag, name, extra in (("liif", "LIIF only (--no-diffusion)", ["--no-diffusion"]),
                                 ("ldm", "latent diffusion, DPM-Solver 20 steps", ["--steps", "20", "--scheduler", "dpm"])):
            out = OUT / f"sr_x{scale}_{tag}.png"
            seconds = run(infer + ["upscale", "--model", "arbitrary-sr", str(lr_path), str(out), "--scale", str(scale),
                                   *extra, "--overwrite", "--quiet"])
            rows.append((f"arbitrary-sr, {name}", load_image(out)[0], seconds))
        lr = Image.open(lr_path)
        for name, method in (("bicubic", Image.BICUBIC), ("Lanczos", Image.LANCZOS)):
            out = OUT / f"sr_x{scale}_{name.lower()}.png"
            lr.resize((side, side), method).save(out)
            rows.append((name, load_image(out)[0], None))
        ref, _ = load_image(hr_path)
        print(f"{'method':54}{'PSNR':>8}{'MS-SSIM':>9}{'wall s':>8}")
        for name, img, seconds in rows:
            wall = f"{seconds:8.1f}" if seconds is not None else f"{'':8}"
            print(f"{name:54}{metrics.psnr(ref, img):8.2f}{metrics.ms_ssim(ref, img):9.3f}{wall}")
        print("(wall time of infer.py incl. start-up; benchmarks/super_resolution.py has scales x2..x12, "
              "GMSD, HaarPSI, consistency and memory)")
    if "arbitrary-gen" in shipped:
        folder = OUT / "generated"
        print("\n== generating: two images from arbitrary-gen, each latent decoded at 96x96 and at 256x160 ==",
              flush=True)
        seconds = run(infer + ["generate", "--model", "arbitrary-gen", "--size", "96x96", "--size", "256x160",
                               "--num", "2", "--steps", "20", "--scheduler", "dpm", "--seed", "0", str(folder),
                               "--overwrite", "--quiet"])
        print(f"{len(list(folder.glob('*.png')))} images in {folder} ({seconds:.1f} s incl. start-up)")


def video_demo(corpus: Path) -> None:
    from codecgen.datamodules.video import classical_round_trip, load_video, write_video

    clip = corpus / "val" / "zoom_skimage_astronaut.mkv"
    if not clip.is_file():
        print("(no video corpus: video part skipped; `make video-corpus`)")
        return
    small = OUT / "clip_64.mkv"
    write_video(load_video(clip, 0, 24, size=(64, 64)), small, fps=25.0)
    ref = load_video(small)
    n, _, h, w = ref.shape
    print(f"\n== video: {n} frames of held-out {clip.name} at {w}x{h}, HNeRV fitted now "
          "(about two minutes on 2 cores) ==", flush=True)
    infer = [sys.executable, "infer.py"]
    coded, back = OUT / "clip.cgc", OUT / "clip_back.mkv"
    fit_s = run(infer + ["encode-video", str(small), str(coded), "--model-size", "0.03", "--strides", "4,2,2",
                         "--epochs", "150", "--quant-epochs", "10", "--overwrite", "--quiet"])
    run(infer + ["decode-video", str(coded), str(back), "--overwrite", "--quiet"])

    rows = [(f"HNeRV 0.03 M (fitted in {fit_s:.0f} s)", coded.stat().st_size, metrics.psnr(ref, load_video(back)))]
    for crf in (13, 18, 28):
        hevc, decoded, _, _ = classical_round_trip(small, OUT, "libx265", crf)
        rows.append((f"x265 slow crf {crf}", hevc.stat().st_size, metrics.psnr(ref, decoded)))
    print(f"{'codec':42}{'bytes':>7}{'bpp':>8}{'PSNR':>8}")
    for name, size, value in rows:
        print(f"{name:42}{size:7d}{8 * size / (n * h * w):8.4f}{value:8.2f}")
    print("(24 frames are too few for a network to pay for itself: benchmarks/video_codecs.py has the full comparison)")


def runs_for(model: str) -> list[tuple[str, int | None]]:
    """(model, n_q) rows of the audio table: the shipped Language-Codec joins the shipped HiFi-Codec."""
    runs = [(model, None)]
    if model == "hificodec-16k" and (SHIPPED_DIR / "languagecodec-16k" / "config.json").is_file():
        runs += [("languagecodec-16k", 3), ("languagecodec-16k", None)]
    return runs


def held_out_portrait(images: Path) -> Path:
    """A held-out talking-portrait clip: the portrait corpus's first, else one drawn now (seconds):
    a person of another seed than the corpus's, so one no shipped model was trained on."""
    from codecgen.datamodules.corpora.portraits import build_portraits
    from codecgen.datamodules.portrait_clips import list_clips

    full = list_clips(DATA / "portraits" / "val")
    if full:
        return full[0]
    folder = build_portraits(OUT / "data" / "portraits", size=128, clips=4, identities=4, real_prompts=False,
                             images=images, seed=7)
    return list_clips(folder / "val")[0]


def animation_demo(images: Path) -> None:
    import numpy as np

    from codecgen.datamodules.image import save_image
    from codecgen.datamodules.portrait_clips import load_clip_tracks, read_clip_meta
    from codecgen.datamodules.video import load_video

    if not (SHIPPED_DIR / "hallo2-small" / "config.json").is_file():
        print("(no shipped hallo2-small: animation part skipped)")
        return
    clip = held_out_portrait(images)
    meta, tracks = read_clip_meta(clip), load_clip_tracks(clip, read_clip_meta(clip))
    frames = load_video(clip / "video.mkv")
    portrait = OUT / "portrait.png"
    save_image(frames[0], portrait)
    box = ",".join(f"{v:.1f}" for v in tracks["face_box"][0])
    out = OUT / "talking.mp4"
    print(f"\n== animation: held-out portrait {clip.name} ({meta.size} px) speaking its {meta.frames / meta.fps:.1f} s "
          "of speech (hallo2-small, 8 DDIM steps; about a minute) ==", flush=True)
    seconds = run([sys.executable, "infer.py", "animate", "--model", "hallo2-small", "--image", str(portrait),
                   "--audio", str(clip / "audio.wav"), str(out), "--face-box", box, "--steps", "8", "--overwrite",
                   "--quiet"])
    made = load_video(out)
    print(f"{out}: {len(made)} frames at 25 fps ({made.shape[-1]} px) with the speech, {seconds:.1f} s incl. start-up")
    if (SHIPPED_DIR / "hallo2-probe" / "config.json").is_file():
        import codecgen

        probe = codecgen.load("hallo2-probe")
        scale = made.shape[-1] / meta.size
        boxes = torch.from_numpy(tracks["face_box"][:1] * scale).float().expand(len(made), 4)
        with torch.no_grad():
            jaw = probe(made * 2 - 1, boxes)[0].numpy()
        truth = tracks["visemes"][: len(jaw), 0]
        r = float(np.corrcoef(jaw[: len(truth)], truth)[0, 1]) if jaw.std() > 1e-9 else 0.0
        print(f"mouth opening (probe) vs the true jaw track: r = {r:.2f} (a still portrait: 0; "
              "benchmarks/portrait_animation.py has drift, lip sync with bounds, expressions and memory)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", action="store_true", help="train a small model now even if one is shipped")
    parser.add_argument("--steps", type=int, default=int(os.environ.get("DEMO_STEPS", 600)))
    parser.add_argument("--corpus", type=Path, default=None,
                        help="speech corpus of the held-out utterance (default data/speech, else the demo's)")
    args = parser.parse_args()
    OUT.mkdir(exist_ok=True)
    speech, images, video = demo_data()
    corpus = args.corpus or speech

    shipped = SHIPPED_DIR / "hificodec-16k"
    model = str(train_small(args.steps) if args.train or not (shipped / "config.json").is_file() else "hificodec-16k")
    print(f"== model: {model} ==")

    utterance = held_out_utterance(corpus)
    seconds = sf.info(str(utterance)).frames / sf.info(str(utterance)).samplerate
    print(f"== held-out utterance: {utterance.name} ({seconds:.2f} s); {len(runs_for(model))} neural codec runs "
          "through infer.py and Opus (one or two minutes) ==", flush=True)
    infer = [sys.executable, "infer.py"]
    import codecgen

    torch.set_num_threads(1)
    x = torch.from_numpy(sf.read(str(utterance), dtype="float32")[0])[None, None]
    runs = runs_for(model)
    rows, wall = {}, []
    for name, n_q in runs:
        tag = f"{Path(name).name}{'' if n_q is None else f'_nq{n_q}'}"
        coded, decoded = OUT / f"{tag}.cgc", OUT / f"{tag}.wav"
        extra = [] if n_q is None else ["--n-q", str(n_q)]
        # wall times include Python start-up and model loading, as a user sees them
        enc_s = run(infer + ["encode", "--model", name, str(utterance), str(coded), "--overwrite", *extra])
        dec_s = run(infer + ["decode", "--model", name, str(coded), str(decoded), "--overwrite"])
        wall.append(f"{tag}: encode {enc_s:.1f} s, decode {dec_s:.1f} s")
        # in-process speed, one thread, without start-up costs
        codec = codecgen.load(name)
        start = time.perf_counter()
        codes = codec.encode(x, n_q=n_q)
        pure_enc = time.perf_counter() - start
        start = time.perf_counter()
        codec.decode(codes)
        pure_dec = time.perf_counter() - start
        label = f"{codec.model_name} ({tag}, {codec.bitrate(n_q) / 1000:g} kbps nominal)"
        rows[label] = scores(utterance, decoded, coded, seconds, pure_enc, pure_dec)
    for kbps in (6, 9, 12):
        opus_coded, opus_back, opus_enc, opus_dec = opus_round_trip(utterance, kbps)
        rows[f"Opus {kbps} kbps (libopus voip)"] = scores(utterance, opus_back, opus_coded, seconds, opus_enc, opus_dec)

    columns = list(next(iter(rows.values())))
    width = max(len(name) for name in rows) + 2
    print()
    print(f"Held-out utterance {utterance.name}, {seconds:.2f} s, 16 kHz; speed = x real time, one thread")
    print("codec".ljust(width) + "".join(c.rjust(11) for c in columns))
    for name, row in rows.items():
        print(name.ljust(width) + "".join(f"{row[c]:11.3f}" for c in columns))
    print(f"\n(infer.py wall time incl. start-up: {'; '.join(wall)}; "
          f"Opus speeds include ffmpeg start-up; kbps of Opus includes its Ogg container)")
    print(f"files: {OUT}")
    image_demo(images)
    video_demo(video)
    generator_demo(images)
    animation_demo(images)


if __name__ == "__main__":
    main()
