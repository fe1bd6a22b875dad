#!/usr/bin/env bash
# The issue-22 CPU profile in one command: svdb-pretrained vs scratch vs pooled on MIT-BIH DS1 patients.
#   download mitdb + svdb (PhysioNet, or the mirror in ECGTRANSFER_PHYSIONET_MIRROR; ../shared/data/physionet when
#   present) -> convert the 22 de Chazal DS1 mitdb records and every svdb record as beats at 360 Hz (both leads,
#   the recipe of beats-xdb.sh) -> ecgtransfer bench benchmarks/cpu-xdb-transfer.toml.
# Usage: bash benchmarks/cpu-xdb-transfer.sh [OUT_DIR]
#   OUT_DIR   the bench folder (default benchmarks/results/<date>-cpu-xdb-transfer); re-running resumes every step.
# Env: WORK (downloads and stores, default xdb-work), PY (python, default .venv/bin/python), EXTRA (more
#      `ecgtransfer bench` arguments, e.g. EXTRA="--set bench.seeds=[0]"), STORES_ONLY=1 (stop after the stores).
# Duration: about 40 min on 2 CPU cores for the bench (its arithmetic is in the profile) plus ~5 min for the
# stores (measured here: mitdb DS1 ~1 min, svdb ~3 min); nothing else CPU-heavy should run alongside.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-benchmarks/results/$(date +%Y-%m-%d)-cpu-xdb-transfer}
work=${WORK:-xdb-work}
source benchmarks/mirror.sh
ds1=$("$py" -c 'from ecgtransfer.signals.split import DS1; print(" ".join(DS1))')

echo "== download mitdb and svdb into $work/data"
et download mitdb --out "$work/data" "${margs[@]}"
et download svdb --out "$work/data" "${margs[@]}"
echo "== convert mitdb DS1 and svdb as beats at 360 Hz"
# shellcheck disable=SC2086  # the DS1 record ids are words
et convert mitdb --data "$work/data" --out "$work/stores/mitdb-ds1" --task beats --fs 360 \
  --lead MLII 'V1|V2|V4|V5' --after 0.5 --records $ds1
et convert svdb --data "$work/data" --out "$work/stores/svdb" --task beats --fs 360 --lead all --after 0.5
if [ "${STORES_ONLY:-0}" = 1 ]; then echo "== stores in $work/stores"; exit 0; fi
echo "== bench -> $out (about 40 min on 2 cores)"
# shellcheck disable=SC2086  # EXTRA holds several arguments
et bench benchmarks/cpu-xdb-transfer.toml --out "$out" --store "$work/stores/mitdb-ds1" \
  --source-store "$work/stores/svdb" ${EXTRA:-}
echo "== done: $out/report.html"
