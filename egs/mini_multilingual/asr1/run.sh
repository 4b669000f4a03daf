#!/usr/bin/env bash
# The embedded default recipe: every stage of the Zipper-LoRA paper on a 2-core CPU, with data and
# "pretrained" models it makes itself (no download). See README.md for the language plan.
#
#   1  corpus: espeak-ng synthesis -> corpus/ (wav) + data/ (Kaldi dirs), LLM text in data/local/lm_text,
#      the decoding lexicon data/lang/lexicon (the words of that text)
#   2  features: 80-bin Whisper log-mel (asr.sh stage 2) -> dump/
#   3  tokenizer + tiny Qwen3 text pretraining (LM + copy task) -> exp/pretrained/qwen3_tiny
#   4  tiny Whisper encoder, CTC pretraining on the source languages -> exp/pretrained/whisper_tiny
#   5  acoustic LID embeddings e(l) (mean-pooled encoder outputs on dev) + cosine heatmap -> exp/lid
#   6  projector warm start (zipasr.bin.warm_projector), then Stage 1 (alignment) on the source
#      languages (asr.sh stage 3), decoded on their test sets
#   7  Stage 2 per method on the long-tailed target set (asr.sh stage 4), then the sibling methods
#      (docs/sibling_methods.md) built from stage2_independent: lors, experts_fusion, experts_kd
#   8  decoding of the target test sets by every Stage-2 method (asr.sh stage 5); where the size asks for
#      them (conf/size_<size>.sh: stage1_target_decode, agnostic_methods; not the default), the Stage-1
#      model's decode, a LID classifier on the Stage-1 encoder and the language-agnostic decodes
#   9  scoring, result tables (asr.sh stage 6; the agnostic decodes are extra columns) and figures
#  10  RESULTS.md: tables, figures, training curves, wall time per stage
# With --seeds "1 2", stages 7-9 also retrain, decode and score every Stage-2 method with each extra seed
# (train.seed) in exp/<regime>_seed<N>/, from the same Stage 1; RESULTS.md then gives the seed-to-seed spread.
# Each encoder regime of the size (regimes= in conf/size_<size>.sh) has its own exp/<regime>/ (Stage 1
# and Stage 2 trained in it).
#
# Usage: ./run.sh [--stage N] [--stop_stage N] [--quick true | --full true | --micro true] [--nj N] [--threads N]
#                 [--jobs N] [--seeds "1 2"] [--projector gated_conv|ctc_compress]
set -euo pipefail

stage=1
stop_stage=10
quick=false   # fewer steps, a quarter of the corpus (<= 15 min)
full=false    # every method and both encoder regimes (~3 h)
micro=false   # CI's configuration: a few utterances and steps (< 5 min)
nj=2          # processes of the synthesis and the feature dump
threads=2     # torch threads of training and decoding (1 on a machine shared with other jobs)
jobs=         # stages 3+4 and 7-8: the pretrainings, Stage-2 trainings, decodes side by side, each with threads/jobs threads;
              # default 2 (1 with --threads 1). Tiny models use 2 threads poorly: two 1-thread jobs do
              # ~1.3x (training) to ~1.7x (decoding) the work of one 2-thread job (BENCHMARKS.md, section 6)
seeds=""      # extra Stage-2 seeds, e.g. "1 2": the methods' spread (each seed ~8-11 min at the default size)
projector=gated_conv  # the paper's; ctc_compress (NOT the paper's): one LLM input per character the encoder's
                      # CTC head predicts (NOTES.md, "CTC compression"), for Stage 1, Stage 2 and the warm start

# --help: the stage list of this header and the options below with their defaults
help_message="$(sed -n '2,/^set -euo/{/^#/s/^# \{0,1\}//p}' "$0")

Options (each --name value sets the variable of that name; the defaults):
$(sed -n '/^stage=1$/,/^# --help/{/^# --help/d;p}' "$0")"

. ./path.sh
. ./cmd.sh
. utils/parse_options.sh

log() { echo -e "$(date '+%F %T') (${0##*/}:${BASH_LINENO[0]}) $*" >&2; }

size=default
${quick} && size=quick
${full} && size=full
${micro} && size=micro
train_opts=""   # extra overrides of every Stage-1 and Stage-2 training run (a size file may set them)
. conf/size_${size}.sh

# The outputs of one size must not be mixed with another's: .done markers would skip stages.
mkdir -p exp
if [ -f exp/.size ] && [ "$(cat exp/.size)" != "${size}" ]; then
  log "ERROR: this directory holds a '$(cat exp/.size)' run; remove data/ dump/ exp/ corpus/ first to run '${size}'"
  exit 1
