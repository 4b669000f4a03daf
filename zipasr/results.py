"""Result tables shaped like the paper's Tables III-VI, and relative change against a baseline (Fig. 6).

Directory convention (written by the recipe template, read here):

    <expdir>/stage1/decode_<testset>_<regime>/score/result.json               -> row "Stage-1"
    <expdir>/stage2_<method>/decode_<testset>_<regime>/score/result.json      -> row of <method>

`<regime>` is the encoder regime of the decode, the last `_`-separated part of the directory name:
`chunked` (segment-wise, 8 s) or `full` (full context; the paper's "non-chunked"). `<testset>` is the
rest and may contain underscores (`decode_test_clean_full`). `result.json` is what
`zipasr.bin.score --out` writes: its `per_lang` entries give the languages, so a test set scored
with several languages (from utt2lang) gives one column per language. Other directories are ignored;
a `decode_*` directory whose regime is not known is skipped with a warning. The recipe keeps the
hypotheses beside the score: `decode_<testset>_<regime>/text`, scored with
`python -m zipasr.bin.score --ref data/<testset>/text --hyp .../text --out .../score`.

Tables: one block per regime (Chunked first, as in the paper), rows = methods, columns = (test set,
language), values = WER or CER in percent (the language decides, `zipasr.languages.uses_cer`).
Column label: the language code when the test set is named after it, else `<testset> (<lang>)`.
`Avg` is the unweighted mean of a row's columns, given only when the row has every column.
Relative change of method m on a column: (baseline - m) / baseline * 100, positive = fewer errors
than the baseline (the sign of the paper's Fig. 6); its `Avg` is the mean over columns.
"""
from __future__ import annotations

import csv
import io
import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

from zipasr.scoring import RESULT_JSON

logger = logging.getLogger(__name__)

# Regime directory suffix -> display name, in table order.
REGIMES = {"chunked": "Chunked", "full": "Non-chunked"}

# Method key (stage2_<method>) -> display name, in the paper's row order. Unknown methods (e.g. the
# sibling systems lors, experts_fusion, experts_kd) keep their key and come after these, sorted.
METHOD_NAMES = {
    "stage1": "Stage-1",
    "vanilla": "Vanilla-LoRA",
    "flylora": "FlyLoRA",
    "independent": "Independent-LoRA",
    "zipper_static": "Zipper-LoRA-Static",
    "zipper_hard": "Zipper-LoRA-Hard",
    "zipper_soft": "Zipper-LoRA-Soft",
    "zipper_soft_initb": "+ initial-B",  # Initial-B warm start of Zipper-LoRA-Soft
}

AVG = "Avg"


def method_display_name(method: str, standalone: bool = False) -> str:
    """Display name of a method key; `standalone` spells out names that lean on the row above
    ("+ initial-B" -> "Zipper-LoRA-Soft + initial-B"), for figure legends."""
    if standalone and method == "zipper_soft_initb":
        return f"{METHOD_NAMES['zipper_soft']} {METHOD_NAMES[method]}"
    return METHOD_NAMES.get(method, method)


@dataclass(frozen=True)
class Column:
    """One table column: a language of a test set."""

    testset: str
    lang: str

    @property
    def label(self) -> str:
        return self.lang if self.testset == self.lang else f"{self.testset} ({self.lang})"


@dataclass(frozen=True)
class ScoredDecode:
    """One language of one scored decode, read from a result.json."""

    exp_dir: str  # as given on the command line
    method: str  # "stage1" or the <method> of stage2_<method>
    testset: str
    regime: str  # key of REGIMES
    lang: str
    error_rate: float  # percent: WER or CER, as the language's metric says
    n_missing: int  # reference utterances that had no hypothesis
    path: Path


def _parse_decode_dir(name: str) -> tuple[str, str] | None:
    """Name decode_<testset>_<regime> -> (testset, regime); None when the regime is unknown."""
    testset, _, regime = name[len("decode_"):].rpartition("_")
    if not testset or regime not in REGIMES:
        return None
    return testset, regime


def _method_of(stage_dir: str) -> str | None:
    if stage_dir == "stage1":
        return "stage1"
    if stage_dir.startswith("stage2_") and len(stage_dir) > len("stage2_"):
        return stage_dir[len("stage2_"):]
    return None


