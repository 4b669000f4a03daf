"""The mini recipe's RESULTS.md helpers (egs/mini_multilingual/asr1/local/make_results.py): the CER per
language and the spread of the Stage-2 methods over seeds (run.sh --seeds)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "egs/mini_multilingual/asr1/local/make_results.py"


@pytest.fixture(scope="module")
def make_results():
    spec = importlib.util.spec_from_file_location("make_results", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


REFS = {"de1": ("de", "abcd efgh"), "de2": ("de", "ijkl mnop"), "ko1": ("ko", "가나 다라"), "ko2": ("ko", "마바 사아")}


def write_decode(path: Path, hyps: dict[str, str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{utt} {text}\n" for utt, text in hyps.items()), encoding="utf-8")


@pytest.fixture
def recipe(tmp_path, monkeypatch):
    data = tmp_path / "data/test_all"
    data.mkdir(parents=True)
    (data / "text").write_text("".join(f"{u} {t}\n" for u, (_, t) in REFS.items()), encoding="utf-8")
    (data / "utt2lang").write_text("".join(f"{u} {lang}\n" for u, (lang, _) in REFS.items()))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_cer_per_lang_removes_spaces_for_korean_only(make_results, recipe):
    write_decode(recipe / "hyp", {"de1": "abcd efgX", "de2": "ijkl mnop", "ko1": "가나다라", "ko2": "마바 사X"})
    cers = make_results.cer_per_lang(Path("data/test_all"), recipe / "hyp")
    assert cers["de"] == pytest.approx(100 * 1 / 18)  # one substitution in 2 x 9 characters (spaces count)
    assert cers["ko"] == pytest.approx(100 * 1 / 8)  # spaces removed: 2 x 4 characters, one substitution


def test_seed_spread_counts_the_seeds_where_an_ordering_holds(make_results, recipe):
    exp = recipe / "exp"
    perfect = {u: t for u, (_, t) in REFS.items()}
    one_error = dict(perfect, ko1="가나 다X")  # ko CER 12.5 %
    two_errors = dict(perfect, ko1="가나 XX")  # ko CER 25 %
    # seed 0 (exp/full) and seeds 1, 2: zipper_soft beats vanilla with seeds 0 and 1, ties with seed 2
    runs = {"full": (one_error, two_errors), "full_seed1": (perfect, one_error), "full_seed2": (one_error, one_error)}
    for d, (zipper, vanilla) in runs.items():
        write_decode(exp / d / "stage2_zipper_soft/decode_test_all_full/text", zipper)
        write_decode(exp / d / "stage2_vanilla/decode_test_all_full/text", vanilla)
    write_decode(exp / "full/stage2_independent/decode_test_all_full/text", perfect)  # seed 0 only: left out
    lines = make_results.seed_spread(exp / "full", "full", [1, 2], ["de"], ["ko"])
    text = "\n".join(lines)
    rows = {line.split("|")[1].strip(): line for line in lines if line.startswith("| ")}
    assert set(rows) == {"method", "vanilla", "zipper_soft"}
    assert [c.strip() for c in rows["zipper_soft"].split("|")[2:5]] == ["12.5", "0.0", "12.5"]
    assert "8.3 ± 7.2" in rows["zipper_soft"] and "0.0 ± 0.0" in rows["zipper_soft"]  # low; high (de) perfect
    assert "zipper_soft lower than vanilla in 2 of 3 seeds (difference -8.3 ± 7.2 points)" in text
    assert "independent" not in text


def test_seed_spread_without_decodes_says_so(make_results, recipe):
    lines = make_results.seed_spread(recipe / "exp/full", "full", [1], ["de"], ["ko"])
    assert len(lines) == 1 and "no method was decoded with every seed" in lines[0]


def test_wall_time_marks_stages_run_again(make_results, tmp_path):
    times = tmp_path / "stage_times.tsv"
    times.write_text("1\t60\tcorpus\n6\t600\tStage 1\n8\t300\tdecoding\n6\t120\tStage 1\n")
    text = "\n".join(make_results.wall_time(times))
    assert "| 6 | Stage 1 | 10.0 |" in text and "| 6 | Stage 1 (run again) | 2.0 |" in text
    assert "Total: 18.0 min" in text and "Stage(s) 6 ran more than once" in text
    times.write_text("1\t60\tcorpus\n")
    assert "ran more than once" not in "\n".join(make_results.wall_time(times))
    assert "Total: 0.0 min" in "\n".join(make_results.wall_time(tmp_path / "missing.tsv"))


def test_homophone_floor_writes_each_group_as_its_most_frequent_spelling(tmp_path, capsys, monkeypatch):
    """espeak-ng says French "vers", "vert" and "verre" alike: the oracle writes all three as the one the
    training transcripts hold most often; "chat" stays. 1 of the 4 words of utterance 1 changes."""
    spec = importlib.util.spec_from_file_location("homophone_floor", SCRIPT.parent / "homophone_floor.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for name, text in (("dev", "f1 chat vers chat chat\n"), ("train", "t1 vert vert vers chat\n")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "text").write_text(text, encoding="utf-8")
        (tmp_path / name / "utt2lang").write_text(text.split()[0] + " fr\n")
    (tmp_path / "lexicon").mkdir()
    (tmp_path / "lexicon" / "fr.txt").write_text("chat\nvers\nvert\nverre\n", encoding="utf-8")
    assert module.main(["--data_dir", str(tmp_path / "dev"), "--train_dir", str(tmp_path / "train"),
                        "--lexicon_dir", str(tmp_path / "lexicon")]) == 0
    # "chat vers chat chat" -> "chat vert chat chat": 1 substitution in 19 characters (spaces kept)
    assert "| fr | 3 / 4 | 5.3 |" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        module.main(["--data_dir", str(tmp_path / "missing")])
