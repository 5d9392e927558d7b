"""Deterministic train/val splits by file, shared by the audio, image and video data
modules (hold out whole files, never pieces of one)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def _split_key(relpath: str, seed: int) -> float:
    """A stable number in [0, 1) per file (hashlib, unlike hash(), is the same in every process)."""
    digest = hashlib.sha1(f"{seed}:{relpath}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def split_by_hash(
    files: Sequence[Any], root: Path, val_fraction: float, seed: int = 0
) -> tuple[list[Any], list[Any]]:
    """Deterministic train/val split by file; at least one val file when there are two or more."""
    keyed = sorted(files, key=lambda f: _split_key(f.path.relative_to(root).as_posix(), seed))
    n_val = sum(_split_key(f.path.relative_to(root).as_posix(), seed) < val_fraction for f in keyed)
    if len(keyed) >= 2:
        n_val = min(max(n_val, 1), len(keyed) - 1)  # keep both splits non-empty
    val = sorted(keyed[:n_val], key=lambda f: f.path)
    train = sorted(keyed[n_val:], key=lambda f: f.path)
    return train, val
