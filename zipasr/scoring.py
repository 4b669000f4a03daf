"""Scoring: Whisper text normalisation, then WER or CER, with Kaldi/ESPnet-style reports.

The protocol of the paper (Sec. V-B):
- Normalise both sides with the Whisper normaliser: `EnglishTextNormalizer` for English only (it would
  rewrite other languages, e.g. Vietnamese "tên" -> "10"), `BasicTextNormalizer` for every other language.
- CER for the languages whose table row says so (zh, ja, ko, th; `zipasr.languages.uses_cer`), on the
  normalised text with all whitespace removed; WER on normalised words for the rest.

Note on scripts with combining marks (Thai vowel and tone marks, Devanagari matras): Whisper's basic
normaliser turns every Unicode mark into a space. That is the published protocol, so it is the
default here, but it means Thai CER is counted on the base letters only. `preserve_marks=True`
(`--preserve_marks` on the command line) keeps the marks.

Totals are sums of edit operations over utterances (never means of per-utterance rates). Two
special cases are explicit:
- an utterance of the reference that has no hypothesis counts as all deletions, and is listed;
- a reference that is empty after normalisation has no tokens to score against: its hypothesis
  tokens count as insertions and nothing is added to the reference count (jiwer alone would call
  its rate 1.0).

A summary line has the Kaldi form `%WER 12.34 [ 56 / 454, 7 ins, 20 del, 29 sub ]`. A test set of
several languages (per-utterance languages from `utt2lang`) gets one line per language, suffixed
with its code, and an overall line; when that set mixes WER and CER languages the overall line is
`%MER` (mixed error rate: word errors and character errors summed over word and character tokens,
as in code-switching ASR).
"""
from __future__ import annotations

import json
import logging
import re
import unicodedata
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import jiwer
from tqdm import tqdm
from whisper_normalizer.basic import BasicTextNormalizer
from whisper_normalizer.english import EnglishTextNormalizer

from zipasr.languages import get_language, uses_cer

logger = logging.getLogger(__name__)

RESULT_JSON = "result.json"  # machine-readable totals (read by zipasr.results)
RESULT_TXT = "result.txt"  # summary lines + per-utterance alignments, for people
MISSING_TXT = "missing_utts"  # ids of reference utterances without a hypothesis, one a line


# ---------------------------------------------------------------------------------------------
# Normalisation and tokenisation


@lru_cache(maxsize=None)
def _normalizer(lang: str, preserve_marks: bool):
    if lang == "en":
        return EnglishTextNormalizer()
    return BasicTextNormalizer(preserve_marks=preserve_marks)


def normalize(text: str, lang: str, preserve_marks: bool = False) -> str:
    """Whisper-normalised `text` of language `lang` (English normaliser for "en" only)."""
    get_language(lang)  # unknown code -> error listing the known ones
    # The basic normaliser leaves a trailing space; collapse all edges and runs of spaces.
    return " ".join(_normalizer(lang, preserve_marks)(text).split())


def tokenize(text: str, lang: str, preserve_marks: bool = False) -> list[str]:
    """Scoring units of `text`: characters (no whitespace) for CER languages, else words."""
    norm = normalize(text, lang, preserve_marks)
    if uses_cer(lang):
        return list(norm.replace(" ", ""))
    return norm.split()


# ---------------------------------------------------------------------------------------------
# Counting


@dataclass
class ErrorCounts:
    """Edit operations against `ref_count` reference tokens (words or characters)."""

    ref_count: int = 0
    ins: int = 0
    dels: int = 0
    subs: int = 0

    @property
    def errors(self) -> int:
        return self.ins + self.dels + self.subs

    @property
    def hits(self) -> int:
        return self.ref_count - self.dels - self.subs

    @property
    def rate(self) -> float:
        """Error rate in percent. Undefined (ValueError) when there are no reference tokens."""
        if self.ref_count == 0:
            raise ValueError("error rate undefined: no reference tokens")
        return 100.0 * self.errors / self.ref_count

    def __iadd__(self, other: "ErrorCounts") -> "ErrorCounts":
        self.ref_count += other.ref_count
        self.ins += other.ins
        self.dels += other.dels
        self.subs += other.subs
        return self


@dataclass
class UttScore:
    """One utterance: its normalised tokens, its counts and its alignment.

    `alignment` is a list of (op, ref_token | None, hyp_token | None) with op in
    {"C", "S", "D", "I"} (correct, substitution, deletion, insertion).
    """

    utt: str
    lang: str
    ref_tokens: list[str]
    hyp_tokens: list[str]
    counts: ErrorCounts
    alignment: list[tuple[str, str | None, str | None]]
    missing: bool = False  # no hypothesis for this utterance: scored as an empty one


_JIWER_OPS = {"equal": "C", "substitute": "S", "delete": "D", "insert": "I"}


