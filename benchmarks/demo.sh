#!/usr/bin/env bash
# The main job (make demo): beat classifiers that work on patients they have never seen, against the references.
#   download mitdb + svdb (PhysioNet, or the mirror in ECGTRANSFER_PHYSIONET_MIRROR) -> convert -> combine ->
#   train resnet50 / cnn1d / features (benchmarks/beats-xdb*.toml) on every patient but seven held-out MIT-BIH
#   patients -> the de Chazal table on those seven -> a beat report of one of their recordings.
# Usage: benchmarks/demo.sh [OUT_DIR]   (default demo-out; re-running resumes every step). ~11 min on 2 cores (measured).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-demo-out}
source benchmarks/mirror.sh
# held out: seven DS1 patients rich in S and V beats (de Chazal's DS2 takes their place on a full download:
# bash benchmarks/beats-xdb.sh DATA OUT with no records)
held_out=(mitdb:106 mitdb:118 mitdb:119 mitdb:201 mitdb:207 mitdb:209 mitdb:223)

echo "== download mitdb and svdb"
et download mitdb --out "$out/data" "${margs[@]}"
et download svdb --out "$out/data" "${margs[@]}"
echo "== convert, combine, train the three recipes, evaluate on the held-out patients"
ET="$py -m ecgtransfer" bash benchmarks/beats-xdb.sh "$out/data" "$out/xdb" "${held_out[@]}"
echo "== the held-out patients (gross Se / +P (F1) per AAMI class): $out/xdb/summary.md"
"$py" benchmarks/beats_xdb_table.py "$out/xdb"
echo "== a beat report of record 209 (held out) by the ResNet50: $out/report-209/"
report=()
[ -d "$out/report-209" ] || report=(--report "$out/report-209")
if [ ${#report[@]} -gt 0 ]; then
  et predict "$out/xdb/resnet50/run" "$out/data/mitdb/1.0.0/209" --out "$out/beats-209.csv" "${report[@]}"
fi
echo "== done: $out/xdb/summary.md, $out/report-209/report.html"