fi
echo "${size}" > exp/.size
case ${projector} in gated_conv|ctc_compress) ;; *) log "ERROR: --projector must be gated_conv or ctc_compress, got '${projector}'"; exit 1 ;; esac
if [ -f exp/.projector ] && [ "$(cat exp/.projector)" != "${projector}" ]; then
  log "ERROR: this directory's models use the '$(cat exp/.projector)' projector; rerun with --projector $(cat exp/.projector), or remove exp/ from stage 6 on"
  exit 1
fi
echo "${projector}" > exp/.projector
train_opts="model.projector=${projector} ${train_opts}"
# the sibling methods start from the Independent-LoRA experts
if [ -n "${sibling_methods}" ] && [[ " ${methods} " != *" independent "* ]]; then
  log "ERROR: conf/size_${size}.sh: sibling_methods='${sibling_methods}' need 'independent' in methods='${methods}'"
  exit 1
fi
all_methods=$(echo ${methods} ${sibling_methods})
. utils/job_pool.sh
. utils/done_marker.sh   # is_done MARKER DIR
jobs=${jobs:-$(( threads >= 2 ? 2 : 1 ))}
pool_init "${jobs}" || exit 1
job_threads=$(( threads / jobs > 0 ? threads / jobs : 1 ))
# Glibc keeps freed memory of the variable-shape batches and oneDNN caches a kernel per shape: both
# made the resident memory of a training run grow by gigabytes. Measured (100 encoder steps / 150 LLM
# steps, 2 threads): these two settings: 67 s / 34 s, peak 1.9 / 1.7 GB; MALLOC_ARENA_MAX=2 alone: 59 s /
# 31 s, 3.0 / 2.0 GB; the former MALLOC_TRIM_THRESHOLD_=0 + a cache of 8 kernels: 111 s for the encoder
# (NOTES.md, "Memory and speed note").
export MALLOC_ARENA_MAX=2 ONEDNN_PRIMITIVE_CACHE_CAPACITY=64

source_langs="en fr el zh"
target_langs="de es fr ru vi it en el pt ja ko fa"
all_langs="en fr el zh de es ru vi it pt ja ko fa"
src_test_dirs=$(for l in ${source_langs}; do printf 'data/test_src_%s ' "$l"; done)
tgt_test_dirs=$(for l in ${target_langs}; do printf 'data/test_%s ' "$l"; done)
asr_sets=(--stage1_train_set train_source --stage1_valid_set dev_source --train_set train_target
          --valid_set dev_target --n_mels 80 --nj "${nj}")
times=exp/stage_times.tsv

run() {
  local line; line=$(printf '%q ' "$@")
  log "Running: ${line}"
  echo "${line}" >> exp/run_commands.sh
  "$@"
}
# Stage bookkeeping: run stage N once (.done marker), log its wall time in ${times}.
begin() {  # begin N "title"
  stage_id=$1; stage_t0=$(date +%s)
  log "Stage $1: $2"
}
finish() {
  touch "exp/.stage${stage_id}.done"
  printf '%s\t%s\t%s\n' "${stage_id}" "$(( $(date +%s) - stage_t0 ))" "$1" >> "${times}"
}
# The decoding lexicon (conf/decode.yaml's `lexicon`): each language's words in the LLM's pretraining text
# (data/local/lm_text, which holds no dev or test sentence), i.e. the words the "pretrained" LLM has read.
# Japanese (written without spaces) gets none; a no-space language written with spaces (pinyin: the corpus
# config's `segmented_languages`, as stage 1 saved it in data/local/corpus_config.yaml) gets its words. Made in
# stage 1; stages 6 and 8 make it if a directory from before it lacks one.
lexicon_ready() {
  [ -f data/lang/.lexicon.done ] && return 0
  local segmented
  segmented=$(python -c 'import sys, yaml; print(",".join(yaml.safe_load(open(sys.argv[1])).get("segmented_languages") or []))' \
    data/local/corpus_config.yaml)
  run python -m zipasr.bin.make_lexicon --out_dir data/lang/lexicon --segmented "${segmented}" data/local/lm_text
  touch data/lang/.lexicon.done
}
todo() {  # todo N: the stage is selected and not yet done
  [ "${stage}" -le "$1" ] && [ "${stop_stage}" -ge "$1" ] || return 1
  if [ -f "exp/.stage$1.done" ]; then log "Stage $1 is done, skipped"; return 1; fi
}
# A job of stage 8 (run by utils/job_pool.sh beside the others; a .done marker only when finished).
decode_job() {  # decode_job EXP_DIR OUT_DIR [DECODE OPTIONS]
  local exp_dir=$1 dir=$2; shift 2
  run python -m zipasr.bin.decode --config conf/decode.yaml --exp_dir "${exp_dir}" --data_dir dump/test_all \
    --out_dir "${dir}" --threads "${job_threads}" ${decode_opts} "$@"
  touch "${dir}/.done"
}

