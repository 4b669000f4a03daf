"""Kaldi/ESPnet-style data directories.

A data dir is a folder of small sorted text files, one `key value` per line:

    wav.scp          recording-id -> audio path, or a shell pipeline ending in "|"
    text             utt-id -> transcript (kept as the corpus gives it)
    utt2spk          utt-id -> speaker-id       (spk2utt is derived from it)
    segments         utt-id -> recording-id start end   (optional: long recordings; seconds)
    utt2lang         utt-id -> ISO 639-1 code (zipasr/languages.py)
    utt2dur          utt-id -> duration in seconds
    feats.scp        utt-id -> kaldiio ark:offset      (optional, written by dump_feats)
    utt2num_frames   utt-id -> number of feature frames (optional, written by dump_feats)

Without `segments`, recording ids are utterance ids. Files are sorted by key in byte order (which
is Python's code-point order for UTF-8, i.e. Kaldi's `LC_ALL=C sort`). Unlike Kaldi, utterance ids
need not start with the speaker id (Common Voice ids are clip names; the paper's lists use them).
"""
from __future__ import annotations

import logging
import math
import os
import shutil
import tempfile
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from zipasr.languages import LANGUAGES

log = logging.getLogger(__name__)

# Files a data dir is made of, in the order they are written and checked.
DATA_FILES = ("wav.scp", "segments", "text", "utt2spk", "spk2utt", "utt2lang", "utt2dur", "feats.scp",
              "utt2num_frames")
REQUIRED_FILES = ("wav.scp", "text", "utt2spk", "utt2lang", "utt2dur")


class DataDirError(ValueError):
    """A data dir that is malformed; `problems` lists each finding as 'file: utt: what'."""

    def __init__(self, path, problems: list[str]):
        self.path = str(path)
        self.problems = list(problems)
        shown = "\n  ".join(self.problems[:20])
        more = f"\n  ... and {len(self.problems) - 20} more" if len(self.problems) > 20 else ""
        super().__init__(f"data dir {path}: {len(self.problems)} problem(s):\n  {shown}{more}")


@dataclass
class Segment:
    recording: str
    start: float  # seconds
    end: float  # seconds


def read_kaldi_map(path, problems: list[str] | None = None, bad_keys: set[str] | None = None) -> dict[str, str]:
    """Read a `key value` file into a dict (value = rest of the line, may be empty).

    Strict by default: a duplicate key, a non-UTF-8 line or a line without key raises DataDirError naming the
    file, line and key. With a `problems` list the findings are appended there instead, the offending keys
    are added to `bad_keys` (when given) and the first occurrence of a duplicate key is kept.
    """
    path = Path(path)
    found: list[str] = []
    out: dict[str, str] = {}
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            raw = raw.rstrip(b"\r\n")
            if not raw.strip():
                continue
            key_bytes, _, value_bytes = raw.strip().partition(b" ")
            if b"\t" in key_bytes:  # tolerate tab as the separator
                key_bytes, _, rest = key_bytes.partition(b"\t")
                value_bytes = rest + (b" " + value_bytes if value_bytes else b"")
            key = key_bytes.decode("utf-8", errors="replace")
            try:
                value = value_bytes.decode("utf-8").strip()
            except UnicodeDecodeError as err:
                found.append(f"{path.name}: {key}: line {lineno} is not valid UTF-8 ({err.reason} at byte {err.start})")
                if bad_keys is not None:
                    bad_keys.add(key)
                continue
            if key in out:
                found.append(f"{path.name}: {key}: duplicate id (line {lineno})")
                if bad_keys is not None:
                    bad_keys.add(key)
                continue
            out[key] = value
    if found:
        if problems is None:
            raise DataDirError(path.parent, found)
        problems.extend(found)
    return out


def _parse_segment(value: str) -> Segment:
    """'recording start end' (seconds) -> Segment; IndexError/ValueError when malformed."""
    parts = value.split()
    return Segment(parts[0], float(parts[1]), float(parts[2]))


def _is_sorted(path: Path) -> bool:
    keys = [line.split(maxsplit=1)[0] for line in path.read_bytes().splitlines() if line.strip()]
    return all(a < b for a, b in zip(keys, keys[1:]))


