"""Tiny corpora in the real released layouts, for the data tests (this module holds no tests itself).

Speech comes from espeak-ng when it is installed, else from a generated voiced signal; either way the audio
is written in the corpus' real format (flac 16 kHz, mp3 48 kHz, ogg/opus 48 kHz).
"""
from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

from zipasr.data.audio import resample

HAVE_ESPEAK = shutil.which("espeak-ng") is not None
FORMATS = {".flac": ("FLAC", "PCM_16"), ".wav": ("WAV", "PCM_16"), ".mp3": ("MP3", "MPEG_LAYER_III"),
           ".opus": ("OGG", "OPUS")}


def speech(text: str, voice: str = "en", seconds: float | None = None, seed: int = 0) -> np.ndarray:
    """float32 (n,) at 16 kHz: espeak-ng speaking `text` (or a harmonic tone with a syllable envelope)."""
    if HAVE_ESPEAK and seconds is None:
        with tempfile.NamedTemporaryFile(suffix=".wav") as tmp:
            subprocess.run(["espeak-ng", "-v", voice, "-w", tmp.name, text], check=True, capture_output=True)
            audio, sr = sf.read(tmp.name, dtype="float32")
        return resample(audio, sr, 16000)
    n = int(16000 * (seconds or 0.6 + 0.05 * len(text)))
    t = np.arange(n) / 16000
    rng = np.random.default_rng(seed)
    f0 = 100 + 60 * rng.random()
    signal = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 6))
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 4 * t)
    return (0.2 * signal * envelope + 0.01 * rng.standard_normal(n)).astype(np.float32)


