# Environment of every zipasr recipe (sourced by asr.sh): the repository's venv, utils/ on PATH, UTF-8 I/O.
MAIN_ROOT=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/../../.." && pwd)  # the repository
if [ -f "${MAIN_ROOT}/tools/venv/bin/activate" ]; then
  # shellcheck disable=SC1091
  . "${MAIN_ROOT}/tools/venv/bin/activate"
fi
export PATH="${MAIN_ROOT}/utils:${PATH}"
export PYTHONPATH="${MAIN_ROOT}${PYTHONPATH:+:${PYTHONPATH}}"
export PYTHONIOENCODING=UTF-8
export LC_ALL=C.UTF-8
export HF_HUB_OFFLINE=1   # checkpoints are local directories; never reach for a hub at run time