def write_atomic(path, text: str) -> None:
    """Write `text` to `path` via a temp file + rename, so a reader never sees a half-written file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_kaldi_map(path, mapping: dict, sort: bool = True) -> None:
    """Write `key value` lines (sorted by key) to `path` atomically."""
    keys = sorted(mapping) if sort else list(mapping)
    write_atomic(path, "".join(f"{key} {_format_value(mapping[key])}\n" if mapping[key] != "" else f"{key}\n"
                               for key in keys))


def _format_value(value) -> str:
    if isinstance(value, float):
        return f"{value:.3f}".rstrip("0").rstrip(".") if value != int(value) else f"{value:.1f}"
    if isinstance(value, Segment):
        return f"{value.recording} {value.start:.3f} {value.end:.3f}"
    if isinstance(value, (list, tuple)):
        return " ".join(str(v) for v in value)
    return str(value)


@dataclass
class DataDir:
    """An in-memory data dir. Keys of `text` are the utterances; every other per-utterance map must match."""

    wav_scp: dict[str, str] = field(default_factory=dict)
    text: dict[str, str] = field(default_factory=dict)
    utt2spk: dict[str, str] = field(default_factory=dict)
    utt2lang: dict[str, str] = field(default_factory=dict)
    utt2dur: dict[str, float] = field(default_factory=dict)
    segments: dict[str, Segment] | None = None
    feats_scp: dict[str, str] | None = None
    utt2num_frames: dict[str, int] | None = None
    path: Path | None = None
    # Findings of a tolerant load (strict=False): (utterance or "" for a whole file, problem) pairs,
    # and the utterances with a bad line.
    load_problems: list[tuple[str, str]] = field(default_factory=list, repr=False)
    bad_utts: set[str] = field(default_factory=set, repr=False)
    unsorted_files: list[str] = field(default_factory=list, repr=False)

    # Short names others code against: dd.lang[utt], dd.dur[utt].
    @property
    def lang(self) -> dict[str, str]:
        return self.utt2lang

    @property
    def dur(self) -> dict[str, float]:
        return self.utt2dur

    @property
    def utt_ids(self) -> list[str]:
        return sorted(self.text)

    @property
    def spk2utt(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = defaultdict(list)
        for utt in sorted(self.utt2spk):
            out[self.utt2spk[utt]].append(utt)
        return dict(out)

    def __len__(self) -> int:
        return len(self.text)

    def recording(self, utt: str) -> tuple[str, str, float, float | None]:
        """(recording id, wav.scp entry, start s, end s or None) of one utterance."""
        if self.segments is not None:
            seg = self.segments[utt]
            return seg.recording, self.wav_scp[seg.recording], seg.start, seg.end
        return utt, self.wav_scp[utt], 0.0, None

    def total_hours(self) -> float:
        return sum(self.utt2dur.values()) / 3600.0

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(cls, path, strict: bool = True) -> "DataDir":
        """Read a data dir. strict=False collects duplicate ids and non-UTF-8 lines in `load_problems` and
        `bad_utts` (for fix_data_dir) instead of raising; a missing required file is always an error."""
        path = Path(path)
        if not path.is_dir():
            raise DataDirError(path, ["not a directory"])
        missing = [name for name in ("wav.scp", "text", "utt2spk") if not (path / name).is_file()]
        if missing:
            raise DataDirError(path, [f"{name}: missing" for name in missing])
        problems: list[str] | None = None if strict else []
        bad: set[str] = set()

        def read(name):
            if not (path / name).is_file():
                return None
            return read_kaldi_map(path / name, problems, bad)

        dd = cls(path=path)
        dd.wav_scp = read("wav.scp")
        dd.text = read("text")
        dd.utt2spk = read("utt2spk")
        dd.utt2lang = read("utt2lang") or {}
        value_problems: list[str] = []

        def parse(name, convert, problem):
            """`name`'s values converted; a value `convert` rejects is a problem (`problem` formats it)
            and a bad utterance."""
            raw = read(name)
            if raw is None:
                return None
            out = {}
            for utt, value in raw.items():
                try:
                    out[utt] = convert(value)
                except (IndexError, ValueError):
                    value_problems.append(f"{name}: {utt}: " + problem.format(repr(value)))
                    bad.add(utt)
            return out

        dd.utt2dur = parse("utt2dur", float, "not a number: {}") or {}
        dd.segments = parse("segments", _parse_segment, "expected 'recording start end', got {}")
        dd.feats_scp = read("feats.scp")
        dd.utt2num_frames = parse("utt2num_frames", int, "not an integer: {}")
        spk2utt = read("spk2utt")
        if value_problems and strict:
            raise DataDirError(path, value_problems)
        # read_kaldi_map and the checks above write "file: utt: what"
        dd.load_problems = [(p.split(": ", 2)[1], p) for p in (problems or []) + value_problems]
        dd.bad_utts = bad
        if spk2utt is not None:
            derived = {spk: " ".join(utts) for spk, utts in dd.spk2utt.items()}
            if {spk: " ".join(sorted(v.split())) for spk, v in spk2utt.items()} != derived:
                dd.load_problems.append(("", "spk2utt: does not match utt2spk (fix_data_dir rewrites it)"))
        dd.unsorted_files = [name for name in DATA_FILES if (path / name).is_file() and not _is_sorted(path / name)]
        return dd

    # ------------------------------------------------------------------ checking
    def find_problems(self, check_audio: bool = False, progress: bool = False) -> dict[str, list[str]]:
        """Every inconsistency, as {utterance or file key: [problem, ...]}. Utterance-level keys are utt ids;
        problems that concern a whole file use the key '' (the dir cannot be fixed by dropping utterances)."""
        found: dict[str, list[str]] = defaultdict(list)
        for utt, problem in self.load_problems:
            found[utt].append(problem)
        for name in self.unsorted_files:
            found[""].append(f"{name}: not sorted (run fix_data_dir)")
        utts = set(self.text)
        if not utts:
            found[""].append("text: no utterances")
        checks = [("utt2spk", self.utt2spk), ("utt2lang", self.utt2lang), ("utt2dur", self.utt2dur)]
        if self.segments is not None:
            checks.append(("segments", self.segments))
        else:
            checks.append(("wav.scp", self.wav_scp))
        if self.feats_scp is not None:
            checks.append(("feats.scp", self.feats_scp))
        if self.utt2num_frames is not None:
            checks.append(("utt2num_frames", self.utt2num_frames))
        for name, mapping in checks:
            if not mapping and name in REQUIRED_FILES:
                hint = " (fix_data_dir --compute_durations writes it)" if name == "utt2dur" else ""
                found[""].append(f"{name}: missing or empty{hint}")
                continue
            for utt in utts - mapping.keys():
                found[utt].append(f"{name}: {utt}: missing (the utterance is in text)")
            for utt in mapping.keys() - utts:
                found[utt].append(f"text: {utt}: missing (the utterance is in {name})")
        for utt, sentence in self.text.items():
            if not sentence.strip():
                found[utt].append(f"text: {utt}: empty transcript")
        for utt, code in self.utt2lang.items():
            if code not in LANGUAGES:
                found[utt].append(f"utt2lang: {utt}: unknown language {code!r} (see zipasr/languages.py)")
        for utt, dur in self.utt2dur.items():
            if not (dur > 0 and math.isfinite(dur)):
                found[utt].append(f"utt2dur: {utt}: duration must be > 0, got {dur}")
        for utt, value in self.wav_scp.items():
            if not value.strip():
                found[utt].append(f"wav.scp: {utt}: empty entry")
        if self.segments is not None:
            for utt, seg in self.segments.items():
                if seg.recording not in self.wav_scp:
                    found[utt].append(f"segments: {utt}: recording {seg.recording!r} not in wav.scp")
                if not (0 <= seg.start < seg.end):
                    found[utt].append(f"segments: {utt}: needs 0 <= start < end, got {seg.start} {seg.end}")
        if check_audio:
            from zipasr.data.audio import AudioError, load_audio  # audio imports soundfile; keep datadir light

            from tqdm import tqdm

            for utt in tqdm(sorted(utts - set(found)), desc="checking audio", disable=not progress, unit="utt"):
                try:
                    audio = load_audio(self, utt)
                except AudioError as err:
                    found[utt].append(f"wav.scp: {err}")
                    continue
                if audio.size == 0:
                    found[utt].append(f"wav.scp: {utt}: audio is empty")
        return dict(found)

    def validate(self, check_audio: bool = False, progress: bool = False) -> None:
        """Raise DataDirError listing every problem (each names its file and utterance); return None if clean."""
        found = self.find_problems(check_audio=check_audio, progress=progress)
        if found:
            raise DataDirError(self.path or "<in memory>", [p for key in sorted(found) for p in found[key]])

    # ------------------------------------------------------------------ editing
    def select(self, utts: Iterable[str]) -> "DataDir":
        """A new DataDir restricted to `utts` (recordings not used by any kept utterance are dropped)."""
        keep = set(utts)

        def sub(mapping):
            return None if mapping is None else {k: v for k, v in mapping.items() if k in keep}

        segments = sub(self.segments)
        recordings = {s.recording for s in segments.values()} if segments is not None else keep
        return DataDir(
            wav_scp={k: v for k, v in self.wav_scp.items() if k in recordings},
            text=sub(self.text), utt2spk=sub(self.utt2spk), utt2lang=sub(self.utt2lang), utt2dur=sub(self.utt2dur),
            segments=segments, feats_scp=sub(self.feats_scp), utt2num_frames=sub(self.utt2num_frames),
        )

    # ------------------------------------------------------------------ writing
    def write(self, path, validate: bool = True) -> Path:
        """Write all files, sorted, into `path` atomically: everything goes into a temp dir beside it that is
        renamed into place at the end, so a failure never leaves a half-written dir that looks complete.
        Entries of an existing `path` that are not data-dir files (e.g. a fix report, split dirs) are kept."""
        if validate:
            self.validate()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp", dir=path.parent))
        try:
            write_kaldi_map(tmp / "wav.scp", self.wav_scp)
            if self.segments is not None:
                write_kaldi_map(tmp / "segments", self.segments)
            write_kaldi_map(tmp / "text", self.text)
            write_kaldi_map(tmp / "utt2spk", self.utt2spk)
            write_kaldi_map(tmp / "spk2utt", self.spk2utt)
            write_kaldi_map(tmp / "utt2lang", self.utt2lang)
            write_kaldi_map(tmp / "utt2dur", {u: float(d) for u, d in self.utt2dur.items()})
            if self.feats_scp is not None:
                write_kaldi_map(tmp / "feats.scp", self.feats_scp)
            if self.utt2num_frames is not None:
                write_kaldi_map(tmp / "utt2num_frames", self.utt2num_frames)
            _replace_dir(tmp, path)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        self.path = path
        return path


def _replace_dir(new: Path, path: Path) -> None:
    """Swap `new` in for `path`, carrying over extra (non data-dir) entries of the old dir."""
    if not path.exists():
        os.rename(new, path)
        return
    if not path.is_dir():
        raise DataDirError(path, ["exists and is not a directory"])
    for entry in path.iterdir():
        if entry.name not in DATA_FILES and not (new / entry.name).exists():
            os.rename(entry, new / entry.name)
    old = path.with_name(f".{path.name}.old{os.getpid()}")
    os.rename(path, old)
    os.rename(new, path)
    shutil.rmtree(old)


# ---------------------------------------------------------------------- fix and combine
def fix(dd: DataDir, check_audio: bool = False, progress: bool = False) -> tuple[DataDir, dict[str, list[str]]]:
    """Keep the consistent intersection. Returns (fixed dir, {dropped utterance: [reasons]}).

    An utterance is dropped if any file lacks it, it had a duplicate id or a non-UTF-8 line, its transcript is
    empty, its language is unknown, its duration is not positive, its segment is invalid, or (check_audio)
    its audio cannot be read. Problems that concern a whole file (sorting) are fixed by rewriting.
    """
    found = dd.find_problems(check_audio=check_audio, progress=progress)
    dropped = {utt: reasons for utt, reasons in found.items() if utt}
    for utt in dd.bad_utts:
        dropped.setdefault(utt, ["bad line (duplicate id or not UTF-8)"])
    # An utterance is only kept if every required per-utterance file has it.
    keep = set(dd.text) - set(dropped)
    keep &= set(dd.utt2spk) & set(dd.utt2lang) & set(dd.utt2dur)
    keep &= set(dd.segments) if dd.segments is not None else set(dd.wav_scp)
    if dd.feats_scp is not None:
        keep &= set(dd.feats_scp)
    fixed = dd.select(keep)
    unexplained = [u for u in set(dd.text) - keep if u not in dropped]
    for utt in unexplained:
        dropped[utt] = ["missing from another file"]
    return fixed, dropped


def combine(dirs: list[DataDir], names: list[str] | None = None) -> DataDir:
    """Union of data dirs. Duplicate utterance ids (or a recording id used with different audio) are an error
    naming both dirs. If some dirs have `segments` and others not, whole-file segments are made for the latter."""
    names = names or [str(d.path) for d in dirs]
    use_segments = any(d.segments is not None for d in dirs)
    use_feats = all(d.feats_scp is not None for d in dirs)
    if any(d.feats_scp is not None for d in dirs) and not use_feats:
        log.warning("combine: not every input has feats.scp; the combined dir gets none")
    out = DataDir(segments={} if use_segments else None, feats_scp={} if use_feats else None,
                  utt2num_frames={} if use_feats and all(d.utt2num_frames is not None for d in dirs) else None)
    owner: dict[str, str] = {}
    problems = []
    for d, name in zip(dirs, names):
        for utt in d.text:
            if utt in owner:
                problems.append(f"text: {utt}: in both {owner[utt]} and {name}")
            owner[utt] = name
        for rec, value in d.wav_scp.items():
            if rec in out.wav_scp and out.wav_scp[rec] != value:
                problems.append(f"wav.scp: {rec}: different audio in two inputs (one is {name})")
            out.wav_scp[rec] = value
        out.text.update(d.text)
        out.utt2spk.update(d.utt2spk)
        out.utt2lang.update(d.utt2lang)
        out.utt2dur.update(d.utt2dur)
        if use_segments:
            if d.segments is not None:
                out.segments.update(d.segments)
            else:
                out.segments.update({u: Segment(u, 0.0, d.utt2dur[u]) for u in d.text})
        if out.feats_scp is not None:
            out.feats_scp.update(d.feats_scp)
        if out.utt2num_frames is not None:
            out.utt2num_frames.update(d.utt2num_frames)
    if problems:
        raise DataDirError("combine", problems)
    return out
