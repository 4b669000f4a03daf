"""Result tables: the fixture tree gives the hand-written tables; layout rules and errors."""
import csv
import io
import json
import re
import shutil
from pathlib import Path

import pytest

from zipasr.bin import score as score_cli
from zipasr.bin import show_results
from zipasr.results import build_tables, collect_results, format_markdown, relative_change, result_tables

TREE = Path(__file__).parent / "fixtures" / "results_tree" / "exp_mini"

# Written by hand from the values in the fixture files. Averages: chunked Vanilla (20+30+6+12)/4,
# Zipper-Soft (18+24+5.4+12)/4 = 14.85; relative change (base - x) / base * 100, e.g. + initial-B on
# test_en: (6 - 5.2) / 6 = +13.33 %, its Avg (20 + 30 + 13.33 + 5) / 4 = +17.08.
EXPECTED_MD = """\
## WER/CER (%), Chunked

| Method | mix (fr) | mix (ja) | test_en (en) | zh | Avg |
|---|---:|---:|---:|---:|---:|
| Stage-1 | - | - | 5.00 | 10.00 | - |
| Vanilla-LoRA | 20.00 | 30.00 | 6.00 | 12.00 | 17.00 |
| Zipper-LoRA-Soft | 18.00 | 24.00 | 5.40 | 12.00 | 14.85 |
| + initial-B | 16.00* | 21.00 | 5.20 | 11.40 | 13.40 |

\\* some reference utterances had no hypothesis (scored as deletions).

## Relative change (%) vs Vanilla-LoRA, Chunked

| Method | mix (fr) | mix (ja) | test_en (en) | zh | Avg |
|---|---:|---:|---:|---:|---:|
| Stage-1 | - | - | +16.67 | +16.67 | - |
| Zipper-LoRA-Soft | +10.00 | +20.00 | +10.00 | +0.00 | +10.00 |
| + initial-B | +20.00 | +30.00 | +13.33 | +5.00 | +17.08 |

## WER/CER (%), Non-chunked

| Method | mix (fr) | mix (ja) | test_en (en) | zh | Avg |
|---|---:|---:|---:|---:|---:|
| Stage-1 | - | - | 4.80 | 9.60 | - |
| Vanilla-LoRA | 19.00 | 28.00 | 5.50 | 11.50 | 16.00 |
| Zipper-LoRA-Soft | 17.10 | 22.40 | 5.00 | 11.50 | 14.00 |
| lors | 18.50 | 27.00 | 5.20 | - | - |

## Relative change (%) vs Vanilla-LoRA, Non-chunked

| Method | mix (fr) | mix (ja) | test_en (en) | zh | Avg |
|---|---:|---:|---:|---:|---:|
| Stage-1 | - | - | +12.73 | +16.52 | - |
| Zipper-LoRA-Soft | +10.00 | +20.00 | +9.09 | +0.00 | +9.77 |
| lors | +2.63 | +3.57 | +5.45 | - | - |
"""


def test_show_results_markdown_on_fixture_tree(tmp_path, capsys, caplog):
    out = tmp_path / "tables.md"
    assert show_results.main([str(TREE), "--baseline", "vanilla", "--out", str(out)]) == 0
    assert capsys.readouterr().out == EXPECTED_MD
    assert out.read_text() == EXPECTED_MD
    # decode_test_en_lid has no known regime: skipped, and said so.
    assert "decode_test_en_lid" in caplog.text


def test_show_results_without_baseline_has_no_relative_tables(capsys):
    show_results.main([str(TREE)])
    text = capsys.readouterr().out
    assert "Relative change" not in text and text.count("## WER/CER (%)") == 2


def test_csv_has_one_line_per_cell(capsys):
    show_results.main([str(TREE), "--baseline", "vanilla", "--format", "csv"])
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    # 4 blocks x (rows x (4 columns + Avg)): chunked 4 + 3 rows, non-chunked 4 + 3 rows.
    assert len(rows) == (4 + 3 + 4 + 3) * 5
    cell = next(r for r in rows if r["kind"] == "error_rate" and r["regime"] == "chunked"
                and r["method"] == "zipper_soft_initb" and r["lang"] == "fr")
    assert (cell["label"], cell["testset"], cell["value"], cell["missing_hyps"]) == (
        "+ initial-B", "mix", "16.0000", "1")
    avg = next(r for r in rows if r["kind"] == "relative_change" and r["regime"] == "full"
               and r["method"] == "lors" and r["testset"] == "Avg")
    assert avg["value"] == ""


