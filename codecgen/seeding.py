"""Resumable randomness: every random draw in training gets its seed from the run's seed
and a counter that a checkpoint restores (the global step, the epoch, the position in the
epoch), never from how much randomness was used before.

Why: a run resumed from a checkpoint (``train.py fit --ckpt_path``) starts from a freshly
seeded RNG, has skipped what the interrupted run drew in between (validation, new data
loader iterators, earlier batches), and Lightning saves no RNG state. Seeds derived from
counters make the resumed run draw exactly what the uninterrupted one would have.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np


def run_seed() -> int | None:
    """The run's seed: ``seed_everything``'s (``seed_everything: 0`` in a config), which
    Lightning records in ``PL_GLOBAL_SEED``; None for an unseeded run."""
    seed = os.environ.get("PL_GLOBAL_SEED")
    return int(seed) if seed is not None else None


@contextmanager
def unseeded_run() -> Iterator[None]:
    """Train inside as an unseeded run (no per-batch reseeding), whatever ``seed_everything``
    was called before in this process: ``PL_GLOBAL_SEED`` is process-wide, and a fit that is
    part of an API call (a video codec fitting its clip) must not change with what the
    caller trained earlier. Its randomness is then torch's global RNG, as the caller set it."""
    saved = os.environ.pop("PL_GLOBAL_SEED", None)
    try:
        yield
    finally:
        if saved is not None:
            os.environ["PL_GLOBAL_SEED"] = saved


def derive_seed(*keys: int) -> int:
    """A 63-bit seed, well mixed from non-negative integer ``keys`` (numpy's SeedSequence):
    nearby keys give unrelated streams."""
    return int(np.random.SeedSequence([int(k) for k in keys]).generate_state(1, np.uint64)[0] >> 1)
