"""LibriSpeech (openslr 12).

Layout (`--root` is the folder holding the splits):
    <root>/<split>/<speaker>/<chapter>/<speaker>-<chapter>.trans.txt   lines "<utt> <TRANSCRIPT>"
    <root>/<split>/<speaker>/<chapter>/<speaker>-<chapter>-<nnnn>.flac
Splits: train-clean-100, train-clean-360, train-other-500, dev-clean, dev-other, test-clean, test-other.
Utterance id = file stem (already speaker-prefixed); speaker = <speaker>; language en; upper-case text as given.
"""
from __future__ import annotations

from pathlib import Path

from tqdm import tqdm

from zipasr.data.corpora.base import CorpusBuilder, CorpusError

SPLITS = ("train-clean-100", "train-clean-360", "train-other-500", "dev-clean", "dev-other", "test-clean",
          "test-other")


def prepare(root, split: str, lang: str | None = None, skip_bad: bool = False, report: dict | None = None):
    if lang not in (None, "en"):
        raise CorpusError(f"librispeech is English; --lang {lang} makes no sense")
    split_dir = Path(root).resolve() / split
    if not split_dir.is_dir():
        raise CorpusError(f"librispeech: {split_dir} does not exist (splits: {', '.join(SPLITS)})")
    builder = CorpusBuilder(f"librispeech {split}", skip_bad, report)
    for trans in tqdm(sorted(split_dir.glob("*/*/*.trans.txt")), desc=f"librispeech {split}", unit="chapter"):
        speaker = trans.parent.parent.name
        with open(trans, encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                utt, _, text = line.strip().partition(" ")
                builder.add(utt, text.strip(), speaker, "en", str(trans.parent / f"{utt}.flac"),
                            where=f"{trans}:{lineno}")
    return builder.finish()
