"""The default speech corpus: real recorded prompts from Debian packages, topped up with espeak-ng.

``python -m codecgen.datamodules.prepare speech --out data/speech [--minutes 40] [--force]``

The corpus (see ../shared/DATA.md) combines

* real recorded prompts from the Debian packages ``asterisk-core-sounds-{en,es,it,ru}-g722``
  (one speaker per language, stored as G.722, fetched with ``apt-get download`` and
  decoded to 16 kHz with ffmpeg), and
* synthetic espeak-ng speech: generated English sentences in several voices with
  varied speed and pitch, topping the corpus up to ``--minutes`` (and always at
  least ``--espeak-minutes``, for voice variety). A package that cannot be fetched
  is replaced by extra voices and a loud warning.

All real prompts are kept (they are the valuable part), so ``--minutes`` is a
minimum, not a cap. The output is ``OUT/train/*.wav`` and ``OUT/val/*.wav``
(16 kHz, mono, 16-bit) split deterministically by a hash of the file name
(~5 %, with at least 8 real recordings in val), ``OUT/README.md`` crediting
every package and its licence, ``OUT/licenses/`` with the packages' copyright
files, and a ``OUT/.complete`` marker so a second run returns at once.
"""

from __future__ import annotations

import math
import random
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
from tqdm import tqdm

from codecgen.datamodules.corpora.common import (
    CorpusBuild,
    Package,
    already_built,
    copyright_for,
    deb_version,
    fetch_deb,
    hash01,
    log,
    parallel_map,
    run,
    worker_count,
)

SR = 16000
VAL_FRACTION = 0.05
MIN_REAL_VAL = 8
ASTERISK_LANGS = ("en", "es", "it", "ru")
ESPEAK_VOICES = ("en-us", "en-gb", "en+f3", "en+m7", "en-gb-scotland+f2", "en-029+m3")
# Used in addition when a real-speech package cannot be fetched, so the corpus keeps some variety.
FALLBACK_VOICES = ("en-gb-x-rp+m3", "en-us+f2", "en+f4", "en-gb-x-gbclan+m2", "en-us+m1", "en-gb-x-gbcwmd+f5")
ESPEAK_GAIN = 10 ** (-3 / 20)  # -3 dB, as in DATA.md's sox recipe: keeps peaks off full scale


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


def _val_names(names: list[str], min_val: int) -> set[str]:
    """Names whose hash falls under VAL_FRACTION, topped up to ``min_val`` by smallest hash."""
    ranked = sorted(names, key=hash01)
    n = max(sum(hash01(k) < VAL_FRACTION for k in ranked), min(min_val, len(ranked) - 1))
    return set(ranked[:n])


# --------------------------------------------------------------------------- real prompts


def asterisk_package(lang: str) -> str:
    """The Debian package of asterisk's recorded prompts in ``lang``."""
    return f"asterisk-core-sounds-{lang}-g722"


def decode_g722(src: Path, dst: Path) -> float:
    """Decode one G.722 file to a 16 kHz mono 16-bit WAV; return its duration in seconds."""
    cmd = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-f", "g722", "-i", str(src),
           "-ar", str(SR), "-ac", "1", "-c:a", "pcm_s16le", "-map_metadata", "-1", "-bitexact", str(dst)]
    proc = run(cmd)
    if proc.returncode != 0:
        raise RuntimeError(f"ffmpeg failed on {src}: {proc.stderr.strip()}")
    return sf.info(str(dst)).duration


def asterisk_prompts(lang: str, pkg: Package, min_val: int) -> tuple[str, list[tuple[Path, str, str]]]:
    """(speaker, [(G.722 file, split, wav name)]) for every prompt of an asterisk sounds package,
    split as in the corpus (``{lang}_real_<prompt>.wav``, ``split`` "train" or "val")."""
    sounds = pkg.root / "usr/share/asterisk/sounds"
    # The silence/ folder holds digital silence of 1..10 s: no use for a codec. Some
    # prompts ship as empty files (e.g. ru/is.g722): skip them too.
    g722 = sorted(
        p for p in sounds.rglob("*.g722") if "silence" not in p.relative_to(sounds).parts and p.stat().st_size > 0
    )
    if not g722:
        raise RuntimeError(f"no .g722 files in {pkg.name}")
    speaker = g722[0].relative_to(sounds).parts[0]

    def target(p: Path) -> str:
        rel = p.relative_to(sounds / speaker).with_suffix("")
        return f"{lang}_real_{'-'.join(rel.parts)}.wav"

    names = [target(p) for p in g722]
    val = _val_names(names, min_val)
    return speaker, [(p, "val" if n in val else "train", n) for p, n in zip(g722, names)]


def add_asterisk(lang: str, pkg: Package, out: Path, min_val: int, workers: int) -> Source:
    """Decode every prompt of an asterisk sounds package into OUT/{train,val}/{lang}_real_*.wav."""
    speaker, prompts = asterisk_prompts(lang, pkg, min_val)
    holder, licence = ("unknown", "unknown")
    if pkg.copyright_file is not None:
        holder, licence = copyright_for(pkg.copyright_file, f"{lang}-core-sounds")
    src = Source(f"`{pkg.name}` {pkg.version} ({speaker})", "real", licence, holder)
    jobs = [(p, out / split / n) for p, split, n in prompts]
    durations = parallel_map(lambda j: decode_g722(*j), jobs, workers, f"{lang} g722")
    for (_, dst), seconds in zip(jobs, durations):
        if seconds <= 0:  # decoded to nothing: keep no empty files in the corpus
            dst.unlink()
            continue
        src.add(dst.parent.name, seconds)
    return src


