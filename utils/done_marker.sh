# .done markers of the recipe scripts (sourced by asr.sh and run.sh, which define log()).
#
#   if is_done exp/.stage1.done exp/stage1; then ...skip...; fi
#
# A finished run is its .done marker AND its dir: a marker whose dir was moved or removed is stale (the
# run is redone, not skipped into a decode of a missing model).
is_done() {  # is_done MARKER DIR
  [ -f "$1" ] || return 1
  if [ -d "$2" ]; then return 0; fi
  log "WARNING: $1 exists but $2 does not: running it again"; rm -f "$1"; return 1
}
