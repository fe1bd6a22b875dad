#!/usr/bin/env bash
# Beats on patients the models have never seen: convert mitdb + svdb, combine them, train the three recipes
# (resnet50, cnn1d, features) on every patient except those of TEST_RECORDS and score the TEST_RECORDS beats.
#
#   bash benchmarks/beats-xdb.sh DATA OUT [TEST_RECORDS...]
#
# DATA holds downloaded mitdb/1.0.0 and svdb/1.0.0 (PhysioNet's layout, any records: `ecgtransfer download mitdb
# --out DATA`, the same for svdb). TEST_RECORDS default to de Chazal's DS2 (mitdb:100 ... mitdb:234); a record's
# patient goes to test whole (DS2's 202 takes DS1's 201 along). Writes:
#   OUT/stores/{mitdb,svdb,xdb}        the beat stores (STORES=DIR to keep them elsewhere and share them)
#   OUT/<model>/run/                   the run (config, checkpoints, decision rule, report)
#   OUT/<model>/eval_test.json         what `ecgtransfer evaluate RUN STORE --split test --json` prints
# MODELS="resnet50 cnn1d features" (default) chooses the recipes; ET="python -m ecgtransfer" the program.
# Re-running resumes: finished steps are skipped, an interrupted run continues from its last.pt.
set -euo pipefail
if [ $# -lt 2 ]; then
    echo "usage: bash benchmarks/beats-xdb.sh DATA OUT [TEST_RECORDS...]" >&2
    exit 2
fi
DATA=$1
OUT=$2
shift 2
HERE=$(cd "$(dirname "$0")" && pwd)
ET=${ET:-ecgtransfer}
MODELS=${MODELS-"resnet50 cnn1d features"}  # MODELS="" makes the stores only
STORES=${STORES:-$OUT/stores}
if [ $# -gt 0 ]; then
    TEST=("$@")
else  # de Chazal et al. 2004, DS2
    TEST=()
    for r in 100 103 105 111 113 117 121 123 200 202 210 212 213 214 219 221 222 228 231 232 233 234; do
        TEST+=("mitdb:$r")
    done
fi
for db in mitdb svdb; do
    if [ ! -d "$DATA/$db/1.0.0" ]; then
        echo "beats-xdb.sh: $DATA/$db/1.0.0 not found: expected PhysioNet's layout (ecgtransfer download $db --out $DATA)" >&2
        exit 2
    fi
done
mkdir -p "$OUT" "$STORES"
# both leads at 360 Hz; mitdb's second lead is V1 in most records, V2/V4/V5 in a few (the store names which)
$ET convert mitdb --data "$DATA" --out "$STORES/mitdb" --task beats --fs 360 --lead MLII 'V1|V2|V4|V5' --after 0.5
$ET convert svdb --data "$DATA" --out "$STORES/svdb" --task beats --fs 360 --lead all --after 0.5
$ET combine "$STORES/mitdb" "$STORES/svdb" --out "$STORES/xdb"
for model in $MODELS; do
    case $model in
        resnet50) cfg=$HERE/beats-xdb.toml ;;
        cnn1d|features) cfg=$HERE/beats-xdb-$model.toml ;;
        *) echo "beats-xdb.sh: unknown model $model (resnet50, cnn1d, features)" >&2; exit 2 ;;
    esac
    run=$OUT/$model/run
    mkdir -p "$OUT/$model"
    resume=()
    [ -f "$run/last.pt" ] && resume=(--resume)  # a finished run is not trained again, an interrupted one continues
    $ET train "$STORES/xdb" --config "$cfg" --split records --test-records "${TEST[@]}" --out "$run" "${resume[@]}"
    $ET evaluate "$run" "$STORES/xdb" --split test --json > "$OUT/$model/.eval_test.json.part"
    mv "$OUT/$model/.eval_test.json.part" "$OUT/$model/eval_test.json"
    echo "beats-xdb.sh: $model -> $OUT/$model/eval_test.json" >&2
done
