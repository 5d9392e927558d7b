#!/usr/bin/env bash
# Train the shipped vqgan-f16 model: the three stages of configs/vqgan/small.yaml, each
# bounded by wall-clock time (GPU minutes), then export the inference weights.
#   scripts/train_vqgan_small.sh OUT_DIR [AE_TIME SHRINK_TIME RESTORER_TIME] (DD:HH:MM:SS) [more train.py args]
set -euo pipefail
out=${1:-runs/vqgan-small}
ae=${2:-00:00:05:00}
shrink=${3:-00:00:00:50}
restorer=${4:-00:00:01:40}
extra=("${@:5}")
py=${PYTHON:-python}
last() {
    local ckpt
    ckpt=$(find "$1" -name last.ckpt -printf "%T@ %p\n" | sort -n | tail -1 | cut -d" " -f2)
    [ -n "$ckpt" ] || { echo "no last.ckpt under $1" >&2; exit 1; }
    echo "$ckpt"
}
common=(--config "${CONFIG:-configs/vqgan/small.yaml}" --trainer.max_steps 1000000 --trainer.enable_progress_bar false "${extra[@]}")

$py train.py fit "${common[@]}" --trainer.default_root_dir "$out/ae" --trainer.max_time "$ae"
$py train.py fit "${common[@]}" --trainer.default_root_dir "$out/shrink" --trainer.max_time "$shrink" \
    --model.init_args.stage shrink --model.init_args.discriminator null \
    --model.init_args.init_from "$(last "$out/ae")"
$py train.py fit "${common[@]}" --trainer.default_root_dir "$out/restorer" --trainer.max_time "$restorer" \
    --model.init_args.stage restorer --model.init_args.discriminator null \
    --model.init_args.init_from "$(last "$out/shrink")"
$py infer.py export "$(last "$out/restorer")" "$out/export" --overwrite --half
