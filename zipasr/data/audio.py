"""Audio input: wav.scp entries (files or `cmd |` pipes), segments, and resampling to 16 kHz mono.

Files are read with soundfile (libsndfile: wav, flac, mp3, ogg/vorbis, ogg/opus). A segment of a seekable
file reads only its frames, which matters for WenetSpeech's hour-long opus recordings.
"""
from __future__ import annotations

import io
import subprocess
from math import gcd
from pathlib import Path

import numpy as np
import soundfile as sf

SAMPLE_RATE = 16000


class AudioError(ValueError):
    """Audio that cannot be read; the message names the utterance and the file or command."""


def resample(audio: np.ndarray, sr: int, target_sr: int = SAMPLE_RATE) -> np.ndarray:
    """Polyphase resampling (anti-aliased). audio (n,) float32 -> (n * target_sr / sr,) float32."""
    if sr == target_sr:
        return audio
    from scipy.signal import resample_poly  # imported here: scipy.signal takes seconds to import

    g = gcd(sr, target_sr)
    return resample_poly(audio, target_sr // g, sr // g).astype(np.float32)


def _to_mono(data: np.ndarray) -> np.ndarray:
    # soundfile returns (frames, channels) with always_2d; average the channels.
    return data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]


def read_audio(entry: str, start: float = 0.0, end: float | None = None, name: str = "") -> np.ndarray:
    """Read one wav.scp entry (a path or a `cmd |` pipe), optionally the [start, end) seconds of it.

    Returns float32 (n,) mono at 16 kHz. `name` (the utterance) is used in error messages.
    """
    what = f"utterance {name!r}: " if name else ""
    entry = entry.strip()
    try:
        if entry.endswith("|"):
            cmd = entry[:-1].strip()
            proc = subprocess.run(cmd, shell=True, capture_output=True)
            if proc.returncode != 0:
                err = proc.stderr.decode("utf-8", "replace").strip()[-500:]
                raise AudioError(f"{what}command {cmd!r} failed with exit code {proc.returncode}: {err}")
            data, sr = sf.read(io.BytesIO(proc.stdout), dtype="float32", always_2d=True)
            first = int(round(start * sr))
            data = data[first: None if end is None else int(round(end * sr))]
        else:
            path = Path(entry)
            if not path.is_file():
                raise AudioError(f"{what}audio file {entry} does not exist")
            with sf.SoundFile(path) as f:
                sr = f.samplerate
                first = int(round(start * sr))
                last = f.frames if end is None else min(int(round(end * sr)), f.frames)
                if first >= f.frames:
                    raise AudioError(f"{what}segment starts at {start:.2f} s beyond the end of {entry} "
                                     f"({f.frames / sr:.2f} s)")
                f.seek(first)
                data = f.read(last - first, dtype="float32", always_2d=True)
    except AudioError:
        raise
    except (sf.LibsndfileError, RuntimeError, OSError, ValueError) as err:
        raise AudioError(f"{what}cannot read audio {entry}: {err}") from None
    if data.shape[0] == 0:
        raise AudioError(f"{what}no audio samples in {entry} [{start}, {end}]")
    return resample(_to_mono(data), sr)


def load_audio(datadir, utt: str) -> np.ndarray:
    """The audio of one utterance of a data dir (a DataDir or its path) as float32 (n,) mono at 16 kHz."""
    from zipasr.data.datadir import DataDir

    if not isinstance(datadir, DataDir):
        datadir = DataDir.load(datadir)
    try:
        _, entry, start, end = datadir.recording(utt)
    except KeyError:
        raise AudioError(f"utterance {utt!r} is not in {datadir.path} (wav.scp/segments)") from None
    return read_audio(entry, start, end, name=utt)


def audio_duration(entry: str) -> float:
    """Duration in seconds of a wav.scp entry; reads only the header for files (pipes are decoded)."""
    entry = entry.strip()
    if entry.endswith("|"):
        return len(read_audio(entry)) / SAMPLE_RATE
    try:
        info = sf.info(entry)
    except (sf.LibsndfileError, RuntimeError, OSError) as err:
        raise AudioError(f"cannot read audio header of {entry}: {err}") from None
    return info.frames / info.samplerate
