"""Data dirs: reading/writing Kaldi files, validation (each bad input named by file and utterance), fix,
combine, atomic writes, audio reading (formats, pipes, segments, resampling) and the shell wrappers."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from test_data_helpers import make_data_dir, speech, write_audio
from zipasr.bin import combine_data, fix_data_dir, validate_data_dir
from zipasr.data import (AudioError, DataDir, DataDirError, Segment, combine, fix, load_audio, read_kaldi_map,
                         write_kaldi_map)

REPO = Path(__file__).resolve().parents[1]


def test_kaldi_map_roundtrip_sorted(tmp_path):
    write_kaldi_map(tmp_path / "text", {"b": "zwei wörter", "a": "eins", "c": ""})
    assert (tmp_path / "text").read_text(encoding="utf-8") == "a eins\nb zwei wörter\nc\n"
    assert read_kaldi_map(tmp_path / "text") == {"a": "eins", "b": "zwei wörter", "c": ""}
    assert not list(tmp_path.glob(".*"))  # no temp file left behind


def test_load_write_roundtrip(tmp_path):
    dd = make_data_dir(tmp_path / "d", n=3)
    assert dd.utt_ids == ["spk1-utt000", "spk1-utt001", "spk1-utt002"]
    assert dd.text["spk1-utt001"] == "sentence number 1" and dd.lang["spk1-utt001"] == "en"
    assert dd.dur["spk1-utt002"] == pytest.approx(1.2, abs=1e-3)
    assert (tmp_path / "d" / "spk2utt").read_text() == "spk1 spk1-utt000 spk1-utt001 spk1-utt002\n"
    dd.validate(check_audio=True)
    again = DataDir.load(tmp_path / "d")
    assert again.text == dd.text and again.wav_scp == dd.wav_scp


@pytest.mark.parametrize("case,match", [
    ("empty_text", r"text: spk1-utt001: empty transcript"),
    ("no_lang", r"utt2lang: spk1-utt002: missing"),
    ("unknown_lang", r"utt2lang: spk1-utt000: unknown language 'xx'"),
    ("duplicate", r"text: spk1-utt001: duplicate id \(line 3\)"),
    ("non_utf8", r"text: spk1-utt002: line 3 is not valid UTF-8"),
    ("unsorted", r"utt2spk: not sorted"),
    ("bad_dur", r"utt2dur: spk1-utt000: duration must be > 0"),
    ("missing_file", r"audio file .*spk1-utt001.wav does not exist"),
    ("corrupt_audio", r"spk1-utt000.*cannot read audio"),
])
def test_validate_names_file_and_utterance(tmp_path, case, match):
    d = tmp_path / "d"
    dd = make_data_dir(d, n=3)
    text = (d / "text").read_bytes()
    if case == "empty_text":
        (d / "text").write_bytes(text.replace(b"spk1-utt001 sentence number 1", b"spk1-utt001 "))
    elif case == "no_lang":
        (d / "utt2lang").write_text("spk1-utt000 en\nspk1-utt001 en\n")
    elif case == "unknown_lang":
        (d / "utt2lang").write_text((d / "utt2lang").read_text().replace("spk1-utt000 en", "spk1-utt000 xx"))
    elif case == "duplicate":
        (d / "text").write_bytes(text.replace(b"spk1-utt002", b"spk1-utt001"))
    elif case == "non_utf8":
        (d / "text").write_bytes(text.replace(b"sentence number 2", b"sentence \xff\xfe 2"))
    elif case == "unsorted":
        lines = (d / "utt2spk").read_text().splitlines()
        (d / "utt2spk").write_text("\n".join(reversed(lines)) + "\n")
    elif case == "bad_dur":
        (d / "utt2dur").write_text((d / "utt2dur").read_text().replace("spk1-utt000 1.0", "spk1-utt000 0.0"))
    elif case == "missing_file":
        Path(dd.wav_scp["spk1-utt001"]).unlink()
    elif case == "corrupt_audio":
        Path(dd.wav_scp["spk1-utt000"]).write_bytes(b"RIFF....garbage")
    check_audio = case in ("missing_file", "corrupt_audio")
    if case in ("duplicate", "non_utf8"):  # a strict load already fails, naming file, utterance and line
        with pytest.raises(DataDirError, match=match):
            DataDir.load(d)
    with pytest.raises(DataDirError, match=match):
        DataDir.load(d, strict=False).validate(check_audio=check_audio)
    assert validate_data_dir.main([str(d)] + (["--check_audio"] if check_audio else [])) == 1
    # fix_data_dir keeps the consistent rest and reports what it dropped and why
    assert fix_data_dir.main([str(d)] + (["--check_audio"] if check_audio else [])) == 0
    fixed = DataDir.load(d)
    fixed.validate(check_audio=True)
    # the duplicated id is ambiguous (dropped) and the renamed utterance is missing from text
    dropped = {"unsorted": 0, "duplicate": 2}.get(case, 1)
    assert len(fixed) == 3 - dropped
    assert len(read_kaldi_map(d / "fix_report")) == dropped


def test_fix_reports_reasons(tmp_path):
    dd = make_data_dir(tmp_path / "d", n=4)
    dd.text["spk1-utt001"] = ""
    del dd.utt2lang["spk1-utt002"]
    dd.utt2spk["orphan"] = "spk9"
    fixed, dropped = fix(dd)
    assert fixed.utt_ids == ["spk1-utt000", "spk1-utt003"]
    assert "empty transcript" in " ".join(dropped["spk1-utt001"])
    assert "utt2lang: spk1-utt002: missing" in " ".join(dropped["spk1-utt002"])
    assert "orphan" in dropped and "orphan" not in fixed.utt2spk
    assert fixed.spk2utt == {"spk1": ["spk1-utt000", "spk1-utt003"]}


def test_write_is_atomic(tmp_path, monkeypatch):
    """A write that fails midway leaves the previous dir intact and no half-written dir."""
    d = tmp_path / "d"
    make_data_dir(d, n=3)
    (d / "notes.txt").write_text("kept")
    before = {p.name: p.read_bytes() for p in d.iterdir()}
    dd = DataDir.load(d).select(["spk1-utt000"])
    import zipasr.data.datadir as datadir_mod

    real = datadir_mod.write_kaldi_map

    def failing(path, mapping, sort=True):
        if Path(path).name == "utt2lang":
            raise OSError("disk full")
        real(path, mapping, sort)

    monkeypatch.setattr(datadir_mod, "write_kaldi_map", failing)
    with pytest.raises(OSError, match="disk full"):
        dd.write(d)
    with pytest.raises(OSError):
        dd.write(tmp_path / "new")
    monkeypatch.undo()
    assert {p.name: p.read_bytes() for p in d.iterdir()} == before
    assert not (tmp_path / "new").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d", "d_wav"]  # no temp dirs left
    dd.write(d)
    assert DataDir.load(d).utt_ids == ["spk1-utt000"] and (d / "notes.txt").read_text() == "kept"


def test_write_refuses_invalid(tmp_path):
    dd = make_data_dir(tmp_path / "d", n=2)
    dd.utt2lang["spk1-utt000"] = "xx"
    with pytest.raises(DataDirError, match="unknown language"):
        dd.write(tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_combine(tmp_path):
    a = make_data_dir(tmp_path / "a", n=2, lang="de", prefix="de1-u")
    b = make_data_dir(tmp_path / "b", n=3, lang="ko", prefix="ko1-u")
    out = tmp_path / "ab"
    assert combine_data.main([str(out), str(tmp_path / "a"), str(tmp_path / "b")]) == 0
    ab = DataDir.load(out)
    ab.validate()
    assert len(ab) == 5 and set(ab.lang.values()) == {"de", "ko"}
    assert ab.total_hours() == pytest.approx(a.total_hours() + b.total_hours())
    # duplicate ids across inputs: an error naming both
    assert combine_data.main([str(tmp_path / "bad"), str(tmp_path / "a"), str(tmp_path / "a")]) == 1
    with pytest.raises(DataDirError, match=r"de1-u000: in both"):
        combine([a, a])
    # one input with segments: the others get whole-recording segments
    seg = DataDir.load(tmp_path / "b")
    seg.segments = {u: Segment(u, 0.0, seg.dur[u]) for u in seg.text}
    mixed = combine([a, seg])
    assert mixed.segments["de1-u001"] == Segment("de1-u001", 0.0, a.dur["de1-u001"])
    np.testing.assert_array_equal(load_audio(mixed, "de1-u001"), load_audio(a, "de1-u001"))


def test_audio_formats_resampling_pipes_segments(tmp_path):
    audio = speech("hello world", "en")
    n = len(audio)
    for ext, sr in [(".wav", 16000), (".flac", 16000), (".flac", 44100), (".mp3", 48000), (".opus", 48000)]:
        path = tmp_path / f"a{sr}{ext}"
        write_audio(path, audio, sr)
        dd = DataDir(wav_scp={"u": str(path)}, text={"u": "x"}, utt2spk={"u": "s"}, utt2lang={"u": "en"},
                     utt2dur={"u": n / 16000})
        out = load_audio(dd, "u")
        assert out.dtype == np.float32 and out.ndim == 1
        assert abs(len(out) - n) <= 0.01 * n, (ext, sr, len(out), n)
        if ext in (".wav", ".flac"):  # lossless: the same signal back (up to 16-bit and resampling error)
            tol = 2e-4 if sr == 16000 else 0.02
            assert np.abs(out[: n - 200] - audio[: n - 200]).max() < tol, (ext, sr)
    # a `cmd |` pipe (an 8 kHz flac on stdout: decoded and resampled) and a segment of it
    wav = tmp_path / "a16000.wav"
    write_audio(tmp_path / "a8000.flac", audio, 8000)
    entry = f"cat {tmp_path / 'a8000.flac'} |"
    dd = DataDir(wav_scp={"r": entry}, segments={"u": Segment("r", 0.25, 0.75)}, text={"u": "x"},
                 utt2spk={"u": "s"}, utt2lang={"u": "en"}, utt2dur={"u": 0.5})
    assert len(load_audio(dd, "u")) == 8000
    dd.wav_scp["r"] = "false |"
    with pytest.raises(AudioError, match=r"utterance 'u': command 'false' failed"):
        load_audio(dd, "u")
    # segment of a file reads only that span
    dd.wav_scp["r"] = str(wav)
    np.testing.assert_allclose(load_audio(dd, "u"), audio[4000:12000], atol=1e-4)
    dd.segments["u"] = Segment("r", 100.0, 101.0)
    with pytest.raises(AudioError, match="beyond the end"):
        load_audio(dd, "u")


def test_shell_wrappers(tmp_path):
    make_data_dir(tmp_path / "d", n=4)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    run = lambda *cmd: subprocess.run([str(REPO / "utils" / cmd[0]), *cmd[1:]], env=env, capture_output=True,
                                      text=True)
    assert run("validate_data_dir.sh", "--no-feats", str(tmp_path / "d")).returncode == 0
    r = run("subset_data_dir.sh", str(tmp_path / "d"), "2", str(tmp_path / "s"))
    assert r.returncode == 0, r.stderr
    assert len(DataDir.load(tmp_path / "s")) == 2
    (tmp_path / "list").write_text("spk1-utt003\n")
    assert run("subset_data_dir.sh", "--utt-list", str(tmp_path / "list"), str(tmp_path / "d"),
               str(tmp_path / "l")).returncode == 0
    assert DataDir.load(tmp_path / "l").utt_ids == ["spk1-utt003"]
    assert run("combine_data.sh", str(tmp_path / "c"), str(tmp_path / "s"), str(tmp_path / "l")).returncode == 0
    assert len(DataDir.load(tmp_path / "c")) == 3
    (tmp_path / "c" / "utt2lang").write_text("spk1-utt003 en\n")
    assert run("validate_data_dir.sh", str(tmp_path / "c")).returncode == 1
    assert run("fix_data_dir.sh", str(tmp_path / "c")).returncode == 0
    assert DataDir.load(tmp_path / "c").utt_ids == ["spk1-utt003"]
    outs = [str(tmp_path / f"part{i}") for i in range(3)]
    assert run("split_scp.pl", str(tmp_path / "d" / "text"), *outs).returncode == 0
    parts = [Path(o).read_text().splitlines() for o in outs]
    assert [len(p) for p in parts] == [1, 1, 2] and sum(parts, []) == (tmp_path / "d" / "text").read_text().splitlines()
