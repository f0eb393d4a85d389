#!/usr/bin/env bash
# Install, then run lint and the whole test suite (unit + integration), offline.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 DVC_NO_ANALYTICS=1
export PATH="$PWD/.venv/bin:$PATH"
ruff check benchmark tests
python -m pytest "$@"
