"""Images on files: any size, RGB / grey / RGBA -> ``.cgc`` with the VQGAN image codec
and back; ``damage`` simulates indices lost in transit. Images are coded in blocks
(``n_blocks``), so memory stays bounded on huge images."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from codecgen.cli.files import UserError, check_output, counter, decode_limits, staged
from codecgen.codecs import bitstream

INPUTS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
OUTPUTS = INPUTS
DEFAULT_FORMAT = "png"


@torch.inference_mode()
def encode(model, src: Path, dst: Path, args, quiet: bool) -> str:
    from codecgen.codecs.image.vqgan_compression import index_payload_bytes
    from codecgen.datamodules.image import load_image_with_alpha

    image, alpha, mode = load_image_with_alpha(src)
    update, close = counter(model.n_blocks(*image.shape[-2:]), "encode", quiet)
    try:
        data = model.compress(image, getattr(args, "codebook_size", None), getattr(args, "entropy", "auto"), mode,
                              alpha, progress=update)
    finally:
        close()
    header, payload = bitstream.unpack(data)
    bitstream.write(dst, header, payload, overwrite=args.overwrite)
    h, w = image.shape[-2:]
    size, codes_bytes = dst.stat().st_size, index_payload_bytes(header, payload)
    return (f"{dst}: {size} bytes, {w}x{h} {mode}, {8 * size / (h * w):.4f} bpp "
            f"(K={header['K']}, {header['entropy']} code model, index payload {8 * codes_bytes / (h * w):.4f} bpp)")


@torch.inference_mode()
def decode(model, src: Path, dst: Path, header: dict, payload: bytes, args, quiet: bool) -> str:
    from codecgen.datamodules.image import save_image

    grid, lost, alpha = model.unpack_grid(header, payload, limits=decode_limits(args))
    (width, height), k, mode = header["size"], header["K"], header.get("mode", "RGB")
    restore = getattr(args, "restore", False)
    if lost is not None:
        if not quiet:
            action = ("restoring them" if restore
                      else "filling them with the most frequent index (--restore repairs them)")
            print(f"{src}: {int(lost.sum())} of {lost.numel()} indices were lost; {action}", file=sys.stderr)
        update, close = counter(model.n_blocks(height, width), "restore", quiet)
        try:
            grid = model.fill_lost(grid, lost, k, restore, progress=update)
        finally:
            close()
    update, close = counter(model.n_blocks(height, width), "decode", quiet)
    try:
        image = model.decode_image(grid, height, width, k, progress=update)
    finally:
        close()
    if mode == "RGBA" and alpha is None:
        alpha = torch.ones(1, *image.shape[-2:])
    with staged(dst) as final:
        save_image(image, final, mode=mode, alpha=alpha)
    return f"{dst}: {width}x{height} {mode}"


@torch.inference_mode()
def cmd_damage(args) -> None:
    """Simulate index loss in transit: the output marks the lost positions."""
    from codecgen.cli.models import load_model
    from codecgen.codecs.image.loss_simulation import lost_positions

    src, dst = Path(args.input), Path(args.output)
    check_output(dst, args.overwrite, [src])
    if not 0.0 <= args.loss < 1.0:
        raise UserError(f"--loss must be in [0, 1), got {args.loss}")
    header, _ = bitstream.read(src)
    if header.get("modality") != "image":
        raise UserError(f"damage works on image files; {src} is a {header.get('modality', 'unknown')} file")
    model = load_model(args.model, "image", args.device)
    size = header.get("size")
    if not (isinstance(size, list) and len(size) == 2 and all(isinstance(v, int) and v > 0 for v in size)):
        raise bitstream.BitstreamError(f"{src}: size must be [width, height], got {size!r}")
    width, height = size
    if width * height > decode_limits(args).max_pixels:  # the mask below is sized by the header's word
        raise bitstream.BitstreamError(f"{src}: {width}x{height} is over the decode limit of "
                                       f"{decode_limits(args).max_pixels} pixels")
    lost = lost_positions(model.grid_shape(height, width), args.loss, args.pattern, seed=args.seed)
    header, payload = bitstream.unpack(model.damage(src.read_bytes(), lost))
    bitstream.write(dst, header, payload, overwrite=args.overwrite)
    if not args.quiet:
        print(f"{dst}: {int(lost.sum())} of {lost.numel()} indices marked lost ({args.pattern})")