def collect_results(exp_dirs: list[str | Path]) -> list[ScoredDecode]:
    """Every scored decode under the experiment directories (see the module doc for the layout)."""
    decodes = []
    for exp_dir in exp_dirs:
        root = Path(exp_dir)
        if not root.is_dir():
            raise FileNotFoundError(f"experiment directory not found: {root}")
        for path in sorted(root.glob(f"*/decode_*/score/{RESULT_JSON}")):
            decode_dir, stage_dir = path.parent.parent, path.parent.parent.parent
            method = _method_of(stage_dir.name)
            if method is None:
                continue
            parsed = _parse_decode_dir(decode_dir.name)
            if parsed is None:
                logger.warning("skipping %s: its name does not end in a known regime (%s)",
                               decode_dir, ", ".join(f"_{r}" for r in REGIMES))
                continue
            testset, regime = parsed
            try:
                result = json.loads(path.read_text(encoding="utf-8"))
                per_lang = result["per_lang"]
                for lang, entry in per_lang.items():
                    decodes.append(ScoredDecode(
                        str(exp_dir), method, testset, regime, lang, float(entry["error_rate"]),
                        int(entry.get("n_missing", 0)), path))
            except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as err:
                raise ValueError(f"{path}: not a zipasr result.json ({type(err).__name__}: {err})") \
                    from None
    return decodes


@dataclass(frozen=True)
class Row:
    """One table row: a method of an experiment directory. The label names the directory only when
    the method was found in several directories (`qualified`)."""

    method: str
    exp_dir: str
    qualified: bool = False

    def display(self, standalone: bool = False) -> str:
        name = method_display_name(self.method, standalone)
        return f"{name} [{self.exp_dir}]" if self.qualified else name

    @property
    def label(self) -> str:
        return self.display()


@dataclass
class ResultTable:
    """One block: rows x columns, values in percent (absent = no result)."""

    regime: str
    columns: list[Column]
    rows: list[Row]
    values: dict[tuple[Row, Column], float] = field(default_factory=dict)
    flagged: set[tuple[Row, Column]] = field(default_factory=set)  # cells with missing hypotheses
    baseline: str | None = None  # method key, set on relative-change tables

    def avg(self, row: Row) -> float | None:
        """Mean over the columns; None unless the row has every column."""
        vals = [self.values.get((row, c)) for c in self.columns]
        if not vals or any(v is None for v in vals):
            return None
        return sum(vals) / len(vals)

    @property
    def title(self) -> str:
        if self.baseline is None:
            return f"WER/CER (%), {REGIMES[self.regime]}"
        return f"Relative change (%) vs {method_display_name(self.baseline)}, {REGIMES[self.regime]}"


def _row_order(row: Row, dir_order: list[str]) -> tuple:
    """Paper order of methods, unknown methods by name; one method's directories in given order."""
    known = list(METHOD_NAMES)
    rank = known.index(row.method) if row.method in known else len(known)
    return (rank, row.method, dir_order.index(row.exp_dir))


def build_tables(decodes: list[ScoredDecode]) -> list[ResultTable]:
    """One ResultTable per regime present, in REGIMES order.

    A method found in several experiment directories gets one row per directory, labelled
    `<name> [<dir>]`. The same cell found twice is an error naming both files.
    """
    dirs_of: dict[str, set[str]] = {}
    dir_order: list[str] = []  # experiment directories in the order they were collected
    for d in decodes:
        dirs_of.setdefault(d.method, set()).add(d.exp_dir)
        if d.exp_dir not in dir_order:
            dir_order.append(d.exp_dir)

    def row_of(d: ScoredDecode) -> Row:
        return Row(d.method, d.exp_dir, qualified=len(dirs_of[d.method]) > 1)

    tables = []
    for regime in REGIMES:
        block = [d for d in decodes if d.regime == regime]
        if not block:
            continue
        columns = sorted({Column(d.testset, d.lang) for d in block},
                         key=lambda c: (c.testset, c.lang))
        rows = sorted({row_of(d) for d in block}, key=lambda r: _row_order(r, dir_order))
        table = ResultTable(regime, columns, rows)
        seen: dict[tuple[Row, Column], Path] = {}
        for d in block:
            cell = (row_of(d), Column(d.testset, d.lang))
            if cell in seen:
                raise ValueError(f"two results for {cell[0].label}, {cell[1].label}, {regime}: "
                                 f"{seen[cell]} and {d.path}")
            seen[cell] = d.path
            table.values[cell] = d.error_rate
            if d.n_missing:
                table.flagged.add(cell)
        tables.append(table)
    return tables


