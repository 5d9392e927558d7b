"""File handling shared by every ``infer.py`` command.

Output checks (not an input, not a folder, its folder exists, never replaced without
``--overwrite``), temporary files renamed into place (a failure leaves no partial
output), tqdm progress on stderr, folder batch mode (one progress bar over files, a bad
file reported and skipped, exit 2 with a summary when any failed), one-line error
reporting, and the decode limits built from ``--max-*``. Nothing here imports torch:
the parser and ``--help`` stay fast.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

# What a command reports as one line (exit 2) rather than a traceback: bad input
# (BitstreamError and CodecError are ValueErrors) and the usual file-system refusals.
USER_ERRORS = (ValueError, FileNotFoundError, FileExistsError, IsADirectoryError, NotADirectoryError,
               PermissionError)


class UserError(Exception):
    """Printed as one line; exit code 2."""


def one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def report(message: str, bar=None) -> None:
    """An error line on stderr that does not tear a running progress bar."""
    if bar is not None and hasattr(bar, "write"):
        bar.write(message, file=sys.stderr)
    else:
        print(message, file=sys.stderr)


def progress(iterable: Iterable, total: int | None, desc: str, quiet: bool, unit: str = "chunk"):
    if quiet:
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=desc, unit=unit, leave=False, file=sys.stderr)


def counter(total: int, desc: str, quiet: bool, unit: str = "block") -> tuple[Callable[[int], object] | None, Callable]:
    """(update, close) for code that reports progress through a callback."""
    if quiet:
        return None, lambda: None
    from tqdm import tqdm

    bar = tqdm(total=total, desc=desc, unit=unit, leave=False, file=sys.stderr)
    return bar.update, bar.close


class StepBar:
    """A tqdm bar for code that reports ``progress(done, total)`` (cumulative) over ``runs``
    calls, run ``r``'s steps following run ``r - 1``'s; the bar starts at the first report,
    once the total is known. ``callback(r)`` is None when quiet, so the reporter skips it."""

    def __init__(self, desc: str, quiet: bool, runs: int = 1, unit: str = "step"):
        self.desc, self.quiet, self.runs, self.unit = desc, quiet, runs, unit
        self.bar = None

    def callback(self, run: int = 0) -> Callable[[int, int], None] | None:
        return None if self.quiet else lambda done, total: self._show(run, done, total)

    def _show(self, run: int, done: int, total: int) -> None:
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=total * self.runs, desc=self.desc, unit=self.unit, leave=False, file=sys.stderr)
        self.bar.n = run * total + done
        self.bar.refresh()

    def __enter__(self) -> StepBar:
        return self

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.close()


def check_output(path: Path, overwrite: bool, inputs: Iterable[Path] = (), folder_ok: bool = False) -> None:
    """Refuse an output that is an input, an existing file without ``--overwrite``, a folder
    (unless the output is a folder of frames), or that lies in a missing folder."""
    if any(path.resolve() == i.resolve() for i in inputs if i.exists()):
        raise UserError(f"output {path} is the same file as an input")
    if path.exists() and not overwrite:
        raise UserError(f"{path} exists; pass --overwrite to replace it")
    if path.is_dir() and not folder_ok:
        raise UserError(f"{path} is a folder")
    if not path.parent.is_dir():
        raise UserError(f"folder {path.parent} does not exist")


def check_suffix(path: Path, allowed: Iterable[str], what: str) -> None:
    allowed = tuple(allowed)
    if path.suffix.lower() not in allowed:
        raise UserError(f"unsupported {what} output format {path.suffix or '(none)'!r} for {path}: "
                        f"use one of {', '.join(allowed)}")


def temp_path(target: Path, suffix: str) -> Path:
    """An empty file next to ``target`` (same file system, so ``os.replace`` is a rename)."""
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=suffix, dir=target.parent)
    os.close(fd)
    return Path(name)


@contextlib.contextmanager
def staged(target: Path, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path; on success it replaces ``target``, on any failure it is removed."""
    tmp = temp_path(target, target.suffix if suffix is None else suffix)
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def staged_all(targets: Iterable[Path]) -> Iterator[list[Path]]:
    """:func:`staged` for several outputs: each replaces its target once the block succeeds;
    a failure inside the block replaces none."""
    with contextlib.ExitStack() as stack:
        yield [stack.enter_context(staged(target)) for target in targets]


# ----------------------------------------------------------------------------- folders
def list_inputs(folder: Path, suffixes: Iterable[str], what: str) -> list[Path]:
    """The files directly in ``folder`` with one of ``suffixes`` (any case), sorted by name."""
    suffixes = tuple(suffixes)
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in suffixes)
    if not files:
        raise UserError(f"no {what} files ({', '.join(suffixes)}) in {folder}")
    return files


def output_folder(path: Path, inputs: Path) -> Path:
    """The folder a batch writes into: created if missing (its parent must exist)."""
    if path.exists() and not path.is_dir():
        raise UserError(f"{inputs} is a folder, so the output must be a folder too, and {path} is a file")
    if path.resolve() == inputs.resolve():
        raise UserError(f"the output folder {path} is the input folder")
    if not path.parent.is_dir():
        raise UserError(f"folder {path.parent} does not exist")
    path.mkdir(exist_ok=True)
    return path


def run_batch(files: list[Path], code_one: Callable[[Path], object], out_dir: Path, quiet: bool) -> int:
    """Code every file with ``code_one`` under one progress bar. A file that fails is
    reported (one line) and skipped; exit code 2 and a summary if any failed, else 0."""
    bar = progress(files, len(files), "files", quiet, unit="file")
    failed = 0
    for src in bar:
        try:
            code_one(src)
        except KeyboardInterrupt:
            raise
        except USER_ERRORS + (UserError,) as error:
            failed += 1
            message = one_line(error)
            report(f"error: {message if str(src) in message else f'{src}: {message}'}", bar)
        except Exception as error:  # noqa: BLE001 -- one file's surprise must not cost the others
            failed += 1
            report(f"error: {src}: {type(error).__name__}: {one_line(error)}", bar)
    if failed:
        done = len(files) - failed
        print(f"error: {failed} of {len(files)} files failed" + (f"; the other {done} are in {out_dir}" if done else ""),
              file=sys.stderr)
        return 2
    if not quiet:
        print(f"{len(files)} files written to {out_dir}")
    return 0


# ----------------------------------------------------------------------------- decode limits
def decode_limits(args):
    """``--max-seconds/--max-pixels/--max-frames`` -> a DecodeLimits (unset ones: the defaults).
    ``--max-pixels`` bounds an image, and each frame of a video."""
    from dataclasses import replace

    from codecgen.codecs.limits import DEFAULT_LIMITS

    given = {name: getattr(args, name, None) for name in ("max_seconds", "max_pixels", "max_frames")}
    given["max_frame_pixels"] = given["max_pixels"]
    return replace(DEFAULT_LIMITS, **{k: v for k, v in given.items() if v is not None})
