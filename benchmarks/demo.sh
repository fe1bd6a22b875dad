#!/usr/bin/env bash
# The main job end to end: download -> convert -> info. Usage: benchmarks/demo.sh OUT_DIR
set -euo pipefail
out=${1:-demo-out}
py=${PY:-.venv/bin/python}
mirror=${ECGTRANSFER_PHYSIONET_MIRROR:-}
if [ -z "$mirror" ] && [ -d ../shared/data/physionet ]; then mirror=../shared/data/physionet; fi
margs=(); [ -n "$mirror" ] && margs=(--mirror "$mirror")
"$py" -m ecgtransfer download mitdb --out "$out/data" "${margs[@]}"
"$py" -m ecgtransfer convert mitdb --data "$out/data" --out "$out/stores/mitdb-beats" --task beats
"$py" -m ecgtransfer info "$out/stores/mitdb-beats"
