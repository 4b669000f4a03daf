"""Multilingual LibriSpeech (openslr 94), flac or opus release.

Layout (`--root` is one language's folder, e.g. mls_german or mls_german_opus):
    <root>/<split>/transcripts.txt       lines "<utt>\t<transcript>", utt = <speaker>_<book>_<segment>
    <root>/<split>/segments.txt          lines "<utt>\t<url>\t<start>\t<end>" (used for durations if present)
    <root>/<split>/audio/<speaker>/<book>/<utt>.flac   (.opus in the opus release)
    <root>/train/limited_supervision/9hr/handles.txt, .../1hr/{0..5}/handles.txt
Splits: train, dev, test, and the limited-supervision subsets of train: limited_10h (9hr + 1hr),
limited_1h (the six 10-minute parts), limited_10min (part 0).
Utterance ids are kept exactly as in transcripts.txt (not zero-padded, like the paper's released lists).
The language comes from --lang or the folder name (mls_german -> de).
"""
from __future__ import annotations

from pathlib import Path

from tqdm import tqdm

from zipasr.data.corpora.base import CorpusBuilder, CorpusError, lang_from_name

LANGS = {"english": "en", "german": "de", "dutch": "nl", "french": "fr", "spanish": "es", "italian": "it",
         "portuguese": "pt", "polish": "pl"}
LIMITED = {"limited_10h": ["9hr", "1hr"], "limited_1h": ["1hr"], "limited_10min": ["1hr/0"]}


def _handles(root: Path, parts: list[str]) -> set[str]:
    ids: set[str] = set()
    for part in parts:
        files = sorted((root / "train" / "limited_supervision" / part).rglob("handles.txt"))
        if not files:
            raise CorpusError(f"mls: no handles.txt under {root}/train/limited_supervision/{part}")
        for f in files:
            ids.update(line.split()[0] for line in f.read_text(encoding="utf-8").splitlines() if line.strip())
    return ids


def prepare(root, split: str, lang: str | None = None, skip_bad: bool = False, report: dict | None = None):
    root = Path(root).resolve()
    lang = lang or lang_from_name(root.name, LANGS)
    if lang is None:
        raise CorpusError(f"mls: cannot tell the language from {root.name}; pass --lang")
    keep = None
    if split in LIMITED:
        keep, split = _handles(root, LIMITED[split]), "train"
    split_dir = root / split
    trans = split_dir / "transcripts.txt"
    if not trans.is_file():
        raise CorpusError(f"mls: {trans} does not exist (splits: train, dev, test, {', '.join(LIMITED)})")
    durations = {}
    if (split_dir / "segments.txt").is_file():
        for line in (split_dir / "segments.txt").read_text(encoding="utf-8").splitlines():
            f = line.split("\t")
            if len(f) == 4:
                durations[f[0]] = float(f[3]) - float(f[2])
    ext = ".opus" if any((split_dir / "audio").glob("*/*/*.opus")) else ".flac"
    builder = CorpusBuilder(f"mls {root.name} {split}", skip_bad, report)
    with open(trans, encoding="utf-8") as f:
        for lineno, line in enumerate(tqdm(f, desc=f"mls {lang} {split}", unit="utt", mininterval=2), 1):
            if not line.strip():
                continue
            utt, _, text = line.rstrip("\n").partition("\t")
            if keep is not None and utt not in keep:
                continue
            if utt.count("_") != 2:
                builder.bad(utt, f"id is not <speaker>_<book>_<segment> ({trans}:{lineno})")
                continue
            speaker, book = utt.split("_")[:2]
            audio = split_dir / "audio" / speaker / book / f"{utt}{ext}"
            builder.add(utt, text.strip(), speaker, lang, str(audio), dur=durations.get(utt), where=f"{trans}:{lineno}")
    return builder.finish()
