# Sourced by the scripts/train_*_small.sh chains: finding a stage's newest checkpoint under its run folder.
# newest DIR: the newest last.ckpt under DIR, or nothing. last DIR: the same, or an error that names DIR.
newest() { { find "$1" -name last.ckpt -printf "%T@ %p\n" 2>/dev/null || true; } | sort -n | tail -1 | cut -d" " -f2; }
last() {
    local ckpt
    ckpt=$(newest "$1")
    [ -n "$ckpt" ] || { echo "no last.ckpt under $1: train that stage first" >&2; exit 1; }
    echo "$ckpt"
}
