#!/usr/bin/env bash
# Train a SemantiCodec of configs/semanticodec/*small.yaml stage by stage on the default speech corpus, then export
# it (docs/semanticodec.md): AudioMAE -> k-means tokenizer -> mel VAE -> vocoder -> the codec. Each stage runs until
# its config's max_steps or until it has trained for TIME (DD:HH:MM:SS, counted over every run of that stage), and
# resumes from its last checkpoint when the script is run again: to train longer, run it again with a larger TIME.
#   scripts/train_semanticodec_small.sh [OUT_DIR=runs/semanticodec] [TIME=00:03:00:00] [more train.py args]
# Environment: SIZE=small (tiny: the test configs), DATA=data/speech, CLUSTERS=2048 (the codec config's n_clusters),
# STAGES="mae tokenizer vae vocoder codec export" (a subset runs only those: the vocoder needs nothing before it, so it
# can train on another core or machine while "mae tokenizer vae" run; then run "codec export").
# The tokenizer is fitted once (delete OUT_DIR/tokenizer to refit it after training the AudioMAE longer), and the
# codec takes the frozen stages as they are when its run starts: a resumed codec run keeps the ones it has.
set -euo pipefail
out=${1:-runs/semanticodec}
budget=${2:-00:03:00:00}
extra=("${@:3}")
py=${PYTHON:-python}
size=${SIZE:-small}
data=${DATA:-data/speech}
clusters=${CLUSTERS:-2048}
stages=" ${STAGES:-mae tokenizer vae vocoder codec export} "
wants() { [[ $stages == *" $1 "* ]]; }
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
newest() { { find "$1" -name last.ckpt -printf "%T@ %p\n" 2>/dev/null || true; } | sort -n | tail -1 | cut -d" " -f2; }
last() {
    local ckpt
    ckpt=$(newest "$1")
    [ -n "$ckpt" ] || { echo "no last.ckpt under $1" >&2; exit 1; }
    echo "$ckpt"
}
fit() {  # fit NAME CONFIG [train.py args]: one stage, resumed if it has a checkpoint
    local dir="$out/$1" config=$2 resume=()
    shift 2
    local ckpt
    ckpt=$(newest "$dir")
    [ -z "$ckpt" ] || resume=(--ckpt_path "$ckpt")
    echo "== $dir (${resume[*]:-fresh}) ==" >&2
    $py train.py fit --config "$config" --trainer.default_root_dir "$dir" --trainer.max_time "$budget" \
        --trainer.enable_progress_bar false "${resume[@]}" "$@" "${extra[@]}"
}
wants mae && fit mae "configs/semanticodec/mae_$size.yaml" --data.init_args.root "$data"
if wants tokenizer && [ ! -f "$out/tokenizer/config.json" ]; then
    train=$data/train
    [ -d "$train" ] || train=$data
    $py infer.py fit-kmeans --model "$(last "$out/mae")" "$train" "$out/tokenizer" --tokens-per-second 50 \
        --clusters "$clusters" --quiet
fi
wants vae && fit vae "configs/semanticodec/mel_vae_$size.yaml" --data.init_args.root "$data"
wants vocoder && fit vocoder "configs/semanticodec/vocoder_$size.yaml" --data.init_args.root "$data"
wants codec && fit codec "configs/semanticodec/$size.yaml" --data.init_args.root "$data" --model.init_args.tokenizer_ckpt "$out/tokenizer" \
    --model.init_args.vae_ckpt "$(last "$out/vae")" --model.init_args.vocoder_ckpt "$(last "$out/vocoder")"
if wants export; then $py infer.py export "$(last "$out/codec")" "$out/export" --overwrite; fi
