#!/usr/bin/env bash
# The shared recipe of zipasr (ESPnet-style TEMPLATE): every egs/<corpus>/asr1/run.sh symlinks this file and
# calls it with its corpus, splits and languages. Stages:
#   1  data preparation: python -m zipasr.bin.prepare per corpus split (data/<name>), optional random hour
#      subset of the training set, then local/data.sh if the recipe has one (corpus quirks, combined sets)
#   2  feature dump: python -m zipasr.bin.dump_feats (Whisper log-mel, kaldiio ark/scp) with ${feats_cmd}
#   3  Stage-1 training (alignment): python -m zipasr.bin.train --config conf/train_stage1.yaml
#   4  Stage-2 training, one run per encoder-side method in ${methods}
#   5  decoding of every test set, every method, every encoder regime in ${regimes}
#   6  scoring (WER/CER) and the result table (${expdir}/RESULTS.md)
# Reruns skip finished steps (.done markers) and a killed training run continues from its last checkpoint
# (zipasr.bin.train --resume, as ESPnet's asr.sh); --stage/--stop_stage select stages. Every command run is logged
# and appended to ${expdir}/run_commands.sh, so each step can be rerun by hand.
set -euo pipefail

log() { echo -e "$(date '+%F %T') (${0##*/}:${BASH_LINENO[0]}) $*" >&2; }

# ---------------------------------------------------------------- options (all settable as --name value)
stage=1                 # first stage to run
stop_stage=6            # last stage to run
nj=4                    # parallel jobs of the feature dump
corpus=                 # a zipasr corpus: librispeech mls commonvoice wenetspeech msr86k (empty: local/data.sh only)
db_root=                # the corpus folder (from db.sh)
prepare_splits=         # "corpus_split:data_name ..." e.g. "test-clean:test_clean dev-clean:dev_clean"
lang=                   # --lang given to the corpus preparer (where its layout does not tell)
prepare_opts=           # extra options of zipasr.bin.prepare (e.g. --skip_bad)
langs=                  # languages of the model, ISO 639-1 (model.languages)
train_set=              # Stage-2 training set (data dir name)
valid_set=              # Stage-2 validation set
stage1_train_set=       # Stage-1 training set (default: train_set)
stage1_valid_set=       # Stage-1 validation set (default: valid_set)
test_sets=              # sets to decode and score
train_hours=            # if set: the training set is replaced by a random subset of this many hours
subset_seed=0           # seed of that subset (same seed, same subset)
feats_type=dump         # dump: features precomputed in stage 2; raw: computed on the fly from wav.scp
whisper_dir=            # Whisper checkpoint: mel bins of the dump (empty: --n_mels)
n_mels=128              # mel bins when no whisper_dir is given (80 or 128; Whisper-large-v3 uses 128)
dumpdir=dump            # where stage 2 writes data dirs with feats.scp
expdir=exp              # experiments
methods="vanilla independent flylora zipper_static zipper_hard zipper_soft zipper_soft_initb"
regimes="chunked full"  # encoder regimes to decode with
jobs=1                  # stages 4 and 5: Stage-2 methods trained / decodes run this many at a time, each in the
                        # background with its log in its exp dir (CPU: give each job threads/jobs threads in
                        # train_overrides and decode_opts; two 1-thread jobs beat one 2-thread job there)
launcher=python         # how to start training, e.g. "torchrun --nproc_per_node=4" or "deepspeed --num_gpus 4"
train_overrides=        # extra key=value config overrides for stages 3 and 4 (e.g. model.encoder_dir=...)
decode_config=conf/decode.yaml  # options of zipasr.bin.decode (beam, batch size, ...), if the file exists
decode_opts=            # extra options of zipasr.bin.decode (e.g. "--beam 4")
feats_cmd=utils/run.pl  # job runner of the feature dump (cmd.sh sets it)

help_message="Usage: $0 [--stage N] [--stop_stage N] [--nj N] [--corpus NAME --db_root DIR --prepare_splits ...]
See the option list at the top of $0 (every variable there is an option)."

[ -f ./cmd.sh ] && . ./cmd.sh
[ -f ./path.sh ] && . ./path.sh
. utils/parse_options.sh

