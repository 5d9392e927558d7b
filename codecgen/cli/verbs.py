"""The codec verbs, ``encode`` and ``decode``, for every modality, one file or a folder.

``encode`` dispatches on the model: a trained audio or image model (loaded once), or a
video architecture name (``hnerv`` / ``nerv``), whose encoding fits a network per clip.
``decode`` dispatches on each file's header ``modality``; audio and image files need the
model that wrote them, video files carry their decoder. The older commands
(``compress``, ``decompress``, ``encode-video``, ``decode-video``) are these verbs with
their old flags, so a file given to the "wrong" one still decodes, or gets one line
naming the command that does. Like the parser, this module imports nothing heavy until
a command runs.
"""

from __future__ import annotations

import importlib
from collections import Counter
from pathlib import Path

from codecgen.cli.files import (
    UserError,
    check_output,
    check_suffix,
    decode_limits,
    list_inputs,
    output_folder,
    run_batch,
)
from codecgen.codecs import bitstream

MODALITIES = ("audio", "image", "video")
VIDEO_ARCHS = ("hnerv", "nerv")


def _a(word: str) -> str:
    return f"{'an' if word[:1] in 'aeiou' else 'a'} {word}"


def _module(modality: str):
    return importlib.import_module(f"codecgen.cli.{modality}")


def _check_options(args, modality: str, subject: str, kind: str) -> None:
    """Refuse an option of one modality given for another (``--n-q`` with an image model)."""
    for dest, flag, owner, default in getattr(args, "modality_options", ()):
        if owner != modality and getattr(args, dest, default) != default:
            raise UserError(f"{flag} applies to {owner} {kind}s; {subject} is {_a(modality)} {kind}")


def _codec_only(name: str, model) -> None:
    """A generator loaded for a codec verb: one line naming its command."""
    from codecgen.cli.generate import TASKS, run_hint

    task = getattr(model, "task", None)
    if task in TASKS:
        raise UserError(f"{name} is {TASKS[task]}, not a codec; {run_hint(task, name)}")


def _formats(modality: str) -> tuple[str, ...]:
    module = _module(modality)
    return getattr(module, "FORMATS", None) or tuple(s.lstrip(".") for s in module.OUTPUTS)


# ----------------------------------------------------------------------------- encode
def _encoder_name(args) -> str:
    """``--model``, or ``encode-video``'s ``--arch``."""
    return args.model if getattr(args, "model", None) is not None else args.arch


def _encoder(args):
    """(modality, model): a loaded audio / image model, or a video architecture's name."""
    name = _encoder_name(args)
    if name in VIDEO_ARCHS:
        return "video", name
    from codecgen import hub

    model = hub.load(name, map_location=args.device)
    _codec_only(name, model)
    if model.modality == "video":
        raise UserError(f"{name} is a trained video checkpoint: write its clip with `infer.py pack-video --model "
                        f"{name} OUT.cgc`; to encode a new clip, fit a network to it with --model {' or '.join(VIDEO_ARCHS)}")
    if model.modality not in MODALITIES:
        raise UserError(f"{name} is {_a(str(model.modality))} model, which infer.py does not code")
    return model.modality, model


def cmd_encode(args) -> int:
    src, dst = Path(args.input), Path(args.output)
    name = _encoder_name(args)
    one_clip = name in VIDEO_ARCHS and dst.suffix.lower() == ".cgc"  # a folder of PNG frames is one clip
    if src.is_dir() and not one_clip:
        return _encode_folder(args, src, dst)
    check_output(dst, args.overwrite, [src])
    modality, model = _encoder(args)
    _check_options(args, modality, name, "model")
    summary = _module(modality).encode(model, src, dst, args, args.quiet)
    if not args.quiet:
        print(summary)
    return 0


def _encode_folder(args, src: Path, out: Path) -> int:
    if out.suffix.lower() == ".cgc":
        raise UserError(f"{src} is a folder, so the output must be a folder too, not {out}")
    modality, model = _encoder(args)
    _check_options(args, modality, _encoder_name(args), "model")
    module = _module(modality)
    try:
        files = list_inputs(src, module.INPUTS, modality)
    except UserError as error:
        if modality == "video":  # the other reading of a folder with a video model
            raise UserError(f"{error} (a folder of PNG frames is one clip: give an output ending in .cgc)") from None
        raise
    out = output_folder(out, src)
    stems = Counter(f.stem for f in files)

    def code_one(f: Path) -> None:
        target = out / f"{f.stem}.cgc"
        if stems[f.stem] > 1:
            raise UserError(f"{f}: {stems[f.stem]} files named {f.stem}.* would all be written to {target}")
        check_output(target, args.overwrite, [f])
        module.encode(model, f, target, args, quiet=True)

    return run_batch(files, code_one, out, args.quiet)


