"""Same-language packing of utterances into LLM rows, and the resumable batch order (paper Sec. V-B).

The paper packs training samples of the SAME language into rows of at most `max_tokens` (2048) tokens,
counting the speech tokens after the 8x reduction, the transcript tokens and reserved prompt tokens, and
then batches the rows (16 rows chunked, 10 full context). The model keeps packed samples from attending to
each other; here we only decide which utterances share a row and which rows form a batch.

Everything is a pure function of (seed, epoch), so the order needs no saved state beyond a position:
`BatchOrder` walks the micro-batches of epoch after epoch and its `state_dict()` is just
{"epoch", "index"}. With W processes, every micro-step takes one *global* micro-batch of W x batch_size
rows and process r trains on rows [r*batch_size, (r+1)*batch_size): one process with batch_size B*W sees
exactly the rows that W processes with batch_size B see together.

Language sampling (`lang_alpha` < 1, not the paper's): each epoch draws its utterances so that language l
makes up a share proportional to (n_l / N)^alpha of them (the temperature sampling of XLS-R and mSLAM):
rare languages are repeated, common ones subsampled, and the epoch keeps its size N. alpha = 1 is the
data's own shares (every utterance once), alpha = 0 gives every language the same share.
`lang_weights` (also not the paper's) multiplies chosen languages' shares before normalising, e.g.
{vi: 2.0} for a language that needs more steps than its data size earns it.
"""
from __future__ import annotations

import bisect
from collections import defaultdict
from typing import Iterator, Sequence

import numpy as np


def pack_rows(lengths: Sequence[int], langs: Sequence[str], max_tokens: int,
              rng: np.random.Generator) -> list[list[int]]:
    """Pack utterance indices into rows of one language each, at most `max_tokens` tokens per row.

    Best-fit decreasing per language: utterances in random order (ties between equal lengths are broken
    by `rng`), longest first, each put into the fullest row it still fits into. Rows come out nearly
    full, so little padding is needed when rows of a batch are padded to the longest. An utterance
    longer than `max_tokens` gets a row of its own (callers filter those out beforehand).
    Returns rows (lists of indices into `lengths`), in a random order.
    """
    if len(lengths) != len(langs):
        raise ValueError(f"{len(lengths)} lengths but {len(langs)} languages")
    by_lang: dict[str, list[int]] = defaultdict(list)
    for i, lang in enumerate(langs):
        by_lang[lang].append(i)
    rows: list[list[int]] = []
    for lang in sorted(by_lang):
        order = np.asarray(by_lang[lang])[rng.permutation(len(by_lang[lang]))]
        order = order[np.argsort([-lengths[i] for i in order], kind="stable")]
        # free[j] is the room left in open row j; `keys` keeps (free, j) sorted for best-fit lookup.
        keys: list[tuple[int, int]] = []
        lang_rows: list[list[int]] = []
        for i in order.tolist():
            need = int(lengths[i])
            pos = bisect.bisect_left(keys, (need, -1))
            if pos < len(keys):
                free, j = keys.pop(pos)
                lang_rows[j].append(i)
                free -= need
            else:
                j = len(lang_rows)
                lang_rows.append([i])
                free = max_tokens - need
            if free > 0:
                bisect.insort(keys, (free, j))
        rows += lang_rows
    return [rows[k] for k in rng.permutation(len(rows)).tolist()]


