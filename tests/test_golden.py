"""Golden bitstreams: the pinned ``.cgc`` files in ``tests/golden/`` decode to the pinned
outputs, and the pinned sources re-encode to the pinned bytes.

One file per shipped codec (``hificodec-16k``, ``languagecodec-16k``, ``vqgan-f16``; the shipped
generators write no files, ``tests/test_arbitrary_scale.py`` samples them) and one tiny fitted
HNeRV and NeRV clip each, made by ``tests/golden/make_golden.py`` through
the inference CLI; the manifest holds a SHA-256 of each decoded output in its output format
(16-bit PCM samples, 8-bit pixels), not of float tensors. ``legacy_*.cgc`` are files written
by older code that differ from today's (``legacy_nerv.cgc``: commit bf93a47, whose header names
the NeRV decoder ``NeRVGenerator``); they must still decode to what that code decoded them to.

Platform: these hold bit for bit on x86-64 Linux, Python 3.11, torch 2.9.1 (the +cu128 wheel,
run on the CPU) with one thread, where the files were made (the manifest's ``platform``). On
other builds (another CPU kernel, BLAS, torch version or thread count) tiny float differences
can move a code index, a fitted weight or a decoded sample and change bytes: that is what
golden tests are for. A CPU whose kernels compute other bits (AVX-512 against AVX2) is held to
its own digests of the same files where they are recorded (``make_golden.py --add-platform``,
keyed by ``kernel_fingerprint``). A failure means "look": if the change is meant, regenerate
with ``make_golden.py`` and say why in the commit.
"""

import hashlib
import importlib.util
import json
from pathlib import Path

import pytest
import torch

GOLDEN = Path(__file__).resolve().parent / "golden"
ROOT = GOLDEN.parent.parent
_spec = importlib.util.spec_from_file_location("make_golden", GOLDEN / "make_golden.py")
make_golden = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(make_golden)

MANIFEST = json.loads((GOLDEN / make_golden.MANIFEST).read_text())
ENTRIES, LEGACY = MANIFEST["entries"], MANIFEST["legacy"]
# A CPU whose kernels compute other bits has its own digests of the same files (make_golden.py
# --add-platform); any other machine is held to the pinned ones.
KERNELS = make_golden.kernel_fingerprint()
HERE_RECORD = MANIFEST.get("platforms", {}).get(KERNELS)
PLATFORM = HERE_RECORD["platform"] if HERE_RECORD else MANIFEST["platform"]
MADE_ON = ", ".join(f"{k} {v}" for k, v in PLATFORM.items())


def expected(section: str, name: str) -> dict:
    """An entry's pinned values, with this platform's own digests where it has them."""
    pinned = (ENTRIES if section == "entries" else LEGACY)[name]
    return {**pinned, **(HERE_RECORD[section][name] if HERE_RECORD else {})}

torch.set_num_threads(1)


def _check_decode(entry: dict, tmp_path: Path) -> None:
    decoded = make_golden.decode(entry["kind"], entry["model"], GOLDEN / entry["cgc"], tmp_path)
    assert decoded == entry["decoded"], (f"{entry['cgc']} decodes differently than on: {MADE_ON} (kernels here: "
                                         f"{KERNELS})")


def _shipped_codecs() -> set[str]:
    """Shipped models that write files (generators write none; test_arbitrary_scale samples them)."""
    folders = [p for p in (ROOT / "checkpoints").iterdir() if (p / "config.json").is_file()]
    return {p.name for p in folders
            if not json.loads((p / "config.json").read_text())["spec"]["class_path"].startswith("codecgen.generators.")}


def test_every_shipped_model_and_video_arch_is_pinned():
    shipped = _shipped_codecs()
    assert {e["model"] for e in ENTRIES.values() if e["model"]} == shipped
    assert {e["args"][e["args"].index("--arch") + 1] for e in ENTRIES.values() if e["kind"] == "video"} == {
        "hnerv", "nerv"}
    assert set(ENTRIES) == set(make_golden.ENTRIES)  # the manifest is the script's current output


def test_the_folder_stays_small():
    size = sum(p.stat().st_size for p in GOLDEN.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    assert size < 300_000


@pytest.mark.parametrize("name", sorted(ENTRIES))
def test_pinned_file_decodes_to_the_pinned_output(name, tmp_path):
    data = (GOLDEN / ENTRIES[name]["cgc"]).read_bytes()
    assert hashlib.sha256(data).hexdigest() == ENTRIES[name]["cgc_sha256"], "the stored file itself changed"
    _check_decode(expected("entries", name), tmp_path)


@pytest.mark.parametrize("name", sorted(LEGACY))
def test_older_codes_file_still_decodes_to_what_it_decoded_to(name, tmp_path):
    _check_decode(expected("legacy", name), tmp_path)


@pytest.mark.parametrize("name", sorted(ENTRIES))
def test_source_reencodes_to_the_pinned_bytes(name, tmp_path, monkeypatch):
    entry = expected("entries", name)
    # as after a seeded training earlier in the same process (seed_everything is process-wide):
    # coding a file must not depend on it (a video fit ran reseeded per batch, other bytes)
    monkeypatch.setenv("PL_GLOBAL_SEED", "1234")
    if not entry["reencode"]:
        pytest.skip(f"{name}: two encodes differed when the files were made; decode-only")
    data = make_golden.encode(name, GOLDEN / entry["source"], tmp_path / entry["cgc"])
    assert hashlib.sha256(data).hexdigest() == entry["cgc_sha256"], (
        f"{name}: re-encoding {entry['source']} gives other bytes ({len(data)} vs {entry['bytes']}) "
        f"than on: {MADE_ON}")
