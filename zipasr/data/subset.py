"""Subsets of a data dir: by an utterance-id list (the paper authors' released lists), by hours or by count
with a fixed seed (the paper's Table I budgets), and by language.
"""
from __future__ import annotations

import logging
import re
from collections import Counter
from pathlib import Path
from typing import Container, Sequence

import numpy as np

from zipasr.data.datadir import DataDir, DataDirError, Segment

log = logging.getLogger(__name__)

_DIGITS = re.compile(r"^\d+$")


def normalize_utt_id(utt: str) -> str:
    """Strip leading zeros from every all-digit field between '_' or '-' separators.

    The authors' MLS lists write `2422_3333_001654` while some toolkits pad speakers (`02422_...`); both
    normalise to `2422_3333_1654`. Ids without numeric fields (Common Voice clip names' prefix) are unchanged.
    """
    return re.sub(r"[^_-]+", lambda m: str(int(m.group())) if _DIGITS.match(m.group()) else m.group(), utt)


def read_id_list(path) -> list[str]:
    """One utterance id per line (first field; blank lines and '#' comments ignored). Order and repeats kept."""
    ids = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith("#"):
                ids.append(line.split()[0])
    return ids


def subset_by_ids(dd: DataDir, ids: list[str], normalize: bool = True, require_all: bool = False,
                  repeats: bool = True) -> tuple[DataDir, list[str]]:
    """The utterances named in `ids`. Returns (subset, listed ids not found in the dir).

    normalize: match on normalize_utt_id of both sides (the dir's own ids are kept in the output).
    repeats: an id listed k > 1 times (the authors' 2x upsampling of Italian) becomes k utterances: the
    original and copies `<utt>-rep2` ... `<utt>-rep<k>` sharing its audio (and features). With
    repeats=False a repeated id is kept once.
    """
    key = normalize_utt_id if normalize else (lambda u: u)
    index: dict[str, str] = {}
    for utt in dd.text:
        k = key(utt)
        if k in index:
            raise DataDirError(dd.path, [f"text: {utt}: same normalised id as {index[k]} (use normalize=False)"])
        index[k] = utt
    counts = Counter(key(i) for i in ids)
    missing = sorted({i for i in ids if key(i) not in index})
    if missing:
        msg = f"{len(missing)} of {len(counts)} listed ids are not in {dd.path}: {', '.join(missing[:5])}"
        if require_all:
            raise DataDirError(dd.path, [msg + (" ..." if len(missing) > 5 else "")])
        log.warning(msg)
    chosen = {index[k]: n for k, n in counts.items() if k in index}
    out = dd.select(chosen)
    if repeats:
        copies = {u: n for u, n in chosen.items() if n > 1}
        if copies:
            log.info("%d listed ids repeat; adding %d copies", len(copies), sum(n - 1 for n in copies.values()))
        for utt, n in copies.items():
            for r in range(2, n + 1):
                _add_copy(out, utt, f"{utt}-rep{r}")
    return out, missing


def _add_copy(dd: DataDir, utt: str, new: str) -> None:
    if new in dd.text:
        raise DataDirError(dd.path, [f"text: {new}: exists already, cannot add it as a copy of {utt}"])
    for mapping in (dd.text, dd.utt2spk, dd.utt2lang, dd.utt2dur, dd.feats_scp, dd.utt2num_frames):
        if mapping is not None:
            mapping[new] = mapping[utt]
    if dd.segments is not None:
        dd.segments[new] = Segment(dd.segments[utt].recording, dd.segments[utt].start, dd.segments[utt].end)
    else:
        dd.wav_scp[new] = dd.wav_scp[utt]


def _shuffled(dd: DataDir, seed: int) -> list[str]:
    # Shuffle the sorted ids so the subset depends only on the dir's content and the seed.
    utts = dd.utt_ids
    order = np.random.default_rng(seed).permutation(len(utts))
    return [utts[i] for i in order]


def subset_by_hours(dd: DataDir, hours: float, seed: int = 0) -> DataDir:
    """A random subset of `hours` hours: utterances are taken in a seeded random order until the next one
    would pass the budget, so the total is at most the budget and short of it by less than one utterance.
    The same dir and seed always give the same subset."""
    budget = hours * 3600.0
    total = sum(dd.utt2dur.values())
    if budget >= total:
        log.warning("%s holds %.2f h, not more than the %.2f h asked for: keeping all of it",
                    dd.path, total / 3600, hours)
        return dd.select(dd.text)
    chosen, acc = [], 0.0
    for utt in _shuffled(dd, seed):
        if acc + dd.utt2dur[utt] > budget:
            break
        chosen.append(utt)
        acc += dd.utt2dur[utt]
    log.info("selected %d utterances, %.3f h of the %.3f h asked for", len(chosen), acc / 3600, hours)
    return dd.select(chosen)


def subset_by_count(dd: DataDir, n: int, seed: int = 0) -> DataDir:
    """`n` utterances chosen at random with a fixed seed (all of them if the dir has fewer)."""
    return dd.select(_shuffled(dd, seed)[:n])


def subset_by_lang(dd: DataDir, langs: list[str]) -> DataDir:
    """The utterances whose utt2lang code is one of `langs`."""
    keep = set(langs)
    return dd.select(u for u, lang in dd.utt2lang.items() if lang in keep)


def first_per_language(langs: Sequence[str], limit: int | None,
                       keep: Container[str] | None = None) -> list[int]:
    """Indices (in order) of the first `limit` entries of each language in `langs` (all: limit None);
    languages not in `keep` (when given) are left out."""
    taken: Counter = Counter()
    chosen = []
    for i, lang in enumerate(langs):
        if (keep is None or lang in keep) and (limit is None or taken[lang] < limit):
            taken[lang] += 1
            chosen.append(i)
    return chosen


def read_id_lists(paths: list[Path]) -> list[str]:
    """The ids of several list files, concatenated in order (repeats kept: they mean upsampling)."""
    return [i for p in paths for i in read_id_list(p)]
