"""The one language table of zipasr.

Every language the toolkit knows is one row here: its ISO 639-1 code, the recognition prompt
("Please transcribe the audio content into text." written in that language, paper Fig. 2), the
error metric used to score it, the Whisper language token, and the espeak-ng voice the mini
recipe uses to synthesise it. To add a language, add one row.

CER is used for languages written without spaces between words (zh, ja, th) and for Korean, as
in the paper (Sec. V-B); WER for the rest.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable


@dataclass(frozen=True)
class Language:
    code: str  # ISO 639-1
    name: str
    prompt: str  # "Please transcribe the audio content into text." in this language
    metric: str  # "cer" or "wer"
    whisper_token: str  # e.g. "<|en|>"; ids come from a checkpoint's generation_config.lang_to_id
    espeak_voice: str | None = None  # espeak-ng voice for synthesis (None: espeak-ng speaks it badly)


def _lang(code, name, prompt, metric="wer", espeak_voice=None):
    return Language(code, name, prompt, metric, f"<|{code}|>", espeak_voice)


LANGUAGES: dict[str, Language] = {
    lang.code: lang
    for lang in [
        # The paper's 12 target languages and its source languages (en, fr, th, zh).
        _lang("en", "English", "Please transcribe the audio content into text.", espeak_voice="en"),
        _lang("de", "German", "Bitte transkribieren Sie den Audioinhalt in Text.", espeak_voice="de"),
        _lang("es", "Spanish", "Por favor, transcribe el contenido de audio a texto.", espeak_voice="es"),
        _lang("fr", "French", "Veuillez transcrire le contenu audio en texte.", espeak_voice="fr"),
        _lang("it", "Italian", "Per favore, trascrivi il contenuto audio in testo.", espeak_voice="it"),
        _lang("pt", "Portuguese", "Por favor, transcreva o conteúdo do áudio em texto.", espeak_voice="pt"),
        _lang("ru", "Russian", "Пожалуйста, расшифруйте аудиозапись в текст.", espeak_voice="ru"),
        _lang("vi", "Vietnamese", "Vui lòng chép lại nội dung âm thanh thành văn bản.", espeak_voice="vi"),
        _lang("th", "Thai", "กรุณาถอดเสียงเนื้อหาเสียงเป็นข้อความ", metric="cer"),
        _lang("ar", "Arabic", "يرجى تحويل المحتوى الصوتي إلى نص."),
        _lang("ja", "Japanese", "音声の内容をテキストに書き起こしてください。", metric="cer", espeak_voice="ja"),
        _lang("ko", "Korean", "오디오 내용을 텍스트로 전사해 주세요.", metric="cer", espeak_voice="ko"),
        _lang("zh", "Chinese", "请将音频内容转写为文字。", metric="cer", espeak_voice="cmn-latn-pinyin"),
        # Further languages espeak-ng speaks well (used by the mini recipe) and common extensions.
        _lang("nl", "Dutch", "Transcribeer de audio-inhoud naar tekst.", espeak_voice="nl"),
        _lang("pl", "Polish", "Proszę przepisać zawartość audio na tekst.", espeak_voice="pl"),
        _lang("tr", "Turkish", "Lütfen ses içeriğini metne dönüştürün.", espeak_voice="tr"),
        _lang("id", "Indonesian", "Silakan transkripsikan konten audio menjadi teks.", espeak_voice="id"),
        _lang("sw", "Swahili", "Tafadhali nakili maudhui ya sauti kuwa maandishi.", espeak_voice="sw"),
        _lang("uk", "Ukrainian", "Будь ласка, транскрибуйте аудіовміст у текст.", espeak_voice="uk"),
        _lang("el", "Greek", "Παρακαλώ μεταγράψτε το περιεχόμενο του ήχου σε κείμενο.", espeak_voice="el"),
        _lang("fa", "Persian", "لطفاً محتوای صوتی را به متن تبدیل کنید.", espeak_voice="fa"),
        _lang("hi", "Hindi", "कृपया ऑडियो सामग्री को पाठ में लिखें।", espeak_voice="hi"),
        _lang("cs", "Czech", "Přepište prosím zvukový obsah do textu.", espeak_voice="cs"),
        _lang("sv", "Swedish", "Transkribera ljudinnehållet till text.", espeak_voice="sv"),
    ]
}


# Languages written without spaces between words (their "words" cannot be split at white space).
NO_SPACE = frozenset({"ja", "zh", "th"})


class UnknownLanguageError(ValueError):
    """A language code that is not in the table; the message lists the known codes."""


def get_language(code: str) -> Language:
    """The table row of `code` (ISO 639-1), or an error that lists every known code."""
    try:
        return LANGUAGES[code]
    except KeyError:
        raise UnknownLanguageError(
            f"unknown language code {code!r}; known codes: {' '.join(sorted(LANGUAGES))}. "
            "Add a row to zipasr/languages.py to support a new language."
        ) from None


def check_languages(codes: Iterable[str]) -> list[str]:
    """Validate a list of language codes; returns it as a list (order kept)."""
    codes = list(codes)
    for code in codes:
        get_language(code)
    if len(set(codes)) != len(codes):
        raise ValueError(f"duplicate language codes in {codes}")
    return codes


def uses_cer(code: str) -> bool:
    return get_language(code).metric == "cer"