stage1_train_set=${stage1_train_set:-${train_set}}
stage1_valid_set=${stage1_valid_set:-${valid_set}}
if [ -n "${train_hours}" ] && [ -n "${train_set}" ]; then
  full_train_set=${train_set}
  train_set=${train_set}_${train_hours}h
  [ "${stage1_train_set}" = "${full_train_set}" ] && stage1_train_set=${train_set}
fi
if [ "${feats_type}" = dump ]; then data_feats=${dumpdir}; else data_feats=data; fi
mkdir -p "${expdir}"
commands="${expdir}/run_commands.sh"

# Log a command, append it to ${commands} (runnable as is), then run it.
run() {
  local line; line=$(printf '%q ' "$@")
  log "Running: ${line}"
  echo "${line}" >> "${commands}"
  "$@"
}
# The jobs of stages 4 and 5 (run in the foreground, or by utils/job_pool.sh with --jobs > 1). A job's
# .done marker is written only when it succeeded: a rerun skips it, a killed one is redone (resumed).
. utils/job_pool.sh
pool_init "${jobs}"
. utils/done_marker.sh   # is_done MARKER DIR
train_stage2() {  # train_stage2 METHOD OVERRIDES...
  local M=$1; shift
  run ${launcher} -m zipasr.bin.train --config "conf/train_stage2_${M}.yaml" --exp_dir "${expdir}/stage2_${M}" \
    --resume "$@"
  touch "${expdir}/.stage2_${M}.done"
}
decode_one() {  # decode_one EXP_DIR TEST_SET REGIME OUT_DIR
  run python -m zipasr.bin.decode --exp_dir "$1" --data_dir "${data_feats}/$2" --out_dir "$4" --regime "$3" \
    ${decode_config_opt} ${decode_opts}
  touch "$4/.done"
}

