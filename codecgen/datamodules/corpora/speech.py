"""The default speech corpus: real recorded prompts from Debian packages, topped up with espeak-ng.

``python -m codecgen.datamodules.prepare speech --out data/speech [--minutes 40] [--force]``

The corpus (see ../shared/DATA.md) combines

* real recorded asterisk prompts from six Debian packages, one speaker each, fetched
  with ``apt-get download`` and decoded with ffmpeg to 16 kHz:
  ``asterisk-core-sounds-{en,es,it,ru}-g722`` (stored as 16 kHz G.722),
  ``asterisk-prompt-it-menardi-wav`` (a second Italian voice, 8 kHz 16-bit WAV) and
  ``asterisk-prompt-es-co`` (Colombian Spanish, 8 kHz GSM 06.10). The two 8 kHz
  speakers are upsampled with SoX's resampler (libsoxr, very high quality), so they
  are narrowband: nothing above 4 kHz. And
* synthetic espeak-ng speech: generated English sentences in several voices with
  varied speed and pitch, topping the corpus up to ``--minutes`` (and always at
  least ``--espeak-minutes``, for voice variety). A package that cannot be fetched
  is replaced by extra voices and a loud warning.

All real prompts are kept (they are the valuable part), so ``--minutes`` is a
minimum, not a cap; the packages' ``silence/`` folders and empty files are skipped.
Real prompts are named ``<prefix>_real_<prompt>.wav``, the prefix naming the speaker
(``en``, ``es``, ``it``, ``ru``, ``it-menardi``, ``es-co``). The output is
``OUT/train/*.wav`` and ``OUT/val/*.wav`` (16 kHz, mono, 16-bit) split
deterministically by a hash of the file name (~5 %, with at least 8 real recordings
in val, shared out over the packages), ``OUT/README.md`` crediting every package
and its licence, ``OUT/licenses/`` with the packages' copyright files, and a
``OUT/.complete`` marker so a second run returns at once.
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


@dataclass(frozen=True)
class PromptPackage:
    """A Debian package of one speaker's recorded asterisk prompts."""

    prefix: str  # names the speaker: files are <prefix>_real_<prompt>.wav
    package: str
    suffix: str  # the audio files' suffix, which names their ffmpeg demuxer (see FORMATS)
    licence_key: str = ""  # the name the DEP-5 copyright file's Files: globs are matched against
    # Used instead of the copyright file when it is not machine-readable (or garbles the names):
    credit: str = ""
    licence: str = ""


# ffmpeg demuxer of each prompt format (raw G.722 and GSM have no header to probe).
FORMATS = {".g722": "g722", ".gsm": "gsm", ".wav": "wav"}
CORE_PACKAGES = tuple(
    PromptPackage(lang, f"asterisk-core-sounds-{lang}-g722", ".g722", f"{lang}-core-sounds") for lang in ASTERISK_LANGS
)
PROMPT_PACKAGES = CORE_PACKAGES + (
    # The copyright file's holder line is garbled; its licence asks that the credit name both
    # authors and the site (quoted in the file's Comment).
    PromptPackage(
        "it-menardi", "asterisk-prompt-it-menardi-wav", ".wav",
        credit="Marco Menardi and Paola Dal Zot (voice), http://www.voip.ammdomus.it",
        licence="CC-BY-SA-3.0 Italy (the copyright file's CC-SA-BY-3.0)",
    ),
    # Not DEP-5: credit and licence from its copyright and LEEME files.
    PromptPackage(
        "es-co", "asterisk-prompt-es-co", ".gsm",
        credit="Avatar Ltda. (http://www.avatar.com.co/), voice of July E. Jiménez",
        licence="GPL-2",
    ),
)
_BY_PREFIX = {p.prefix: p for p in PROMPT_PACKAGES}


def real_val_per_package(packages: int = len(PROMPT_PACKAGES)) -> int:
    """The fewest held-out prompts each of ``packages`` fetched packages gives, so that val
    holds at least MIN_REAL_VAL real recordings (the default: every package fetched)."""
    return math.ceil(MIN_REAL_VAL / max(1, packages))


def asterisk_package(prefix: str) -> str:
    """The Debian package of the recorded prompts named ``prefix`` (a language, or e.g. ``es-co``)."""
    return _BY_PREFIX[prefix].package


def decode_prompt(src: Path, dst: Path) -> float:
    """Decode one prompt (G.722, GSM or WAV, by suffix) to a 16 kHz mono 16-bit WAV; return its
    duration in seconds. 8 kHz sources are upsampled with libsoxr at very high precision (a
    no-op for 16 kHz G.722, whose output is bit-identical without it)."""
    cmd = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-f", FORMATS[src.suffix], "-i", str(src),
           "-af", "aresample=resampler=soxr:precision=28", "-ar", str(SR), "-ac", "1", "-c:a", "pcm_s16le",
           "-map_metadata", "-1", "-bitexact", str(dst)]
    proc = run(cmd)
    if proc.returncode != 0:
        raise RuntimeError(f"ffmpeg failed on {src}: {proc.stderr.strip()}")
    return sf.info(str(dst)).duration


