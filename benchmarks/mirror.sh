# Sourced by demo.sh and smoke.sh (from the repository root): sets py, margs (--mirror ARG or nothing) and et().
# The mirror: ECGTRANSFER_PHYSIONET_MIRROR, else this team's offline mirror ../shared/data/physionet when present,
# else PhysioNet itself.
py=${PY:-.venv/bin/python}
mirror=${ECGTRANSFER_PHYSIONET_MIRROR:-}
if [ -z "$mirror" ] && [ -d ../shared/data/physionet ]; then
  mirror=../shared/data/physionet
fi
margs=()
if [ -n "$mirror" ]; then margs=(--mirror "$mirror"); echo "== PhysioNet mirror: $mirror"; fi
et() { "$py" -m ecgtransfer "$@"; }