# --------------------------------------------------------------------------- synthetic speech

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


def espeak_item(index: int, voices: tuple[str, ...]) -> tuple[str, np.ndarray]:
    """Utterance ``index``: its voice, speed, pitch and text depend on the index alone."""
    from codecgen.datamodules.signals import espeak  # imports torch: only when synthesising

    rng = random.Random(index)
    voice = voices[index % len(voices)]
    text = " ".join(make_sentence(rng) for _ in range(rng.randint(1, 3)))
    x = espeak(text, voice=voice, sr=SR, wpm=rng.randint(120, 210), pitch=rng.randint(25, 80))
    return voice, x * ESPEAK_GAIN


def add_espeak(out: Path, seconds: float, voices: tuple[str, ...], workers: int) -> Source:
    """Synthesise utterances (in index order, so the result is deterministic) until ``seconds``."""
    src = Source(
        f"`espeak-ng` {deb_version('espeak-ng') or '(version unknown)'}, voices: {', '.join(voices)}",
        "synthetic",
        "GPL-3+ (espeak-ng; output is generated)",
        "espeak-ng authors (synthetic speech from generated text)",
    )
    total, index, batch = 0.0, 0, 4 * workers
    bar = tqdm(total=round(seconds), desc="espeak", unit="s", mininterval=1.0)
    with bar, ThreadPoolExecutor(workers) as pool:
        while total < seconds:
            results = list(pool.map(lambda i: espeak_item(i, voices), range(index, index + batch)))
            for i, (voice, x) in enumerate(results, start=index):
                if total >= seconds:
                    break
                name = f"{voice.replace('+', '-')}_espeak_{i:04d}.wav"
                split = "val" if hash01(name) < VAL_FRACTION else "train"
                sf.write(out / split / name, x, SR, subtype="PCM_16")
                dur = len(x) / SR
                src.add(split, dur)
                total += dur
                bar.update(round(total) - bar.n)
            index += batch
    return src


# --------------------------------------------------------------------------- the corpus


def _readme_body(sources: list[Source]) -> list[str]:
    """The sources table: minutes and files per split, with every credit and licence."""
    mins = lambda s: s / 60  # noqa: E731
    lines = [
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
    return lines + [
        f"| **total** | | | | {mins(tot['train']):.1f} ({nfiles['train']}) "
        f"| {mins(tot['val']):.1f} ({nfiles['val']}) |",
        "",
        "The full copyright files of the packages are in `licenses/`. Recordings licensed",
        "CC-BY-SA-3.0 / CC-BY-3.0 require attribution (above) when redistributed; CC-BY-SA",
        "derivatives must keep the same licence.",
    ]


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
    if already_built(out, force):
        return out
    cache = Path(cache) if cache is not None else out.parent / ".cache" / "debs"
    workers = worker_count(workers, per_cpu=2)
    for exe, deb in (("ffmpeg", "ffmpeg"), ("espeak-ng", "espeak-ng"), ("dpkg-deb", "dpkg")):
        if shutil.which(exe) is None:
            raise RuntimeError(f"{exe} is required to build the speech corpus (apt-get install {deb})")
    build = CorpusBuild(out, "speech")

    packages: dict[str, Package] = {}
    for lang in ASTERISK_LANGS:
        name = asterisk_package(lang)
        try:
            packages[lang] = fetch_deb(name, cache)
        except RuntimeError as err:
            build.warn(f"could not get Debian package {name}; replaced by extra espeak voices ({err})")

    sources: list[Source] = []
    min_val = math.ceil(MIN_REAL_VAL / max(1, len(packages)))
    for lang, pkg in packages.items():
        build.copy_licences({f"{pkg.name}.copyright": pkg.copyright_file})
        sources.append(add_asterisk(lang, pkg, out, min_val, workers))

    build.copy_licences({"espeak-ng.copyright": Path("/usr/share/doc/espeak-ng/copyright")})
    voices = ESPEAK_VOICES + (FALLBACK_VOICES if build.warnings else ())
    real_seconds = sum(sum(s.seconds.values()) for s in sources)
    synth_seconds = max(minutes * 60 - real_seconds, espeak_minutes * 60)
    sources.append(add_espeak(out, synth_seconds, voices, workers))

    build.write_readme(" from Debian packages.", [
        "16 kHz, mono, 16-bit WAV. Real prompts are named `<lang>_real_<prompt>.wav`, synthetic",
        "utterances `<voice>_espeak_<index>.wav`. The split is fixed: a file is in `val/` when a",
        f"SHA-1 hash of its name falls under {VAL_FRACTION:.0%} (topped up to at least {MIN_REAL_VAL}",
        "real recordings). The asterisk prompts went through G.722 at 64 kb/s, so they are slightly",
        "degraded references.",
    ], _readme_body(sources))
    total = sum(sum(s.seconds.values()) for s in sources) / 60
    log(f"speech corpus in {out}: {total:.1f} min in {build.seconds:.0f} s")
    for s in sources:
        log(f"  {s.name}: train {s.seconds['train'] / 60:.1f} min, val {s.seconds['val'] / 60:.1f} min")
    build.finish({"minutes": {s.name: {k: round(v / 60, 2) for k, v in s.seconds.items()} for s in sources}})
    return out
