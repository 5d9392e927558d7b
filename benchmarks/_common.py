"""Helpers every benchmark script shares: logging beside the progress bars, machine
description, JSON-safe values and markdown tables."""

from __future__ import annotations

import math
import os
import platform
import sys
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm


def log(msg: str) -> None:
    tqdm.write(msg, file=sys.stderr)


def one_thread() -> None:
    """Time everything on one thread (two threads on small ops can be far slower here)."""
    torch.set_num_threads(1)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set once in this process
        pass


def machine_info() -> dict:
    """CPU model, cores usable by this process, torch / Python versions, torch threads."""
    cpu = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        nproc = len(os.sched_getaffinity(0))
    except AttributeError:
        nproc = os.cpu_count()
    return {"nproc": nproc, "cpu": cpu, "torch": torch.__version__, "python": platform.python_version(),
            "threads": torch.get_num_threads()}


def plain(value):
    """JSON-safe: NaN/inf -> None, numpy scalars -> Python numbers."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def fmt(value, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and math.isnan(value):
        return "n/a"
    return f"{value:.{digits}f}"


def table(header: list[str], body: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in body])


def list_images(data: Path, max_images: int | None) -> list[Path]:
    """The held-out photos: ``data/val/*.png`` (or ``data/*.png``), sorted; the first ``max_images``."""
    folder = data / "val" if (data / "val").is_dir() else data
    files = sorted(folder.glob("*.png"))
    if not files:
        sys.exit(f"error: no held-out .png images under {folder} "
                 "(build them with `python -m codecgen.datamodules.prepare image --out data/images`)")
    return files[:max_images] if max_images is not None else files


def to_pil(x: torch.Tensor):
    """(3, H, W) in [0, 1] -> an 8-bit RGB PIL image."""
    from PIL import Image

    return Image.fromarray((x.permute(1, 2, 0) * 255).round().clamp(0, 255).to(torch.uint8).numpy(), "RGB")


def proc_kib(field: str, pid: int | str | None = None) -> int:
    """A memory field in KiB of ``/proc/PID/status`` (``VmRSS``: now; ``VmHWM``: the process's
    peak since its last exec), or of ``/proc/meminfo`` for no ``pid`` (``MemAvailable``); 0
    where unreadable (not Linux, or the process is gone)."""
    try:
        for line in Path("/proc/meminfo" if pid is None else f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def run_measured(cmd: list[str], cap_mib: float, cwd: Path) -> dict:
    """Run ``cmd`` as a child process: its return code, wall time, stdout, stderr and peak
    RSS (``VmHWM``, polled every 50 ms: a child that can should report its own at its end).
    Not ``ru_maxrss``: on Linux a child started by fork + exec keeps the PARENT's peak RSS at
    exec as its own maximum, so a large parent makes every child look as large. A watchdog
    kills the child when its RSS passes ``cap_mib`` (``killed``), so a run that would exhaust
    a shared machine's memory ends there instead of waking the OOM killer."""
    import subprocess
    import tempfile
    import time

    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, cwd=cwd)
        killed, peak = False, 0
        while proc.poll() is None:
            peak = max(peak, proc_kib("VmHWM", proc.pid))
            if not killed and proc_kib("VmRSS", proc.pid) > cap_mib * 1024:
                proc.kill()
                killed = True
            time.sleep(0.05)
        wall = time.perf_counter() - t0
        out.seek(0)
        err.seek(0)
        return {"rc": proc.returncode, "killed": killed, "wall_s": wall, "peak_mib": peak / 1024,
                "stdout": out.read().decode(errors="replace"), "stderr": err.read().decode(errors="replace")}
