"""Whisper features: natural lengths, mel bins from a checkpoint dir, dumps equal to the extractor's output,
parallel jobs through utils/run.pl, and an interrupted dump that resumes without redoing finished splits."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from test_data_helpers import make_data_dir, speech
from zipasr.bin import dump_feats
from zipasr.data import AudioError, DataDir, FeatureExtractor, load_audio, load_features

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def fe80():
    return FeatureExtractor(80)


def test_extractor_natural_length(fe80):
    from transformers import WhisperFeatureExtractor

    audio = speech("x", seconds=2.345)
    feats = fe80.compute(audio)
    assert feats.shape == (80, len(audio) // 160) and feats.dtype == np.float32
    # equals the Whisper (30 s padded) features on the frames the audio covers, minus the edge frame
    ref = WhisperFeatureExtractor(feature_size=80)(audio, sampling_rate=16000, return_tensors="np")["input_features"][0]
    # Whisper clamps to (max - 8) of the whole padded window; the max comes from speech frames in both cases
    np.testing.assert_allclose(feats[:, :-1], ref[:, : feats.shape[1] - 1], atol=1e-4)
    long = fe80.compute(speech("x", seconds=31.0))  # longer than Whisper's 30 s window: not truncated
    assert long.shape == (80, 3100)
    with pytest.raises(ValueError, match="too short"):
        fe80.compute(np.zeros(100, np.float32))


def test_from_encoder_dir(tmp_path):
    (tmp_path / "enc").mkdir()
    (tmp_path / "enc" / "config.json").write_text(json.dumps({"model_type": "whisper", "num_mel_bins": 128}))
    assert FeatureExtractor.from_encoder_dir(tmp_path / "enc").n_mels == 128
    from transformers import WhisperFeatureExtractor

    WhisperFeatureExtractor(feature_size=80).save_pretrained(tmp_path / "enc")  # preprocessor config wins
    assert FeatureExtractor.from_encoder_dir(tmp_path / "enc").n_mels == 80
    with pytest.raises(FileNotFoundError):
        FeatureExtractor.from_encoder_dir(tmp_path)


def _ark_mtimes(feat_dir: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in feat_dir.glob("feats.*.ark")}


def test_dump_equals_extractor_and_resumes(tmp_path, fe80):
    data = tmp_path / "data" / "train"
    dd = make_data_dir(data, n=6, seconds=0.5)
    bad_wav = Path(dd.wav_scp["spk1-utt003"])
    good = bad_wav.read_bytes()
    bad_wav.write_bytes(b"RIFF-not-really")  # split 2 of 3 fails: an "interrupted" dump
    out = tmp_path / "dump" / "train"
    assert dump_feats.main(["--data_dir", str(data), "--out_dir", str(out), "--nj", "3"]) == 1
    feat_dir = tmp_path / "dump" / "feats" / "train"
    assert (feat_dir / ".done.1").is_file() and not (feat_dir / ".done.2").is_file()
    assert not out.exists()  # nothing that looks like a finished dump
    first = _ark_mtimes(feat_dir)
    bad_wav.write_bytes(good)
    assert dump_feats.main(["--data_dir", str(data), "--out_dir", str(out), "--nj", "3"]) == 0
    after = _ark_mtimes(feat_dir)
    assert after["feats.1.ark"] == first["feats.1.ark"]  # the finished split was not redone
    dumped = DataDir.load(out)
    dumped.validate()
    assert dumped.utt_ids == dd.utt_ids and dumped.text == dd.text
    for utt in dd.utt_ids:
        expected = fe80.compute(load_audio(dd, utt))
        got = load_features(dumped, utt, fe80)
        np.testing.assert_array_equal(got, expected)
        assert dumped.utt2num_frames[utt] == expected.shape[1]
        # without feats.scp, load_features computes the same on the fly
        np.testing.assert_array_equal(load_features(dd, utt), expected)
    # a rerun with everything done redoes nothing
    assert dump_feats.main(["--data_dir", str(data), "--out_dir", str(out), "--nj", "3"]) == 0
    assert _ark_mtimes(feat_dir) == after
    # other mel settings invalidate the markers
    assert dump_feats.main(["--data_dir", str(data), "--out_dir", str(out), "--nj", "3", "--n_mels", "128"]) == 0
    assert load_features(DataDir.load(out), "spk1-utt000").shape[0] == 128
    with pytest.raises(ValueError, match="has 128 mel bins, the model expects 80"):
        load_features(DataDir.load(out), "spk1-utt000", fe80)


def test_dump_with_run_pl_and_skip_bad(tmp_path, fe80):
    data = tmp_path / "d"
    dd = make_data_dir(data, n=4, seconds=0.5)
    Path(dd.wav_scp["spk1-utt001"]).unlink()
    out = tmp_path / "dump" / "d"
    assert dump_feats.main(["--data_dir", str(data), "--out_dir", str(out), "--nj", "2", "--skip_bad",
                            "--cmd", str(REPO / "utils" / "run.pl")]) == 0
    logs = sorted((tmp_path / "dump" / "feats" / "d" / "log").glob("dump_feats.*.log"))
    assert [p.name for p in logs] == ["dump_feats.1.log", "dump_feats.2.log"]
    assert "Ended (code 0)" in logs[0].read_text()
    dumped = DataDir.load(out)
    assert dumped.utt_ids == ["spk1-utt000", "spk1-utt002", "spk1-utt003"]
    assert "spk1-utt001" in (tmp_path / "dump" / "feats" / "d" / "bad.1").read_text()
    np.testing.assert_array_equal(load_features(dumped, "spk1-utt003"),
                                  fe80.compute(load_audio(dd, "spk1-utt003")))
    with pytest.raises(AudioError, match="spk1-utt001"):
        load_audio(dd, "spk1-utt001")


def test_slurm_runner_with_stub_sbatch(tmp_path):
    """slurm.pl builds an array job; a stub sbatch runs its tasks here."""
    stub = tmp_path / "bin" / "sbatch"
    stub.parent.mkdir()
    stub.write_text("#!/usr/bin/env bash\n"
                    "for a in \"$@\"; do case $a in --array=*) r=${a#--array=}; r=${r%%\\%*};; -*) ;;\n"
                    "  *) s=$a;; esac; done\n"
                    "rc=0; for ((t=${r%-*}; t<=${r#*-}; t++)); do SLURM_ARRAY_TASK_ID=$t bash $s || rc=1; done\n"
                    "exit $rc\n")
    stub.chmod(0o755)
    env = dict(os.environ, PATH=f"{stub.parent}:{os.environ['PATH']}")
    run = lambda *a: subprocess.run([str(REPO / "utils" / "slurm.pl"), *a], cwd=tmp_path, env=env,
                                    capture_output=True, text=True)
    r = run("--mem", "2G", "JOB=1:3", "log/t.JOB.log", "echo", "task JOB")
    assert r.returncode == 0, r.stderr
    assert "task 2" in (tmp_path / "log" / "t.2.log").read_text()
    r = run("JOB=1:2", "log/f.JOB.log", "test", "JOB", "-eq", "1")
    assert r.returncode == 1 and "1 / 2 failed" in r.stderr and "f.2.log" in r.stderr


def test_run_pl(tmp_path):
    run = lambda *a: subprocess.run([str(REPO / "utils" / "run.pl"), *a], cwd=tmp_path, capture_output=True,
                                    text=True)
    r = run("--max-jobs-run", "2", "JOB=1:4", "log/x.JOB.log", "echo", "job JOB", "|", "tr", "a-z", "A-Z")
    assert r.returncode == 0
    assert "JOB 3" in (tmp_path / "log" / "x.3.log").read_text()
    r = run("JOB=1:3", "log/y.JOB.log", "test", "JOB", "-ne", "2")
    assert r.returncode == 1 and "1 / 3 failed, log is in log/y.2.log" in r.stderr
    assert "Ended (code 1)" in (tmp_path / "log" / "y.2.log").read_text()
