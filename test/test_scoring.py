"""Scoring: hand-checked normalisation and error counts, report files, the score CLI."""
import json

import pytest

from zipasr.bin import score as score_cli
from zipasr.languages import UnknownLanguageError
from zipasr.scoring import (ErrorCounts, format_alignment, normalize, parse_summary_line, score_texts,
                            score_utterance, summary_line, tokenize)


def counts(ref, hyp, lang, **kw):
    c = score_utterance("u", ref, hyp, lang, **kw).counts
    return c.ref_count, c.subs, c.dels, c.ins


def test_english_numbers_and_contractions():
    assert normalize("I won't pay twenty dollars.", "en") == "i will not pay $20"
    assert counts("I won't pay twenty dollars.", "i will not pay $20", "en") == (5, 0, 0, 0)
    assert counts("It's twenty-one, Mr. Smith!", "it is 21 mister smith", "en") == (5, 0, 0, 0)
    # "can't" -> "can not": one reference word became two, a hypothesis "cannot" is one substitution
    # and one deletion against them.
    assert counts("I can't go", "i cannot go", "en") == (4, 1, 1, 0)


def test_english_normaliser_only_for_english():
    # The English normaliser would turn Vietnamese "tên" into "10".
    assert normalize("Tên tôi", "vi") == "tên tôi"
    assert counts("tên", "10", "vi") == (1, 1, 0, 0)


def test_french_accents_are_kept():
    assert normalize("Ça coûte très cher, n'est-ce pas ?", "fr") == "ça coûte très cher n est ce pas"
    assert counts("Ça coûte très cher.", "ca coute tres cher", "fr") == (4, 3, 0, 0)
    assert counts("Ça coûte très cher.", "ÇA COÛTE très cher !", "fr") == (4, 0, 0, 0)


@pytest.mark.parametrize("ref,hyp,expected", [
    ("我喜欢北京。", "我 喜欢 北京", (5, 0, 0, 0)),  # spaces in the hypothesis do not count
    ("我 喜欢 北京", "我喜欢北京", (5, 0, 0, 0)),  # nor in the reference
    ("我喜欢北京", "我喜欢南京", (5, 1, 0, 0)),
    ("我喜欢北京", "我喜欢北京市", (5, 0, 0, 1)),
])
def test_chinese_cer_ignores_spaces(ref, hyp, expected):
    assert counts(ref, hyp, "zh") == expected


def test_japanese_cer():
    assert tokenize("こんにちは、世界！", "ja") == list("こんにちは世界")
    assert counts("こんにちは、世界！", "こんにちわ 世界", "ja") == (7, 1, 0, 0)


def test_thai_cer_with_and_without_spaces():
    # สวัสดีครับ: 10 code points, 3 of them combining marks (ั ี ั), which Whisper's basic
    # normaliser drops; --preserve_marks keeps them.
    assert counts("สวัสดีครับ", "สวัสดี ครับ", "th") == (7, 0, 0, 0)
    assert counts("สวัสดีครับ", "สวัสดี ครับ", "th", preserve_marks=True) == (10, 0, 0, 0)
    assert counts("สวัสดีครับ", "สวัสดีค่ะ", "th", preserve_marks=True) == (10, 2, 1, 0)


def test_korean_cer():
    assert counts("안녕하세요 세계", "안녕하세요세계", "ko") == (7, 0, 0, 0)
    assert counts("안녕하세요 세계", "안녕하세오 세계", "ko") == (7, 1, 0, 0)


def test_empty_hypothesis_is_all_deletions():
    assert counts("the cat sat", "", "en") == (3, 0, 3, 0)


def test_empty_reference_adds_insertions_only():
    # "(laughter)" normalises to nothing: the hypothesis words of u2 are insertions, and the
    # reference count stays that of u1 (jiwer alone would give u2 a rate of 1.0).
    report = score_texts({"u1": "hello world", "u2": "(laughter)"},
                         {"u1": "hello world", "u2": "yes please"}, "en")
    assert report.empty_refs == ["u2"]
    assert (report.total.ref_count, report.total.ins, report.total.errors) == (2, 2, 2)
    assert report.summary_lines() == ["%WER 100.00 [ 2 / 2, 2 ins, 0 del, 0 sub ]"]
    with pytest.raises(ValueError, match="every reference utterance is empty"):
        score_texts({"u1": "[noise]"}, {"u1": "a"}, "en")


def test_missing_utterance_counts_as_deletions_and_is_reported():
    report = score_texts({"u1": "a b", "u2": "c d e"}, {"u1": "a b"}, "en")
    assert report.missing == ["u2"]
    assert (report.total.ref_count, report.total.dels, report.total.errors) == (5, 3, 3)
    assert report.utts[1].missing


def test_unknown_hypothesis_and_unknown_language_are_errors():
    with pytest.raises(ValueError, match="u9"):
        score_texts({"u1": "a"}, {"u1": "a", "u9": "b"}, "en")
    with pytest.raises(UnknownLanguageError, match="known codes: .*en"):
        score_texts({"u1": "a"}, {"u1": "a"}, "xx")
    with pytest.raises(ValueError, match="u2"):
        score_texts({"u1": "a", "u2": "b"}, {}, {"u1": "en"})


