"""Mozilla Common Voice (any release).

Layout (`--root` is one language's folder of a release, e.g. cv-corpus-18.0-2024-06-14/ko):
    <root>/{train,dev,test,validated,other,invalidated}.tsv   tab-separated, with a header row
    <root>/clips/common_voice_<locale>_<n>.mp3                 48 kHz mp3
    <root>/clip_durations.tsv                                  (newer releases) "clip<TAB>duration[ms]"
Columns are found by header name (`client_id`, `path`, `sentence`, `locale`), so old and new releases
both work. Utterance id = clip name without extension (as in the paper's released lists); speaker =
client_id; language = --lang, else the `locale` column reduced to ISO 639-1 (pt, zh-CN -> zh, sv-SE -> sv).
Quotes inside sentences are literal (the TSVs are not CSV-quoted).
"""
from __future__ import annotations

import csv
from pathlib import Path

from tqdm import tqdm

from zipasr.data.corpora.base import CorpusBuilder, CorpusError

csv.field_size_limit(1 << 24)


def prepare(root, split: str, lang: str | None = None, skip_bad: bool = False, report: dict | None = None):
    root = Path(root).resolve()
    tsv = root / f"{split}.tsv"
    if not tsv.is_file():
        found = ", ".join(p.stem for p in sorted(root.glob("*.tsv"))) or "none"
        raise CorpusError(f"commonvoice: {tsv} does not exist (TSVs here: {found})")
    durations = {}
    if (root / "clip_durations.tsv").is_file():
        with open(root / "clip_durations.tsv", encoding="utf-8", newline="") as f:
            for row in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE):
                durations[row["clip"]] = float(row["duration[ms]"]) / 1000.0
    builder = CorpusBuilder(f"commonvoice {root.name} {split}", skip_bad, report)
    with open(tsv, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        needed = {"client_id", "path", "sentence"}
        if not needed <= set(reader.fieldnames or []):
            raise CorpusError(f"commonvoice: {tsv} lacks column(s) {sorted(needed - set(reader.fieldnames or []))}; "
                              f"header is {reader.fieldnames}")
        for row in tqdm(reader, desc=f"commonvoice {root.name} {split}", unit="utt", mininterval=2):
            where = f"{tsv}:{reader.line_num}"
            code = lang or (row.get("locale") or "").split("-")[0].lower() or root.name.split("-")[0].lower()
            clip = row["path"]
            utt = Path(clip).stem
            builder.add(utt, (row["sentence"] or "").strip(), row["client_id"], code, str(root / "clips" / clip),
                        dur=durations.get(clip), where=where)
    return builder.finish()