def test_unknown_baseline_is_an_error(capsys):
    assert show_results.main([str(TREE), "--baseline", "nope"]) == 1
    assert re.match("show_results: error: baseline method 'nope' not found; methods: .*vanilla",
                    capsys.readouterr().err)


def test_bad_result_file_is_named(tmp_path):
    bad = tmp_path / "exp" / "stage2_vanilla" / "decode_t_full" / "score" / "result.json"
    bad.parent.mkdir(parents=True)
    bad.write_text('{"lang": "en"}')
    with pytest.raises(ValueError, match=str(bad)):
        collect_results([tmp_path / "exp"])
    with pytest.raises(FileNotFoundError, match="no_such_dir"):
        collect_results([tmp_path / "no_such_dir"])


def _score(exp: Path, stage: str, decode: str, ref: Path, hyp_text: str, lang: str):
    hyp = exp / stage / decode / "text"
    hyp.parent.mkdir(parents=True, exist_ok=True)
    hyp.write_text(hyp_text)
    score_cli.main(["--ref", str(ref), "--hyp", str(hyp), "--lang", lang,
                    "--out", str(hyp.parent / "score")])


def test_score_output_feeds_the_tables_and_dirs_get_own_baselines(tmp_path):
    """zipasr.bin.score writes what zipasr.results reads; a method found in two experiment
    directories gets a row per directory, compared with that directory's baseline."""
    ref = tmp_path / "ref"
    ref.write_text("u1 red green blue black\nu2 cat dog cow hen\n")  # 8 words
    hyps = {"exp_1h": {"vanilla": "u1 red green blue\nu2 cat dog cow\n",  # 2 del: 25 %
                       "zipper_soft": "u1 red green blue black\nu2 cat dog cow\n"},  # 12.5 %
            "exp_30h": {"vanilla": "u1 red green blue black\nu2 cat dog cow\n",  # 12.5 %
                        "zipper_soft": "u1 red green blue black\nu2 cat dog cow hen\n"}}  # 0 %
    for exp, methods in hyps.items():
        for method, text in methods.items():
            _score(tmp_path / exp, f"stage2_{method}", "decode_test_en_full", ref, text, "en")
    dirs = [str(tmp_path / "exp_1h"), str(tmp_path / "exp_30h")]
    (table,) = build_tables(collect_results(dirs))
    assert [r.label for r in table.rows] == [
        f"Vanilla-LoRA [{dirs[0]}]", f"Vanilla-LoRA [{dirs[1]}]",
        f"Zipper-LoRA-Soft [{dirs[0]}]", f"Zipper-LoRA-Soft [{dirs[1]}]"]
    assert [table.values[(r, table.columns[0])] for r in table.rows] == [25.0, 12.5, 12.5, 0.0]
    rel = relative_change(table, "vanilla")
    assert [rel.values[(r, rel.columns[0])] for r in rel.rows] == [50.0, 100.0]
    md = format_markdown(result_tables(dirs, "vanilla"))
    assert f"| Zipper-LoRA-Soft [{dirs[0]}] | +50.00 | +50.00 |" in md
    # A sibling method scored in a third directory without a baseline is compared with the only
    # baseline there is, once the baseline is in one directory.
    _score(tmp_path / "exp_sib", "stage2_lors", "decode_test_en_full", ref,
           "u1 red green blue black\nu2 cat dog cow\n", "en")
    (table,) = build_tables(collect_results([dirs[0], str(tmp_path / "exp_sib")]))
    rel = relative_change(table, "vanilla")
    assert [(r.label, rel.values[(r, rel.columns[0])]) for r in rel.rows] == [
        ("Zipper-LoRA-Soft", 50.0), ("lors", 50.0)]


def test_duplicate_cell_is_an_error(tmp_path):
    exp = tmp_path / "exp"
    shutil.copytree(TREE / "stage2_vanilla", exp / "stage2_vanilla")
    dup = exp / "stage2_vanilla" / "decode_test_en_full" / "score" / "result.json"
    data = json.loads(dup.read_text())
    data["per_lang"]["de"] = data["per_lang"]["en"]
    dup.write_text(json.dumps(data))
    tables = build_tables(collect_results([exp]))
    assert any(c.lang == "de" for c in tables[1].columns)  # a new language is a new column
    # The same experiment given twice: every cell is found twice.
    with pytest.raises(ValueError, match="two results for Vanilla-LoRA"):
        build_tables(collect_results([exp, exp]))
