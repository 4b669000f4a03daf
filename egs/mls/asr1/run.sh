#!/usr/bin/env bash
# Multilingual LibriSpeech (openslr 94), one language per run: lang=fr ./run.sh [asr.sh options]
# Paper Table I: de, es, fr 1000 h each and it 500 h of Stage-2 training; tests: the official test splits.
# (The paper's budgets are applied in egs/multilingual12; this recipe trains on the whole train split.)
# Expected layout under ${MLS} (db.sh), flac or opus release:
#   mls_<language>[_opus]/{train,dev,test}/transcripts.txt       "<spk>_<book>_<seg>\t<transcript>"
#   mls_<language>[_opus]/{train,dev,test}/segments.txt          (durations)
#   mls_<language>[_opus]/{train,dev,test}/audio/<spk>/<book>/<spk>_<book>_<seg>.flac (or .opus)
#   mls_<language>[_opus]/train/limited_supervision/{9hr,1hr/0..5}/handles.txt
set -euo pipefail
. ./db.sh

lang=${lang:-de}
declare -A folder=([de]=mls_german [nl]=mls_dutch [fr]=mls_french [es]=mls_spanish [it]=mls_italian
                   [pt]=mls_portuguese [pl]=mls_polish [en]=mls_english)
[ -n "${folder[${lang}]:-}" ] || { echo "run.sh: MLS has no language '${lang}' (${!folder[*]})" >&2; exit 1; }
root=${MLS}/${folder[${lang}]}
[ -d "${root}" ] || [ ! -d "${root}_opus" ] || root=${root}_opus

./asr.sh \
  --corpus mls --db_root "${root}" --lang "${lang}" \
  --prepare_splits "train:train_${lang} dev:dev_${lang} test:test_${lang}" \
  --langs "${lang}" --expdir "exp/${lang}" \
  --train_set "train_${lang}" --valid_set "dev_${lang}" --test_sets "test_${lang}" \
  --whisper_dir "${WHISPER_DIR}" \
  --train_overrides "model.encoder_dir=${WHISPER_DIR} model.llm_dir=${LLM_DIR}" \
  "$@"
