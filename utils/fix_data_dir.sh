#!/usr/bin/env bash
# Kaldi-style wrapper: utils/fix_data_dir.sh [--check-audio] [--compute_durations] DATA_DIR
# Keeps the consistent intersection and writes DATA_DIR/fix_report. See: python -m zipasr.bin.fix_data_dir --help
exec "$(dirname "$0")/zipasr_python.sh" fix_data_dir "$@"
