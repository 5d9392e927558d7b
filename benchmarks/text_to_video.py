"""VideoGen benchmark: caption consistency, flow-based temporal upsampling, flicker of the video decoder, speed and
memory (Li et al. 2023, "VideoGen: A Reference-Guided Latent Diffusion Approach for High Definition Text-to-Video
Generation"), on the held-out clips of the captioned-video corpus and the default video corpus's real footage.

One run, same process, one thread (the memory run is a child process):

    python benchmarks/text_to_video.py --model M --classifier C [--data data/captioned_video]
        [--video-data data/video] [--prompts 100] [--frames 8] [--steps 25] [--guidance 3] [--clips 20]
        [--out benchmarks/results] [--quick]

``--model``: an assembled VideoGen (``python -m codecgen.generators.videogen.assemble``); ``--classifier``: a
``VideoAttributeClassifier`` trained on the corpus (``configs/videogen/classifier_*``): the judge (CLIP's
weights, which text-to-video papers score with, do not exist here).

1. Caption consistency: ``--prompts`` captions of held-out clips, every clip of the held-out colour-shape-motion
   triples first. For each, ``--frames`` key frames are generated (the key frames are every 4th frame, as the
   classifier reads) with three references: drawn by the text-to-image model (the full pipeline), the clip's
   true first frame (the paper's training condition), and none (zeroed). The classifier reads shape, colour and
   motion back; accuracy per attribute, all three right, and on the held-out triples alone. Bound: the
   classifier on the real clips of the same prompts.
2. Temporal upsampling: ``--clips`` held-out clips (drawn, and the video corpus's val clips, camera moves over
   held-out photos and real footage, when ``--video-data`` is built), key
   frames every 4th frame, the 3 between rebuilt by flow (RAFT of the model, softmax splatting), by a linear
   blend and by the nearest key frame; PSNR and MS-SSIM of the rebuilt frames.
3. Flicker: the same clips' frames encoded and decoded by the image decoder and by the enhanced video decoder:
   PSNR, the temporal-difference error (|(d[t+1] - d[t]) - (x[t+1] - x[t])|) and the flow-warp error (|d[t] -
   warp(d[t+1], F)| with F the model's RAFT flow of the true frames).
4. Speed: seconds per video of ``--frames`` x 4 frames through ``generate_video``. Memory: ``infer.py
   text-to-video`` as a child process, its peak RSS.
Writes ``OUT/text_to_video.md`` and ``.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_var] = "1"  # one thread everywhere

import numpy as np  # noqa: E402
import torch  # noqa: E402
from _common import fmt, log, machine_info, one_thread, plain, run_measured, table  # noqa: E402

import codecgen  # noqa: E402
from codecgen.datamodules.captioned_video import find_clips  # noqa: E402
from codecgen.datamodules.corpora.captioned_video import held_out, parse_caption  # noqa: E402
from codecgen.datamodules.video import load_video  # noqa: E402
from codecgen.generators.videogen.attribute_classifier import SCORED, attribute_targets  # noqa: E402
from codecgen.generators.videogen.pipeline import generate_video, key_flows  # noqa: E402
from codecgen.generators.videogen.video_decoder import decode_video, temporal_difference_error  # noqa: E402
from codecgen.metrics import ms_ssim  # noqa: E402
from codecgen.nn.frame_interpolation import backward_warp, interpolate  # noqa: E402

STRIDE = 4  # key frames: every 4th frame (x4 upsampling)
REFERENCES = ("text-to-image", "true first frame", "none")


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR of frames in [-1, 1]."""
    return float(-10 * torch.log10(((a - b) / 2).square().mean().clamp_min(1e-10)))


# ----------------------------------------------------------------------------- 1. caption consistency
def held_out_prompts(data: Path, count: int) -> list[tuple[Path, str]]:
    """Held-out clips (path, caption) of the corpus grammar: the held-out triples first, then the others."""
    clips = [(p, c) for p, c in find_clips(data / "val", captions=True) if parse_caption(c) is not None]
    clips.sort(key=lambda pc: (not held_out(parse_caption(pc[1])), pc[0].name))
    return clips[:count]


