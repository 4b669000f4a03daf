#!/usr/bin/env bash
# The paper's setting (Zipper-LoRA, Table I): Stage 1 on 4 source languages (en, fr, th from MSR-86K and zh from
# WenetSpeech, 3000 h each), Stage 2 on 12 long-tailed target languages (MLS de/es/fr 1000 h, it 500 h; MSR-86K
# ru/vi 1000 h; LibriSpeech en 960 h; Common Voice th 865 h and ar/ja/ko/pt 1 h), every encoder-side method,
# both encoder regimes, on the paper's test sets. The sets and budgets are in conf/sets.conf (1 h condition);
# sets_conf=conf/sets_30h.conf ./run.sh gives the 30 h condition of Fig. 6. Corpus roots and the released id
# lists come from db.sh; each corpus is read in the layout shown in egs/<corpus>/asr1/run.sh.
set -euo pipefail
. ./db.sh
export sets_conf=${sets_conf:-conf/sets.conf}

tests="test_mls_de test_mls_es test_mls_fr test_mls_it test_msr_ru test_msr_vi test_ls_clean test_ls_other"
tests+=" test_cv_th test_cv_ar test_cv_ja test_cv_ko"
tests+=" $(grep -oE '^test_(cv|mls)_pt' "${sets_conf}")"
tests+=" test_msr_en test_msr_fr test_msr_th test_ws_meeting test_ws_net"

./asr.sh \
  --langs "en fr th zh de es it ru vi ar ja ko pt" \
  --stage1_train_set stage1_train --stage1_valid_set stage1_valid \
  --train_set stage2_train --valid_set stage2_valid --test_sets "${tests}" \
  --whisper_dir "${WHISPER_DIR}" \
  --train_overrides "model.encoder_dir=${WHISPER_DIR} model.llm_dir=${LLM_DIR}" \
  "$@"