def score_utterance(utt: str, ref: str, hyp: str, lang: str, missing: bool = False,
                    preserve_marks: bool = False) -> UttScore:
    """Normalise, tokenise and align one reference/hypothesis pair with jiwer."""
    ref_tokens = tokenize(ref, lang, preserve_marks)
    hyp_tokens = tokenize(hyp, lang, preserve_marks)
    if not ref_tokens:
        # jiwer would report a rate of 1.0 here; an empty reference only adds insertions.
        alignment = [("I", None, h) for h in hyp_tokens]
        return UttScore(utt, lang, ref_tokens, hyp_tokens, ErrorCounts(0, len(hyp_tokens), 0, 0),
                        alignment, missing)
    if uses_cer(lang):
        out = jiwer.process_characters("".join(ref_tokens), "".join(hyp_tokens))
    else:
        out = jiwer.process_words(" ".join(ref_tokens), " ".join(hyp_tokens))
    counts = ErrorCounts(len(ref_tokens), out.insertions, out.deletions, out.substitutions)
    alignment = []
    for chunk in out.alignments[0]:
        op = _JIWER_OPS[chunk.type]
        refs = ref_tokens[chunk.ref_start_idx:chunk.ref_end_idx]
        hyps = hyp_tokens[chunk.hyp_start_idx:chunk.hyp_end_idx]
        if op == "D":
            alignment += [(op, r, None) for r in refs]
        elif op == "I":
            alignment += [(op, None, h) for h in hyps]
        else:  # equal / substitute spans have the same length on both sides
            alignment += [(op, r, h) for r, h in zip(refs, hyps)]
    return UttScore(utt, lang, ref_tokens, hyp_tokens, counts, alignment, missing)


# ---------------------------------------------------------------------------------------------
# A scored test set


@dataclass
class ScoreReport:
    """Totals of a scored test set, per language and overall, plus every utterance."""

    utts: list[UttScore]
    per_lang: dict[str, ErrorCounts]  # language code -> totals, in order of first appearance
    total: ErrorCounts
    missing: list[str] = field(default_factory=list)  # reference ids without hypothesis
    empty_refs: list[str] = field(default_factory=list)  # reference ids empty after normalisation

    @property
    def langs(self) -> list[str]:
        return list(self.per_lang)

    @property
    def metric(self) -> str:
        """The metric of the totals: "wer" or "cer" when every language uses it, else "mer"."""
        metrics = {lang_metric(lang) for lang in self.per_lang}
        return metrics.pop() if len(metrics) == 1 else "mer"

    def summary_lines(self) -> list[str]:
        """One Kaldi-style line per language (suffixed with its code) when several, then the total."""
        lines = []
        if len(self.per_lang) > 1:
            lines = [f"{summary_line(lang_metric(lang), c)} {lang}" for lang, c in self.per_lang.items()]
        return lines + [summary_line(self.metric, self.total)]


def lang_metric(lang: str) -> str:
    return "cer" if uses_cer(lang) else "wer"


def summary_line(metric: str, counts: ErrorCounts) -> str:
    """`%WER 12.34 [ 56 / 454, 7 ins, 20 del, 29 sub ]` (Kaldi compute-wer form)."""
    return (f"%{metric.upper()} {counts.rate:.2f} [ {counts.errors} / {counts.ref_count}, "
            f"{counts.ins} ins, {counts.dels} del, {counts.subs} sub ]")


_SUMMARY_RE = re.compile(
    r"^%(?P<metric>[A-Z]+) (?P<rate>\d+\.\d+) \[ (?P<errors>\d+) / (?P<ref_count>\d+), "
    r"(?P<ins>\d+) ins, (?P<dels>\d+) del, (?P<subs>\d+) sub \](?: (?P<lang>\S+))?$")


def parse_summary_line(line: str) -> dict:
    """Inverse of `summary_line`: {metric, rate, errors, ref_count, ins, dels, subs, lang|None}."""
    m = _SUMMARY_RE.match(line.strip())
    if not m:
        raise ValueError(f"not a summary line: {line!r}")
    out = m.groupdict()
    out["metric"] = out["metric"].lower()
    out["rate"] = float(out["rate"])
    for key in ("errors", "ref_count", "ins", "dels", "subs"):
        out[key] = int(out[key])
    return out