def scores(classifier, videos: torch.Tensor, captions: list[str], held: list[bool]) -> dict:
    """Accuracy per scored attribute, all right, and all right on the held-out triples, for clips (B, F, 3, H, W)."""
    targets = attribute_targets(captions)
    with torch.no_grad():
        guess = classifier.predict(videos)
    right = {k: (guess[k] == targets[k]).numpy() for k in SCORED}
    every = np.all([right[k] for k in SCORED], axis=0)
    held = np.array(held)
    out = {k: float(v.mean()) for k, v in right.items()}
    out["all"] = float(every.mean())
    out["held_out_all"] = float(every[held].mean()) if held.any() else float("nan")
    return out


def consistency(model, classifier, data: Path, args) -> dict:
    prompts = held_out_prompts(data, args.prompts)
    captions = [c for _, c in prompts]
    held = [held_out(parse_caption(c)) for c in captions]
    span = (args.frames - 1) * STRIDE + 1
    real = torch.stack([load_video(p, 0, span)[::STRIDE] * 2 - 1 for p, _ in prompts])
    out = {"prompts": len(prompts), "held_out_prompts": int(sum(held)), "real clips": scores(classifier, real,
                                                                                             captions, held)}
    keys = model.keyframes
    for reference in REFERENCES:
        videos = []
        for start in range(0, len(prompts), args.batch):
            batch = captions[start : start + args.batch]
            seed = args.seed + start
            with torch.no_grad():
                if reference == "text-to-image":
                    refs = model.text_to_image.generate(batch, args.steps, args.guidance, seed)
                elif reference == "true first frame":
                    refs = real[start : start + len(batch), 0]
                else:
                    refs = None
                latents = keys.generate(batch, refs, args.frames, args.steps, args.guidance, seed + 1).samples
                videos.append(keys.decode_frames(latents))
        out[reference] = scores(classifier, torch.cat(videos), captions, held)
        log(f"consistency: {reference}: all three attributes right {100 * out[reference]['all']:.0f} %")
    return out


# ----------------------------------------------------------------------------- 2-3. upsampling and flicker
def held_out_clips(data: Path, video_data: Path | None, count: int, frames: int, size: int) -> dict:
    """{"drawn": [...], "real": [...]} clips (T, 3, H, W) in [-1, 1] of ``frames`` frames at ``size`` px."""
    out = {"drawn": [p for p, _ in find_clips(data / "val", captions=False)][:count], "real": []}
    if video_data is not None and (video_data / "val").is_dir():  # held out of the video decoder's training too
        out["real"] = [p for p, _ in find_clips(video_data / "val", captions=False)][:count]
    return {kind: [load_video(p, 0, frames, size=(size, size)) * 2 - 1 for p in paths] for kind, paths in out.items()}


def upsampling(model, clips: dict) -> dict:
    out = {}
    for kind, videos in clips.items():
        if not videos:
            continue
        rows = {m: {"psnr": [], "ms_ssim": []} for m in ("flow", "linear blend", "nearest key frame")}
        for video in videos:
            keys = video[::STRIDE]
            forward, backward = key_flows(model, keys)
            for k in range(len(keys) - 1):
                a, b = keys[k : k + 1], keys[k + 1 : k + 2]
                for j in range(1, STRIDE):
                    t = j / STRIDE
                    truth = video[k * STRIDE + j : k * STRIDE + j + 1]
                    guesses = {"flow": interpolate(a, b, forward[k : k + 1], backward[k : k + 1], t),
                               "linear blend": (1 - t) * a + t * b, "nearest key frame": a if t < 0.5 else b}
                    for name, guess in guesses.items():
                        rows[name]["psnr"].append(psnr(guess, truth))
                        rows[name]["ms_ssim"].append(ms_ssim((truth[0] + 1) / 2, (guess[0].clamp(-1, 1) + 1) / 2))
        out[kind] = {m: {k: float(np.mean(v)) for k, v in r.items()} for m, r in rows.items()}
        log(f"upsampling ({kind}): flow {out[kind]['flow']['psnr']:.2f} dB, linear "
            f"{out[kind]['linear blend']['psnr']:.2f} dB")
    return out