# ----------------------------------------------------------------------------- decode
class _Decoder:
    """Decodes ``.cgc`` files of any modality; the model (when one is needed) loads once."""

    def __init__(self, args):
        self.args = args
        self.model = None
        self.out_dir: Path | None = None  # set in folder mode
        decode_limits(args)  # bad --max-* values fail before any work

    def modality(self, src: Path, header: dict) -> str:
        modality = header.get("modality")
        if modality not in MODALITIES:
            raise bitstream.BitstreamError(f"{src}: unknown modality {repr(modality)[:40]} in the header")
        _check_options(self.args, modality, str(src), "file")
        return modality

    def model_for(self, src: Path, header: dict, modality: str):
        name = getattr(self.args, "model", None)
        if name is None:
            from codecgen.cli.models import shipped_model_for

            hint = shipped_model_for(header) or "MODEL"
            raise UserError(f"{src} is {_a(modality)} file: decoding it needs the model that encoded it, "
                            f"as in `infer.py decode --model {hint} {src} OUT`")
        if self.model is None:
            from codecgen import hub

            self.model = hub.load(name, map_location=self.args.device)
            _codec_only(name, self.model)
        if self.model.modality != modality:
            raise UserError(f"{src} is {_a(modality)} file and {name} is {_a(self.model.modality)} model: "
                            f"decode it with the {modality} model that encoded it")
        return self.model

    def check_target(self, src: Path, dst: Path, modality: str) -> None:
        if modality == "video":
            if dst.suffix and dst.suffix.lower() not in _module("video").OUTPUTS:
                raise UserError(f"unsupported video output {dst.suffix!r} for {dst}: use .mkv (lossless FFV1), "
                                f".mp4 (H.264) or a folder for PNG frames")
        else:
            check_suffix(dst, _module(modality).OUTPUTS, modality)
        check_output(dst, self.args.overwrite, [src], folder_ok=modality == "video" and not dst.suffix)

    def __call__(self, src: Path, dst: Path | None, quiet: bool) -> str:
        """Decode ``src`` to ``dst`` (None: into the batch's folder, named by ``--format``)."""
        header, payload = bitstream.read(src)
        modality = self.modality(src, header)
        if dst is None:
            dst = self.batch_target(src, modality)
        self.check_target(src, dst, modality)
        if modality == "video":
            return _module("video").decode(src, dst, self.args, quiet)
        model = self.model_for(src, header, modality)
        return _module(modality).decode(model, src, dst, header, payload, self.args, quiet)

    def batch_target(self, src: Path, modality: str) -> Path:
        formats = _formats(modality)
        fmt = (self.args.format or _module(modality).DEFAULT_FORMAT).lower().lstrip(".")
        if fmt not in formats:
            raise UserError(f"{src} is {_a(modality)} file: --format {fmt} is not one of {', '.join(formats)}")
        if modality == "video" and fmt == "png":
            return self.out_dir / src.stem  # a folder of PNG frames
        return self.out_dir / f"{src.stem}.{fmt}"


def cmd_decode(args) -> int:
    src, dst = Path(args.input), Path(args.output)
    decoder = _Decoder(args)
    fmt = getattr(args, "format", None)
    if not src.is_dir():
        if fmt is not None:
            raise UserError(f"--format applies when the input is a folder; {src} is a file: give {dst} the "
                            f"extension you want")
        summary = decoder(src, dst, args.quiet)
        if not args.quiet:
            print(summary)
        return 0
    known = sorted({f for m in MODALITIES for f in _formats(m)})
    if fmt is not None and fmt.lower().lstrip(".") not in known:
        raise UserError(f"--format {fmt} is not one of {', '.join(known)}")
    files = list_inputs(src, (".cgc",), "codecgen")
    decoder.out_dir = output_folder(dst, src)
    return run_batch(files, lambda f: decoder(f, None, quiet=True), decoder.out_dir, args.quiet)