def score_texts(refs: dict[str, str], hyps: dict[str, str], utt2lang: dict[str, str] | str,
                preserve_marks: bool = False) -> ScoreReport:
    """Score hypotheses against references.

    refs, hyps: {utt: text}. utt2lang: one language code for all, or {utt: code} covering refs.
    A hypothesis id absent from refs is an error; a ref id absent from hyps is all deletions.
    """
    unknown = [u for u in hyps if u not in refs]
    if unknown:
        raise ValueError(f"{len(unknown)} hypothesis utterance(s) not in the reference, e.g. "
                         f"{', '.join(unknown[:5])}")
    if isinstance(utt2lang, str):
        get_language(utt2lang)
        utt2lang = dict.fromkeys(refs, utt2lang)
    else:
        absent = [u for u in refs if u not in utt2lang]
        if absent:
            raise ValueError(f"{len(absent)} reference utterance(s) have no language in utt2lang, "
                             f"e.g. {', '.join(absent[:5])}")
        first_utt = {}
        for u in refs:
            first_utt.setdefault(utt2lang[u], u)
        for lang, u in first_utt.items():
            try:
                get_language(lang)
            except ValueError as err:
                raise type(err)(f"utterance {u}: {err}") from None

    utts, per_lang, total = [], {}, ErrorCounts()
    missing, empty_refs = [], []
    for utt, ref in tqdm(refs.items(), desc="scoring", unit="utt", disable=None):
        lang = utt2lang[utt]
        is_missing = utt not in hyps
        score = score_utterance(utt, ref, hyps.get(utt, ""), lang, is_missing, preserve_marks)
        utts.append(score)
        per_lang.setdefault(lang, ErrorCounts())
        per_lang[lang] += score.counts
        total += score.counts
        if is_missing:
            missing.append(utt)
        if not score.ref_tokens:
            empty_refs.append(utt)
    for lang, counts in per_lang.items():
        if counts.ref_count == 0:
            raise ValueError(f"language {lang!r}: every reference utterance is empty after "
                             "normalisation, so its error rate is undefined")
    return ScoreReport(utts, per_lang, total, missing, empty_refs)


# ---------------------------------------------------------------------------------------------
# Report files


def _width(token: str) -> int:
    """Columns a token occupies in a terminal (East Asian wide characters take two)."""
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in token)


def _pad(token: str, width: int) -> str:
    return token + " " * (width - _width(token))


def format_alignment(score: UttScore) -> str:
    """sclite-style block: id, counts, then REF/HYP/Eval rows, errors upper-cased, gaps as ***."""
    c = score.counts
    note = " [missing from hypotheses]" if score.missing else ""
    rows = {"REF:": [], "HYP:": [], "Eval:": []}
    for op, r, h in score.alignment:
        r = "*" * _width(h) if r is None else (r if op == "C" else r.upper())
        h = "*" * _width(r) if h is None else (h if op == "C" else h.upper())
        w = max(_width(r), _width(h), 1)
        rows["REF:"].append(_pad(r, w))
        rows["HYP:"].append(_pad(h, w))
        rows["Eval:"].append(_pad("" if op == "C" else op, w))
    lines = [f"id: ({score.utt}) lang: {score.lang}{note}",
             f"Scores: (#C #S #D #I) {c.hits} {c.subs} {c.dels} {c.ins}"]
    lines += [f"{key:<6}{' '.join(cells)}".rstrip() for key, cells in rows.items()]
    return "\n".join(lines)


def _counts_dict(metric: str, counts: ErrorCounts) -> dict:
    return {"metric": metric, "error_rate": round(counts.rate, 4), "errors": counts.errors,
            "ref_count": counts.ref_count, "ins": counts.ins, "del": counts.dels, "sub": counts.subs}


def report_dict(report: ScoreReport, ref_path: str = "", hyp_path: str = "") -> dict:
    """The content of result.json.

    {"lang": code or "mixed", "metric": "wer"|"cer"|"mer", "error_rate": percent, "errors",
     "ref_count", "ins", "del", "sub", "n_utts", "n_missing", "n_empty_ref", "ref", "hyp",
     "per_lang": {code: {"metric", "error_rate", "errors", "ref_count", "ins", "del", "sub",
                         "n_utts", "n_missing"}}}
    """
    out = {"lang": report.langs[0] if len(report.langs) == 1 else "mixed"}
    out.update(_counts_dict(report.metric, report.total))
    missing = set(report.missing)
    out.update(n_utts=len(report.utts), n_missing=len(report.missing),
               n_empty_ref=len(report.empty_refs), ref=str(ref_path), hyp=str(hyp_path))
    out["per_lang"] = {}
    for lang, counts in report.per_lang.items():
        entry = _counts_dict(lang_metric(lang), counts)
        entry["n_utts"] = sum(u.lang == lang for u in report.utts)
        entry["n_missing"] = sum(u.lang == lang and u.utt in missing for u in report.utts)
        out["per_lang"][lang] = entry
    return out


def write_report(report: ScoreReport, out_dir: str | Path, ref_path: str = "",
                 hyp_path: str = "") -> None:
    """Write result.json, result.txt (summary + alignments) and missing_utts into out_dir."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with (out_dir / RESULT_JSON).open("w", encoding="utf-8") as f:
        json.dump(report_dict(report, ref_path, hyp_path), f, indent=2, ensure_ascii=False)
        f.write("\n")
    with (out_dir / RESULT_TXT).open("w", encoding="utf-8") as f:
        f.write(f"ref: {ref_path}\nhyp: {hyp_path}\n")
        f.write("\n".join(report.summary_lines()) + "\n")
        if report.missing:
            f.write(f"{len(report.missing)} utterance(s) missing from the hypotheses "
                    f"(counted as deletions), listed in {MISSING_TXT}\n")
        for score in report.utts:
            f.write("\n" + format_alignment(score) + "\n")
    (out_dir / MISSING_TXT).write_text("".join(u + "\n" for u in report.missing), encoding="utf-8")
