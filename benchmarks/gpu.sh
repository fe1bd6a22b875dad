#!/usr/bin/env bash
# Run the GPU profile (benchmarks/gpu.toml: mitdb de Chazal DS1 -> DS2 at 224x224, all arms, 3 seeds).
#
# Usage: benchmarks/gpu.sh MITDB_BEAT_STORE [SOURCE_STORE] [OUT_DIR]
#   MITDB_BEAT_STORE  a converted mitdb beat store holding DS1 and DS2 (all 44 non-paced records):
#                     ecgtransfer convert mitdb --data DATA --out stores/mitdb-beats --task beats
#   SOURCE_STORE      source store of the ecg-pretrained arm (default: stores/challenge-2017-rhythm);
#                     ecgtransfer convert challenge-2017 --data DATA --out stores/challenge-2017-rhythm --task rhythm
#   OUT_DIR           output directory (default reports/gpu-<date>); re-running with it resumes.
# Env: PY (python, default .venv/bin/python if present), EXTRA (more `ecgtransfer bench` arguments).
set -euo pipefail
if [ $# -lt 1 ]; then sed -n '2,12p' "$0"; exit 2; fi
here=$(cd "$(dirname "$0")" && pwd)
store=$1
source_store=${2:-stores/challenge-2017-rhythm}
out=${3:-reports/gpu-$(date +%Y-%m-%d)}
py=${PY:-}
if [ -z "$py" ]; then if [ -x .venv/bin/python ]; then py=.venv/bin/python; else py=python3; fi; fi

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
"$py" - "$store" <<'PY'
import sys
import numpy as np
from ecgtransfer.store import SegmentStore
from ecgtransfer.signals.split import DS2
s = SegmentStore(sys.argv[1])
have = sorted(set(np.unique(s.record_ids).tolist()) & set(DS2))
print(f"DS2 records in the store: {len(have)} of {len(DS2)}")
if not have:
    print("WARNING: no DS2 record: the de Chazal split has no test part; the report will use the validation split")
PY
[ -d "$source_store" ] || echo "WARNING: source store $source_store missing: the ecg-pretrained arm will be skipped"

echo "== bench"
args=(bench "$here/gpu.toml" --out "$out" --store "$store" --device cuda)
[ -d "$source_store" ] && args+=(--source-store "$source_store")
start=$(date +%s)
# shellcheck disable=SC2086
"$py" -m ecgtransfer "${args[@]}" ${EXTRA:-}
echo "== done in $(( $(date +%s) - start )) s; report: $out/report.html"
