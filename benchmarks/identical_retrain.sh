#!/usr/bin/env bash
# Issue 30: what reruns, and how long `dvc repro` takes, when a retraining gives identical models.
#
#   [TARGET=report] benchmarks/identical_retrain.sh BEFORE_REV [WORK_DIR]   (project environment, repository root)
#
# Builds TARGET of the default profile (ensemble-mnist: the five MNIST classifiers and their ensemble;
# report: everything) twice, from BEFORE_REV and from the working tree, each a fresh git repo of its own
# with the same venv. Then in each, one after the other: `dvc repro --force --single-item train@mnist-cnn`
# and `dvc repro TARGET` after it; a comment appended to stages/train.py, `dvc repro TARGET`; a comment
# appended to lessonflow/training.py, `dvc repro TARGET`. Prints per step the wall seconds and the stages run.
set -euo pipefail
before_rev=$1
work=${2:-$(mktemp -d /tmp/identical-retrain.XXXX)}
target=${TARGET:-ensemble-mnist}
root=$(pwd)
export DVC_NO_ANALYTICS=1

project() {  # $1: folder, $2: rev or "worktree"
    mkdir -p "$1"
    if [ "$2" = worktree ]; then
        git -C "$root" ls-files -z --cached --others --exclude-standard | grep -zv '^\(data\|models\|results\|reports\)/' \
            | xargs -0 tar -C "$root" -cf - | tar -C "$1" -xf -
    else
        git -C "$root" archive "$2" | tar -C "$1" -xf -
    fi
    git -C "$1" init -q && git -C "$1" add -A && git -C "$1" -c user.email=b@invalid -c user.name=bench commit -qm base
}

timed() {  # $1: label; the rest: the command. One line: label, seconds, stages run.
    local label=$1 log start end
    shift
    log=$(mktemp)
    start=$(date +%s.%N)
    "$@" >"$log" 2>&1 || { tail -30 "$log"; exit 1; }
    end=$(date +%s.%N)
    printf '%s\t%.1f s\t%s\n' "$label" "$(echo "$end - $start" | bc)" \
        "$(grep -o "^Running stage '[^']*'" "$log" | cut -d"'" -f2 | sed 's/@.*//' | sort | uniq -c | tr -s ' ' | tr '\n' ',')"
}

for side in before after; do
    dir=$work/$side
    project "$dir" "$([ $side = before ] && echo "$before_rev" || echo worktree)"
    cd "$dir"
    timed "$side: build" dvc repro "$target"
    echo "$side: checkpoints left under models/: $(find models -name '*checkpoint*' | wc -l)"
    timed "$side: dvc repro -f -s train@mnist-cnn" dvc repro --force --single-item train@mnist-cnn
    timed "$side:   then dvc repro" dvc repro "$target"
    echo "# an edit that changes no model" >>stages/train.py
    timed "$side: comment in stages/train.py, dvc repro" dvc repro "$target"
    echo "# an edit that changes no model" >>lessonflow/training.py
    timed "$side: comment in lessonflow/training.py, dvc repro" dvc repro "$target"
    cd "$root"
done
