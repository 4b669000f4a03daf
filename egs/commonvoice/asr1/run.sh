#!/usr/bin/env bash
# Common Voice (any release), one language per run: lang=ko ./run.sh [asr.sh options]
# Paper Table I: th 865 h; ar, ja, ko, pt 1 h each (released id lists, see egs/multilingual12); tests: 4 h
# random subsets of the official test split (ar, th), the official test split (ko, 0.98 h), pt from train.
# Expected layout under ${COMMONVOICE} (db.sh), e.g. cv-corpus-18.0-2024-06-14/:
#   <locale>/{train,dev,test,validated}.tsv     tab-separated with a header (client_id, path, sentence, locale...)
#   <locale>/clips/common_voice_<locale>_<n>.mp3  (48 kHz)
#   <locale>/clip_durations.tsv                   (newer releases; else durations are read from the mp3s)
set -euo pipefail
. ./db.sh

lang=${lang:-ko}
locale=${locale:-${lang}}   # folder name when it differs from the ISO code (zh-CN, sv-SE, ...)

./asr.sh \
  --corpus commonvoice --db_root "${COMMONVOICE}/${locale}" --lang "${lang}" \
  --prepare_splits "train:train_${lang} dev:dev_${lang} test:test_${lang}" \
  --langs "${lang}" --expdir "exp/${lang}" \
  --train_set "train_${lang}" --valid_set "dev_${lang}" --test_sets "test_${lang}" \
  --whisper_dir "${WHISPER_DIR}" \
  --train_overrides "model.encoder_dir=${WHISPER_DIR} model.llm_dir=${LLM_DIR}" \
  "$@"
