"""Corpus preparation: tiny corpora in the real layouts -> data dirs with the right ids, text, languages,
durations, and audio that reads back at 16 kHz."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from test_data_helpers import (make_commonvoice, make_librispeech, make_mls, make_msr86k, make_wenetspeech,
                               write_audio, speech)
from zipasr.bin import prepare as prepare_cli
from zipasr.data import DataDir, load_audio
from zipasr.data.corpora import CORPORA, CorpusError


def _check(dd: DataDir, expected_text: dict[str, str], lang: str):
    assert dd.utt_ids == sorted(expected_text)
    assert dd.text == expected_text
    assert set(dd.lang.values()) == {lang}
    dd.validate(check_audio=True)
    for utt in dd.utt_ids[:2]:
        audio = load_audio(dd, utt)
        assert audio.dtype == np.float32 and audio.ndim == 1
        assert abs(len(audio) / 16000 - dd.dur[utt]) < 0.05, utt


def test_librispeech(tmp_path):
    expected = make_librispeech(tmp_path / "LibriSpeech")
    out = tmp_path / "data" / "test_clean"
    assert prepare_cli.main(["librispeech", "--root", str(tmp_path / "LibriSpeech"), "--split", "test-clean",
                             "--out", str(out)]) == 0
    dd = DataDir.load(out)
    _check(dd, expected, "en")
    assert dd.utt2spk["1089-134686-0000"] == "1089"
    assert dd.spk2utt["121"] == ["121-121726-0000", "121-121726-0001"]
    flac = tmp_path / "LibriSpeech/test-clean/1089/134686/1089-134686-0001.flac"
    assert dd.dur["1089-134686-0001"] == pytest.approx(sf.info(flac).duration, abs=1e-3)


@pytest.mark.parametrize("opus", [False, True])
def test_mls(tmp_path, opus):
    name = "mls_german_opus" if opus else "mls_german"
    expected = make_mls(tmp_path, name, opus=opus)
    for split in ("train", "dev", "test"):
        dd = CORPORA["mls"](tmp_path / name, split)
        _check(dd, expected[split], "de")
    dd = CORPORA["mls"](tmp_path / name, "train")
    # Ids exactly as MLS writes them (speaker not zero-padded) and speaker = first field.
    assert "10087_10388_000012" in dd.text and dd.utt2spk["10087_10388_000012"] == "10087"
    # Durations from segments.txt.
    assert dd.dur["2422_3333_001654"] == pytest.approx(len(load_audio(dd, "2422_3333_001654")) / 16000, abs=0.02)
    assert CORPORA["mls"](tmp_path / name, "limited_10h").utt_ids == ["10087_10388_000012", "2422_3333_001654"]
    assert CORPORA["mls"](tmp_path / name, "limited_10min").utt_ids == ["10087_10388_000012"]
    with pytest.raises(CorpusError, match="pass --lang"):
        CORPORA["mls"](tmp_path / "elsewhere", "dev")


def test_mls_language_from_lang_option(tmp_path):
    make_mls(tmp_path, "my_copy")
    assert set(CORPORA["mls"](tmp_path / "my_copy", "dev", lang="de").lang.values()) == {"de"}


def test_commonvoice(tmp_path):
    expected = make_commonvoice(tmp_path / "cv-corpus-18.0-2024-06-14", "ko")
    root = tmp_path / "cv-corpus-18.0-2024-06-14" / "ko"
    for split in ("train", "dev", "test"):
        dd = CORPORA["commonvoice"](root, split)
        _check(dd, expected[split], "ko")
    dd = CORPORA["commonvoice"](root, "train")
    utt = sorted(expected["train"])[1]
    assert dd.text[utt].endswith('"quoted"')  # quotes are literal, not CSV quoting
    assert dd.utt2spk[utt] == f"{1:064x}"
    # 48 kHz mp3 resampled to 16 kHz, and duration from clip_durations.tsv
    mp3 = root / "clips" / f"{utt}.mp3"
    assert sf.info(mp3).samplerate == 48000
    assert dd.dur[utt] == pytest.approx(sf.info(mp3).duration, abs=0.002)


def test_commonvoice_old_release_and_locale(tmp_path):
    """Old releases: fewer columns, other order, no clip_durations.tsv; zh-CN locale -> zh."""
    expected = make_commonvoice(tmp_path, "zh-CN", durations_file=False)
    tsv = tmp_path / "zh-CN" / "test.tsv"
    rows = [line.split("\t") for line in tsv.read_text().splitlines()]
    keep = ["path", "sentence", "client_id", "up_votes", "down_votes", "age", "gender", "accent", "locale"]
    rows[0][rows[0].index("accents")] = "accent"
    cols = [rows[0].index(c) for c in keep]
    tsv.write_text("\n".join("\t".join(r[c] for c in cols) for r in rows) + "\n")
    dd = CORPORA["commonvoice"](tmp_path / "zh-CN", "test")
    _check(dd, expected["test"], "zh")


def test_wenetspeech(tmp_path):
    expected = make_wenetspeech(tmp_path)
    for subset in ("L", "S", "TEST_NET"):
        dd = CORPORA["wenetspeech"](tmp_path, subset.lower() if subset == "S" else subset)
        _check(dd, {sid: v[0] for sid, v in expected[subset].items()}, "zh")
        assert dd.segments is not None
        for sid, (_, begin, end) in expected[subset].items():
            assert dd.dur[sid] == pytest.approx(end - begin, abs=1e-3)
            assert dd.segments[sid].recording == sid.rsplit("_S", 1)[0]
        assert set(dd.wav_scp) == {s.recording for s in dd.segments.values()}
    # A segment read through `segments` is the matching slice of the long opus recording.
    dd = CORPORA["wenetspeech"](tmp_path, "M")
    sid = sorted(dd.text)[1]
    whole, sr = sf.read(dd.wav_scp[dd.segments[sid].recording], dtype="float32")
    seg = dd.segments[sid]
    ref = whole[int(round(seg.start * sr)):int(round(seg.end * sr))]
    from zipasr.data import resample
    np.testing.assert_allclose(load_audio(dd, sid), resample(ref, sr), atol=1e-5)
    with pytest.raises(CorpusError, match="unknown subset"):
        CORPORA["wenetspeech"](tmp_path, "XL")


def test_msr86k(tmp_path):
    expected = make_msr86k(tmp_path / "MSR-86K", "ru")
    for split in ("train", "dev"):
        _check(CORPORA["msr86k"](tmp_path / "MSR-86K", split, lang="ru"), expected[split], "ru")
    with pytest.raises(CorpusError, match="languages under"):
        CORPORA["msr86k"](tmp_path / "MSR-86K", "dev", lang="vi")


def test_msr86k_segments(tmp_path):
    """With start/end columns, rows are segments of long recordings."""
    d = tmp_path / "en" / "dev"
    write_audio(d / "long.wav", speech("x", seconds=4.0))
    (d / "transcripts.tsv").write_text("id\taudio\tstart\tend\ttext\nu1\tlong.wav\t0.5\t1.5\tone\n"
                                       "u2\tlong.wav\t2.0\t3.5\ttwo\n")
    dd = CORPORA["msr86k"](tmp_path, "dev", lang="en")
    assert dd.segments["u2"].recording == "long" and dd.dur["u2"] == pytest.approx(1.5)
    assert len(load_audio(dd, "u2")) == 24000


def test_bad_entries_error_or_skip(tmp_path):
    """A missing flac and an empty transcript: an error naming utterance and file, or skipped and reported."""
    make_librispeech(tmp_path / "LS")
    (tmp_path / "LS/test-clean/1089/134686/1089-134686-0002.flac").unlink()
    trans = tmp_path / "LS/test-clean/121/121726/121-121726.trans.txt"
    trans.write_text(trans.read_text().replace("121-121726-0001 TURNIPS AND CARROTS AND BRUISED POTATOES",
                                               "121-121726-0001 "))
    with pytest.raises(CorpusError, match=r"1089-134686-0002.*does not exist"):
        CORPORA["librispeech"](tmp_path / "LS", "test-clean")
    out = tmp_path / "data"
    assert prepare_cli.main(["librispeech", "--root", str(tmp_path / "LS"), "--split", "test-clean",
                             "--out", str(out)]) == 1
    assert not out.exists()  # a failed prepare leaves no data dir behind
    assert prepare_cli.main(["librispeech", "--root", str(tmp_path / "LS"), "--split", "test-clean",
                             "--out", str(out), "--skip_bad"]) == 0
    report = (out / "prepare_skipped").read_text()
    assert "1089-134686-0002" in report and "121-121726-0001 empty transcript" in report
    assert len(DataDir.load(out)) == 3


def test_corrupt_audio_named(tmp_path):
    expected = make_commonvoice(tmp_path, "pt")
    bad = sorted(expected["test"])[0]
    (tmp_path / "pt" / "clips" / f"{bad}.mp3").write_bytes(b"not an mp3 at all" * 10)
    (tmp_path / "pt" / "clip_durations.tsv").unlink()  # durations must come from the audio header now
    with pytest.raises(CorpusError, match=bad):
        CORPORA["commonvoice"](tmp_path / "pt", "test")
    report = {}
    dd = CORPORA["commonvoice"](tmp_path / "pt", "test", skip_bad=True, report=report)
    assert list(report) == [bad] and bad not in dd.text
