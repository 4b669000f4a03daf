#!/usr/bin/env bash
# Create a new recipe egs/<name>/asr1 from the shared template (docs/adding_a_corpus.md explains the rest).
#   utils/make_recipe.sh [--corpus CORPUS] [--lang xx] [--egs_dir DIR] NAME
# CORPUS: an existing zipasr preparer (librispeech mls commonvoice wenetspeech msr86k); without it the recipe
# gets a local/data.sh to fill in, which must write Kaldi data dirs (python -m zipasr.bin.validate_data_dir).
# The recipe symlinks asr.sh, path.sh, cmd.sh, db.sh, conf and utils; run.sh and local/ are its own.
set -euo pipefail
corpus=
lang=
egs_dir=   # default: the repository's egs/
help_message="Usage: $0 [--corpus CORPUS] [--lang xx] [--egs_dir DIR] NAME"
. "$(dirname "$0")/parse_options.sh"
if [ $# -ne 1 ]; then echo "${help_message}" >&2; exit 1; fi
name=$1
[[ "${name}" =~ ^[A-Za-z0-9_.-]+$ ]] || { echo "$0: bad recipe name '${name}'" >&2; exit 1; }
root="$(cd "$(dirname "$0")/.." && pwd)"
dir="${egs_dir:-${root}/egs}/${name}/asr1"
[ -e "${dir}" ] && { echo "$0: ${dir} exists already" >&2; exit 1; }
mkdir -p "${dir}/local"
cd "${dir}"
# Relative links inside the repository (as ESPnet does), absolute ones elsewhere.
if [ -z "${egs_dir}" ]; then template=../../TEMPLATE/asr1; utils=../../../utils
else template=${root}/egs/TEMPLATE/asr1; utils=${root}/utils; fi
for f in asr.sh path.sh cmd.sh db.sh conf; do ln -s "${template}/${f}" "${f}"; done
ln -s "${utils}" utils
lang_code=${lang:-xx}
{
  echo "#!/usr/bin/env bash"
  echo "# ${name}: <describe the corpus, its languages and hours here>."
  echo "# Expected layout under \${CORPUS_ROOT}: <show the folders and files the preparer reads>."
  echo "# Usage: ./run.sh [--stage N] [--stop_stage N] [any asr.sh option]"
  echo "set -euo pipefail"
  echo ". ./db.sh"
  echo
  echo "CORPUS_ROOT=\${CORPUS_ROOT:-/data/${name}}"
  echo
  echo "./asr.sh \\"
  if [ -n "${corpus}" ]; then
    echo "  --corpus ${corpus} --db_root \"\${CORPUS_ROOT}\" ${lang:+--lang ${lang} }\\"
    echo "  --prepare_splits \"train:train_${lang_code} dev:dev_${lang_code} test:test_${lang_code}\" \\"
  fi
  echo "  --langs \"${lang_code}\" \\"
  echo "  --train_set train_${lang_code} --valid_set dev_${lang_code} --test_sets \"test_${lang_code}\" \\"
  echo "  --whisper_dir \"\${WHISPER_DIR}\" \\"
  echo "  --train_overrides \"model.encoder_dir=\${WHISPER_DIR} model.llm_dir=\${LLM_DIR}\" \\"
  echo "  \"\$@\""
} > run.sh
chmod +x run.sh
if [ -z "${corpus}" ]; then
  cat > local/data.sh <<EOS
#!/usr/bin/env bash
# Stage 1 of ${name}: write Kaldi data dirs data/train_${lang_code}, data/dev_${lang_code}, data/test_${lang_code}
# (wav.scp, text, utt2spk, utt2lang, utt2dur; DataDir.write in zipasr.data does it for you) and check them:
set -euo pipefail
for d in train_${lang_code} dev_${lang_code} test_${lang_code}; do
  [ -d data/\${d} ] || { echo "local/data.sh: write data/\${d} first (see docs/adding_a_corpus.md)" >&2; exit 1; }
  utils/validate_data_dir.sh data/\${d}
done
EOS
  chmod +x local/data.sh
fi
echo "created ${dir}: edit run.sh (and local/data.sh) next; see docs/adding_a_corpus.md"
