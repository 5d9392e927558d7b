"""Video benchmark: NeRV, HNeRV and their boosted versions (fitted per clip) against
x264 and x265 on held-out clips of the default video corpus, in one run.

For each clip (resized, first N frames) and each model size: fit with ``fit_clip`` (the
code path of ``infer.py encode-video``) using each paper's recipe (``nerv.recipe``:
Adam 1e-3 for NeRV / HNeRV; Adan 3e-3, TAT, sine, extra blocks and the FFT loss for the
boost), write the real ``.cgc`` file, decode it with ``DecodedVideo`` (what ``infer.py
decode-video`` runs): bpp from the file size over frames x H x W, RGB PSNR and MS-SSIM,
encode (fitting) time, decode fps on one thread, and PSNR against epochs during fitting
(convergence speed). x264 / x265 (preset slow, CRFs 3-48, 4:2:0, raw bitstreams so no
container bytes) on the same frames. Then the decode speed of every architecture at
256x256 and 0.5 M parameters. Writes benchmarks/results/video_codecs.{md,json},
video_rd.png.

    python benchmarks/video_codecs.py --jobs 2   (2 clips, 2 sizes, 100 epochs: ~41 min on 2 cores)
    python benchmarks/video_codecs.py --jobs 2 --archs hnerv hnerv-boosted --model-sizes 0.6 \
        --out benchmarks/results/video_hnerv_0.6M   (the larger HNeRV pair: ~15 min)
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import lightning as L  # noqa: E402
import torch  # noqa: E402

from _common import fmt, log, machine_info, one_thread, plain, table  # noqa: E402
from codecgen.codecs.video.nerv import DecodedVideo, fit_clip, recipe  # noqa: E402
from codecgen.datamodules.video import VideoDataModule, classical_round_trip, load_video, write_video  # noqa: E402
from codecgen.metrics import psnr  # noqa: E402
from codecgen.nn.losses import ms_ssim  # noqa: E402
from codecgen.nn.nerv import ConvNeXtEncoder, hnerv_for_budget, nerv_for_budget  # noqa: E402

ARCHS = ("nerv", "nerv-boosted", "hnerv", "hnerv-boosted")
CRFS = (3, 8, 13, 18, 23, 28, 38, 48)  # low CRFs reach the networks' bpp on short clips


def msssim(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(ms_ssim(a.float(), b.float(), data_range=1.0))


class EpochPSNR(L.Callback):
    """PSNR over every frame after each ``every``-th epoch of the fit stage."""

    def __init__(self, frames: torch.Tensor, every: int):
        self.frames, self.every, self.curve = frames, every, []

    @torch.no_grad()
    def on_train_epoch_end(self, trainer, module):
        epoch = trainer.current_epoch + 1
        if epoch % self.every and epoch != trainer.max_epochs:
            return
        was_training = module.training
        module.eval()
        index = torch.arange(self.frames.shape[0])
        y = torch.cat([module.render(i, self.frames[i] if module.hybrid else None) for i in index.split(8)])
        self.curve.append((epoch, psnr(y, self.frames)))
        module.train(was_training)


def build(arch: str, size_m: float, n: int, hw: tuple[int, int], strides: list[int]):
    """The decoder (and HNeRV's encoder) at ``size_m`` M parameters, and its paper's recipe."""
    plan = recipe(arch.endswith("boosted"), arch.startswith("hnerv"), len(strides))
    if arch.startswith("hnerv"):
        decoder = hnerv_for_budget(size_m, n, hw, strides, embed_channels=16, **plan["decoder"])
        return decoder, ConvNeXtEncoder(strides=decoder.strides, dims=64, depths=1,  # the solver may change them
                                        embed_channels=decoder.embed_channels), plan
    return nerv_for_budget(size_m, hw, strides, **plan["decoder"]), None, plan


def bench_model(arch, size_m, clip_path, frames, args, strides):
    n, _, h, w = frames.shape
    torch.manual_seed(0)
    decoder, encoder, plan = build(arch, size_m, n, (h, w), strides)
    data = VideoDataModule(video=str(clip_path), batch_size=2)
    data.setup("fit")
    curve = EpochPSNR(frames, max(1, args.epochs // 6))
    t0 = time.perf_counter()
    codec = fit_clip(data, decoder, encoder, args.epochs, args.quant_epochs, lr=args.lr or plan["lr"],
                     optimizer=plan["optimizer"], loss_weights=plan["loss_weights"],
                     accelerator="cpu", progress=False, callbacks=[curve])
    encode_s = time.perf_counter() - t0
    blob = codec.compress()
    decoded, decode_fps = timed_decode(DecodedVideo(blob))
    return {"codec": arch, "setting": f"{size_m:g} M", "params": codec.n_coded_params(),
            "bpp": 8 * len(blob) / (n * h * w), "psnr": psnr(decoded, frames), "ms_ssim": msssim(decoded, frames),
            "encode_s": encode_s, "decode_fps": decode_fps, "curve": curve.curve}


def timed_decode(video: DecodedVideo) -> tuple[torch.Tensor, float]:
    """Every frame of ``video`` (after a warm-up of a few frames) and the decode fps."""
    list(video.frames(0, min(4, video.n_frames)))
    t0 = time.perf_counter()
    decoded = torch.stack(list(video.frames()))
    return decoded, video.n_frames / (time.perf_counter() - t0)


def decode_speed(arch: str, side: int, size_m: float, n: int, strides: list[int]) -> dict:
    """Decode fps of a ``size_m`` M model at ``side`` x ``side`` through the real file path
    (compress -> ``DecodedVideo``). Speed does not depend on the weights' values, so the
    model is not fitted: this measures any clip of this shape."""
    from codecgen.codecs.video.nerv import NeRVVideoCodec

    torch.manual_seed(0)
    decoder, encoder, _ = build(arch, size_m, n, (side, side), strides)
    codec = NeRVVideoCodec(decoder, encoder, n_frames=n, frame_size=(side, side), fps=25.0)
    with torch.no_grad():
        codec.embeddings.normal_()
    _, fps = timed_decode(DecodedVideo(codec.compress()))
    return {"codec": arch, "params": codec.n_coded_params(), "fps": fps}


def bench_classical(encoder: str, crf: int, source: Path, frames: torch.Tensor, tmp: Path) -> dict:
    n, _, h, w = frames.shape
    coded, decoded, encode_s, decode_s = classical_round_trip(source, tmp, encoder, crf)
    decoded = decoded[:n]
    return {"codec": encoder.replace("lib", ""), "setting": f"crf {crf}", "params": None,
            "bpp": 8 * coded.stat().st_size / (n * h * w), "psnr": psnr(decoded, frames),
            "ms_ssim": msssim(decoded, frames), "encode_s": encode_s, "decode_fps": n / decode_s, "curve": []}


def at_bpp(points: list[tuple[float, float]], bpp: float) -> float | None:
    pts = sorted(points)
    for (b0, p0), (b1, p1) in zip(pts, pts[1:]):
        if b0 <= bpp <= b1:
            return p0 + (p1 - p0) * (math.log(bpp) - math.log(b0)) / (math.log(b1) - math.log(b0))
    return None


def bench_clip(clip: str, args, strides: list[int]) -> list[dict]:
    """Every model size and architecture, then x264 / x265, on one clip (one thread)."""
    import logging

    one_thread()
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)  # one table, not 16 trainer banners
    rows = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        frames = load_video(args.data / f"{clip}.mkv", 0, args.frames, size=(args.size, args.size))
        clip_path = tmp / f"{clip}.mkv"
        write_video(frames, clip_path, fps=25.0)
        frames = load_video(clip_path)  # exactly what every codec sees (uint8-rounded)
        for size_m in args.model_sizes:
            for arch in args.archs:
                log(f"{clip}: {arch} {size_m} M")
                rows.append({"clip": clip, **bench_model(arch, size_m, clip_path, frames, args, strides)})
        for encoder in ("libx264", "libx265"):
            for crf in CRFS:
                rows.append({"clip": clip, **bench_classical(encoder, crf, clip_path, frames, tmp)})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT / "data" / "video" / "val")
    parser.add_argument("--clips", nargs="+", default=["pan_opencv_left", "zoom_skimage_astronaut"])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--frames", type=int, default=48)
    parser.add_argument("--model-sizes", type=float, nargs="+", default=[0.15, 0.3])
    parser.add_argument("--strides", default="4,2,2,2,2")
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--quant-epochs", type=int, default=8)
    parser.add_argument("--lr", type=float, default=None, help="one fitting lr for all (default: each paper's)")
    parser.add_argument("--archs", nargs="+", choices=ARCHS, default=list(ARCHS))
    parser.add_argument("--jobs", type=int, default=1, help="clips fitted in parallel, one thread each")
    parser.add_argument("--speed-side", type=int, default=256, help="decode-speed table: frame side")
    parser.add_argument("--speed-size", type=float, default=0.5, help="decode-speed table: model size (M)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()
    strides = [int(s) for s in args.strides.split(",")]
    for clip in args.clips:
        if not (args.data / f"{clip}.mkv").exists():
            raise SystemExit(f"{args.data / clip}.mkv missing: python -m codecgen.datamodules.prepare video --out data/video")
    started = time.perf_counter()
    if args.jobs > 1:  # one clip per process, each on one thread
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            per_clip = list(pool.map(bench_clip, args.clips, [args] * len(args.clips), [strides] * len(args.clips)))
    else:
        per_clip = [bench_clip(clip, args, strides) for clip in args.clips]
    rows = [row for clip_rows in per_clip for row in clip_rows]
    one_thread()
    speeds = []
    for arch in args.archs:
        log(f"decode speed: {arch} {args.speed_size} M at {args.speed_side}x{args.speed_side}")
        speeds.append(decode_speed(arch, args.speed_side, args.speed_size, 50, strides))
    report(rows, speeds, args, time.perf_counter() - started)


def report(rows: list[dict], speeds: list[dict], args, seconds: float) -> None:
    body = [[r["clip"], r["codec"], r["setting"], f"{r['bpp']:.4f}", fmt(r["psnr"]), f"{r['ms_ssim']:.4f}",
             fmt(r["encode_s"], 1), fmt(r["decode_fps"], 1)] for r in rows]
    rd = table(["clip", "codec", "setting", "bpp (file)", "PSNR dB", "MS-SSIM", "encode s", "decode fps (1 thread)"],
               body)
    curves = table(["clip", "codec", "size", "PSNR after epoch (epoch: dB)"],
                   [[r["clip"], r["codec"], r["setting"], ", ".join(f"{e}: {p:.2f}" for e, p in r["curve"])]
                    for r in rows if r["curve"]])
    goals = []
    for clip in sorted({r["clip"] for r in rows}):
        mine = {(r["codec"], r["setting"]): r for r in rows if r["clip"] == clip and r["curve"]}
        for (codec, setting), r in mine.items():
            base = mine.get((codec.replace("-boosted", ""), setting))
            if codec.endswith("boosted") and base is not None:
                name = codec.split("-")[0]
                fit, base_fit = r["curve"][-1][1], base["curve"][-1][1]
                gain = fit - base_fit
                goals.append(f"- {clip}, {setting}: fitted (before quantization) boosted {name} {fit:.2f} dB vs "
                             f"{base_fit:.2f} dB ({gain:+.2f} dB; goal +1 dB): **{'MET' if gain >= 1 else 'NOT MET'}**")
                reach = next((e for e, p in r["curve"] if p >= base_fit), None)
                goals.append(f"- {clip}, {setting}: boosted {name} reaches the baseline's final fitted PSNR "
                             + (f"at epoch {reach} of {r['curve'][-1][0]}" if reach else "never")
                             + f" (faster convergence: **{'MET' if reach and reach < r['curve'][-1][0] else 'NOT MET'}**)")
                goals.append(f"- {clip}, {setting}: coded boosted {name} {r['psnr']:.2f} dB at {r['bpp']:.4f} bpp vs "
                             f"{base['psnr']:.2f} dB at {base['bpp']:.4f} bpp ({r['psnr'] - base['psnr']:+.2f} dB)")
        for setting in sorted({s for _, s in mine}):
            h, n = mine.get(("hnerv", setting)), mine.get(("nerv", setting))
            if h is not None and n is not None:
                gain = h["psnr"] - n["psnr"]
                goals.append(f"- {clip}, {setting}: HNeRV {h['psnr']:.2f} dB vs NeRV {n['psnr']:.2f} dB "
                             f"({gain:+.2f} dB; goal > 0): **{'MET' if gain > 0 else 'NOT MET'}**")
            b = mine.get(("hnerv-boosted", setting))
            if b is None:
                continue
            x265 = at_bpp([(r["bpp"], r["psnr"]) for r in rows if r["clip"] == clip and r["codec"] == "x265"], b["bpp"])
            if x265 is None:
                goals.append(f"- {clip}, {setting}: boosted HNeRV at {b['bpp']:.4f} bpp is outside x265's measured range")
            else:
                gap = b["psnr"] - x265
                goals.append(f"- {clip}, {setting}: boosted HNeRV {b['psnr']:.2f} dB at {b['bpp']:.4f} bpp vs x265 "
                             f"{x265:.2f} dB at that bpp ({gap:+.2f} dB; goal within 1 dB): "
                             f"**{'MET' if gap >= -1 else 'NOT MET'}**")
    speed = table(["codec", "parameters", f"decode fps at {args.speed_side}x{args.speed_side} (1 thread)"],
                  [[r["codec"], f"{r['params'] / 1e6:.3f} M", fmt(r["fps"], 1)] for r in speeds])
    for r in speeds:
        goals.append(f"- decode {r['codec']} {args.speed_size:g} M at {args.speed_side}x{args.speed_side}: "
                     f"{r['fps']:.1f} fps on one thread (goal faster than real time, 25 fps): "
                     f"**{'MET' if r['fps'] >= 25 else 'NOT MET'}**")
    text = "\n\n".join([
        "# Video codecs: neural representations vs x264 / x265",
        f"Held-out clips {', '.join(args.clips)}: first {args.frames} frames at {args.size}x{args.size}; "
        f"{args.epochs} fitting + {args.quant_epochs} quantization-aware epochs per model, strides {args.strides}; "
        f"one CPU thread. Machine: {json.dumps(machine_info())}.",
        "## Rate-distortion (bpp from the real files)", rd,
        "## Convergence (fit stage, before quantization)", curves,
        f"## Decode speed ({args.speed_size:g} M models at {args.speed_side}x{args.speed_side}, 50 frames, "
        "through the file; speed does not depend on the weights, so these are not fitted)", speed,
        "## Goals", "\n".join(goals), f"_Runtime {seconds:.0f} s._",
    ])
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "video_codecs.md").write_text(text + "\n")
    (args.out / "video_codecs.json").write_text(json.dumps(plain({"rows": rows, "decode_speed": speeds}), indent=1))
    plot(rows, args.out / "video_rd.png")


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    clips = sorted({r["clip"] for r in rows})
    codecs = sorted({r["codec"] for r in rows})
    colour = {codec: f"C{i}" for i, codec in enumerate(codecs)}  # one colour per codec in both rows
    sizes = sorted({r["setting"] for r in rows if r["curve"]})
    fig, axes = plt.subplots(2, len(clips), figsize=(6 * len(clips), 9), squeeze=False)
    for j, clip in enumerate(clips):
        ax = axes[0][j]
        for codec in codecs:
            pts = sorted((r["bpp"], r["psnr"]) for r in rows if r["clip"] == clip and r["codec"] == codec)
            ax.plot(*zip(*pts), marker="o", color=colour[codec], label=codec)
        ax.set(xscale="log", xlabel="bpp", ylabel="RGB PSNR (dB)", title=clip)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        ax = axes[1][j]
        for r in rows:
            if r["clip"] == clip and r["curve"]:
                ax.plot(*zip(*r["curve"]), marker=".", color=colour[r["codec"]],
                        linestyle=("-", "--", ":")[sizes.index(r["setting"]) % 3], label=f"{r['codec']} {r['setting']}")
        ax.set(xlabel="epoch", ylabel="PSNR (dB)", title=f"{clip}: convergence (fit stage)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