# ---------------------------------------------------------------- stage 1: data preparation
if [ ${stage} -le 1 ] && [ ${stop_stage} -ge 1 ]; then
  log "Stage 1: data preparation (${corpus:-local/data.sh})"
  for pair in ${prepare_splits}; do
    split=${pair%%:*}; name=${pair#*:}
    if [ -f "data/.prepare_${name}.done" ] && [ -d "data/${name}" ]; then
      log "data/${name} is done, skipped"; continue
    fi
    run python -m zipasr.bin.prepare "${corpus}" --root "${db_root}" --split "${split}" --out "data/${name}" \
      ${lang:+--lang "${lang}"} ${prepare_opts}
    touch "data/.prepare_${name}.done"
  done
  if [ -n "${train_hours}" ] && [ -n "${train_set}" ] && [ ! -f "data/.subset_${train_set}.done" ]; then
    run python -m zipasr.bin.subset_data_dir "data/${full_train_set}" "data/${train_set}" \
      --hours "${train_hours}" --seed "${subset_seed}"
    touch "data/.subset_${train_set}.done"
  fi
  if [ -x local/data.sh ]; then
    run local/data.sh
  fi
fi

# ---------------------------------------------------------------- stage 2: feature dump
if [ ${stage} -le 2 ] && [ ${stop_stage} -ge 2 ]; then
  if [ "${feats_type}" = dump ]; then
    log "Stage 2: Whisper log-mel features -> ${dumpdir}"
    if [ -n "${whisper_dir}" ]; then mel_opts="--encoder_dir ${whisper_dir}"; else mel_opts="--n_mels ${n_mels}"; fi
    dsets=$(echo ${stage1_train_set} ${stage1_valid_set} ${train_set} ${valid_set} ${test_sets} | tr ' ' '\n' | sort -u)
    for dset in ${dsets}; do
      if [ -f "${dumpdir}/.${dset}.done" ] && [ -f "${dumpdir}/${dset}/feats.scp" ]; then
        log "${dumpdir}/${dset} is done, skipped"; continue
      fi
      run python -m zipasr.bin.dump_feats --data_dir "data/${dset}" --out_dir "${dumpdir}/${dset}" \
        --nj "${nj}" --cmd "${feats_cmd}" ${mel_opts}
      touch "${dumpdir}/.${dset}.done"
    done
  else
    log "Stage 2: skipped (feats_type=${feats_type}: features are computed on the fly)"
  fi
fi

lang_override="model.languages=[${langs// /,}]"
valid_dir() { if [ -n "$1" ]; then echo "${data_feats}/$1"; else echo null; fi; }
# "--set k=v" once per override (zipasr.bin.train takes one KEY=VALUE per --set).
set_args() { local o; for o in "$@"; do printf -- '--set\n%s\n' "${o}"; done; }

# ---------------------------------------------------------------- stage 3: Stage-1 training
if [ ${stage} -le 3 ] && [ ${stop_stage} -ge 3 ]; then
  log "Stage 3: Stage-1 training (alignment) on ${stage1_train_set}"
  if is_done "${expdir}/.stage1.done" "${expdir}/stage1"; then log "${expdir}/stage1 is done, skipped"; else
    mapfile -t overrides < <(set_args "data.train_dir=${data_feats}/${stage1_train_set}" \
      "data.valid_dir=$(valid_dir "${stage1_valid_set}")" "${lang_override}" ${train_overrides})
    run ${launcher} -m zipasr.bin.train --config conf/train_stage1.yaml --exp_dir "${expdir}/stage1" --resume \
      "${overrides[@]}"
    touch "${expdir}/.stage1.done"
  fi
fi

# ---------------------------------------------------------------- stage 4: Stage-2 training per method
if [ ${stage} -le 4 ] && [ ${stop_stage} -ge 4 ]; then
  # zipper_soft first: Initial-B starts from its run, and a job pool should not sit idle waiting for it
  for M in $(printf '%s\n' ${methods} | grep -x zipper_soft; printf '%s\n' ${methods} | grep -vx zipper_soft); do
    log "Stage 4: Stage-2 training, encoder adapter ${M}, on ${train_set}"
    if is_done "${expdir}/.stage2_${M}.done" "${expdir}/stage2_${M}"; then log "${expdir}/stage2_${M} is done, skipped"; continue; fi
    # Initial-B warm-starts from the converged Zipper-Soft run of this recipe.
    extra=
    if [[ ${M} == *initb* ]]; then
      pool_wait_file "${expdir}/.stage2_zipper_soft.done" || { log "${M} needs the zipper_soft run first"; exit 1; }
      extra="model.encoder_adapter.init_b_from=${expdir}/stage2_zipper_soft"
    fi
    mapfile -t overrides < <(set_args "model.init_from=${expdir}/stage1" "data.train_dir=${data_feats}/${train_set}" \
      "data.valid_dir=$(valid_dir "${valid_set}")" "${lang_override}" ${extra} ${train_overrides})
    pool_run "${expdir}/stage2_${M}/run.log" train_stage2 "${M}" "${overrides[@]}"
  done
  pool_wait || { log "ERROR: a Stage-2 training failed (its log is above)"; exit 1; }
fi

# ---------------------------------------------------------------- stage 5: decoding
if [ ${stage} -le 5 ] && [ ${stop_stage} -ge 5 ]; then
  decode_config_opt=
  [ -n "${decode_config}" ] && [ -f "${decode_config}" ] && decode_config_opt="--config ${decode_config}"
  for M in ${methods}; do
    for test_set in ${test_sets}; do
      for regime in ${regimes}; do
        dir=${expdir}/stage2_${M}/decode_${test_set}_${regime}
        if [ -f "${dir}/.done" ]; then log "${dir} is done, skipped"; continue; fi
        log "Stage 5: decoding ${test_set} with ${M} (${regime})"
        pool_run "${dir}.log" decode_one "${expdir}/stage2_${M}" "${test_set}" "${regime}" "${dir}"
      done
    done
  done
  pool_wait || { log "ERROR: a decode failed (its log is above)"; exit 1; }
fi

# ---------------------------------------------------------------- stage 6: scoring and results
if [ ${stage} -le 6 ] && [ ${stop_stage} -ge 6 ]; then
  log "Stage 6: scoring"
  for M in ${methods}; do
    for test_set in ${test_sets}; do
      for regime in ${regimes}; do
        dir=${expdir}/stage2_${M}/decode_${test_set}_${regime}
        run python -m zipasr.bin.score --ref "data/${test_set}/text" --hyp "${dir}/text" --out "${dir}/score"
      done
    done
  done
  run python -m zipasr.bin.show_results "${expdir}" --baseline vanilla --format md --out "${expdir}/RESULTS.md"
  log "Results: ${expdir}/RESULTS.md"
fi
log "Successfully finished stages ${stage}-${stop_stage}"
