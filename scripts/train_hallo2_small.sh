#!/usr/bin/env bash
# Train Hallo2's small stages (configs/hallo2/*_small.yaml) on the portrait corpus and export each (docs/hallo2.md):
#   identity, audio, vae, probe (the benchmark's referee) -> stage1 -> stage2 (trained with the paper's patch dropping;
#   stage2_pixel and stage2_none: the same with the authors' pixel dropping and with none, for the drift benchmark)
#   face_vq -> restorer -> restorer_temporal (the high-resolution stage).
#   scripts/train_hallo2_small.sh [OUT_DIR=runs/hallo2] [more train.py args]
# Environment: STAGES="identity audio vae probe stage1 stage2 stage2_pixel stage2_none face_vq restorer
#   restorer_temporal" (a subset, in order; a stage whose inputs another process is still training waits for their
#   exports, so two lists can run on two cores at once), DATA=data/portraits, MINUTES_<stage> (each stage's time
#   budget; a stage stops at its config's max_steps or its budget, whichever comes first), PYTHON=python.
# Each stage resumes from its last checkpoint when run again, and writes OUT_DIR/<stage>/export when it ends.
set -euo pipefail
out=${1:-runs/hallo2}
extra=("${@:2}")
py=${PYTHON:-python}
data=${DATA:-data/portraits}
stages=${STAGES:-identity audio vae probe stage1 stage2 stage2_pixel stage2_none face_vq restorer restorer_temporal}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
declare -A minutes=([identity]=8 [audio]=15 [vae]=20 [probe]=8 [stage1]=30 [stage2]=25 [stage2_pixel]=20
                    [stage2_none]=20 [face_vq]=10 [restorer]=8 [restorer_temporal]=5)
# shellcheck source=scripts/stage_runs.sh
source "$(dirname "$0")/stage_runs.sh"
wait_for() {  # wait_for STAGE...: until each one's export exists (another process may be training it)
    for s in "$@"; do
        until [ -f "$out/$s/export/config.json" ]; do sleep 30; done
    done
}
fit() {  # fit NAME CONFIG [train.py args]: one stage, resumed if it has a checkpoint, then exported
    local name=$1 config=$2 resume=() ckpt budget
    shift 2
    ckpt=$(newest "$out/$name")
    [ -z "$ckpt" ] || resume=(--ckpt_path "$ckpt")
    budget=$(printf "00:00:%02d:00" "${minutes[$name]:-10}")
    var="MINUTES_$name"
    [ -z "${!var:-}" ] || budget=$(printf "00:%02d:%02d:00" $((${!var} / 60)) $((${!var} % 60)))
    echo "== $out/$name: $config, up to $budget (${resume[*]:-fresh}) ==" >&2
    $py train.py fit --config "$config" --trainer.default_root_dir "$out/$name" --trainer.max_time "$budget" \
        --trainer.enable_progress_bar false "${resume[@]}" "$@" "${extra[@]}"
    $py infer.py export "$(newest "$out/$name")" "$out/$name/export" --overwrite
}
for stage in $stages; do
    case $stage in
        identity|audio|vae|probe) fit "$stage" "configs/hallo2/${stage}_small.yaml" --data.init_args.root "$data" ;;
        face_vq) fit face_vq configs/hallo2/face_vq_small.yaml --data.init_args.root "$data" ;;
        stage1)
            wait_for identity vae
            fit stage1 configs/hallo2/stage1_small.yaml --data.init_args.root "$data" \
                --model.init_args.vae_ckpt "$out/vae/export" \
                --model.init_args.identity_ckpt "$out/identity/export" ;;
        stage2|stage2_pixel|stage2_none)
            wait_for stage1 audio
            mode=patch; [ "$stage" = stage2 ] || mode=${stage#stage2_}
            fit "$stage" configs/hallo2/stage2_small.yaml --data.init_args.root "$data" \
                --model.init_args.init_from "$out/stage1/export" --model.init_args.audio_ckpt "$out/audio/export" \
                --model.init_args.motion_augment "$mode" ;;
        restorer)
            wait_for face_vq
            fit restorer configs/hallo2/restorer_small.yaml --data.init_args.root "$data" \
                --model.init_args.vqgan_ckpt "$out/face_vq/export" ;;
        restorer_temporal)
            wait_for restorer
            fit restorer_temporal configs/hallo2/restorer_temporal_small.yaml --data.init_args.root "$data" \
                --model.init_args.init_from "$out/restorer/export" ;;
        *) echo "unknown stage $stage" >&2; exit 2 ;;
    esac
done