def language_sample(langs: Sequence[str], alpha: float, rng: np.random.Generator,
                    lang_weights: dict[str, float] | None = None) -> list[int]:
    """Indices (into `langs`, with repeats) of one epoch whose language shares follow w_l (n_l / N)^alpha.

    Language l gets c_l = round(N * q_l) draws, q_l = w_l (n_l/N)^alpha / sum_k w_k (n_k/N)^alpha (w_l from
    `lang_weights`, 1 for a language not in it; a key that is no language of `langs` is an error): every one of
    its utterances floor(c_l / n_l) times, plus a random subset (without repeats) for the rest, so a
    repeated language repeats each utterance evenly. Returns the indices sorted.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"language sampling alpha must be in [0, 1], got {alpha}")
    lang_weights = dict(lang_weights or {})
    by_lang: dict[str, list[int]] = defaultdict(list)
    for i, lang in enumerate(langs):
        by_lang[lang].append(i)
    names = sorted(by_lang)
    unknown = sorted(set(lang_weights) - set(names))
    if unknown:
        raise ValueError(f"lang_weights names languages without training data: {unknown} (the data has {names})")
    bad = {lang: w for lang, w in lang_weights.items() if not w > 0}
    if bad:
        raise ValueError(f"lang_weights must be positive, got {bad}")
    total = len(langs)
    weights = np.array([lang_weights.get(lang, 1.0) * (len(by_lang[lang]) / total) ** alpha for lang in names])
    counts = np.rint(total * weights / weights.sum()).astype(int)
    chosen: list[int] = []
    for lang, count in zip(names, counts.tolist()):
        members = np.asarray(by_lang[lang])
        repeats, rest = divmod(max(count, 1), len(members))
        chosen += np.tile(members, repeats).tolist()
        chosen += members[rng.permutation(len(members))[:rest]].tolist()
    return sorted(chosen)


class BatchOrder:
    """The deterministic, resumable sequence of micro-batches of one process.

    Args:
        lengths: packed length (tokens) of each utterance; langs: its language.
        max_tokens: row budget. batch_size: rows per micro-batch per process.
        world_size, rank: this process's share of each global micro-batch.
        seed: epoch e packs and shuffles with np.random.default_rng([seed, e]).
        lang_alpha: language sampling exponent (1: every utterance once per epoch; see the module doc).
        lang_weights: per-language factors on the sampled shares (None: all 1; see `language_sample`).
    Global micro-batches that cannot be filled completely (the end of an epoch) are dropped, so that
    every process runs the same number of steps.
    """

    def __init__(self, lengths: Sequence[int], langs: Sequence[str], max_tokens: int, batch_size: int,
                 world_size: int = 1, rank: int = 0, seed: int = 0, lang_alpha: float = 1.0,
                 lang_weights: dict[str, float] | None = None):
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world of size {world_size}")
        self.lengths = list(lengths)
        self.langs = list(langs)
        self.max_tokens = max_tokens
        self.batch_size = batch_size
        self.world_size = world_size
        self.rank = rank
        self.seed = seed
        self.lang_alpha = lang_alpha  # checked by language_sample when the first epoch is drawn below
        self.lang_weights = dict(lang_weights or {})
        self.epoch = 0
        self.index = 0  # next global micro-batch within `epoch`
        self._cache: tuple[int, list[list[list[int]]]] | None = None
        if self.batches_per_epoch() == 0:
            raise ValueError(
                f"{len(self.lengths)} utterances pack into {len(self.global_batches(0)[1])} rows, fewer than one "
                f"global batch of {batch_size} x {world_size} rows; lower data.batch_size or add data"
            )

    def global_batches(self, epoch: int) -> tuple[list[list[int]], list[list[list[int]]]]:
        """(all rows of `epoch`, its global micro-batches as lists of rows)."""
        rng = np.random.default_rng([self.seed, epoch])
        if self.lang_alpha == 1.0 and not self.lang_weights:  # no draw from rng: the order does not depend on sampling
            rows = pack_rows(self.lengths, self.langs, self.max_tokens, rng)
        else:
            picked = language_sample(self.langs, self.lang_alpha, rng, self.lang_weights)
            rows = pack_rows([self.lengths[i] for i in picked], [self.langs[i] for i in picked], self.max_tokens, rng)
            rows = [[picked[j] for j in row] for row in rows]
        n = self.batch_size * self.world_size
        return rows, [rows[k:k + n] for k in range(0, len(rows) - n + 1, n)]

    def _epoch_batches(self, epoch: int) -> list[list[list[int]]]:
        if self._cache is None or self._cache[0] != epoch:
            self._cache = (epoch, self.global_batches(epoch)[1])
        return self._cache[1]

    def batches_per_epoch(self) -> int:
        return len(self._epoch_batches(0))

    def local_rows(self, global_batch: list[list[int]]) -> list[list[int]]:
        return global_batch[self.rank * self.batch_size:(self.rank + 1) * self.batch_size]

    def peek(self, count: int) -> list[list[list[int]]]:
        """The next `count` global micro-batches, without moving the position."""
        out, epoch, index = [], self.epoch, self.index
        while len(out) < count:
            batches = self._epoch_batches(epoch)
            if index >= len(batches):
                epoch, index = epoch + 1, 0
                continue
            out.append(batches[index])
            index += 1
        return out

    def next(self) -> list[list[int]]:
        """The next global micro-batch (rows of utterance indices); moves the position by one."""
        batches = self._epoch_batches(self.epoch)
        if self.index >= len(batches):
            self.epoch, self.index = self.epoch + 1, 0
            batches = self._epoch_batches(self.epoch)
        batch = batches[self.index]
        self.index += 1
        return batch

    def __iter__(self) -> Iterator[list[list[int]]]:
        while True:
            yield self.next()

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "index": self.index, "seed": self.seed}

    def load_state_dict(self, state: dict) -> None:
        if state.get("seed", self.seed) != self.seed:
            raise ValueError(f"batch order was saved with seed {state['seed']}, this run uses seed {self.seed}")
        self.epoch, self.index = int(state["epoch"]), int(state["index"])
