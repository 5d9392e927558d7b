"""Shared pieces of the offline corpus builders (speech, image, video).

Running external tools (apt-get, dpkg, ffmpeg), fetching and extracting Debian
packages and reading their DEP-5 copyright files, the opencv-doc sample data
that the image and video corpora share, versions and licence files of installed
Python distributions, a stable hash for fixed train/val splits, a parallel map
with a progress bar, and :class:`CorpusBuild`: the bookkeeping every build
shares (fresh split folders, collected warnings, licence files, README, and the
``.complete`` marker written last so an interrupted build is redone).
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from tqdm import tqdm

T = TypeVar("T")
R = TypeVar("R")

COMMAND = "python -m codecgen.datamodules.prepare"
MARKER = ".complete"
OPENCV_DATA = Path("/usr/share/doc/opencv-doc/examples/data")
OPENCV_COPYRIGHT = Path("/usr/share/doc/opencv-doc/copyright")


def log(msg: str) -> None:
    tqdm.write(msg, file=sys.stderr)


def loud(msg: str) -> None:
    bar = "!" * 78
    log(f"{bar}\n!! {msg}\n{bar}")


def run(cmd: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run an external tool, capturing its output; the caller checks ``returncode``."""
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)


def worker_count(workers: int | None, per_cpu: int = 1) -> int:
    """``workers``, or ``per_cpu`` per CPU core (at least 2)."""
    return workers or max(2, per_cpu * (os.cpu_count() or 1))


def parallel_map(fn: Callable[[T], R], items: Sequence[T], workers: int, desc: str) -> list[R]:
    """``[fn(x) for x in items]`` on ``workers`` threads (the work is in subprocesses or
    releases the GIL), in order, with a progress bar."""
    with ThreadPoolExecutor(workers) as pool:
        return list(tqdm(pool.map(fn, items), total=len(items), desc=desc, mininterval=1.0))


def hash01(key: str) -> float:
    """A stable number in [0, 1) for a name (hashlib: identical on every machine and run)."""
    return int.from_bytes(hashlib.sha1(key.encode()).digest()[:8], "big") / 2**64


def round_robin(lists: Iterable[Sequence[T]]) -> list[T]:
    """Every item, taking one from each list in turn: a prefix of the result keeps every list."""
    lists = [list(items) for items in lists]
    return [items[i] for i in range(max((len(x) for x in lists), default=0)) for items in lists if i < len(items)]


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
        proc = run(["apt-get", "download", name], cwd=cache)
        if proc.returncode != 0 and not _apt_updated:
            log(f"apt-get download {name} failed; running apt-get update once and retrying")
            _apt_updated = True
            upd = run(["apt-get", "update"])
            if upd.returncode != 0:
                log(f"apt-get update failed: {upd.stderr.strip()[-500:]}")
            proc = run(["apt-get", "download", name], cwd=cache)
        debs = sorted(cache.glob(f"{name}_*.deb"))
        if proc.returncode != 0 or not debs:
            raise RuntimeError(f"apt-get download {name} failed: {proc.stderr.strip()[-500:]}")
    deb = debs[-1]
    version = run(["dpkg-deb", "-f", str(deb), "Version"]).stdout.strip() or "unknown"
    root = cache / "extracted" / deb.stem
    if not (root / ".ok").exists():
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
        proc = run(["dpkg-deb", "-x", str(deb), str(root)])
        if proc.returncode != 0:
            raise RuntimeError(f"dpkg-deb -x {deb} failed: {proc.stderr.strip()}")
        (root / ".ok").touch()
    return Package(name, version, root)


def deb_version(name: str) -> str:
    """The version of an installed Debian package, or "" when it is not installed (or no dpkg)."""
    if shutil.which("dpkg-query") is None:
        return ""
    return run(["dpkg-query", "-W", "-f=${Version}", name]).stdout.strip()


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


def opencv_doc(sample: str) -> tuple[str, str]:
    """(version, licence) of the installed ``opencv-doc`` package, the licence being what its
    copyright file says of ``samples/data/<sample>`` (copied to ``licenses/`` by the builders)."""
    licence = "Apache-2.0 AND BSD-3-Clause (see licenses/opencv-doc.copyright)"
    if OPENCV_COPYRIGHT.exists():
        _, lic = copyright_for(OPENCV_COPYRIGHT, f"samples/data/{sample}")
        licence = f"{lic} (Debian copyright file: licenses/opencv-doc.copyright)"
    return deb_version("opencv-doc") or "(version unknown)", licence


# --------------------------------------------------------------------------- Python distributions


def package_version(dist: str) -> str:
    """The installed version of a Python distribution, or "?"."""
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "?"


def dist_licence(dist: str) -> Path | None:
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


# --------------------------------------------------------------------------- one build


def already_built(out: Path, force: bool) -> bool:
    """True (and says so) when ``out`` holds a finished build and ``force`` is not set."""
    marker = out / MARKER
    if marker.exists() and not force:
        log(f"{out} is already built ({marker} exists); pass --force to rebuild")
        return True
    return False


class CorpusBuild:
    """One build of the ``kind`` corpus into ``out``.

    Creating it empties ``out/train``, ``out/val`` and ``out/licenses`` and removes the
    marker; :meth:`warn` reports a problem loudly and keeps it for the README and the
    marker; :meth:`finish` writes the marker last, so a build that stops half way is
    not taken for a finished one.
    """

    def __init__(self, out: Path, kind: str, title: str | None = None) -> None:
        self.out, self.kind = out, kind
        self.title = title or f"codecgen default {kind} corpus"
        self.start = time.time()
        self.warnings: list[str] = []
        for sub in ("train", "val", "licenses"):
            shutil.rmtree(out / sub, ignore_errors=True)
            (out / sub).mkdir(parents=True)
        (out / MARKER).unlink(missing_ok=True)

    @property
    def seconds(self) -> float:
        return time.time() - self.start

    def warn(self, msg: str) -> None:
        loud(msg)
        self.warnings.append(msg)

    def copy_licences(self, files: dict[str, Path | None]) -> None:
        """Copy each existing file to ``licenses/<name>``; missing ones are skipped."""
        for name, src in files.items():
            if src is not None and src.is_file():
                shutil.copy(src, self.out / "licenses" / name)

    def write_readme(self, origin: str, intro: list[str], body: list[str]) -> None:
        """``README.md``: title, how it was built (``origin`` ends the first sentence), the
        ``intro`` paragraph, the warnings, the ``body`` (sources, licences) and the build time."""
        lines = [f"# {self.title}", "", f"Built offline by `{COMMAND} {self.kind}`{origin}"]
        lines += intro + [""]
        if self.warnings:
            lines += ["## WARNINGS", ""] + [f"- **{w}**" for w in self.warnings] + [""]
        lines += body + ["", f"Build time: {self.seconds:.0f} s.", ""]
        (self.out / "README.md").write_text("\n".join(lines))

    def finish(self, summary: dict) -> None:
        """Write the marker (``summary`` and the warnings, as JSON) and repeat the warnings."""
        (self.out / MARKER).write_text(json.dumps({**summary, "warnings": self.warnings}, indent=1))
        for w in self.warnings:
            loud(w)