if todo 1; then
  begin 1 "corpus synthesis with espeak-ng (${corpus_config})"
  run python -m zipasr.bin.synth_corpus --config "${corpus_config}" --audio_dir corpus --data_dir data --nj "${nj}"
  # one combined test set per stage: one decode per model, scored per language (utt2lang)
  run python -m zipasr.bin.combine_data data/test_src_all ${src_test_dirs}
  run python -m zipasr.bin.combine_data data/test_all ${tgt_test_dirs}
  # every language of the model, for the acoustic LID embeddings (no transcript is used)
  run python -m zipasr.bin.combine_data data/dev_all data/dev_source data/dev_target
  lexicon_ready
  finish "corpus synthesis"
fi

if todo 2; then
  begin 2 "features"
  run ./asr.sh --stage 2 --stop_stage 2 "${asr_sets[@]}" --test_sets "test_src_all test_all dev_all"
  finish "features"
fi

# Stages 3 and 4 are independent (the LLM reads text, the encoder audio): with --jobs 2 they run side by
# side, 1 thread each (logs: exp/pretrained/{qwen3_tiny,whisper_tiny}.log), which costs about the wall time
# of the LLM alone; the encoder's steps (conf/pretrain_encoder.yaml) are sized to end with it.
# A stage run alone (--jobs 1, or the other one done) gets all threads; --threads 1 and the default give the
# same models here (1 thread each), --jobs 1 with 2 threads other ones (float sums differ).
pretrain_llm() {  # pretrain_llm THREADS
  run python -m zipasr.bin.pretrain_llm --config conf/pretrain_llm.yaml ${llm_opts} --set threads="$1" \
    --text_dir data/local/lm_text --out_dir exp/pretrained/qwen3_tiny --languages ${all_langs}
  touch exp/.stage3.done
}
pretrain_encoder() {  # pretrain_encoder THREADS
  run python -m zipasr.bin.pretrain_encoder --config conf/pretrain_encoder.yaml ${encoder_opts} --set threads="$1" \
    --train_data dump/train_source --dev_data dump/dev_source --out_dir exp/pretrained/whisper_tiny
  touch exp/.stage4.done
}
do3=false; do4=false
if todo 3; then do3=true; fi
if todo 4; then do4=true; fi
if ${do3} && ${do4} && [ "${jobs}" -ge 2 ]; then
  begin 3+4 "tokenizer + tiny Qwen3 text pretraining beside the tiny Whisper encoder's CTC pretraining"
  pool_run exp/pretrained/qwen3_tiny.log pretrain_llm "${job_threads}"
  pool_run exp/pretrained/whisper_tiny.log pretrain_encoder "${job_threads}"
  pool_wait || { log "ERROR: a pretraining failed (its log is above); a rerun redoes only that one"; exit 1; }
  # one row for the pair (the table's total adds rows); each one's own time is in its train_log.tsv
  printf '%s\t%s\t%s\n' "3+4" "$(( $(date +%s) - stage_t0 ))" \
    "tokenizer + LLM pretraining beside encoder CTC pretraining (${job_threads} thread each)" >> "${times}"
else
  if ${do3}; then
    begin 3 "tokenizer and tiny Qwen3 text pretraining"
    pretrain_llm "${threads}"
    finish "tokenizer + LLM pretraining"
  fi
  if ${do4}; then
    begin 4 "tiny Whisper encoder CTC pretraining on the source languages"
    pretrain_encoder "${threads}"
    finish "encoder CTC pretraining"
  fi
fi

if todo 5; then
  begin 5 "acoustic LID embeddings"
  run python -m zipasr.bin.lid_embed --source acoustic --encoder_dir exp/pretrained/whisper_tiny \
    --data_dir dump/dev_all --languages ${all_langs} --max_per_language 100 \
    --out exp/lid/acoustic.safetensors --heatmap exp/lid/acoustic_cosine.png
  finish "LID embeddings"
fi

