# A pool of background jobs for the recipe scripts (sourced by asr.sh and run.sh; bash >= 5.1).
#
#   . utils/job_pool.sh
#   pool_init 2                      # at most 2 jobs at once; 1 = every job in the foreground, as before
#   pool_run exp/a/run.log cmd ...   # starts `cmd ...` once a slot is free, its output in exp/a/run.log
#   pool_wait_file exp/.a.done       # (optional) waits until a running job has made this file
#   pool_wait || exit 1              # waits for every job; non-zero if one failed
#
# Why: the tiny models of the mini recipe use 2 CPU threads poorly (1.6x of one thread), so two
# 1-thread jobs side by side do more work per minute than one 2-thread job (BENCHMARKS.md, section 6).
# A failed job does not stop the others (a killed training would leave a half-done run to resume);
# pool_wait reports it with the tail of its log once all have ended.

pool_size=1
pool_failed=0
declare -A pool_logs=()   # pid -> log file of each running or unreaped job

pool_init() {  # pool_init N
  [[ "$1" =~ ^[1-9][0-9]*$ ]] || { echo "pool_init: a positive number of jobs, got '$1'" >&2; return 1; }
  pool_size=$1; pool_failed=0; pool_logs=()
}

_pool_done() {  # _pool_done PID STATUS: a job ended
  if [ "$2" -ne 0 ]; then
    echo "$(date '+%F %T') (job_pool) ERROR: exit status $2 of the job logged in ${pool_logs[$1]}:" >&2
    tail -n 20 "${pool_logs[$1]}" >&2 || true
    pool_failed=1
  fi
  unset "pool_logs[$1]"
}

_pool_reap() {  # wait until a job has ended; collect every job that has
  local n=${#pool_logs[@]} pid rc
  while [ "${#pool_logs[@]}" -eq "${n}" ]; do
    pid= rc=0
    wait -n -p pid 2>/dev/null || rc=$?
    if [ -n "${pid:-}" ] && [ -n "${pool_logs[${pid}]+x}" ]; then _pool_done "${pid}" "${rc}"; fi
    # bash drops a finished job from its job table when it starts the next one, and `wait -n` no longer
    # sees it (seen on a loaded machine: the pool then waited forever); `wait PID` still has its status
    for pid in "${!pool_logs[@]}"; do
      if ! kill -0 "${pid}" 2>/dev/null; then
        rc=0
        wait "${pid}" || rc=$?
        _pool_done "${pid}" "${rc}"
      fi
    done
    [ "${#pool_logs[@]}" -lt "${n}" ] || sleep 0.1
  done
}

pool_run() {  # pool_run LOG CMD...
  local log=$1; shift
  if [ "${pool_size}" -eq 1 ]; then "$@"; return; fi
  while [ "${#pool_logs[@]}" -ge "${pool_size}" ]; do _pool_reap; done
  mkdir -p "$(dirname "${log}")"
  echo "$(date '+%F %T') (job_pool) started in the background, log: ${log}" >&2
  "$@" > "${log}" 2>&1 &
  pool_logs[$!]=${log}
}

pool_wait_file() {  # pool_wait_file FILE: reap jobs until FILE exists or none is left
  while [ ! -e "$1" ] && [ "${#pool_logs[@]}" -gt 0 ]; do _pool_reap; done
  [ -e "$1" ]
}

pool_wait() {
  while [ "${#pool_logs[@]}" -gt 0 ]; do _pool_reap; done
  local failed=${pool_failed}
  pool_failed=0
  return "${failed}"
}
