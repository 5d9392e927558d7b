#!/usr/bin/env bash
# Train a SemantiCodec of configs/semanticodec/*small.yaml stage by stage on the default speech corpus, then export
# it (docs/semanticodec.md): AudioMAE -> k-means tokenizer -> mel VAE -> vocoder -> the codec. Each stage runs until
# its config's max_steps or until it has trained for TIME (DD:HH:MM:SS, counted over every run of that stage), and
# resumes from its last checkpoint when the script is run again: to train longer, run it again with a larger TIME.
#   scripts/train_semanticodec_small.sh [OUT_DIR=runs/semanticodec] [TIME=00:03:00:00] [more train.py args]
# Environment: SIZE=small (tiny: the test configs), DATA=data/speech, CLUSTERS=2048 (the codec config's n_clusters),
# STAGES="mae tokenizer vae vocoder codec export" (a subset runs only those: the vocoder needs nothing before it, so it
# can train on another core or machine while "mae tokenizer vae" run; then run "codec export").
# The codec takes the vocoder as it is when the codec's run starts, and the export takes the vocoder run's newest
# weights: the vocoder, which the codec never trains, can keep training beside it.
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
# shellcheck source=scripts/stage_runs.sh
source "$(dirname "$0")/stage_runs.sh"
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
if wants export; then  # with the vocoder run's newest weights: it may train on while the codec does
    $py - "$(last "$out/codec")" "$(last "$out/vocoder")" "$out/export" <<'PY'
import sys

from codecgen import hub
from codecgen.codecs.audio.semanticodec.vocoder import MelVocoder

codec = hub.load(sys.argv[1])
hub.load_stage_weights(codec.vocoder, sys.argv[2], MelVocoder, "vocoder")
hub.export(codec, sys.argv[3], overwrite=True)
print(f"exported {type(codec).__name__} ({codec.weights_hash()}) with the vocoder of {sys.argv[2]} to {sys.argv[3]}")
PY
fi