def write_audio(path: Path, audio: np.ndarray, sr: int = 16000) -> float:
    """Write 16 kHz `audio` at `sr` in the format of `path`'s extension; returns the duration in seconds."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt, sub = FORMATS[path.suffix]
    data = resample(audio, 16000, sr) if sr != 16000 else audio
    sf.write(path, data, sr, format=fmt, subtype=sub)
    return len(data) / sr


SENTENCES = {
    "en": ["HE HOPED THERE WOULD BE STEW FOR DINNER", "TURNIPS AND CARROTS AND BRUISED POTATOES",
           "STUFF IT INTO YOU HIS BELLY COUNSELLED HIM"],
    "de": ["Guten Morgen, wie geht es dir?", "Der Hund schläft im Garten.", "Das Wetter ist heute schön."],
    "ko": ["안녕하세요 반갑습니다", "오늘 날씨가 좋네요", "감사합니다"],
    "pt": ["Bom dia a todos", "O gato dorme no tapete", "Obrigado pela ajuda"],
    "zh": ["今天天气很好", "你好世界", "语音识别模型"],
    "ru": ["Доброе утро", "Кошка спит на ковре", "Спасибо за помощь"],
}


def make_librispeech(root: Path, split: str = "test-clean") -> dict[str, str]:
    """LibriSpeech/<split>/<spk>/<chapter>/ with flac + trans.txt; returns {utt: text}."""
    expected = {}
    for spk, chapter in [("1089", "134686"), ("121", "121726")]:
        d = root / split / spk / chapter
        lines = []
        for i, text in enumerate(SENTENCES["en"][:2 if spk == "121" else 3]):
            utt = f"{spk}-{chapter}-{i:04d}"
            write_audio(d / f"{utt}.flac", speech(text.lower(), "en"))
            lines.append(f"{utt} {text}")
            expected[utt] = text
        (d / f"{spk}-{chapter}.trans.txt").write_text("\n".join(lines) + "\n")
    return expected


def make_mls(root: Path, lang_dir: str = "mls_german", opus: bool = False) -> dict[str, dict[str, str]]:
    """mls_<language>[_opus]/{train,dev,test}/ with transcripts.txt, segments.txt, audio/<spk>/<book>/, and
    train/limited_supervision handles; returns {split: {utt: text}}."""
    base = root / lang_dir
    out: dict[str, dict[str, str]] = {}
    ext = ".opus" if opus else ".flac"
    plan = {"train": [("2422", "3333", 1654), ("2422", "3333", 1655), ("10087", "10388", 12)],
            "dev": [("1844", "931", 7)], "test": [("5", "60", 3), ("5", "60", 4)]}
    for split, ids in plan.items():
        d = base / split
        trans, segs = [], []
        out[split] = {}
        for k, (spk, book, seg) in enumerate(ids):
            utt = f"{spk}_{book}_{seg:06d}"
            text = SENTENCES["de"][k % 3]
            dur = write_audio(d / "audio" / spk / book / f"{utt}{ext}", speech(text, "de"), 48000 if opus else 16000)
            trans.append(f"{utt}\t{text}")
            segs.append(f"{utt}\thttp://www.archive.org/download/x/y_64kb.mp3\t{10.0:.2f}\t{10.0 + dur:.2f}")
            out[split][utt] = text
        (d / "transcripts.txt").write_text("\n".join(trans) + "\n")
        (d / "segments.txt").write_text("\n".join(segs) + "\n")
    ls = base / "train" / "limited_supervision"
    (ls / "9hr").mkdir(parents=True)
    (ls / "9hr" / "handles.txt").write_text("2422_3333_001654\n")
    (ls / "1hr" / "0").mkdir(parents=True)
    (ls / "1hr" / "0" / "handles.txt").write_text("10087_10388_000012\n")
    return out


CV_HEADER = ["client_id", "path", "sentence_id", "sentence", "sentence_domain", "up_votes", "down_votes", "age",
             "gender", "accents", "variant", "locale", "segment"]


def make_commonvoice(root: Path, locale: str = "ko", durations_file: bool = True) -> dict[str, dict[str, str]]:
    """cv-corpus-18.0/<locale>/ with {train,dev,test}.tsv (v18 header), clips/*.mp3 at 48 kHz and
    clip_durations.tsv; returns {split: {utt: text}}."""
    base = root / locale
    lang = locale.split("-")[0]
    voice = {"ko": "ko", "pt": "pt", "zh": "cmn-latn-pinyin"}.get(lang, "en")
    out: dict[str, dict[str, str]] = {}
    durs = []
    n = 35844068
    for split, count in [("train", 3), ("dev", 1), ("test", 2)]:
        rows = ["\t".join(CV_HEADER)]
        out[split] = {}
        for k in range(count):
            n += 1
            clip = f"common_voice_{locale}_{n}.mp3"
            text = SENTENCES.get(lang, SENTENCES["en"])[k % 3] + (' "quoted"' if k == 1 else "")
            spoken = "ni hao shi jie" if lang == "zh" else text
            dur = write_audio(base / "clips" / clip, speech(spoken, voice), 48000)
            durs.append(f"{clip}\t{int(dur * 1000)}")
            rows.append("\t".join([f"{k:064x}", clip, f"{k:064x}", text, "", "2", "0", "twenties", "", "", "",
                                   locale, ""]))
            out[split][clip[:-4]] = text
        (base / f"{split}.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    if durations_file:
        (base / "clip_durations.tsv").write_text("clip\tduration[ms]\n" + "\n".join(durs) + "\n")
    return out


def make_wenetspeech(root: Path) -> dict[str, dict[str, tuple[str, float, float]]]:
    """WenetSpeech.json + long opus recordings; returns {subset: {sid: (text, begin, end)}}."""
    audios, out = [], {}
    for r, (aid, subdir) in enumerate([("Y0000000000_--5llN02F84", "train/youtube/B00000"),
                                       ("X0000000001_TEST_NET", "test_net/podcast/B00000")]):
        pieces, segments, t = [], [], 0.0
        for k, text in enumerate(SENTENCES["zh"]):
            gap = np.zeros(8000, dtype=np.float32)
            audio = speech("ni hao", "cmn-latn-pinyin") if HAVE_ESPEAK else speech(text, seconds=1.0, seed=k)
            pieces += [gap, audio]
            begin = t + 0.5
            end = begin + len(audio) / 16000
            t = end
            subsets = ["{L}", "{M}"] if r == 0 else ["{TEST_NET}"]
            if r == 0 and k == 0:
                subsets.append("{S}")
            segments.append({"sid": f"{aid}_S{k:05d}", "confidence": 1.0, "begin_time": round(begin, 2),
                             "end_time": round(end, 2), "text": text, "subsets": subsets})
        path = f"audio/{subdir}/{aid}.opus"
        dur = write_audio(root / path, np.concatenate(pieces + [np.zeros(8000, np.float32)]), 48000)
        audios.append({"aid": aid, "title": "t", "url": "https://example.invalid", "path": path,
                       "duration": round(dur, 2), "segments": segments})
        for s in segments:
            for sub in s["subsets"]:
                out.setdefault(sub.strip("{}"), {})[s["sid"]] = (s["text"], s["begin_time"], s["end_time"])
    (root / "WenetSpeech.json").write_text(json.dumps({"dataset": "WenetSpeech", "version": "v1.0",
                                                       "audios": audios}, ensure_ascii=False), encoding="utf-8")
    return out


def make_msr86k(root: Path, lang: str = "ru") -> dict[str, dict[str, str]]:
    """The layout zipasr assumes for MSR-86K: <root>/<lang>/<split>/transcripts.tsv + wav files."""
    out = {}
    for split, count in [("train", 3), ("dev", 2)]:
        d = root / lang / split
        rows = ["id\taudio\ttext"]
        out[split] = {}
        for k in range(count):
            utt = f"{lang}_{split}_{k:05d}"
            write_audio(d / "wav" / f"{utt}.wav", speech(SENTENCES[lang][k % 3], lang))
            rows.append(f"{utt}\twav/{utt}.wav\t{SENTENCES[lang][k % 3]}")
            out[split][utt] = SENTENCES[lang][k % 3]
        (d / "transcripts.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return out


def make_data_dir(path: Path, n: int = 6, lang: str = "en", seconds: float = 1.0, prefix: str = "spk1-utt"):
    """A plain data dir of `n` wav utterances (generated signals of varying length); returns the DataDir."""
    from zipasr.data.datadir import DataDir

    dd = DataDir()
    for i in range(n):
        utt = f"{prefix}{i:03d}"
        wav = path.parent / f"{path.name}_wav" / f"{utt}.wav"
        dur = write_audio(wav, speech("x", seconds=seconds + 0.1 * i, seed=i))
        dd.wav_scp[utt] = str(wav)
        dd.text[utt] = f"sentence number {i}"
        dd.utt2spk[utt] = prefix.split("-")[0]
        dd.utt2lang[utt] = lang
        dd.utt2dur[utt] = dur
    dd.write(path)
    return DataDir.load(path)
