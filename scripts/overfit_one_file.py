"""One-file overfit check for an audio codec recipe: can it memorise one utterance?

A correct codec memorises a single utterance to high STOI within minutes; one that
cannot has a defect (alignment, up/downsampling, normalisation, loss weights) that
longer training will not fix. The script builds the model part of a training YAML,
trains it with the mel loss + VQ loss only (the recipe's weights; no GAN) on random
segments of ONE file, and every ``--eval-every`` steps scores the whole file three ways:

- ``quantized``: encoder -> quantizer (all codebooks) -> decoder, what a file would give;
- ``unquantized``: encoder -> decoder, skipping the quantizer (the autoencoder's ceiling);
- with ``--n-q``: also each listed number of codebooks;

and reports the latent's effective dimension (the participation ratio of its principal
components over time, 1 = all variance in one direction): a latent that collapses to a
few directions carries little information, whatever the decoder does.

Usage::

    OMP_NUM_THREADS=1 python scripts/overfit_one_file.py configs/hificodec/small.yaml utt.wav \
        --steps 1500 --eval-every 250 [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import yaml

from codecgen import metrics
from codecgen.config import build
from codecgen.datamodules.audio import load_audio


def effective_dimension(latent: torch.Tensor) -> float:
    """Participation ratio (sum e)^2 / sum e^2 of the PCA energies e of a (1, D, T) latent."""
    z = latent[0] - latent[0].mean(-1, keepdim=True)
    energy = torch.linalg.svdvals(z) ** 2
    return float(energy.sum() ** 2 / (energy**2).sum().clamp(min=1e-20))


def score(ref: torch.Tensor, out: torch.Tensor, sr: int) -> dict[str, float]:
    ref, out = ref.flatten().numpy(), out.flatten()[: ref.numel()].numpy()
    return {
        "pesq": metrics.pesq_wb(ref, out, sr),
        "stoi": metrics.stoi(ref, out, sr),
        "mel": metrics.mel_distance(ref, out, sr),
        "si_sdr": metrics.si_sdr(ref, out),
    }


@torch.no_grad()
def evaluate(model, x: torch.Tensor, n_qs: list[int]) -> dict[str, dict[str, float]]:
    model.eval()
    padded = model._pad_to_hop(x)
    latent = model.encoder(padded)
    full = model.quantizer.n_codebooks
    rows = {"unquantized": score(x, model.decode_latent(latent, full)[..., : x.shape[-1]], model.sample_rate)}
    rows["unquantized"]["latent_dim_eff"] = effective_dimension(latent)
    for n_q in sorted(set(n_qs) | {full}):
        codes = model.encode(x, n_q=n_q)
        rows[f"quantized n_q={n_q}"] = score(x, model.decode(codes, x.shape[-1]), model.sample_rate)
    model.train()
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config", type=Path, help="a training YAML (its model: part is used)")
    parser.add_argument("audio", type=Path, help="one utterance (any rate; resampled to the model's)")
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--eval-every", type=int, default=250)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--segment-seconds", type=float, default=0.64)
    parser.add_argument("--lr", type=float, default=None, help="default: the config's")
    parser.add_argument("--n-q", type=int, nargs="*", default=[], help="also score these codebook counts")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)

    torch.manual_seed(args.seed)
    spec = yaml.safe_load(args.config.read_text())["model"]
    model = build(spec)
    x = load_audio(args.audio, model.sample_rate).reshape(1, 1, -1)
    seg = args.segment_seconds * model.sample_rate // model.hop_length * model.hop_length
    seg = int(min(seg, x.shape[-1] // model.hop_length * model.hop_length))
    params = [p for name in model.inference_modules for p in getattr(model, name).parameters()]
    opt = torch.optim.Adam(params, lr=args.lr or model.lr, betas=model.betas)
    weights = model.loss_weights
    history, start = [], time.time()
    generator = torch.Generator().manual_seed(args.seed)
    for step in range(1, args.steps + 1):
        offsets = torch.randint(0, x.shape[-1] - seg + 1, (args.batch_size,), generator=generator)
        batch = torch.stack([x[0, :, o : o + seg] for o in offsets.tolist()])
        y, q = model(batch)
        mel = model.mel_loss(y, batch)
        loss = weights.get("mel", 1.0) * mel + weights.get("vq", 0.0) * q.loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % args.eval_every == 0 or step == args.steps:
            rows = evaluate(model, x, args.n_q)
            history.append({"step": step, "seconds": round(time.time() - start, 1), "train_mel": mel.item(), **rows})
            print(f"step {step:5d}  {time.time() - start:6.0f} s  train mel {mel.item():.3f}", flush=True)
            for name, r in rows.items():
                print(f"    {name:18s} PESQ {r['pesq']:.2f}  STOI {r['stoi']:.3f}  mel {r['mel']:.3f}  "
                      f"SI-SDR {r['si_sdr']:6.1f}" + (f"  latent eff. dim {r['latent_dim_eff']:.1f}"
                                                       if "latent_dim_eff" in r else ""), flush=True)
    if args.json:
        args.json.write_text(json.dumps({"config": str(args.config), "audio": str(args.audio),
                                         "history": history}, indent=1))


if __name__ == "__main__":
    main()
