#!/usr/bin/env bash
# WenetSpeech Mandarin. Paper Table I: 3000 h of Stage-1 training (source); tests TEST_MEETING (15.18 h)
# and TEST_NET (23.06 h). Training subset: subset=M ./run.sh (default L, 10k h), or --train_hours 3000.
# Expected layout under ${WENETSPEECH} (db.sh):
#   WenetSpeech.json          {"audios": [{"aid", "path", "segments": [{"sid", "begin_time", "end_time",
#                              "text", "subsets": ["{L}", "{M}", ...]}]}]}
#   audio/{train,dev,test_net,test_meeting}/.../<aid>.opus     long recordings, cut by `segments`
set -euo pipefail
. ./db.sh

subset=${subset:-L}

./asr.sh \
  --corpus wenetspeech --db_root "${WENETSPEECH}" \
  --prepare_splits "${subset}:train_${subset,,} DEV:dev TEST_NET:test_net TEST_MEETING:test_meeting" \
  --langs zh \
  --train_set "train_${subset,,}" --valid_set dev --test_sets "test_meeting test_net" \
  --whisper_dir "${WHISPER_DIR}" \
  --train_overrides "model.encoder_dir=${WHISPER_DIR} model.llm_dir=${LLM_DIR}" \
  "$@"
