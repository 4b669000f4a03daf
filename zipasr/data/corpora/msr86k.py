"""MSR-86K (15 languages of YouTube speech; gated release on the Hugging Face hub).

Its on-disk layout is not publicly documented, so zipasr ASSUMES the following one and keeps the parser a small
class (`Msr86kLayout`) that is the only thing to change for another layout:

    <root>/<lang>/<split>/transcripts.tsv   header "id<TAB>audio<TAB>text" plus optional "start", "end" (seconds)
                                             and "speaker" columns; `audio` is relative to <root>/<lang>/<split>
    <root>/<lang>/<split>/<audio files>     16 kHz wav (or any format soundfile reads)

<lang> is an ISO 639-1 code (en, fr, th, ru, vi, ...); <split> is train or dev (MSR-86K has no test split; the
paper evaluates on dev). With start/end the rows are segments of long recordings (recording id = audio file
stem); without them each audio file is one utterance. Speaker defaults to the recording id.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from tqdm import tqdm

from zipasr.data.corpora.base import CorpusBuilder, CorpusError
from zipasr.data.datadir import Segment

csv.field_size_limit(1 << 24)


@dataclass
class Row:
    utt: str
    audio: Path
    text: str
    speaker: str
    start: float | None = None
    end: float | None = None
    where: str = ""


class Msr86kLayout:
    """Where MSR-86K keeps things. To adapt to another layout, change `split_dir` and `rows`."""

    def __init__(self, root, lang: str, split: str):
        self.root = Path(root).resolve()
        self.lang = lang
        self.split = split

    def split_dir(self) -> Path:
        return self.root / self.lang / self.split

    def rows(self) -> Iterator[Row]:
        tsv = self.split_dir() / "transcripts.tsv"
        if not tsv.is_file():
            langs = ", ".join(sorted(p.name for p in self.root.iterdir() if p.is_dir())) if self.root.is_dir() else "-"
            raise CorpusError(f"msr86k: {tsv} does not exist (languages under {self.root}: {langs})")
        with open(tsv, encoding="utf-8", newline="") as f:
            reader = csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
            missing = {"id", "audio", "text"} - set(reader.fieldnames or [])
            if missing:
                raise CorpusError(f"msr86k: {tsv} lacks column(s) {sorted(missing)}; header is {reader.fieldnames}")
            for row in reader:
                audio = self.split_dir() / row["audio"]
                start, end = row.get("start"), row.get("end")
                yield Row(row["id"], audio, row["text"] or "", row.get("speaker") or audio.stem,
                          float(start) if start not in (None, "") else None,
                          float(end) if end not in (None, "") else None, where=f"{tsv}:{reader.line_num}")


def prepare(root, split: str, lang: str | None = None, skip_bad: bool = False, report: dict | None = None,
            layout=Msr86kLayout):
    if lang is None:
        raise CorpusError("msr86k: pass --lang (the folder of one language, e.g. en)")
    builder = CorpusBuilder(f"msr86k {lang} {split}", skip_bad, report)
    for row in tqdm(layout(root, lang, split).rows(), desc=f"msr86k {lang} {split}", unit="utt", mininterval=2):
        if row.start is not None and row.end is not None:
            if not row.audio.is_file():
                builder.bad(row.utt, f"recording {row.audio} does not exist ({row.where})")
                continue
            builder.add(row.utt, row.text.strip(), row.speaker, lang, str(row.audio),
                        segment=Segment(row.audio.stem, row.start, row.end), where=row.where)
        else:
            builder.add(row.utt, row.text.strip(), row.speaker, lang, str(row.audio), where=row.where)
    return builder.finish()
