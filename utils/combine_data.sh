#!/usr/bin/env bash
# Kaldi-style wrapper: utils/combine_data.sh DEST SRC1 SRC2 ...
# (Kaldi's --extra-files/--skip-fix options are accepted and ignored.) See: python -m zipasr.bin.combine_data --help
args=()
while [ $# -gt 0 ]; do
  case "$1" in --extra-files|--extra_files|--skip-fix|--skip_fix) shift 2 ;; *) args+=("$1"); shift ;; esac
done
exec "$(dirname "$0")/zipasr_python.sh" combine_data "${args[@]}"