def flicker(model, clips: dict) -> dict:
    keys = model.keyframes
    out = {}
    for kind, videos in clips.items():
        if not videos:
            continue
        rows = {m: {"psnr": [], "temporal": [], "warp": []} for m in ("image decoder", "video decoder")}
        for video in videos:
            with torch.no_grad():
                latents = keys.encode_frames(video)
                decoded = {"image decoder": keys.decode_latents(latents),
                           "video decoder": decode_video(model.video_decoder, (latents / keys.latent_scale)[None])[0]}
                flow = model.flow.estimate(video[:-1], video[1:])
            for name, frames in decoded.items():
                rows[name]["psnr"].append(psnr(frames, video))
                rows[name]["temporal"].append(float(temporal_difference_error(frames[None], video[None])))
                rows[name]["warp"].append(float((frames[:-1] - backward_warp(frames[1:], flow)).abs().mean()))
        out[kind] = {m: {k: float(np.mean(v)) for k, v in r.items()} for m, r in rows.items()}
        log(f"flicker ({kind}): temporal error {out[kind]['image decoder']['temporal']:.4f} -> "
            f"{out[kind]['video decoder']['temporal']:.4f}")
    return out


# ----------------------------------------------------------------------------- 4. speed and memory
def speed(model, args) -> dict:
    t0 = time.perf_counter()
    frames = list(generate_video(model, "a red circle moves left", args.frames, STRIDE, num_steps=args.steps,
                                 guidance=args.guidance, seed=args.seed))
    return {"frames": len(frames), "seconds": time.perf_counter() - t0}


def memory(args, tmp: Path) -> dict:
    cmd = [sys.executable, str(ROOT / "infer.py"), "text-to-video", "--model", args.model, "a blue square moves up",
           str(tmp / "m.mp4"), "--frames", str(args.frames), "--upsample", str(STRIDE), "--steps", str(args.steps),
           "--quiet"]
    run = run_measured(cmd, 8 * 1024, ROOT)
    return {"peak_mib": run["peak_mib"], "seconds": run["wall_s"], "ok": run["rc"] == 0,
            "error": run["stderr"][-300:] if run["rc"] else ""}


# ----------------------------------------------------------------------------- report
def goals(run: dict) -> list[list[str]]:
    c = run["consistency"]
    full, none = c["text-to-image"]["all"], c["none"]["all"]
    out = [["all three attributes right on held-out prompts >= 80 % (text-to-image reference)",
            f"{100 * full:.0f} %", "met" if full >= 0.8 else "not met"],
           ["reference guidance raises it over no reference", f"{100 * full:.0f} % vs {100 * none:.0f} %",
            "met" if full > none else "not met"]]
    up = run["upsampling"].get("drawn")
    if up:
        gain = up["flow"]["psnr"] - up["linear blend"]["psnr"]
        out.append(["flow upsampling beats linear blending by >= 2 dB (held-out drawn clips)", f"{gain:+.2f} dB",
                    "met" if gain >= 2 else "not met"])
    fl = run["flicker"].get("drawn")
    if fl:
        img, vid = fl["image decoder"], fl["video decoder"]
        cut = 1 - vid["temporal"] / max(img["temporal"], 1e-12)
        ok = cut >= 0.3 and vid["psnr"] >= img["psnr"] - 0.05
        out.append(["the video decoder cuts flicker by >= 30 % at equal or better PSNR",
                    f"{100 * cut:.0f} % less, PSNR {vid['psnr'] - img['psnr']:+.2f} dB", "met" if ok else "not met"])
    return out


