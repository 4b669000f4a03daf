"""WenetSpeech (10k h Mandarin).

Layout (`--root` is the folder holding WenetSpeech.json):
    <root>/WenetSpeech.json      {"audios": [{"aid", "path", "duration", "segments": [
                                    {"sid", "begin_time", "end_time", "text", "subsets": ["{L}", "{M}", ...]}]}]}
    <root>/<path>                 long opus recordings, e.g. audio/train/youtube/B00000/Y0000000000_--5llN02F84.opus
Splits (subsets): L, M, S, W, DEV, TEST_NET, TEST_MEETING. Each segment is one utterance, cut from its
recording through `segments` (recording id = aid, speaker = aid); language zh; text as given.
The JSON is read whole with the json module: for the full release that takes a few GB of memory.
"""
from __future__ import annotations

import json
from pathlib import Path

from tqdm import tqdm

from zipasr.data.corpora.base import CorpusBuilder, CorpusError
from zipasr.data.datadir import Segment

SUBSETS = ("L", "M", "S", "W", "DEV", "TEST_NET", "TEST_MEETING")


def prepare(root, split: str, lang: str | None = None, skip_bad: bool = False, report: dict | None = None):
    if lang not in (None, "zh"):
        raise CorpusError(f"wenetspeech is Mandarin; --lang {lang} makes no sense")
    root = Path(root).resolve()
    subset = split.upper()
    if subset not in SUBSETS:
        raise CorpusError(f"wenetspeech: unknown subset {split!r}; choose from {', '.join(SUBSETS)}")
    meta = root / "WenetSpeech.json"
    if not meta.is_file():
        raise CorpusError(f"wenetspeech: {meta} does not exist")
    with open(meta, encoding="utf-8") as f:
        audios = json.load(f)["audios"]
    tag = "{" + subset + "}"
    builder = CorpusBuilder(f"wenetspeech {subset}", skip_bad, report)
    for audio in tqdm(audios, desc=f"wenetspeech {subset}", unit="recording", mininterval=2):
        segs = [s for s in audio.get("segments", []) if tag in s.get("subsets", [])]
        if not segs:
            continue
        path = root / audio["path"]
        if not path.is_file():
            for s in segs:
                builder.bad(s["sid"], f"recording {path} does not exist ({meta}, aid {audio['aid']})")
            continue
        for s in segs:
            builder.add(s["sid"], s["text"].strip(), audio["aid"], "zh", str(path),
                        segment=Segment(audio["aid"], float(s["begin_time"]), float(s["end_time"])),
                        where=f"{meta}, aid {audio['aid']}")
    return builder.finish()
