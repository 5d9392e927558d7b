"""Learning curves of training runs: held-out validation scores against training steps.

Reads the TensorBoard event files Lightning writes under each run folder (every
``version_*`` of a resumed chain is merged, later versions winning a step), prints a
table of the ``val/*`` scalars at each validation, and writes it with a plot:

    python benchmarks/learning_curves.py runs/ship-languagecodec-16k --name languagecodec-16k \
        [--metrics val/pesq val/ceiling_pesq val/stoi ...]

-> ``benchmarks/results/curves_<name>.md`` and ``curves_<name>.png`` (one panel per
metric; a ``val/ceiling_*`` metric, the decoder fed the unquantized latent, is drawn
dashed in the panel of the metric it bounds).
"""

from __future__ import annotations

import argparse
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def read_scalars(run: Path, prefix: str = "val/") -> dict[str, dict[int, float]]:
    """{tag: {step: value}} for every scalar under ``prefix`` in the run's logs: TensorBoard
    event files (Lightning's default logger) or ``metrics.csv`` files (its CSVLogger)."""
    files = sorted([*run.rglob("events.out.tfevents.*"), *run.rglob("metrics.csv")], key=lambda p: p.stat().st_mtime)
    if not files:
        raise SystemExit(f"no TensorBoard event files or metrics.csv under {run}")
    curves: dict[str, dict[int, float]] = {}
    for path in files:  # oldest first: a resumed run's later values replace earlier ones
        for tag, values in (_read_csv(path) if path.name == "metrics.csv" else _read_events(path)).items():
            if tag.startswith(prefix):
                curves.setdefault(tag, {}).update(values)
    return curves


def _read_events(path: Path) -> dict[str, dict[int, float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(path), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: {e.step: e.value for e in acc.Scalars(tag)} for tag in acc.Tags().get("scalars", [])}


def _read_csv(path: Path) -> dict[str, dict[int, float]]:
    import csv

    curves: dict[str, dict[int, float]] = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            for tag, value in row.items():
                if tag not in ("step", "epoch") and value not in ("", None):
                    curves.setdefault(tag, {})[int(row["step"])] = float(value)
    return curves


def table(curves: dict[str, dict[int, float]], metrics: list[str]) -> list[str]:
    steps = sorted({s for m in metrics for s in curves.get(m, {})})
    lines = ["| step | " + " | ".join(metrics) + " |", "|---" * (len(metrics) + 1) + "|"]
    for step in steps:
        cells = [f"{curves[m][step]:.3f}" if step in curves.get(m, {}) else "" for m in metrics]
        lines.append(f"| {step} | " + " | ".join(cells) + " |")
    return lines


def plot(curves: dict[str, dict[int, float]], metrics: list[str], title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [m for m in metrics if "/ceiling_" not in m]
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.2), squeeze=False)
    for ax, metric in zip(axes[0], panels):
        for tag, style in ((metric, "-o"), (metric.replace("val/", "val/ceiling_"), "--")):
            if tag in curves:
                steps = sorted(curves[tag])
                label = "unquantized (ceiling)" if "ceiling" in tag else "codec"
                ax.plot(steps, [curves[tag][s] for s in steps], style, ms=3, label=label)
        ax.set_title(metric.removeprefix("val/"))
        ax.set_xlabel("generator step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", type=Path, nargs="+", help="run folders (a resumed chain: all of them)")
    parser.add_argument("--name", required=True, help="results file stem: curves_<name>.{md,png}")
    parser.add_argument("--metrics", nargs="*", default=None, help="default: every val/ scalar but val/kbps")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    curves: dict[str, dict[int, float]] = {}
    for run in args.runs:
        for tag, values in read_scalars(run).items():
            curves.setdefault(tag, {}).update(values)
    metrics = args.metrics or sorted(t for t in curves if t != "val/kbps")
    if not metrics:
        raise SystemExit(f"no validation scores logged yet in {', '.join(str(r) for r in args.runs)}")
    missing = [m for m in metrics if m not in curves]
    if missing:
        raise SystemExit(f"not logged in these runs: {', '.join(missing)} (have: {', '.join(sorted(curves))})")
    lines = [f"# Learning curves: {args.name}", "", "Held-out validation during training "
             f"({', '.join(str(r) for r in args.runs)}).", "", *table(curves, metrics), ""]
    print("\n".join(lines))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"curves_{args.name}.md").write_text("\n".join(lines))
    plot(curves, metrics, args.name, args.out / f"curves_{args.name}.png")
    print(f"wrote {args.out / f'curves_{args.name}.md'} and .png")


if __name__ == "__main__":
    main()
