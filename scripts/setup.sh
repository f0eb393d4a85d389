#!/usr/bin/env bash
# Create .venv (if missing) and install the project with its dev extras. Idempotent.
#   bash scripts/setup.sh            # what the tests need: the dev extras and headless Chromium
#   bash scripts/setup.sh --runtime  # what the pipeline needs (scripts/bench.sh): no dev extras, no browser
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
extras="[dev]"
browser=1
case "${1:-}" in
  "") ;;
  --runtime) extras="" browser=0 ;;
  *) echo "setup: unknown argument '$1' (expected nothing or --runtime)" >&2; exit 2 ;;
esac
# headless Chromium + chromedriver for the leaderboard browser test: only when missing, as root, with apt
if [ "$browser" = 1 ] && { ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; }; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver
  else
    echo "setup: chromium/chromedriver missing and cannot apt-get install them (not root or no apt)" >&2
  fi
fi
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip 2>&1 | grep -v "is ignored" || true
.venv/bin/python -m pip install --quiet -e ".$extras" 2>&1 | grep -v "is ignored" || true
.venv/bin/python -c "import benchmark, torch, torchvision, dvc; print('installed: torch', torch.__version__)"