def report(args, run: dict) -> str:
    lines = ["# Text to video (VideoGen) on held-out prompts and clips\n",
             f"`{' '.join(['python benchmarks/text_to_video.py', *args.argv])}`\n",
             f"Model: {args.model}; judge: {args.classifier}. {args.steps} steps, guidance {args.guidance}, "
             f"{args.frames} key frames. Machine: {run['machine']['cpu']}, {run['machine']['threads']} thread.\n",
             "## Goals\n", table(["goal", "measured", "status"], goals(run)), "",
             f"## 1. Caption consistency ({run['consistency']['prompts']} prompts, "
             f"{run['consistency']['held_out_prompts']} of held-out triples)\n"]
    body = [[name, *(fmt(100 * run["consistency"][name][k], 0) for k in (*SCORED, "all", "held_out_all"))]
            for name in ("real clips", *REFERENCES)]
    lines += [table(["reference", *SCORED, "all three", "all three, held-out triples"], body), "",
              "Accuracy in % of the judge on the generated key frames (first row: on the real clips, its bound).\n",
              "## 2. Temporal upsampling x4 (every 4th frame kept)\n"]
    body = [[kind, m, fmt(v["psnr"]), fmt(v["ms_ssim"], 4)] for kind, r in run["upsampling"].items()
            for m, v in r.items()]
    lines += [table(["clips", "in-between frames by", "PSNR dB", "MS-SSIM"], body), "", "## 3. Flicker\n"]
    body = [[kind, m, fmt(v["psnr"]), fmt(v["temporal"], 4), fmt(v["warp"], 4)] for kind, r in run["flicker"].items()
            for m, v in r.items()]
    lines += [table(["clips", "decoder", "PSNR dB", "temporal-difference error", "flow-warp error"], body), "",
              "## 4. Speed and memory\n"]
    s, m = run["speed"], run["memory"]
    body = [[f"{s['frames']} frames", fmt(s["seconds"], 1), fmt(m.get("peak_mib", float("nan")), 0)]]
    lines += [table(["video", "seconds", "peak RSS MiB (infer.py)"], body), ""]
    return "\n".join(lines)


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="an assembled VideoGen")
    p.add_argument("--classifier", required=True, help="a trained VideoAttributeClassifier")
    p.add_argument("--data", default="data/captioned_video")
    p.add_argument("--video-data", default="data/video", help="the default video corpus (real footage), if built")
    p.add_argument("--prompts", type=int, default=100)
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--steps", type=int, default=25)
    p.add_argument("--guidance", type=float, default=3.0)
    p.add_argument("--clips", type=int, default=20)
    p.add_argument("--batch", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-memory", action="store_true")
    p.add_argument("--out", default="benchmarks/results")
    p.add_argument("--quick", action="store_true", help="4 prompts, 2 steps, 2 clips")
    args = p.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    if args.quick:
        args.prompts, args.steps, args.clips = 4, 2, 2
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse(argv)
    one_thread()
    model = codecgen.load(args.model).eval()
    classifier = codecgen.load(args.classifier).eval()
    data = Path(args.data)
    video_data = Path(args.video_data) if args.video_data else None
    run = {"machine": machine_info(), "model": args.model}
    run["consistency"] = consistency(model, classifier, data, args)
    span = (args.frames - 1) * STRIDE + 1
    clips = held_out_clips(data, video_data, args.clips, span, model.frame_size)
    run["upsampling"] = upsampling(model, clips)
    run["flicker"] = flicker(model, clips)
    run["speed"] = speed(model, args)
    with tempfile.TemporaryDirectory() as tmp:
        run["memory"] = {} if args.no_memory else memory(args, Path(tmp))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    text = report(args, run)
    (out / "text_to_video.md").write_text(text)
    (out / "text_to_video.json").write_text(json.dumps(plain(run), indent=1))
    print(text)
    return run


if __name__ == "__main__":
    main()
