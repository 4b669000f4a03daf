#!/usr/bin/env bash
# Kaldi-style wrapper: utils/validate_data_dir.sh [--check-audio] DATA_DIR
# (Kaldi's --no-feats/--no-text/--no-wav/--non-print/--no-spk-sort are accepted and ignored: zipasr checks
# what the dir has.) See: python -m zipasr.bin.validate_data_dir --help
args=()
for a in "$@"; do
  case "$a" in --no-feats|--no-text|--no-wav|--non-print|--no-spk-sort) ;; *) args+=("$a") ;; esac
done
exec "$(dirname "$0")/zipasr_python.sh" validate_data_dir "${args[@]}"
