#!/usr/bin/env bash
# Install zipasr into tools/venv (CPU torch 2.13.0) and the system tools the recipes use
# (espeak-ng for the mini recipe's synthetic corpus, sox and ffmpeg for audio pipes).
# Safe to rerun: finished steps are skipped.
#   Usage: tools/setup.sh [--no-system]
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
system=true
[ "${1:-}" = "--no-system" ] && system=false

log() { echo "$(date '+%F %T') [setup] $*"; }

if $system && ! command -v espeak-ng >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    log "installing espeak-ng, sox, ffmpeg (apt-get)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq espeak-ng sox ffmpeg >/dev/null
  else
    log "WARNING: espeak-ng not found and cannot apt-get here; the mini recipe needs it (install espeak-ng)"
  fi
fi

if [ ! -x tools/venv/bin/python ]; then
  log "creating tools/venv"
  "$python" -m venv tools/venv
fi
if ! cmp -s requirements.txt tools/venv/.requirements.installed 2>/dev/null; then
  log "installing requirements (torch==2.13.0 CPU build, transformers, deepspeed, ...)"
  tools/venv/bin/pip install -q --upgrade pip
  tools/venv/bin/pip install -q -r requirements.txt
  cp requirements.txt tools/venv/.requirements.installed
fi
tools/venv/bin/pip install -q --no-deps --no-build-isolation -e .
log "done: activate with 'source tools/venv/bin/activate' (recipes do it in path.sh)"
