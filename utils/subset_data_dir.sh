#!/usr/bin/env bash
# Kaldi-style wrapper:
#   utils/subset_data_dir.sh --utt-list LIST SRC DEST      utterances named in LIST
#   utils/subset_data_dir.sh SRC N DEST                    N random utterances (seed 0)
#   utils/subset_data_dir.sh --hours H [--seed S] SRC DEST H hours at random (zipasr extension)
# Other options are passed to python -m zipasr.bin.subset_data_dir (see its --help).
set -euo pipefail
opts=(); pos=()
while [ $# -gt 0 ]; do
  case "$1" in
    --utt-list|--utt_list) opts+=(--ids "$2"); shift 2 ;;
    --hours|--seed|--num_utts|--lang) opts+=("$1" "$2"); shift 2 ;;
    --*) opts+=("$1"); shift ;;
    *) pos+=("$1"); shift ;;
  esac
done
if [ ${#pos[@]} -eq 3 ]; then
  opts+=(--num_utts "${pos[1]}"); pos=("${pos[0]}" "${pos[2]}")
fi
if [ ${#pos[@]} -ne 2 ]; then
  sed -n '2,6p' "$0" >&2; exit 1
fi
exec "$(dirname "$0")/zipasr_python.sh" subset_data_dir "${pos[@]}" "${opts[@]}"
