#!/usr/bin/env bash
# MSR-86K, one language per run: lang=ru ./run.sh [asr.sh options]
# Paper Table I: en, fr, th 3000 h each (Stage-1 source); ru, vi 1000 h each (Stage-2 target). MSR-86K has no
# test split: the paper evaluates on dev (en 14.72 h, fr 12.60 h, th 8.37 h, ru 8.16 h, vi 7.25 h).
# Its layout is not public; zipasr ASSUMES (zipasr/data/corpora/msr86k.py, class Msr86kLayout):
#   <lang>/{train,dev}/transcripts.tsv    header "id<TAB>audio<TAB>text" (+ optional start, end, speaker)
#   <lang>/{train,dev}/<audio>            16 kHz wav, paths relative to the split folder
set -euo pipefail
. ./db.sh

lang=${lang:-en}

./asr.sh \
  --corpus msr86k --db_root "${MSR86K}" --lang "${lang}" \
  --prepare_splits "train:train_${lang} dev:dev_${lang}" \
  --langs "${lang}" --expdir "exp/${lang}" \
  --train_set "train_${lang}" --valid_set "dev_${lang}" --test_sets "dev_${lang}" \
  --whisper_dir "${WHISPER_DIR}" \
  --train_overrides "model.encoder_dir=${WHISPER_DIR} model.llm_dir=${LLM_DIR}" \
  "$@"
