"""What every corpus preparer shares: collecting utterances into a DataDir, with bad entries either raised
as errors (naming utterance and file) or, with skip_bad, skipped and counted in a report."""
from __future__ import annotations

import logging
from pathlib import Path

from zipasr.data.audio import AudioError, audio_duration
from zipasr.data.datadir import DataDir, DataDirError, Segment
from zipasr.languages import get_language

log = logging.getLogger(__name__)


class CorpusError(ValueError):
    """A corpus entry that cannot be prepared; the message names the utterance and the file."""


class CorpusBuilder:
    """Collects utterances of one corpus split. `skipped` maps each skipped utterance to its reason."""

    def __init__(self, name: str, skip_bad: bool = False, report: dict[str, str] | None = None):
        self.name = name
        self.skip_bad = skip_bad
        self.dd = DataDir()
        self.skipped: dict[str, str] = report if report is not None else {}

    def bad(self, utt: str, reason: str) -> None:
        """Report a bad entry: an error, or (skip_bad) a skipped utterance."""
        if not self.skip_bad:
            raise CorpusError(f"{self.name}: utterance {utt!r}: {reason} (use --skip_bad to skip such entries)")
        self.skipped[utt] = reason

    def add(self, utt: str, text: str, spk: str, lang: str, audio: str, dur: float | None = None,
            segment: Segment | None = None, where: str = "") -> None:
        """One utterance. `audio` is the wav.scp entry (of the recording, with `segment`); `dur` is read from
        the audio header when None. `where` (file:line) is named in error messages."""
        at = f" ({where})" if where else ""
        if utt in self.dd.text or utt in self.skipped:
            return self.bad(utt, f"duplicate utterance id{at}")
        if not text.strip():
            return self.bad(utt, f"empty transcript{at}")
        get_language(lang)
        if segment is None:
            if not audio.endswith("|") and not Path(audio).is_file():
                return self.bad(utt, f"audio file {audio} does not exist{at}")
            if dur is None:
                try:
                    dur = audio_duration(audio)
                except AudioError as err:
                    return self.bad(utt, f"{err}{at}")
            self.dd.wav_scp[utt] = audio
        else:
            if self.dd.segments is None:
                self.dd.segments = {}
            if segment.end <= segment.start:
                return self.bad(utt, f"segment end {segment.end} <= start {segment.start}{at}")
            self.dd.segments[utt] = segment
            self.dd.wav_scp.setdefault(segment.recording, audio)
            dur = segment.end - segment.start if dur is None else dur
        if not dur > 0:
            return self.bad(utt, f"audio has no samples ({audio}){at}")
        self.dd.text[utt] = text
        self.dd.utt2spk[utt] = spk
        self.dd.utt2lang[utt] = lang
        self.dd.utt2dur[utt] = round(float(dur), 3)

    def finish(self) -> DataDir:
        if self.skipped:
            log.warning("%s: skipped %d bad utterance(s): %s", self.name, len(self.skipped),
                        "; ".join(f"{u}: {r}" for u, r in sorted(self.skipped.items())[:5]))
        if not self.dd.text:
            raise DataDirError(self.name, ["no utterances found (check --root and --split)"])
        if self.dd.segments is not None:  # drop recordings whose every segment was skipped
            used = {s.recording for s in self.dd.segments.values()}
            self.dd.wav_scp = {r: v for r, v in self.dd.wav_scp.items() if r in used}
        self.dd.validate()
        return self.dd


def lang_from_name(name: str, table: dict[str, str]) -> str | None:
    """Find a language code from a folder name like 'mls_german_opus' using {word: code}."""
    for part in name.lower().replace("-", "_").split("_"):
        if part in table:
            return table[part]
    return None
