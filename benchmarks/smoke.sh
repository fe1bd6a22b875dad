#!/usr/bin/env bash
# The transfer pipeline end to end on the smoke profile (make smoke; a pipeline check that answers no question):
#   download (PhysioNet, or the mirror in ECGTRANSFER_PHYSIONET_MIRROR) -> convert -> bench -> report.
# Usage: benchmarks/smoke.sh [OUT_DIR]   (default smoke-out; re-running resumes every step)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-smoke-out}
source benchmarks/mirror.sh

echo "== download"
et download mitdb --out "$out/data" "${margs[@]}"
et download challenge-2017 --out "$out/data" "${margs[@]}"
echo "== convert"
et convert mitdb --data "$out/data" --out "$out/stores/mitdb-beats" --task beats
et convert challenge-2017 --data "$out/data" --out "$out/stores/challenge-2017-rhythm" --task rhythm
et info "$out/stores/mitdb-beats"
echo "== bench (smoke profile: benchmarks/smoke.toml)"
et bench benchmarks/smoke.toml --out "$out/reports/smoke" \
  --store "$out/stores/mitdb-beats" --source-store "$out/stores/challenge-2017-rhythm"
echo "== report: $out/reports/smoke/report.html (and report.md)"
