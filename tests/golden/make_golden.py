"""Golden bitstreams: (re)create the sources, ``.cgc`` files and ``manifest.json`` in this folder.

As CompressAI pins its own bitstreams, the project pins one small file per shipped model
(``hificodec-16k``, ``languagecodec-16k``, ``vqgan-f16``) and one tiny HNeRV clip, with a
SHA-256 of each decoded output in its output format (16-bit PCM samples, 8-bit pixels).
``tests/test_golden.py`` decodes every file and re-encodes every source against them, so a
change that moves a single bit of a file or of a decoded sample is seen.

Everything goes through the public inference CLI (``codecgen.cli.infer_main``, what
``infer.py`` runs), the same commands in every version of the code, so this script can
also code the same sources with an older checkout (``PYTHONPATH=<old checkout>``) to prove
that a refactor changed no behaviour. One torch thread and a fixed seed before each encode
(the video codec fits a freshly initialised network); each source is encoded twice and the
manifest records whether both runs gave the same bytes (``reencode``): only then does the
test compare a re-encode with the stored file.

    PYTHONPATH=$PWD OMP_NUM_THREADS=1 python tests/golden/make_golden.py        # code the stored sources again
    ... make_golden.py --new-sources                  # also regenerate the sources (needs espeak-ng, scikit-image)
    ... make_golden.py --out DIR                      # write somewhere else (sources are copied from here)
    ... make_golden.py --legacy-from DIR              # keep DIR's files that differ as legacy_*.cgc (decode-only)
    ... make_golden.py --add-platform                 # this CPU computes other bits: record its own hashes

Other CPUs. Float kernels differ between CPUs (AVX2 against AVX-512 builds of oneDNN / MKL),
and with them a decoded sample or a fitted weight. :func:`kernel_fingerprint` hashes what a
fixed set of the kernels the codecs run (1-D and 2-D convolutions, transposed convolutions,
matrix products, the usual activations and norms, at odd sizes) computes on fixed inputs.
``--add-platform`` decodes every pinned file and re-encodes every source on this machine and
records the digests under ``platforms[<its fingerprint>]``; the test compares against them on
a machine with that fingerprint, and against the pinned ones otherwise. The files themselves
are never changed: a new platform only adds what it computes from them. The manifest made
before fingerprints existed has none for its own platform: a machine whose fingerprint is not
recorded is held to the pinned values.

How the files were checked against the code before the restructuring (commit bf93a47):

    git worktree add /tmp/golden-old bf93a47
    PYTHONPATH=/tmp/golden-old python tests/golden/make_golden.py --out /tmp/golden-old-out
    PYTHONPATH=$PWD python tests/golden/make_golden.py --legacy-from /tmp/golden-old-out

Every file and decoded hash was identical except ``nerv.cgc``: same payload and decoded
frames, but its header names the decoder ``codecgen.nn.nerv.NeRVGenerator`` (2 bytes longer);
that file is kept as ``legacy_nerv.cgc``.

Later, exact resuming of training (``codecgen.seeding``: every random draw seeded from the
run's seed and the step) changed the random numbers a seeded fit draws, so the fitted
videos changed (audio and image files did not); the HNeRV file from before is kept as
``legacy_hnerv.cgc`` (``--legacy-from`` a copy of the folder made before regenerating).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import random
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
MANIFEST = "manifest.json"
SAMPLE_RATE = 16000
CLIP_FRAMES, SIDE, PAN_STEP = 8, 64, 4
SEED = 0

# name -> what it codes and how; "args" are the encode command's options
ENTRIES = {
    "hificodec-16k": {"kind": "audio", "model": "hificodec-16k", "source": "speech.wav", "args": []},
    "languagecodec-16k": {"kind": "audio", "model": "languagecodec-16k", "source": "speech.wav",
                          "args": ["--n-q", "4"]},
    "vqgan-f16": {"kind": "image", "model": "vqgan-f16", "source": "image.png", "args": ["--codebook-size", "64"]},
    "hnerv": {"kind": "video", "model": None, "source": "clip",
              "args": ["--arch", "hnerv", "--model-size", "0.025", "--strides", "4,2,2", "--embed-channels", "8",
                       "--epochs", "12", "--quant-epochs", "3", "--batch-size", "2"]},
    # plain NeRV too: its decoder class was renamed (NeRVGenerator -> NeRVDecoder) and files name it
    "nerv": {"kind": "video", "model": None, "source": "clip",
             "args": ["--arch", "nerv", "--model-size", "0.04", "--strides", "4,2,2",
                      "--epochs", "12", "--quant-epochs", "3", "--batch-size", "2"]},
}
# kind -> (encode command, decode command, decoded output's name: a suffix, or "" for a folder of PNGs)
COMMANDS = {"audio": ("encode", "decode", ".wav"), "image": ("compress", "decompress", ".png"),
            "video": ("encode-video", "decode-video", "")}


# ----------------------------------------------------------------------------- sources
def make_sources(folder: Path) -> None:
    """~1 s of espeak-ng speech (16-bit, 16 kHz), a 64 x 64 photo and an 8-frame 64 x 64 pan."""
    import soundfile as sf
    import skimage.data
    from PIL import Image

    from codecgen.datamodules.signals import espeak

    speech = espeak("the quick brown fox", sr=SAMPLE_RATE)[:SAMPLE_RATE]
    speech = np.pad(speech, (0, SAMPLE_RATE - len(speech)))
    sf.write(folder / "speech.wav", speech, SAMPLE_RATE, subtype="PCM_16")

    Image.fromarray(skimage.data.astronaut()).resize((SIDE, SIDE), Image.LANCZOS).save(folder / "image.png")

    # the camera pans right over a photo shrunk to SIDE rows: the clip has motion and texture
    coffee = Image.fromarray(skimage.data.coffee())
    wide = np.asarray(coffee.resize((SIDE * coffee.width // coffee.height, SIDE), Image.LANCZOS))
    clip = folder / "clip"
    shutil.rmtree(clip, ignore_errors=True)
    clip.mkdir()
    for i in range(CLIP_FRAMES):
        Image.fromarray(wide[:, i * PAN_STEP: i * PAN_STEP + SIDE]).save(clip / f"frame_{i:05d}.png")


# ----------------------------------------------------------------------------- coding
def _run(argv: list[str]) -> None:
    from codecgen.cli import infer_main

    code = infer_main(argv)
    if code != 0:
        raise RuntimeError(f"infer.py {' '.join(argv)} failed with exit code {code}")


def encode(name: str, source: Path, output: Path) -> bytes:
    """Code ``source`` as entry ``name`` into ``output`` (one thread, seeded); the file's bytes."""
    entry = ENTRIES[name]
    command = COMMANDS[entry["kind"]][0]
    torch.set_num_threads(1)
    torch.manual_seed(SEED)
    random.seed(SEED)
    np.random.seed(SEED)
    model = ["--model", entry["model"]] if entry["model"] else []
    _run([command, *model, str(source), str(output), *entry["args"], "--quiet", "--overwrite"])
    return output.read_bytes()


