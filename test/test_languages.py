import pytest

from zipasr.languages import LANGUAGES, UnknownLanguageError, check_languages, get_language, uses_cer

PAPER_LANGS = "en de es fr it pt ru vi th ar ja ko zh".split()


def test_paper_languages_present_with_prompts():
    for code in PAPER_LANGS:
        lang = get_language(code)
        assert lang.prompt and lang.whisper_token == f"<|{code}|>"
    assert {c for c in PAPER_LANGS if uses_cer(c)} == {"zh", "ja", "ko", "th"}


def test_unknown_language_lists_known_codes():
    with pytest.raises(UnknownLanguageError) as err:
        get_language("xx")
    assert "xx" in str(err.value) and "en" in str(err.value) and "zh" in str(err.value)


def test_check_languages_rejects_duplicates_and_unknown():
    assert check_languages(["en", "de"]) == ["en", "de"]
    with pytest.raises(ValueError):
        check_languages(["en", "en"])
    with pytest.raises(UnknownLanguageError):
        check_languages(["en", "qq"])


def test_table_is_consistent():
    for code, lang in LANGUAGES.items():
        assert code == lang.code and len(code) == 2
        assert lang.metric in ("cer", "wer")
