#!/usr/bin/env bash
# Install, then run the default benchmark end to end (dvc repro), offline. Extra args go to dvc repro.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-1} HF_DATASETS_OFFLINE=${HF_DATASETS_OFFLINE:-1} DVC_NO_ANALYTICS=1
export PATH="$PWD/.venv/bin:$PATH"
[ -d .dvc ] || dvc init -q
dvc repro "$@"
dvc metrics show
echo "leaderboard: leaderboards/README.md (open leaderboards/index.html in a browser)"