if todo 6; then
  begin 6 "Stage 1 (alignment) on ${source_langs}"
  lexicon_ready
  # The projector's warm start (a mini-recipe aid, not the paper's): it learns to write the LLM embedding
  # of the frame sequence the encoder's CTC head predicts, which the LLM learnt to copy in stage 3.
  # Stage 1 starts from it (model.init_from); a killed run redoes it (written to a temporary dir first).
  warm=exp/pretrained/projector_warm
  if [ ! -f "${warm}/speech_llm.json" ]; then
    run python -m zipasr.bin.warm_projector --stage1_config conf/train_stage1.yaml ${warm_opts} \
      --stage1_set model.projector=${projector} --set threads=${threads} --train_data dump/train_source --out_dir "${warm}"
  fi
  for regime in ${regimes}; do
    run ./asr.sh --stage 3 --stop_stage 3 "${asr_sets[@]}" --expdir "exp/${regime}" --langs "${all_langs}" \
      --train_overrides "model.regime=${regime} train.max_steps=${stage1_steps} train.threads=${threads} model.init_from=${warm} ${train_opts}"
    # the source-set evaluation (the paper's Table II); not named decode_* so that the Stage-2 tables,
    # which compare every row on the same target test sets, leave it out (RESULTS.md reports it)
    dir=exp/${regime}/stage1/source_decode_test_src_all_${regime}
    run python -m zipasr.bin.decode --config conf/decode.yaml --exp_dir "exp/${regime}/stage1" \
      --data_dir dump/test_src_all --out_dir "${dir}" --regime "${regime}" --threads "${threads}" ${decode_opts}
    run python -m zipasr.bin.score --ref data/test_src_all/text --hyp "${dir}/text" --out "${dir}/score"
  done
  finish "Stage 1 (+ decoding of the source test sets)"
fi

if todo 7; then
  begin 7 "Stage 2: ${all_methods}"
  for regime in ${regimes}; do
    run ./asr.sh --stage 4 --stop_stage 4 "${asr_sets[@]}" --expdir "exp/${regime}" --langs "${all_langs}" \
      --methods "${methods}" --jobs "${jobs}" \
      --train_overrides "model.regime=${regime} train.max_steps=${stage2_steps} train.threads=${job_threads} ${train_opts}"
    src=exp/${regime}/stage2_independent
    for M in ${sibling_methods}; do
      # the same marker as asr.sh's Stage-2 runs: a killed run resumes at the first unfinished method
      if is_done "exp/${regime}/.stage2_${M}.done" "exp/${regime}/stage2_${M}"; then log "exp/${regime}/stage2_${M} is done, skipped"; continue; fi
      case ${M} in
        lors) run python -m zipasr.bin.lors_merge --config conf/lors.yaml --src_exp "${src}" \
                --exp_dir "exp/${regime}/stage2_lors" ;;
        experts_fusion) run python -m zipasr.bin.experts fuse --src_exp "${src}" --exp_dir "exp/${regime}/stage2_${M}" \
                --train_dir dump/train_target --steps "${sibling_steps}" --threads "${threads}" --device cpu ;;
        experts_kd) run python -m zipasr.bin.experts distill --src_exp "${src}" --exp_dir "exp/${regime}/stage2_${M}" \
                --train_dir dump/train_target --steps "${sibling_steps}" --threads "${threads}" --device cpu ;;
        *) log "ERROR: unknown sibling method '${M}' (lors, experts_fusion, experts_kd)"; exit 1 ;;
      esac
      touch "exp/${regime}/.stage2_${M}.done"
    done
    for s in ${seeds}; do
      # a seed replica: the same Stage 1 (linked), every method trained again with train.seed=s
      mkdir -p "exp/${regime}_seed${s}"
      [ -e "exp/${regime}_seed${s}/stage1" ] || ln -s ../${regime}/stage1 "exp/${regime}_seed${s}/stage1"
      run ./asr.sh --stage 4 --stop_stage 4 "${asr_sets[@]}" --expdir "exp/${regime}_seed${s}" --langs "${all_langs}" \
        --methods "${methods}" --jobs "${jobs}" \
        --train_overrides "model.regime=${regime} train.max_steps=${stage2_steps} train.threads=${job_threads} train.seed=${s} ${train_opts}"
    done
  done
  finish "Stage 2 (${all_methods// /, })${seeds:+; seeds ${seeds}}"
fi