def decode(kind: str, model: str | None, cgc: Path, workdir: Path) -> dict:
    """Decode ``cgc`` with the CLI into ``workdir``; the decoded output's digest (:func:`digest`)."""
    command, suffix = COMMANDS[kind][1], COMMANDS[kind][2]
    output = workdir / f"{cgc.stem}_decoded{suffix}"
    torch.set_num_threads(1)
    _run([command, *(["--model", model] if model else []), str(cgc), str(output), "--quiet", "--overwrite"])
    return digest(kind, output)


def _pixels(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im)


def digest(kind: str, output: Path) -> dict:
    """SHA-256 of the decoded samples in their output format (int16 PCM; uint8 pixels,
    frames in order) with their shape: independent of the container's other bytes."""
    if kind == "audio":
        import soundfile as sf

        samples, rate = sf.read(str(output), dtype="int16", always_2d=True)
        array, extra = samples, {"sample_rate": rate}
    elif kind == "image":
        array, extra = _pixels(output), {}
    else:
        frames = sorted(output.glob("frame_*.png"))
        array, extra = np.stack([_pixels(f) for f in frames]), {}
    array = np.ascontiguousarray(array)
    return {"sha256": hashlib.sha256(array.tobytes()).hexdigest(), "shape": list(array.shape),
            "dtype": str(array.dtype), **extra}


def kernel_fingerprint() -> str:
    """16 hex digits: the bits a fixed set of float kernels computes here (module docstring)."""
    import torch.nn.functional as F

    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    wave, image = torch.randn(2, 16, 997, generator=g), torch.randn(2, 8, 37, 41, generator=g)
    a = F.conv1d(wave, torch.randn(32, 16, 7, generator=g), padding=3)
    t = F.conv_transpose1d(a, torch.randn(32, 8, 10, generator=g), stride=5)
    b = F.conv2d(image, torch.randn(16, 8, 3, 3, generator=g), padding=1)
    u = F.conv_transpose2d(b, torch.randn(16, 4, 4, 4, generator=g), stride=2)
    m = torch.randn(129, 257, generator=g) @ torch.randn(257, 65, generator=g)
    lstm = torch.nn.LSTM(16, 24, batch_first=True)
    with torch.no_grad():
        for weight in lstm.parameters():
            weight.copy_(torch.randn(weight.shape, generator=g) * 0.2)
        r = lstm(wave.transpose(1, 2)[:, :50])[0]
    parts = [a, t, b, u, m, r, torch.tanh(a), torch.sin(t), torch.exp(m / 100), F.gelu(b), F.silu(u),
             torch.softmax(m, -1), F.layer_norm(m, (65,)), F.group_norm(b, 4),
             F.interpolate(image, scale_factor=2.5, mode="bicubic", align_corners=False)]
    return hashlib.sha256(b"".join(p.detach().contiguous().numpy().tobytes() for p in parts)).hexdigest()[:16]


