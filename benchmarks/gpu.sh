#!/usr/bin/env bash
# Run a GPU profile (default benchmarks/gpu-slot.toml: mitdb de Chazal DS1 -> DS2 at 224x224, svdb-pretrained vs
# scratch at 2 and all labelled patients, ~8 min on one H200; PROFILE=gpu.toml: the full tuned design, ~98 min)
# under a time limit.
#
# Usage: benchmarks/gpu.sh MITDB_BEAT_STORE [SOURCE_STORE] [OUT_DIR]
#   MITDB_BEAT_STORE  a converted mitdb beat store holding DS1 and DS2 (all 44 non-paced records):
#                     ecgtransfer convert mitdb --data DATA --out stores/mitdb-beats --task beats --dtype float16
#   SOURCE_STORE      source store of the ecg-pretrained arm; given but missing is an error. Default (or ""):
#                     <repo>/stores/svdb-beats (gpu-slot.toml) or <repo>/stores/challenge-2017-beats (other
#                     profiles) when the profile has a [source] table and it exists.
#   OUT_DIR           output directory (default <repo>/reports/gpu-<date>); re-running with it resumes.
# Env: PROFILE (a config in benchmarks/ or a path; default gpu-slot.toml; gpu.toml the full design,
#      gpu-ablation.toml the ablation arms),
#      PY (python; default <repo>/.venv/bin/python if present, else python3), EXTRA (more `ecgtransfer bench`
#      arguments), GPU_BENCH_TIMEOUT (seconds, default 540: the bench gets SIGINT then, writes its partial
#      report and exits; re-running finishes it), ALLOW_NO_DS2=1 (run although the store has no DS2 record:
#      the figures then come from the validation split), ECGTRANSFER_OFFLINE=1 (never download ImageNet weights).
# Works from any directory: relative arguments are taken relative to the current directory.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
if [ $# -lt 1 ]; then sed -n '2,18p' "$0"; exit 2; fi
store=$1
source_arg=${2:-}
out=${3:-$repo/reports/gpu-$(date +%Y-%m-%d)}
profile=${PROFILE:-gpu-slot.toml}
case "$profile" in */*) ;; *) profile=$here/$profile ;; esac
[ -f "$profile" ] || { echo "gpu.sh: profile $profile does not exist" >&2; exit 2; }
py=${PY:-}
if [ -z "$py" ]; then if [ -x "$repo/.venv/bin/python" ]; then py=$repo/.venv/bin/python; else py=python3; fi; fi
export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}"   # the checkout's ecgtransfer, also without an install
[ -d "$store" ] || { echo "gpu.sh: target store $store does not exist (convert it first, see the header)" >&2; exit 2; }

echo "== hardware"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "nvidia-smi: not available"
"$py" - <<'PY'
import os, platform, torch
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}, "
      f"Python {platform.python_version()}, {os.cpu_count()} CPUs")
if not torch.cuda.is_available():
    raise SystemExit("gpu.sh: no CUDA device visible to torch; run benchmarks/smoke.toml on CPU instead")
for i in range(torch.cuda.device_count()):
    p = torch.cuda.get_device_properties(i)
    print(f"cuda:{i} {p.name}, {p.total_memory / 2**30:.0f} GiB, capability {p.major}.{p.minor}")
PY

echo "== store"
"$py" -m ecgtransfer info "$store" | head -n 20
ds2=0
"$py" - "$store" <<'PY' || ds2=$?
import sys
import numpy as np
from ecgtransfer.store import SegmentStore
from ecgtransfer.signals.split import DS2
s = SegmentStore(sys.argv[1])
have = sorted(set(np.unique(s.record_ids).tolist()) & set(DS2))
print(f"DS2 records in the store: {len(have)} of {len(DS2)}")
sys.exit(0 if have else 3)
PY
if [ "$ds2" = 3 ]; then
  if [ "${ALLOW_NO_DS2:-0}" = 1 ]; then
    echo "WARNING: no DS2 record (ALLOW_NO_DS2=1): the de Chazal split has no test part; the report uses the validation split, which also picked the best epoch (optimistic figures)"
  else
    echo "gpu.sh: the store $store holds no DS2 record, so the de Chazal split has no test set and the report's figures would come from the validation split. Convert all 44 non-paced mitdb records (ecgtransfer download mitdb; ecgtransfer convert mitdb ...), or set ALLOW_NO_DS2=1 to run anyway." >&2
    exit 3
  fi
elif [ "$ds2" != 0 ]; then
  echo "gpu.sh: could not read the store $store" >&2; exit "$ds2"
fi

args=(bench "$profile" --out "$out" --store "$store" --device cuda)
if grep -q '^\[source\]' "$profile"; then
  if [ -n "$source_arg" ]; then
    [ -d "$source_arg" ] || { echo "gpu.sh: source store $source_arg does not exist" >&2; exit 2; }
    args+=(--source-store "$source_arg")
  else
    # the profile's own [source] store (its path resolved against the profile's folder), not a second list here
    default_source=$("$py" -c 'import sys; from ecgtransfer.bench import load_config
print(load_config(sys.argv[1]).source_store_path or "")' "$profile")
    if [ -d "$default_source" ]; then
      args+=(--source-store "$default_source")
    else
      echo "WARNING: no source store given and $default_source missing: the ecg-pretrained arm will be reported skipped"
    fi
  fi
elif [ -n "$source_arg" ]; then
  echo "gpu.sh: $profile has no [source] table (no ecg-pretrained arm), but a source store was given" >&2; exit 2
fi

limit=${GPU_BENCH_TIMEOUT:-540}
echo "== bench ($profile, time limit ${limit} s)"
start=$(date +%s)
rc=0
# SIGINT at the limit: the bench writes results.json and the (partial) reports before it exits; KILL 30 s later
# shellcheck disable=SC2086
timeout -s INT -k 30 "$limit" "$py" -m ecgtransfer "${args[@]}" ${EXTRA:-} || rc=$?
echo "== done in $(( $(date +%s) - start )) s (exit $rc); report: $out/report.html"
if [ "$rc" = 124 ] || [ "$rc" = 130 ]; then
  echo "gpu.sh: stopped at the ${limit} s limit; the report is partial. Run the same command again to finish the missing cells." >&2
fi
exit "$rc"
