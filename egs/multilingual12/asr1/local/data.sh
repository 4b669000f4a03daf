#!/usr/bin/env bash
# Stage 1 of multilingual12: build the paper's sets (Table I) from the corpora, as listed in ${sets_conf}.
# Each row prepares one corpus split (once, into data/src/), selects from it (all, a random number of hours,
# a released id list, or every utterance K times) into data/parts/, and the parts of one set are combined
# into data/<set>. A row is redone only when its line in the conf changes.
set -euo pipefail
. ./db.sh
sets_conf=${sets_conf:-conf/sets.conf}
subset_seed=${subset_seed:-0}
log() { echo -e "$(date '+%F %T') (local/data.sh) $*" >&2; }

mkdir -p data/src data/parts
declare -A parts=()
row=0
while read -r set corpus root split lang select; do
  [[ -z "${set}" || "${set}" == \#* ]] && continue
  row=$((row + 1))
  root=$(eval echo "${root}")      # expand ${MLS} etc. from db.sh
  select=$(eval echo "${select}")
  src=data/src/${corpus}_${split}_${lang}
  if [ ! -f "data/src/.${corpus}_${split}_${lang}.done" ]; then
    log "python -m zipasr.bin.prepare ${corpus} --root ${root} --split ${split} --lang ${lang} --out ${src}"
    python -m zipasr.bin.prepare "${corpus}" --root "${root}" --split "${split}" --lang "${lang}" --out "${src}"
    touch "data/src/.${corpus}_${split}_${lang}.done"
  fi
  part=data/parts/${set}.${row}
  marker=data/parts/.${set}.${row}.done
  spec="${corpus} ${root} ${split} ${lang} ${select} seed=${subset_seed}"
  if [ ! -f "${marker}" ] || [ "$(cat "${marker}")" != "${spec}" ]; then
    case "${select}" in
      all) opts=(--all) ;;
      hours:*) opts=(--hours "${select#hours:}" --seed "${subset_seed}") ;;
      ids:*) opts=(--ids "${select#ids:}") ;;
      repeat:*)
        for _ in $(seq "${select#repeat:}"); do cut -d' ' -f1 "${src}/text"; done > "${part}.ids"
        opts=(--ids "${part}.ids") ;;
      *) log "${sets_conf}: row ${row}: unknown select '${select}'"; exit 1 ;;
    esac
    log "python -m zipasr.bin.subset_data_dir ${src} ${part} ${opts[*]}"
    python -m zipasr.bin.subset_data_dir "${src}" "${part}" "${opts[@]}"
    echo "${spec}" > "${marker}"
  fi
  parts[${set}]+=" ${part}"
done < "${sets_conf}"

for set in $(printf '%s\n' "${!parts[@]}" | sort); do
  # shellcheck disable=SC2086
  python -m zipasr.bin.combine_data "data/${set}" ${parts[${set}]}
done
