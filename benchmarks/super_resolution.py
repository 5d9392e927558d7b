"""Arbitrary-scale super-resolution benchmark: the latent diffusion SR model with an implicit
neural decoder (Kim & Kim, CVPR 2024, "Arbitrary-Scale Image Generation and Upsampling using
Latent Diffusion Model and Implicit Neural Decoder"; its decoder is a LIIF: Chen et al.,
CVPR 2021, "Learning Continuous Image Representation with Local Implicit Image Function")
next to bicubic and Lanczos, in (x2-x4) and out of (x6-x12) its training scales.

One run, same process, same crops, one thread:

    python benchmarks/super_resolution.py [--sr-model M] [--aligned-model M] [--data data/images]
        [--lr-size 32] [--crops-per-image 1] [--max-images 4] [--scales 2 3 4 6 8 12] [--steps 20]
        [--seeds 0 1] [--memory-sizes 256 512 1024] [--tile 64] [--memory-steps 1]
        [--memory-cap-gb G] [--out benchmarks/results] [--quick] [--memory-only]

Data: ``DATA/val/*.png`` (or ``DATA/*.png``), sorted, less those whose shorter side is under
``lr_size x max(scales)`` (dropped at every scale, so all scales average the same photos);
``--max-images`` of them evenly spaced (0: all). At scale s the HR crop is ``lr_size x s`` square
at fixed relative positions (``POSITIONS``, the centre first); the LR, ``lr_size`` at every scale,
is its antialiased bicubic downscale (``first_stage.resize``) rounded to 8 bits.
Methods: bicubic, Lanczos (Pillow); LIIF = ``diffusion=False`` of the SR model (its frozen first
stage, which the aligned model shares); LDM (``--sr-model``) and LDM + alignment
(``--aligned-model``): DPM-Solver, ``--steps`` steps, once per ``--seeds``. A method without its
model is skipped with a note. Outputs are rounded to 8 bits, as an image file holds them.
Metrics (RGB in [0, 1]): PSNR, SSIM, MS-SSIM, GMSD (``codecgen.metrics``) and HaarPSI
(``piq.haarpsi``) of the output against the HR crop, both with s pixels shaved off each border
(the SR literature's PSNR); LR consistency = PSNR of the output downscaled back to the LR size
(the same resize) against the LR; cross-scale consistency = PSNR of the x4 crops' LR upscaled
x2 against their x4 output downscaled to x2; seed diversity = PSNR and mean absolute difference
(8-bit levels) between two seeds' outputs; seconds per upscale.
Memory: a child process per ``--memory-sizes`` square output (``memory_child``: x4 of a random
LR, ``--tile``, ``--memory-steps`` steps: peak memory does not depend on them), its peak RSS
(``VmHWM``, Linux); a watchdog kills it above ``--memory-cap-gb`` (default half the available
memory, at most 8 GiB) and the larger sizes are then skipped.
Budget (measured with the shipped models, the size of ``configs/arbitrary_sr/small.yaml``, one
thread, the other core busy training): one photo costs ~2.5 min (one crop, six scales, two
diffusion models x two seeds x 20 steps; x12 alone about half), so the quality part of the
defaults (4 photos) takes ~10 minutes and the default memory runs (256, 512 and 1024 px) ~2:
one run stays under 15 minutes. A 4096 x 4096 output cannot join them: it is 16 M pixels
through the encoder, the feature decoder and the LIIF, ~11 minutes by itself. The memory goal
(4096 against 1024) therefore has its own run, ``--memory-only --memory-sizes 1024 4096``
(~13 minutes), which writes ``OUT/super_resolution_memory.md`` and ``.json`` and leaves the
quality report alone.
Writes ``OUT/super_resolution.md``, ``.json`` (per-crop records) and ``.png``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_var] = "1"  # one thread everywhere

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402
from tqdm import tqdm  # noqa: E402

from _common import fmt, list_images, log, machine_info, one_thread, plain, proc_kib  # noqa: E402
from _common import run_measured, table, to_pil  # noqa: E402

import codecgen  # noqa: E402
from codecgen import metrics  # noqa: E402
from codecgen.datamodules.image import load_image  # noqa: E402
from codecgen.generators.arbitrary_scale.first_stage import resize  # noqa: E402
from codecgen.nn.losses import ms_ssim_scales  # noqa: E402

POSITIONS = ((0.5, 0.5), (0.2, 0.2), (0.8, 0.8), (0.2, 0.8), (0.8, 0.2))  # (top, left) fractions
ANCHORS = {"bicubic": Image.BICUBIC, "Lanczos": Image.LANCZOS}
LDM, ALIGNED, LIIF = "LDM", "LDM + alignment", "LIIF"
KEYS = (("psnr", "PSNR dB", 2), ("ssim", "SSIM", 4), ("ms_ssim", "MS-SSIM", 4), ("gmsd", "GMSD (lower)", 4),
        ("haarpsi", "HaarPSI", 4), ("lr_psnr", "LR PSNR dB", 2))
CROSS = (4, 2)  # cross-scale consistency: the x4 LR at x4 vs at x2
GOAL_ALIGN_DB, GOAL_MEMORY, MEMORY_SCALE = 1.0, 1.5, 4


# ----------------------------------------------------------------------------- data
def quantise(x: torch.Tensor) -> torch.Tensor:
    return (x.clamp(0, 1) * 255).round() / 255


def shrink(x: torch.Tensor, size) -> torch.Tensor:
    """Antialiased bicubic resize of one image (3, H, W), clamped to [0, 1]."""
    return resize(x[None], tuple(size))[0].clamp(0, 1)


def pick_images(files: list[Path], need: int, n: int) -> tuple[list[Path], list[str]]:
    """``n`` images (0: all) evenly spaced over those whose shorter side is at least ``need``."""
    usable, dropped = [], []
    for path in files:
        with Image.open(path) as img:
            (usable if min(img.size) >= need else dropped).append(path)
    if not usable:
        sys.exit(f"error: no image has a shorter side of at least {need} px (--lr-size x the largest scale)")
    if n and n < len(usable):
        usable = [usable[i * len(usable) // n] for i in range(n)]
    return usable, [f"{p.name} (shorter side under {need} px)" for p in dropped]


def make_crops(files: list[Path], lr_size: int, scales: list[int], per_image: int) -> list[dict]:
    crops = []
    for path in files:
        image, _ = load_image(path)
        h, w = image.shape[-2:]
        for index, (fy, fx) in enumerate(POSITIONS[:per_image]):
            for s in scales:
                size = lr_size * s
                top, left = round(fy * (h - size)), round(fx * (w - size))
                hr = image[:, top : top + size, left : left + size].contiguous()
                crops.append({"name": f"{path.stem}#{index}", "file": path.name, "scale": s, "top": top,
                              "left": left, "size": size, "hr": hr, "lr": quantise(shrink(hr, (lr_size, lr_size)))})
    return crops


# ----------------------------------------------------------------------------- methods
def model_arg(name: str) -> str:
    """A path made absolute (the memory runs' children start elsewhere); a shipped name as is."""
    return str(Path(name).resolve()) if Path(name).exists() else name


def load_model(name: str):
    try:
        model = codecgen.load(model_arg(name))
    except Exception as error:  # noqa: BLE001 - any loading failure is one line to the user
        sys.exit(f"error: cannot load {name}: {error}")
    if getattr(model, "task", None) != "upscale":
        sys.exit(f"error: {name} is not an upscaling (arbitrary-scale SR) model")
    return model


def make_methods(sr: str | None, aligned: str | None, steps: int) -> tuple[list[dict], list[str], dict]:
    """The methods that can run ({name, kind, run(lr, size, seed)}), notes on those that cannot,
    and the models loaded."""
    def anchor(filt):
        return lambda lr, size, seed: torch.from_numpy(
            np.array(to_pil(lr).resize(size[::-1], filt))).permute(2, 0, 1).float() / 255

    def sampler(model, diffusion: bool):
        pipe = model.pipeline("dpm")
        return lambda lr, size, seed: pipe(lr, size=size, num_steps=steps, seed=seed, diffusion=diffusion).images[0]

    found = [{"name": name, "kind": "anchor", "run": anchor(filt)} for name, filt in ANCHORS.items()]
    models = {label: load_model(path) for label, path in ((LDM, sr), (ALIGNED, aligned)) if path}
    if models:
        source = LDM if LDM in models else ALIGNED
        found.append({"name": LIIF, "kind": "liif", "run": sampler(models[source], False), "model": source})
    found += [{"name": label, "kind": "diffusion", "run": sampler(models[label], True)} for label in models]
    notes = [f"{label}: skipped (no {flag})" for label, flag in ((LIIF, "--sr-model or --aligned-model"),
             (LDM, "--sr-model"), (ALIGNED, "--aligned-model")) if label not in [m["name"] for m in found]]
    return found, notes, models


def upscale(method: dict, lr: torch.Tensor, size: tuple[int, int], seed) -> tuple[torch.Tensor, float]:
    t0 = time.perf_counter()
    with torch.no_grad():
        out = method["run"](lr, size, seed)
    return quantise(out), time.perf_counter() - t0


def score(crop: dict, y: torch.Tensor) -> dict:
    import piq

    k = crop["scale"]
    ref, out = crop["hr"][:, k:-k, k:-k], y[:, k:-k, k:-k]
    return {"psnr": metrics.psnr(ref, out), "ssim": metrics.ssim(ref, out), "ms_ssim": metrics.ms_ssim(ref, out),
            "gmsd": metrics.gmsd(ref, out), "haarpsi": float(piq.haarpsi(out[None], ref[None], data_range=1.0)),
            "lr_psnr": metrics.psnr(crop["lr"], shrink(y, crop["lr"].shape[-2:]))}


def bench(methods: list[dict], crops: list[dict], seeds: list[int]) -> tuple[list[dict], list[dict]]:
    """Per-output records (metrics, seconds, cross-scale PSNR on the x4 crops) and per-seed-pair records."""
    records, pairs = [], []
    for method in methods:  # first calls allocate: keep them out of the timings
        upscale(method, crops[0]["lr"], tuple(2 * n for n in crops[0]["lr"].shape[-2:]), seeds[0])
    for crop, method in tqdm(list(itertools.product(crops, methods)), desc="upscale", file=sys.stderr, leave=False):
        s, name, outs = crop["scale"], method["name"], []
        run_seeds = seeds if method["kind"] == "diffusion" else [None]
        for seed in run_seeds:
            y, seconds = upscale(method, crop["lr"], (crop["size"], crop["size"]), seed)
            rec = {"method": name, "scale": s, "crop": crop["name"], "seed": seed, "time_s": seconds, **score(crop, y)}
            if s == CROSS[0]:
                small = crop["lr"].shape[-1] * CROSS[1]
                y_small, _ = upscale(method, crop["lr"], (small, small), seed)
                rec["cross_psnr"] = metrics.psnr(y_small, shrink(y, (small, small)))
            records.append(rec)
            outs.append(y)
        for (a, ya), (b, yb) in itertools.combinations(zip(run_seeds, outs), 2):
            pairs.append({"method": name, "scale": s, "crop": crop["name"], "seeds": [a, b],
                          "psnr": metrics.psnr(ya, yb), "mad": 255 * float((ya - yb).abs().mean())})
    return records, pairs


def summarise(records: list[dict], pairs: list[dict], names: list[str], scales: list[int]) -> list[dict]:
    def mean(rs: list[dict], key: str):
        values = [r[key] for r in rs if r.get(key) is not None]
        return statistics.fmean(values) if values else None

    rows = []
    for s in scales:
        for name in names:
            rs = [r for r in records if r["scale"] == s and r["method"] == name]
            ps = [p for p in pairs if p["scale"] == s and p["method"] == name]
            rows.append({"scale": s, "method": name, "n": len(rs), "time_s": mean(rs, "time_s"),
                         "cross_psnr": mean(rs, "cross_psnr"), "seed_psnr": mean(ps, "psnr"),
                         "seed_mad": mean(ps, "mad"), **{k: mean(rs, k) for k, _, _ in KEYS}})
    return rows


# ----------------------------------------------------------------------------- memory
def memory_child(model: str, size: str, tile: str, steps: str) -> None:
    """Run in a child process: one ``size`` x ``size`` upscale (x4 of a random LR, tiled);
    prints a JSON line (its peak RSS after loading and at the end, seconds, UNet tiles per step)."""
    one_thread()
    n, steps = int(size), int(steps)
    pipe = codecgen.load(model).pipeline("dpm")
    loaded = proc_kib("VmHWM", "self")
    lr = torch.rand(3, n // MEMORY_SCALE, n // MEMORY_SCALE, generator=torch.Generator().manual_seed(0))
    calls, t0 = [0], time.perf_counter()
    with torch.no_grad():
        out = pipe(lr, size=(n, n), num_steps=steps, seed=0, tile=int(tile),
                   progress=lambda done, total: calls.__setitem__(0, total))
    print(json.dumps({"loaded_mib": loaded / 1024, "peak_mib": proc_kib("VmHWM", "self") / 1024,
                      "upscale_s": time.perf_counter() - t0, "tiles": calls[0] // steps,
                      "shape": list(out.images.shape)}))


def bench_memory(model: str, sizes: list[int], tile: int, steps: int, cap_mib: float) -> list[dict]:
    code = (f"import sys; sys.path.insert(0, {str(HERE)!r}); from super_resolution import memory_child; "
            "memory_child(*sys.argv[1:])")
    rows, stop = [], None
    for size in sorted(sizes):
        row = {"size": size, "lr_size": size // MEMORY_SCALE, "cap_mib": cap_mib}
        if stop:
            rows.append(row | {"status": f"not run ({stop})"})
            continue
        log(f"memory: {size}x{size} in a child process (cap {cap_mib / 1024:.1f} GiB)")
        run = run_measured([sys.executable, "-c", code, model, str(size), str(tile), str(steps)], cap_mib, ROOT)
        row |= {"peak_mib": run["peak_mib"], "wall_s": run["wall_s"]}
        if run["killed"]:
            row["status"] = stop = f"killed above the {cap_mib / 1024:.1f} GiB cap after {run['wall_s']:.0f} s"
        elif run["rc"] != 0:
            tail = (run["stderr"].strip().splitlines() or ["?"])[-1][:200]
            row["status"] = stop = f"failed (exit {run['rc']}: {tail})"
        else:
            row |= json.loads(run["stdout"].strip().splitlines()[-1]) | {"status": "ok"}
        rows.append(row)
    return rows


def default_cap_mib() -> float:
    """Half the memory available now, at most 8 GiB (others share the machine)."""
    return min((proc_kib("MemAvailable") / 1024 or 16 * 1024.0) / 2, 8 * 1024.0)


# ----------------------------------------------------------------------------- report
def met(ok: bool) -> str:
    return "**met**" if ok else "**NOT MET**"


def versus(get: dict, a: str, b: str, scales: list[int], keys: tuple[str, ...]) -> tuple[bool, str]:
    """Whether ``a`` beats ``b`` on every key at every scale (GMSD: lower), and the numbers."""
    def better(s: int, k: str) -> bool:
        return get[s, a][k] < get[s, b][k] if k == "gmsd" else get[s, a][k] > get[s, b][k]

    def pair(s: int, k: str) -> str:
        d = 2 if k == "psnr" else 4
        return f"{k} {get[s, a][k]:.{d}f} vs {get[s, b][k]:.{d}f}"

    numbers = "; ".join(f"x{s} " + ", ".join(pair(s, k) for k in keys) for s in scales)
    return all(better(s, k) for s in scales for k in keys), numbers


def memory_goal(memory: list[dict]) -> tuple[bool | None, str]:
    by = {m["size"]: m for m in memory}
    small, large = by.get(1024, {}), by.get(4096, {})
    what = f"peak RSS at 4096x4096 within {GOAL_MEMORY:g}x of 1024x1024"
    if small.get("status") == "ok" and large.get("status") == "ok":
        ratio = large["peak_mib"] / small["peak_mib"]
        return ratio <= GOAL_MEMORY, f"{what}: {large['peak_mib']:.0f} / {small['peak_mib']:.0f} MiB = {ratio:.2f}x"
    return None, (f"{what}: not measured in this run (1024: {small.get('status', 'not in --memory-sizes')}; "
                  f"4096: {large.get('status', 'not in --memory-sizes')}); it has its own run: "
                  f"--memory-only --memory-sizes 1024 4096")


def goals(rows: list[dict], records: list[dict], memory: list[dict], names: list[str], scales: list[int]):
    get = {(r["scale"], r["method"]): r for r in rows}
    lines, flags = [], {}
    if LIIF in names:
        flags["liif_beats_lanczos"], numbers = versus(get, LIIF, "Lanczos", scales, ("psnr", "haarpsi"))
        lines.append(f"- LIIF beats Lanczos on PSNR and HaarPSI at every scale run ({numbers}): "
                     f"{met(flags['liif_beats_lanczos'])}")
    high = [s for s in scales if s >= 8]
    for name in (LDM, ALIGNED):
        if name in names and high:
            flags[f"{name} beats LIIF"], numbers = versus(get, name, LIIF, high, ("haarpsi", "gmsd"))
            lines.append(f"- {name} beats LIIF on HaarPSI and GMSD at x8 and above ({numbers}): "
                         f"{met(flags[f'{name} beats LIIF'])}")
    if LDM in names and ALIGNED in names:
        a, b = (statistics.fmean(r["lr_psnr"] for r in records if r["method"] == n) for n in (ALIGNED, LDM))
        flags["alignment_lr_consistency"] = a - b >= GOAL_ALIGN_DB
        per = ", ".join(f"x{s} {get[s, ALIGNED]['lr_psnr'] - get[s, LDM]['lr_psnr']:+.2f}" for s in scales)
        lines.append(f"- alignment raises LR-consistency PSNR by >= {GOAL_ALIGN_DB:g} dB over plain LDM: {a:.2f} vs "
                     f"{b:.2f} dB = {a - b:+.2f} dB (mean over scales, crops and seeds; per scale {per}): "
                     f"{met(flags['alignment_lr_consistency'])}")
    flags["memory"], line = memory_goal(memory)
    lines.append(f"- {line}" + ("" if flags["memory"] is None else f": {met(flags['memory'])}"))
    if not {LDM, ALIGNED} <= set(names):
        lines.append("- not measured, for want of a model: the goals of the methods skipped above")
    return lines, flags


def scale_table(rows: list[dict], s: int) -> str:
    return table(["method", *(label for _, label, _ in KEYS), "seed PSNR dB", "seed MAD", "s / image", "outputs"],
                 [[r["method"], *(fmt(r[k], d) for k, _, d in KEYS), fmt(r["seed_psnr"]), fmt(r["seed_mad"]),
                   fmt(r["time_s"], 3), str(r["n"])] for r in rows if r["scale"] == s])


def consistency_table(rows: list[dict], names: list[str], scales: list[int]) -> str:
    get = {(r["scale"], r["method"]): r for r in rows}
    cross = [f"x{CROSS[0]} -> x{CROSS[1]} PSNR dB"] if CROSS[0] in scales else []
    body = [[n, *(fmt(get[s, n]["lr_psnr"]) for s in scales), *(fmt(get[CROSS[0], n]["cross_psnr"]) for _ in cross)]
            for n in names]
    return table(["method", *(f"LR PSNR x{s}" for s in scales), *cross], body)


def memory_table(memory: list[dict], steps: int) -> str:
    return table(["output", "LR", "UNet tiles / step", "peak RSS MiB", "RSS after load MiB",
                  f"upscale s ({steps} step)", "child wall s", "status"],
                 [[f"{m['size']}x{m['size']}", f"{m['lr_size']}x{m['lr_size']}", str(m.get("tiles", "-")),
                   fmt(m.get("peak_mib"), 0), fmt(m.get("loaded_mib"), 0), fmt(m.get("upscale_s"), 1),
                   fmt(m.get("wall_s"), 1), m["status"]] for m in memory])


def plot(rows: list[dict], names: list[str], trained: float, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for ax, key, label in ((axes[0], "psnr", "PSNR (dB, shaved)"), (axes[1], "haarpsi", "HaarPSI")):
        for name in names:
            rs = [r for r in rows if r["method"] == name]
            ax.plot([r["scale"] for r in rs], [r[key] for r in rs], marker="o", label=name)
        scales = sorted({r["scale"] for r in rows})
        ax.set_xscale("log")
        ax.set_xticks(scales, [f"x{s}" for s in scales])
        ax.minorticks_off()
        ax.axvline(trained, color="grey", linestyle=":", linewidth=1)
        ax.set_xlabel(f"scale (dotted: largest trained, x{trained:g})")
        ax.set_ylabel(label)
        ax.grid(True, alpha=0.3)
    axes[1].legend(fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ----------------------------------------------------------------------------- main
def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sr-model", help="an ArbitraryScaleSR (.ckpt, export folder): LIIF and LDM")
    p.add_argument("--aligned-model", help="the same after alignment fine-tuning: LDM + alignment")
    p.add_argument("--data", type=Path, default=ROOT / "data" / "images")
    p.add_argument("--lr-size", type=int, default=32, help="LR side at every scale (HR = this x scale)")
    p.add_argument("--crops-per-image", type=int, default=1, help=f"1..{len(POSITIONS)} (the centre one first)")
    p.add_argument("--max-images", type=int, help="evenly spaced over the sorted list; 0: all (default 4, --quick 2)")
    p.add_argument("--scales", type=int, nargs="+", default=[2, 3, 4, 6, 8, 12])
    p.add_argument("--steps", type=int, default=20, help="DPM-Solver steps")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--memory-sizes", type=int, nargs="*",
                   help="output sides of the memory runs (default 256 512 1024; --quick 128 256; none: skip)")
    p.add_argument("--tile", type=int, default=64, help="UNet tile (latent positions) in the memory runs")
    p.add_argument("--memory-steps", type=int, default=1)
    p.add_argument("--memory-cap-gb", type=float, help="kill a memory run above this (default: half the available "
                   "memory, at most 8)")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    p.add_argument("--quick", action="store_true", help="2 images, memory sizes 128 and 256 (smoke test)")
    p.add_argument("--memory-only", action="store_true",
                   help="only the memory runs (e.g. --memory-sizes 1024 4096 for the memory goal), reported in "
                        "OUT/super_resolution_memory.md and .json")
    args = p.parse_args(argv)
    if args.max_images is None:
        args.max_images = 2 if args.quick else 4
    if args.memory_sizes is None:
        args.memory_sizes = [128, 256] if args.quick else [256, 512, 1024]
    problems = [msg for bad, msg in (
        (args.lr_size < 16, "--lr-size must be at least 16"),
        (not 1 <= args.crops_per_image <= len(POSITIONS), f"--crops-per-image must be 1..{len(POSITIONS)}"),
        (args.max_images < 0, "--max-images must be >= 0"),
        (min(args.scales) < 2 or len(set(args.scales)) < len(args.scales), "--scales: distinct whole numbers >= 2"),
        (args.steps < 1 or args.memory_steps < 1, "--steps and --memory-steps must be >= 1"),
        (len(set(args.seeds)) < len(args.seeds) or min(args.seeds) < 0, "--seeds: distinct numbers >= 0"),
        (any(n < 16 or n % MEMORY_SCALE for n in args.memory_sizes), "--memory-sizes: multiples of 4, >= 16"),
        (args.tile < 1, "--tile must be >= 1"),
        (args.memory_cap_gb is not None and args.memory_cap_gb <= 0, "--memory-cap-gb must be > 0"),
        (args.memory_only and not args.memory_sizes, "--memory-only needs --memory-sizes"),
        (args.memory_only and not (args.sr_model or args.aligned_model),
         "--memory-only needs --aligned-model or --sr-model")) if bad]
    if problems:
        p.error("; ".join(problems))
    args.scales = sorted(args.scales)
    return args


def report(args, run: dict) -> str:
    names, trained, machine = run["methods"], run["trained_scale"], run["machine"]
    shaved = {s: (args.lr_size - 2) * s for s in args.scales}
    few = "; ".join(f"x{s} ({shaved[s]} px): {ms_ssim_scales(shaved[s])}" for s in args.scales
                    if ms_ssim_scales(shaved[s]) < 5)
    skipped = ("Skipped: " + "; ".join(run["skipped"]) + ".") if run["skipped"] else "Every method ran."
    if run["dropped"]:
        skipped += f" Photos dropped (too small for x{max(args.scales)}): {', '.join(run['dropped'])}."
    sections = [
        "# Arbitrary-scale super-resolution on held-out photos", run["title"] + (
            f". Models: --sr-model `{args.sr_model}`, --aligned-model `{args.aligned_model}` (largest trained scale "
            f"x{trained:g}); DPM-Solver {args.steps} steps, seeds {args.seeds}. Machine: {machine['nproc']} CPUs, "
            f"{machine['cpu']}; torch {machine['torch']}; one thread{' (--quick)' if args.quick else ''}."), skipped]
    for s in args.scales:
        tag = "in distribution" if s <= trained else "out of distribution"
        sections += [f"## x{s} ({tag}; HR {args.lr_size * s} px)", scale_table(run["rows"], s)]
    cross = (f"Cross-scale: the x{CROSS[0]} crops' LR upscaled x{CROSS[1]} vs their x{CROSS[0]} output downscaled to "
             f"x{CROSS[1]} (antialiased bicubic), per method and seed." if CROSS[0] in args.scales
             else f"Cross-scale: not measured (needs x{CROSS[0]} in --scales).")
    memory = run["memory"]
    sections += [
        (f"Means over crops and seeds. PSNR, SSIM, MS-SSIM, GMSD, HaarPSI: RGB, `scale` px shaved off each border of "
         f"the HR crop and of the output (rounded to 8 bits). MS-SSIM drops the coarse scales smaller than its window "
         f"on small images (scales used: {few or 'all 5'}). LR PSNR: the output downscaled (antialiased bicubic) "
         f"to the LR size vs the LR input. Seed PSNR / MAD: between the outputs of two seeds (MAD in 8-bit levels). "
         f"s / image: one upscale. LIIF: the first stage of the {run['liif_model']} model."),
        "## Consistency", consistency_table(run["rows"], names, args.scales), cross,
        "## Memory (child processes)",
        (memory_table(memory, args.memory_steps) + f"\n\nModel `{run['memory_model']}`, x{MEMORY_SCALE} from a "
         f"random LR, `tile={args.tile}`, {args.memory_steps} DPM-Solver step(s); peak RSS = the child's `VmHWM`; "
         f"cap {memory[0]['cap_mib'] / 1024:.1f} GiB." if memory else "Not run (no model, or no --memory-sizes)."),
        "## Goals", "\n".join(run["goals"]),
        f"_Runtime {run['runtime_s']:.0f} s (quality {run['quality_s']:.0f} s, memory {run['memory_s']:.0f} s)._"]
    return "\n\n".join(sections) + "\n"


def run_memory(args) -> tuple[str | None, list[dict], float]:
    """The memory runs of the aligned model (else the plain one): (model, rows, seconds)."""
    model = args.aligned_model or args.sr_model
    cap_mib = args.memory_cap_gb * 1024 if args.memory_cap_gb else default_cap_mib()
    t0 = time.perf_counter()
    rows = (bench_memory(model_arg(model), args.memory_sizes, args.tile, args.memory_steps, cap_mib)
            if model and args.memory_sizes else [])
    return model, rows, time.perf_counter() - t0


def memory_report(args, model: str, memory: list[dict], seconds: float) -> str:
    flag, line = memory_goal(memory)
    return "\n\n".join([
        "# Arbitrary-scale super-resolution: peak memory as the output grows",
        f"`python benchmarks/super_resolution.py --memory-only --memory-sizes {' '.join(map(str, args.memory_sizes))} "
        f"--aligned-model {model}` (one thread; {machine_info()['cpu']}).",
        memory_table(memory, args.memory_steps),
        (f"Model `{model}`, x{MEMORY_SCALE} from a random LR, `tile={args.tile}`, {args.memory_steps} DPM-Solver "
         f"step(s); peak RSS = the child's `VmHWM`; cap {memory[0]['cap_mib'] / 1024:.1f} GiB."),
        "## Goal", f"- {line}" + ("" if flag is None else f": {met(flag)}"),
        f"_Runtime {seconds:.0f} s._"]) + "\n"


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    one_thread()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.memory_only:
        model, memory, seconds = run_memory(args)
        text = memory_report(args, model, memory, seconds)
        print(text)
        (args.out / "super_resolution_memory.md").write_text(text)
        (args.out / "super_resolution_memory.json").write_text(json.dumps(plain(
            {"machine": machine_info(), "args": {k: str(v) for k, v in vars(args).items()}, "memory_model": model,
             "memory": memory, "goal": memory_goal(memory)[1], "runtime_s": seconds}), indent=1))
        log(f"done in {seconds:.0f} s; wrote {args.out / 'super_resolution_memory.md'}, .json")
        return
    started = time.perf_counter()
    files, dropped = pick_images(list_images(args.data, None), args.lr_size * max(args.scales), args.max_images)
    methods, skipped, models = make_methods(args.sr_model, args.aligned_model, args.steps)
    names = [m["name"] for m in methods]
    for line in [f"dropped {d}" for d in dropped] + skipped:
        log(line)
    crops = make_crops(files, args.lr_size, args.scales, args.crops_per_image)
    log(f"{len(files)} images x {args.crops_per_image} crop(s) x {len(args.scales)} scales: {', '.join(names)}")
    t0 = time.perf_counter()
    records, pairs = bench(methods, crops, args.seeds)
    t_quality = time.perf_counter() - t0
    rows = summarise(records, pairs, names, args.scales)
    memory_model, memory, t_memory = run_memory(args)
    goal_lines, flags = goals(rows, records, memory, names, args.scales)
    title = (f"Data `{args.data}`: {len(files)} held-out photos ({', '.join(p.stem for p in files)}), "
             f"{args.crops_per_image} crop(s) each; LR {args.lr_size} px square at every scale, HR = LR x scale")
    run = {"machine": machine_info(), "args": {k: str(v) for k, v in vars(args).items()}, "title": title,
           "methods": names, "skipped": skipped, "dropped": dropped, "scales": args.scales,
           "trained_scale": next(iter(models.values())).max_trained_scale if models else 4.0,
           "liif_model": next((m["model"] for m in methods if m["kind"] == "liif"), None),
           "memory_model": memory_model, "rows": rows, "memory": memory,
           "crops": [{k: v for k, v in c.items() if k not in ("hr", "lr")} for c in crops], "goals": goal_lines,
           "goal_flags": flags, "per_output": records, "seed_pairs": pairs, "quality_s": t_quality,
           "memory_s": t_memory, "runtime_s": time.perf_counter() - started}
    text = report(args, run)
    print(text)
    (args.out / "super_resolution.md").write_text(text)
    plot(rows, names, run["trained_scale"], args.out / "super_resolution.png", title)
    (args.out / "super_resolution.json").write_text(json.dumps(plain(run), indent=1))
    log(f"done in {run['runtime_s']:.0f} s; wrote {args.out / 'super_resolution.md'}, .json, .png")


if __name__ == "__main__":
    main()
