#!/usr/bin/env bash
# Issue 14, item 4: the default pipeline's gold + unlearn stages on Ray (2 CPUs) vs the in-process executor.
#
# Usage: bash scripts/ray_stages_speedup.sh [SUITE] [METHOD...]   (default: mnist5k-mlp retrain scrub salun)
# Run it in a clone where `dvc repro` has finished (the gold models and the methods' cells exist), with nothing
# else running on the machine. It moves the suite's gold models and those methods' cells aside, re-creates
# them with `unlearn-bench gold` then `unlearn-bench unlearn --method ...` (each a new process, as `dvc repro`
# starts a stage: Ray's start-up included), first with `--executor local`, then with `--executor ray`, puts
# the original artifacts back, prints the wall times and the speedup, and checks that both executors wrote
# identical models and identical cell/gold sidecars (timings, resource peaks and the git revision aside).
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 DVC_NO_ANALYTICS=1 PATH="$PWD/.venv/bin:$PATH"
SUITE=${1:-mnist5k-mlp}
shift || true
METHODS=("$@")
[ ${#METHODS[@]} -gt 0 ] || METHODS=(retrain scrub salun)
S=runs/$SUITE
[ -d "$S/gold" ] && [ -d "$S/cells" ] || { echo "no $S/gold or $S/cells: run dvc repro first" >&2; exit 2; }
WORK=$(mktemp -d /tmp/ray_stages.XXXXXX)
mkdir -p "$WORK/keep/cells"

cells_of() {  # the cell directories of METHODS under $1/cells/<protocol>/
  for p in $(ls "$1/cells"); do for m in "${METHODS[@]}"; do for d in "$1/cells/$p/$m" "$1/cells/$p/${m}_"*; do
    [ -d "$d" ] && echo "$p/$(basename "$d")"; done; done; done
}
move_cells() {  # move_cells FROM TO: every cell of METHODS present under FROM
  for c in $(cells_of "$1"); do mkdir -p "$2/cells/$(dirname "$c")"; mv "$1/cells/$c" "$2/cells/$c"; done
}
restore() {
  [ -d "$WORK/keep/gold" ] && { rm -rf "$S/gold"; mv "$WORK/keep/gold" "$S/gold"; }
  for c in $(cells_of "$WORK/keep"); do rm -rf "$S/cells/$c"; mv "$WORK/keep/cells/$c" "$S/cells/$c"; done
}
trap restore EXIT

mv "$S/gold" "$WORK/keep/gold"
move_cells "$S" "$WORK/keep"
echo "moved aside: $(find "$WORK/keep/gold" -name '*.pt' | wc -l) gold models, $(cells_of "$WORK/keep" | wc -l) cells"
declare -A T
for ex in local ray; do
  t0=$(date +%s.%N)
  unlearn-bench gold --suite "$SUITE" --executor $ex | tail -1
  t1=$(date +%s.%N)
  unlearn-bench unlearn --suite "$SUITE" --executor $ex $(printf -- '--method %s ' "${METHODS[@]}") | tail -1
  t2=$(date +%s.%N)
  T[$ex-gold]=$(echo "$t1 - $t0" | bc); T[$ex-unlearn]=$(echo "$t2 - $t1" | bc)
  mkdir -p "$WORK/$ex"
  mv "$S/gold" "$WORK/$ex/gold"
  move_cells "$S" "$WORK/$ex"
done
python - "$WORK" "${T[local-gold]}" "${T[local-unlearn]}" "${T[ray-gold]}" "${T[ray-unlearn]}" <<'PY'
import glob, hashlib, json, math, os, sys

work = sys.argv[1]
lg, lu, rg, ru = map(float, sys.argv[2:])
print(f"local: gold {lg:.1f} s + unlearn {lu:.1f} s = {lg + lu:.1f} s")
print(f"ray:   gold {rg:.1f} s + unlearn {ru:.1f} s = {rg + ru:.1f} s")
print(f"speedup: gold {lg / rg:.2f}x, unlearn {lu / ru:.2f}x, together {(lg + lu) / (rg + ru):.2f}x")
DROP = ("wall", "time", "cpu_s", "peak", "git_rev", "hardware", "host", "started", "finished")


def clean(x):
    if isinstance(x, dict):
        return {k: clean(v) for k, v in x.items() if not any(d in k for d in DROP)}
    if isinstance(x, list):
        return [clean(v) for v in x]
    return None if isinstance(x, float) and math.isnan(x) else x


def load(root, pattern):
    return {os.path.relpath(f, root): clean(json.load(open(f))) for f in glob.glob(root + pattern, recursive=True)}


def weights(root):
    return {os.path.relpath(f, root): hashlib.sha256(open(f, "rb").read()).hexdigest()
            for f in glob.glob(root + "/**/*.pt", recursive=True)}


ok = True
for part, pattern in (("gold", "/gold/**/*.json"), ("cells", "/cells/**/result.json")):
    a, b = load(f"{work}/local", pattern), load(f"{work}/ray", pattern)
    same = a == b and len(a) > 0
    ok &= same
    print(f"{part}: {len(a)} sidecars, identical local vs ray: {same}")
wa, wb = weights(f"{work}/local"), weights(f"{work}/ray")
ok &= wa == wb and len(wa) > 0
print(f"weights: {len(wa)} files, identical local vs ray: {wa == wb}")
sys.exit(0 if ok else 1)
PY
