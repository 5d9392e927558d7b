"""Offline builders of the default corpora (nothing is downloaded at training time).

``python -m codecgen.datamodules.prepare speech --out data/speech [--minutes 40] [--force]``

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
Image and video corpora are meant to be added as further subcommands.
"""

from __future__ import annotations

import argparse
import fnmatch
import hashlib
import json
import math
import os
import random
import shutil
import subprocess
import sys
import time
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
    args = parser.parse_args(argv)
    if args.corpus == "speech":
        build_speech(args.out, args.minutes, args.force, args.espeak_minutes, args.cache, args.workers)


if __name__ == "__main__":
    main()