def add_platform(out: Path) -> dict:
    """Record this machine's digests of the pinned files under ``platforms[<fingerprint>]``."""
    manifest = json.loads((out / MANIFEST).read_text())
    record = {"platform": platform_note(), "entries": {}, "legacy": {}}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for name, entry in manifest["entries"].items():
            first = encode(name, out / entry["source"], tmp / f"{name}.cgc")
            second = encode(name, out / entry["source"], tmp / f"{name}.again.cgc")
            record["entries"][name] = {"bytes": len(first), "cgc_sha256": hashlib.sha256(first).hexdigest(),
                                       "reencode": first == second,
                                       "decoded": decode(entry["kind"], entry["model"], out / entry["cgc"], tmp)}
            print(f"{name}: decoded {record['entries'][name]['decoded']['sha256'][:12]}, re-encode "
                  f"{'identical' if first == second else 'DIFFERS'}")
        for name, entry in manifest["legacy"].items():
            record["legacy"][name] = {"decoded": decode(entry["kind"], entry["model"], out / entry["cgc"], tmp)}
    manifest.setdefault("platforms", {})[record["platform"]["kernels"]] = record
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def platform_note() -> dict:
    """Where the files were made, and with which code (the commit of the imported codecgen)."""
    import subprocess

    import codecgen

    root = Path(codecgen.__file__).resolve().parent.parent
    commit = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return {"machine": platform.machine(), "system": platform.system(), "python": platform.python_version(),
            "torch": torch.__version__, "threads": 1, "code": commit.stdout.strip() or "unknown",
            "kernels": kernel_fingerprint()}


# ----------------------------------------------------------------------------- the folder
def build(out: Path, names: list[str], legacy_from: Path | None) -> dict:
    manifest = {"platform": platform_note(), "seed": SEED, "entries": {}, "legacy": {}}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for name in names:
            entry = ENTRIES[name]
            source, cgc = out / entry["source"], out / f"{name}.cgc"
            first = encode(name, source, cgc)
            second = encode(name, source, tmp / f"{name}.again.cgc")
            manifest["entries"][name] = {
                **entry, "cgc": cgc.name, "bytes": len(first), "cgc_sha256": hashlib.sha256(first).hexdigest(),
                "reencode": first == second, "decoded": decode(entry["kind"], entry["model"], cgc, tmp)}
            print(f"{name}: {len(first)} bytes, re-encode {'identical' if first == second else 'DIFFERS'}")
        # legacy files stay pinned; --legacy-from adds those of entries that have none yet
        if (out / MANIFEST).is_file():
            manifest["legacy"] = json.loads((out / MANIFEST).read_text()).get("legacy", {})
        if legacy_from is not None:
            manifest["legacy"] |= keep_legacy(out, legacy_from, manifest["entries"], tmp, skip=set(manifest["legacy"]))
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def keep_legacy(out: Path, old: Path, entries: dict, tmp: Path, skip: set[str] = frozenset()) -> dict:
    """The older code's files that differ from this code's, kept with what that code decoded
    them to: this code must still decode them the same. Entries in ``skip`` already have
    an (older) legacy file, which stays."""
    old_manifest = json.loads((old / MANIFEST).read_text())
    kept = {}
    for name, new in entries.items():
        before = old_manifest["entries"].get(name)
        if name in skip or before is None or (old / before["cgc"]).read_bytes() == (out / new["cgc"]).read_bytes():
            continue
        target = out / f"legacy_{name}.cgc"
        shutil.copyfile(old / before["cgc"], target)
        decoded = decode(new["kind"], new["model"], target, tmp)
        if decoded != before["decoded"]:
            raise RuntimeError(f"this code decodes the older {name} file differently: {decoded} vs {before['decoded']}")
        kept[name] = {"kind": new["kind"], "model": new["model"], "cgc": target.name,
                      "made_with": old_manifest["platform"],
                      "decoded": before["decoded"]}
    return kept


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE, help="folder to write (default: this one)")
    parser.add_argument("--new-sources", action="store_true", help="regenerate the sources instead of reusing them")
    parser.add_argument("--legacy-from", type=Path, default=None,
                        help="a folder this script wrote with older code: its files that differ become legacy_*.cgc")
    parser.add_argument("--add-platform", action="store_true",
                        help="only record this machine's digests of the pinned files (another CPU's kernels)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    out = args.out.resolve()
    if args.add_platform:
        add_platform(out)
        return 0
    out.mkdir(parents=True, exist_ok=True)
    if args.new_sources:
        make_sources(out)
    elif out != HERE:
        for entry in {e["source"] for e in ENTRIES.values()}:
            if (HERE / entry).is_dir():
                shutil.copytree(HERE / entry, out / entry, dirs_exist_ok=True)
            else:
                shutil.copyfile(HERE / entry, out / entry)
    build(out, list(ENTRIES), args.legacy_from)
    return 0


if __name__ == "__main__":
    sys.exit(main())