def test_summary_line_format_round_trip():
    line = summary_line("wer", ErrorCounts(ref_count=454, ins=7, dels=20, subs=29))
    assert line == "%WER 12.33 [ 56 / 454, 7 ins, 20 del, 29 sub ]"
    parsed = parse_summary_line(line)
    assert parsed == {"metric": "wer", "rate": 12.33, "errors": 56, "ref_count": 454, "ins": 7,
                      "dels": 20, "subs": 29, "lang": None}
    assert parse_summary_line("%CER 5.00 [ 1 / 20, 0 ins, 0 del, 1 sub ] zh")["lang"] == "zh"
    with pytest.raises(ValueError):
        parse_summary_line("WER 5.00")


def test_alignment_block():
    score = score_utterance("utt1", "The cat sat on the mat.", "so the bat sat the mat today", "en")
    assert format_alignment(score).splitlines() == [
        "id: (utt1) lang: en",
        "Scores: (#C #S #D #I) 4 1 1 2",
        "REF:  ** the CAT sat ON the mat *****",
        "HYP:  SO the BAT sat ** the mat TODAY",
        "Eval: I      S       D          I",
    ]
    # CER languages align characters; a wide character's gap is two columns.
    score = score_utterance("utt2", "我喜欢北京", "我们喜欢京", "zh")
    assert format_alignment(score).splitlines()[1:] == [
        "Scores: (#C #S #D #I) 4 0 1 1",
        "REF:  我 ** 喜 欢 北 京",
        "HYP:  我 们 喜 欢 ** 京",
        "Eval:    I        D",
    ]


def test_duplicate_utterance_id(tmp_path, capsys):
    (tmp_path / "text").write_text("u1 a\n")
    (tmp_path / "hyp").write_text("u1 a\nu1 b\n")
    assert score_cli.main(["--ref", str(tmp_path / "text"), "--hyp", str(tmp_path / "hyp"), "--lang", "en"]) == 1
    assert "hyp: u1: duplicate id (line 2)" in capsys.readouterr().err


def test_cli_single_language(tmp_path, capsys):
    (tmp_path / "ref").write_text("u1 Ça coûte très cher.\nu2 Bonjour le monde\nu3 merci\n")
    (tmp_path / "hyp").write_text("u1 ca coute tres cher\nu2 bonjour le monde\n")
    out = tmp_path / "score"
    assert score_cli.main(["--ref", str(tmp_path / "ref"), "--hyp", str(tmp_path / "hyp"),
                           "--lang", "fr", "--out", str(out)]) == 0
    assert capsys.readouterr().out == "%WER 50.00 [ 4 / 8, 0 ins, 1 del, 3 sub ]\n"
    result = json.loads((out / "result.json").read_text())
    assert {k: result[k] for k in ("lang", "metric", "errors", "ref_count", "ins", "del", "sub",
                                   "n_utts", "n_missing")} == {
        "lang": "fr", "metric": "wer", "errors": 4, "ref_count": 8, "ins": 0, "del": 1, "sub": 3,
        "n_utts": 3, "n_missing": 1}
    assert result["per_lang"]["fr"]["error_rate"] == 50.0
    assert (out / "missing_utts").read_text() == "u3\n"
    text = (out / "result.txt").read_text()
    assert "id: (u3) lang: fr [missing from hypotheses]" in text and "REF:  ÇA COÛTE TRÈS cher" in text


def test_cli_mixed_languages_from_utt2lang(tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    (data / "text").write_text("a1 hello world\na2 good morning\nb1 我喜欢北京\n")
    (data / "utt2lang").write_text("a1 en\na2 en\nb1 zh\n")
    (tmp_path / "hyp").write_text("a1 hello word\na2 good morning\nb1 我喜欢南京\n")
    assert score_cli.main(["--ref", str(data / "text"), "--hyp", str(tmp_path / "hyp"),
                           "--out", str(tmp_path / "score")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == ["%WER 25.00 [ 1 / 4, 0 ins, 0 del, 1 sub ] en",
                     "%CER 20.00 [ 1 / 5, 0 ins, 0 del, 1 sub ] zh",
                     "%MER 22.22 [ 2 / 9, 0 ins, 0 del, 2 sub ]"]
    result = json.loads((tmp_path / "score" / "result.json").read_text())
    assert result["lang"] == "mixed" and result["metric"] == "mer"
    assert sorted(result["per_lang"]) == ["en", "zh"] and result["per_lang"]["zh"]["metric"] == "cer"


def test_cli_errors(tmp_path, capsys):
    (tmp_path / "ref").write_text("u1 a\n")
    (tmp_path / "hyp").write_text("u1 a\nzz9 b\n")
    assert score_cli.main(["--ref", str(tmp_path / "ref"), "--hyp", str(tmp_path / "hyp"), "--lang", "en"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("score: error: ") and "zz9" in err and "Traceback" not in err
    with pytest.raises(SystemExit, match="2"):
        score_cli.main(["--ref", str(tmp_path / "ref"), "--hyp", str(tmp_path / "ref")])
    assert "utt2lang" in capsys.readouterr().err
    assert score_cli.main(["--ref", str(tmp_path / "nope"), "--hyp", str(tmp_path / "hyp"), "--lang", "en"]) == 1
    assert "nope" in capsys.readouterr().err