def asterisk_prompts(prefix: str, pkg: Package, min_val: int) -> tuple[str, list[tuple[Path, str, str]]]:
    """(speaker, [(audio file, split, wav name)]) for every prompt of the package of ``prefix``,
    split as in the corpus (``{prefix}_real_<prompt>.wav``, ``split`` "train" or "val")."""
    spec = _BY_PREFIX[prefix]
    sounds = pkg.root / "usr/share/asterisk/sounds"
    # The silence/ folder holds digital silence of 1..10 s: no use for a codec. Some
    # prompts ship as empty files (e.g. ru/is.g722): skip them too.
    files = sorted(
        p for p in sounds.rglob(f"*{spec.suffix}")
        if "silence" not in p.relative_to(sounds).parts and p.stat().st_size > 0
    )
    if not files:
        raise RuntimeError(f"no {spec.suffix} files in {pkg.name}")
    speaker = files[0].relative_to(sounds).parts[0]

    def target(p: Path) -> str:
        rel = p.relative_to(sounds / speaker).with_suffix("")
        return f"{prefix}_real_{'-'.join(rel.parts)}.wav"

    names = [target(p) for p in files]
    val = _val_names(names, min_val)
    return speaker, [(p, "val" if n in val else "train", n) for p, n in zip(files, names)]


def add_asterisk(prefix: str, pkg: Package, out: Path, min_val: int, workers: int) -> Source:
    """Decode every prompt of the package of ``prefix`` into OUT/{train,val}/{prefix}_real_*.wav."""
    spec = _BY_PREFIX[prefix]
    speaker, prompts = asterisk_prompts(prefix, pkg, min_val)
    holder, licence = spec.credit or "unknown", spec.licence or "unknown"
    if pkg.copyright_file is not None and not (spec.credit and spec.licence):
        holder, licence = copyright_for(pkg.copyright_file, spec.licence_key)
    src = Source(f"`{pkg.name}` {pkg.version} ({speaker})", "real", licence, holder)
    jobs = [(p, out / split / n) for p, split, n in prompts]
    durations = parallel_map(lambda j: decode_prompt(*j), jobs, workers, f"{prefix} {spec.suffix[1:]}")
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
        "derivatives must keep the same licence. The `asterisk-prompt-it-menardi-wav` licence asks",
        "that the credit name Marco Menardi and Paola Dal Zot and http://www.voip.ammdomus.it;",
        "`asterisk-prompt-es-co` recordings are GPL-2 (redistribute with the licence).",
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
    for spec in PROMPT_PACKAGES:
        try:
            packages[spec.prefix] = fetch_deb(spec.package, cache)
        except RuntimeError as err:
            build.warn(f"could not get Debian package {spec.package}; replaced by extra espeak voices ({err})")

    sources: list[Source] = []
    min_val = real_val_per_package(len(packages))
    for prefix, pkg in packages.items():
        build.copy_licences({f"{pkg.name}.copyright": pkg.copyright_file})
        sources.append(add_asterisk(prefix, pkg, out, min_val, workers))

    build.copy_licences({"espeak-ng.copyright": Path("/usr/share/doc/espeak-ng/copyright")})
    voices = ESPEAK_VOICES + (FALLBACK_VOICES if build.warnings else ())
    real_seconds = sum(sum(s.seconds.values()) for s in sources)
    synth_seconds = max(minutes * 60 - real_seconds, espeak_minutes * 60)
    sources.append(add_espeak(out, synth_seconds, voices, workers))

    build.write_readme(" from Debian packages.", [
        "16 kHz, mono, 16-bit WAV. Real prompts are named `<speaker>_real_<prompt>.wav` (speakers",
        "`en`, `es`, `it`, `ru`: asterisk-core-sounds; `it-menardi`, `es-co`: the other prompt",
        "packages), synthetic utterances `<voice>_espeak_<index>.wav`. The split is fixed: a file is",
        f"in `val/` when a SHA-1 hash of its name falls under {VAL_FRACTION:.0%} (topped up to at least",
        f"{min_val} per package, {MIN_REAL_VAL} real recordings in all).",
        "The asterisk-core-sounds prompts went through G.722 at 64 kb/s, so they are slightly degraded",
        "references. `it-menardi` (8 kHz 16-bit PCM) and `es-co` (8 kHz GSM 06.10, 13 kb/s) were",
        "upsampled to 16 kHz with libsoxr (very high quality): they are narrowband, with nothing",
        "above 4 kHz, and `es-co` carries GSM's coding artefacts.",
    ], _readme_body(sources))
    total = sum(sum(s.seconds.values()) for s in sources) / 60
    log(f"speech corpus in {out}: {total:.1f} min in {build.seconds:.0f} s")
    for s in sources:
        log(f"  {s.name}: train {s.seconds['train'] / 60:.1f} min, val {s.seconds['val'] / 60:.1f} min")
    build.finish({"minutes": {s.name: {k: round(v / 60, 2) for k, v in s.seconds.items()} for s in sources}})
    return out
