#!/usr/bin/env bash
# Train VideoGen's configs/videogen/*_small.yaml stage by stage on the captioned-video corpus, then assemble the stages
# into one model (docs/videogen.md). Each stage runs until its config's max_steps or until it has trained for TIME
# (DD:HH:MM:SS, counted over every run of that stage), and resumes from its last checkpoint when the script is run
# again: to train longer, run it again with a larger TIME.
#   scripts/train_videogen_small.sh [OUT_DIR=runs/videogen] [TIME=00:01:00:00] [more train.py args]
# Environment: SIZE=small (tiny: the test configs), DATA=data/captioned_video, VIDEO_DATA=data/video (the default
# video corpus: real footage for the video decoder, with DATA),
# STAGES="autoencoder text_to_image keyframes flow classifier video_decoder assemble". Two lanes on two cores:
#   STAGES="autoencoder text_to_image keyframes" and STAGES="flow classifier video_decoder" (the video decoder needs
#   the autoencoder: start that lane's last stage once the autoencoder has finished), then STAGES=assemble.
set -euo pipefail
out=${1:-runs/videogen}
budget=${2:-00:01:00:00}
extra=("${@:3}")
py=${PYTHON:-python}
size=${SIZE:-small}
data=${DATA:-data/captioned_video}
stages=" ${STAGES:-autoencoder text_to_image keyframes flow classifier video_decoder assemble} "
wants() { [[ $stages == *" $1 "* ]]; }
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
# shellcheck source=scripts/stage_runs.sh
source "$(dirname "$0")/stage_runs.sh"
fit() {  # fit NAME [train.py args]: one stage, resumed if it has a checkpoint
    local name=$1 dir="$out/$1" resume=()
    shift
    local ckpt
    ckpt=$(newest "$dir")
    [ -z "$ckpt" ] || resume=(--ckpt_path "$ckpt")
    echo "== $dir (${resume[*]:-fresh}) ==" >&2
    $py train.py fit --config "configs/videogen/${name}_$size.yaml" --trainer.default_root_dir "$dir" \
        --trainer.max_time "$budget" --trainer.enable_progress_bar false "${resume[@]}" "$@" "${extra[@]}"
}
root=(--data.init_args.root "$data")
wants autoencoder && fit autoencoder "${root[@]}"
wants text_to_image && fit text_to_image "${root[@]}" --model.init_args.vae_ckpt "$(last "$out/autoencoder")"
wants keyframes && fit keyframes "${root[@]}" --model.init_args.vae_ckpt "$(last "$out/autoencoder")" \
    --model.init_args.init_text_from "$(last "$out/text_to_image")"
wants flow && fit flow "${root[@]}"
wants classifier && fit classifier "${root[@]}"
wants video_decoder && fit video_decoder --data.init_args.root "[$data, ${VIDEO_DATA:-data/video}]" \
    --model.init_args.vae_ckpt "$(last "$out/autoencoder")"
if wants assemble; then
    $py -m codecgen.generators.videogen.assemble "$out/export" --text-to-image "$(last "$out/text_to_image")" \
        --keyframes "$(last "$out/keyframes")" --flow "$(last "$out/flow")" \
        --video-decoder "$(last "$out/video_decoder")" --overwrite
    $py infer.py export "$(last "$out/classifier")" "$out/classifier_export" --overwrite
fi