def relative_change(table: ResultTable, baseline: str) -> ResultTable | None:
    """(baseline - method) / baseline * 100 per cell, for every row that has a baseline row.

    `baseline` is a method key. A row is compared with the baseline of its own experiment
    directory, or, when that has none, with the only baseline row of the table (rows with neither
    are left out). None when the table has no row of the baseline method.
    """
    base_rows = {r.exp_dir: r for r in table.rows if r.method == baseline}
    if not base_rows:
        return None
    only = next(iter(base_rows.values())) if len(base_rows) == 1 else None
    base_of = {r: base_rows.get(r.exp_dir, only) for r in table.rows if r.method != baseline}
    rel = ResultTable(table.regime, table.columns, [r for r, b in base_of.items() if b is not None],
                      baseline=baseline)
    for row in rel.rows:
        for col in table.columns:
            base = table.values.get((base_of[row], col))
            val = table.values.get((row, col))
            if base is None or val is None:
                continue
            # A perfect baseline leaves no room to improve: the change is 0 (equal) or -inf.
            rel.values[(row, col)] = ((base - val) / base * 100.0 if base > 0
                                      else (0.0 if val == 0 else -math.inf))
    return rel


def result_tables(exp_dirs: list[str | Path], baseline: str | None = None) -> list[ResultTable]:
    """Error-rate tables of every regime, each followed by its relative change against `baseline`.

    A block without the baseline method gets no relative table (logged); a baseline found in no
    block at all is an error.
    """
    tables = build_tables(collect_results(exp_dirs))
    if not tables:
        raise ValueError(f"no scored decodes (*/decode_*_<{'|'.join(REGIMES)}>/score/{RESULT_JSON}) "
                         f"under {', '.join(map(str, exp_dirs))}")
    out = []
    for table in tables:
        out.append(table)
        if baseline is None:
            continue
        rel = relative_change(table, baseline)
        if rel is None:
            logger.warning("%s block has no %s results: no relative-change table",
                           REGIMES[table.regime], baseline)
        else:
            out.append(rel)
    if baseline is not None and not any(t.baseline for t in out):
        methods = sorted({r.method for t in tables for r in t.rows})
        raise ValueError(f"baseline method {baseline!r} not found; methods: {', '.join(methods)}")
    return out


def _fmt(value: float | None, signed: bool) -> str:
    if value is None:
        return "-"
    return f"{value:+.2f}" if signed else f"{value:.2f}"


def format_markdown(tables: list[ResultTable]) -> str:
    """Markdown: a heading and a pipe table per block; '-' = no result; '*' = hypotheses missing."""
    parts = []
    for t in tables:
        signed = t.baseline is not None
        header = ["Method"] + [c.label for c in t.columns] + [AVG]
        lines = [f"## {t.title}", "", "| " + " | ".join(header) + " |",
                 "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
        for row in t.rows:
            cells = [row.label]
            for col in t.columns:
                mark = "*" if (row, col) in t.flagged else ""
                cells.append(_fmt(t.values.get((row, col)), signed) + mark)
            cells.append(_fmt(t.avg(row), signed))
            lines.append("| " + " | ".join(cells) + " |")
        if t.flagged:
            lines += ["", "\\* some reference utterances had no hypothesis (scored as deletions)."]
        parts.append("\n".join(lines))
    return "\n\n".join(parts) + "\n"


def format_csv(tables: list[ResultTable]) -> str:
    """Long-format CSV, one line per cell: kind,regime,method,exp_dir,label,testset,lang,value,
    missing_hyps.

    kind is "error_rate" or "relative_change"; Avg cells have testset "Avg" and no language.
    """
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["kind", "regime", "method", "exp_dir", "label", "testset", "lang", "value",
                     "missing_hyps"])
    for t in tables:
        kind = "error_rate" if t.baseline is None else "relative_change"
        for row in t.rows:
            for col in t.columns:
                val = t.values.get((row, col))
                writer.writerow([kind, t.regime, row.method, row.exp_dir, row.label,
                                 col.testset, col.lang, "" if val is None else f"{val:.4f}",
                                 int((row, col) in t.flagged)])
            avg = t.avg(row)
            writer.writerow([kind, t.regime, row.method, row.exp_dir, row.label, AVG, "",
                             "" if avg is None else f"{avg:.4f}", 0])
    return buf.getvalue()
