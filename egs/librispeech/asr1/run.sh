#!/usr/bin/env bash
# LibriSpeech English (openslr 12). Paper Table I: 960 h of Stage-2 training (SFT target), tests
# test-clean (5.40 h) and test-other (5.34 h).
# Expected layout under ${LIBRISPEECH} (db.sh):
#   train-clean-100/ train-clean-360/ train-other-500/ dev-clean/ dev-other/ test-clean/ test-other/
#     <speaker>/<chapter>/<speaker>-<chapter>-<nnnn>.flac
#     <speaker>/<chapter>/<speaker>-<chapter>.trans.txt          "<utt> <TRANSCRIPT>"
# Usage: ./run.sh [--stage N] [--stop_stage N] [any asr.sh option]
set -euo pipefail
. ./db.sh

splits="train-clean-100:train_clean_100 train-clean-360:train_clean_360 train-other-500:train_other_500"
splits+=" dev-clean:dev_clean dev-other:dev_other test-clean:test_clean test-other:test_other"

./asr.sh \
  --corpus librispeech --db_root "${LIBRISPEECH}" --prepare_splits "${splits}" \
  --langs en \
  --train_set train_960 --valid_set dev_clean --test_sets "test_clean test_other" \
  --whisper_dir "${WHISPER_DIR}" \
  --train_overrides "model.encoder_dir=${WHISPER_DIR} model.llm_dir=${LLM_DIR}" \
  "$@"
