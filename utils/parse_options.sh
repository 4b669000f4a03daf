#!/usr/bin/env bash
# Parse --name value options into shell variables of the sourcing script (Kaldi/ESPnet convention).
#   Source it after the variables have their defaults:   . utils/parse_options.sh
# --foo-bar VALUE or --foo_bar=VALUE sets foo_bar, which must already be defined (unknown options are errors).
# A variable whose default is true/false only accepts true or false. --config FILE sources FILE first.
# --help / -h prints $help_message (if the script defines one) and exits. Parsing stops at the first
# argument that is not an option (or after "--"); the rest stay in "$@".

_po_usage() { echo "${help_message:-Usage: $0 [options]}" >&2; }

while [ $# -gt 0 ]; do
  case "$1" in
    --help|-h) _po_usage; exit 0 ;;
    --) shift; break ;;
    --*=*) _po_name="${1%%=*}"; _po_value="${1#*=}"; shift ;;
    --*)
      _po_name="$1"
      if [ $# -lt 2 ]; then echo "$0: option $1 needs a value" >&2; exit 1; fi
      _po_value="$2"; shift 2 ;;
    *) break ;;
  esac
  _po_var="${_po_name#--}"; _po_var="${_po_var//-/_}"
  if [ "$_po_var" = config ]; then
    [ -f "$_po_value" ] || { echo "$0: config file $_po_value not found" >&2; exit 1; }
    # shellcheck disable=SC1090
    . "$_po_value"; continue
  fi
  if ! [[ "$_po_var" =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || [ -z "${!_po_var+set}" ]; then
    echo "$0: unknown option $_po_name" >&2; _po_usage; exit 1
  fi
  case "${!_po_var}" in
    true|false)
      case "$_po_value" in true|false) ;; *)
        echo "$0: option $_po_name takes true or false, got '$_po_value'" >&2; exit 1 ;;
      esac ;;
  esac
  printf -v "$_po_var" '%s' "$_po_value"
done
unset _po_name _po_value _po_var
true
