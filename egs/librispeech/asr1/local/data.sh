#!/usr/bin/env bash
# LibriSpeech quirk: the 960 h training set is the union of its three training splits.
set -euo pipefail
[ -f data/.train_960.done ] && exit 0
utils/combine_data.sh data/train_960 data/train_clean_100 data/train_clean_360 data/train_other_500
touch data/.train_960.done