if todo 8; then
  begin 8 "decoding the target test sets"
  lexicon_ready
  for regime in ${regimes}; do
    run ./asr.sh --stage 5 --stop_stage 5 "${asr_sets[@]}" --expdir "exp/${regime}" --methods "${all_methods}" \
      --test_sets test_all --regimes "${regime}" --jobs "${jobs}" \
      --decode_opts "--dump_embeddings --threads ${job_threads} ${decode_opts}"
    # language-agnostic decoding: the language of each utterance predicted from the audio by a LID
    # classifier on the Stage-1 encoder (one classifier serves every Stage-2 method), trained on both
    # training sets so that it knows all languages of the model
    lid=exp/${regime}/stage1/lid
    if [ -n "${agnostic_methods}" ] && [ ! -f "${lid}/lid_classifier.json" ]; then
      [ -d dump/train_lid ] || run python -m zipasr.bin.combine_data dump/train_lid dump/train_source dump/train_target
      run python -m zipasr.bin.train_lid --exp_dir "exp/${regime}/stage1" --data_dir dump/train_lid --out_dir "${lid}" \
        --threads "${threads}" ${lid_opts}
    fi
    # the Stage-1 model on the target test sets (the tables' "Stage-1" row, the starting point of
    # Stage 2; the size's stage1_target_decode) and the agnostic decodes, side by side
    dir=exp/${regime}/stage1/decode_test_all_${regime}
    if ! ${stage1_target_decode}; then :
    elif [ -f "${dir}/.done" ]; then log "${dir} is done, skipped"; else
      pool_run "${dir}.log" decode_job "exp/${regime}/stage1" "${dir}" --regime "${regime}"
    fi
    for M in ${agnostic_methods}; do
      dir=exp/${regime}/stage2_${M}/decode_test_all_agnostic_${regime}
      if [ -f "${dir}/.done" ]; then log "${dir} is done, skipped"; continue; fi
      pool_run "${dir}.log" decode_job "exp/${regime}/stage2_${M}" "${dir}" --regime "${regime}" --lid_model "${lid}"
    done
    pool_wait || { log "ERROR: a decode failed (its log is above)"; exit 1; }
    dir=exp/${regime}/stage1/decode_test_all_${regime}
    if ${stage1_target_decode}; then
      run python -m zipasr.bin.score --ref data/test_all/text --hyp "${dir}/text" --out "${dir}/score"
    fi
    for s in ${seeds}; do
      run ./asr.sh --stage 5 --stop_stage 5 "${asr_sets[@]}" --expdir "exp/${regime}_seed${s}" --methods "${methods}" \
        --test_sets test_all --regimes "${regime}" --jobs "${jobs}" --decode_opts "--threads ${job_threads} ${decode_opts}"
    done
  done
  finish "decoding (+ language-agnostic: ${agnostic_methods:-none})${seeds:+; seeds ${seeds}}"
fi

if todo 9; then
  begin 9 "scoring, tables and figures"
  for regime in ${regimes}; do
    # the language-agnostic decodes first: asr.sh's table then shows them as test_all_agnostic columns
    for M in ${agnostic_methods}; do
      dir=exp/${regime}/stage2_${M}/decode_test_all_agnostic_${regime}
      run python -m zipasr.bin.score --ref data/test_all/text --hyp "${dir}/text" --out "${dir}/score"
    done
    run ./asr.sh --stage 6 --stop_stage 6 "${asr_sets[@]}" --expdir "exp/${regime}" --methods "${all_methods}" \
      --test_sets test_all --regimes "${regime}"
    for s in ${seeds}; do
      run ./asr.sh --stage 6 --stop_stage 6 "${asr_sets[@]}" --expdir "exp/${regime}_seed${s}" --methods "${methods}" \
        --test_sets test_all --regimes "${regime}"
    done
  done
  tsne=()
  for regime in ${regimes}; do
    for M in vanilla zipper_soft; do
      f=exp/${regime}/stage2_${M}/decode_test_all_${regime}/embeddings.npz
      [ -f "${f}" ] && tsne+=("${f}")
    done
  done
  run python -m zipasr.bin.plot --results $(printf 'exp/%s ' ${regimes}) --out exp/figures --baseline vanilla \
    ${tsne[@]:+--tsne "${tsne[@]}"}
  finish "scoring, tables, figures${seeds:+; seeds ${seeds}}"
fi

if todo 10; then
  begin 10 "RESULTS.md"
  run python local/make_results.py --size "${size}" --regimes "${regimes}" --seeds "${seeds}" --out RESULTS.md
  finish "RESULTS.md${seeds:+; seeds ${seeds}}"
fi
log "Successfully finished stages ${stage}-${stop_stage} (${size})"
