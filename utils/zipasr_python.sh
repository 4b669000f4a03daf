#!/usr/bin/env bash
# Run `python -m zipasr.bin.<module> args...` with the repository's tools/venv (if set up) and the repository on
# PYTHONPATH, so the utils/*.sh wrappers work from any directory.   Usage: utils/zipasr_python.sh MODULE ARGS...
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${ZIPASR_PYTHON:-}"
if [ -z "$python" ]; then
  if [ -x "$root/tools/venv/bin/python" ]; then python="$root/tools/venv/bin/python"; else python=python3; fi
fi
module="$1"; shift
PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}" exec "$python" -m "zipasr.bin.$module" "$@"
