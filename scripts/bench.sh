#!/usr/bin/env bash
# Install, then run the default benchmark end to end (dvc repro), offline.
#   bash scripts/bench.sh                 # the default pipeline
#   bash scripts/bench.sh --preset full   # first rewrite params.yaml with presets/full.yaml (git checkout
#                                         # params.yaml restores the default)
#   bash scripts/bench.sh --preset fmnist-cnn         # the paper presets: internet once, a GPU (README)
#   bash scripts/bench.sh --preset cifar10-resnet18
# Other arguments go to dvc repro. Each output line carries the elapsed time; a per-stage summary ends the log.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! git rev-parse --git-dir >/dev/null 2>&1; then
  echo "scripts/bench.sh: not inside a git repository (DVC needs one): clone the repository, or run 'git init'" >&2
  exit 1
fi
preset=""
if [ "${1:-}" = "--preset" ]; then
  preset="${2:?--preset needs a name}"
  shift 2
  # a misspelt name fails here, in one line, not after the install (minutes on a fresh clone)
  if [ ! -f "presets/$preset.yaml" ]; then
    known=$(cd presets && LC_ALL=C ls -- *.yaml | sed 's/\.yaml$//' | paste -sd, - | sed 's/,/, /g')
    echo "scripts/bench.sh: preset '$preset': no presets/$preset.yaml; known presets: $known" >&2
    exit 2
  fi
fi
bash scripts/setup.sh --runtime  # the pipeline needs neither the dev extras nor the test browser
# offline unless the caller says otherwise, but the paper presets download their dataset from the Hugging Face
# hub (once: later runs read datasets/ and the hub cache)
offline=1
case "$preset" in "" | full) ;; *) offline=0 ;; esac
export HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-$offline} HF_DATASETS_OFFLINE=${HF_DATASETS_OFFLINE:-$offline}
export DVC_NO_ANALYTICS=1 PATH="$PWD/.venv/bin:$PATH"
if [ -n "$preset" ]; then
  unlearn-bench preset "$preset"
fi
[ -d .dvc ] || dvc init -q
# the dataset snapshots (datasets.dvc): rebuilt offline from their sources and verified against the recorded
# content hash (with a DVC remote, `dvc pull datasets.dvc` restores them instead)
unlearn-bench fetch
dvc repro "$@" 2>&1 | python scripts/stage_times.py
# the headline numbers: leaderboards/README.md, leaderboards/headline.csv (dvc metrics show lists them all)
echo "leaderboard: leaderboards/README.md (open leaderboards/index.html in a browser)"
