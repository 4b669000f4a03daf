"""Whisper log-mel features: computed on the fly, or dumped to kaldiio ark/scp and read back lazily.

Features are (n_mels, T) float32 at 100 frames per second (hop 10 ms), T = n_samples // 160, computed by
transformers' WhisperFeatureExtractor with natural lengths (no padding to 30 s). In ark files they are
stored the Kaldi way, (T, n_mels), so `utt2num_frames` and Kaldi tools agree; readers transpose back.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

FRAME_RATE = 100  # frames per second (hop 160 samples at 16 kHz)


class FeatureExtractor:
    """Whisper log-mel spectrogram of one utterance.

    compute(audio float32 (n,) at 16 kHz) -> float32 (n_mels, n // 160)
    """

    def __init__(self, n_mels: int = 80, _hf_extractor=None):
        from transformers import WhisperFeatureExtractor

        if n_mels not in (80, 128):
            raise ValueError(f"n_mels must be 80 or 128 (Whisper's mel banks), got {n_mels}")
        self.n_mels = n_mels
        self._fe = _hf_extractor or WhisperFeatureExtractor(feature_size=n_mels)
        self.hop_length = self._fe.hop_length
        self.n_fft = self._fe.n_fft

    @classmethod
    def from_encoder_dir(cls, whisper_dir) -> "FeatureExtractor":
        """The extractor matching a Whisper checkpoint dir: preprocessor_config.json if present (all its
        settings), else `num_mel_bins` of its config.json (encoder-only checkpoints)."""
        from transformers import WhisperFeatureExtractor

        whisper_dir = Path(whisper_dir)
        pre = whisper_dir / "preprocessor_config.json"
        if pre.is_file():
            hf = WhisperFeatureExtractor.from_pretrained(whisper_dir)
            return cls(hf.feature_size, _hf_extractor=hf)
        cfg = whisper_dir / "config.json"
        if not cfg.is_file():
            raise FileNotFoundError(f"{whisper_dir}: neither preprocessor_config.json nor config.json found")
        config = json.loads(cfg.read_text())
        if "num_mel_bins" not in config:
            raise KeyError(f"{cfg}: no 'num_mel_bins' (is this a Whisper checkpoint?)")
        return cls(int(config["num_mel_bins"]))

    def settings(self) -> dict:
        """Everything that determines the output (mel bins, FFT, hop, ...), e.g. to tell dumps apart."""
        return self._fe.to_dict()

    def compute(self, audio: np.ndarray) -> np.ndarray:
        """audio float32 (n,) 16 kHz mono -> log-mel float32 (n_mels, n // 160)."""
        audio = np.asarray(audio, dtype=np.float32)
        if audio.ndim != 1:
            raise ValueError(f"audio must be 1-D (mono), got shape {audio.shape}")
        if audio.shape[0] < self.n_fft:
            raise ValueError(f"audio too short for features: {audio.shape[0]} samples (< {self.n_fft})")
        out = self._fe(audio, sampling_rate=16000, padding="longest", truncation=False,
                       return_attention_mask=True, return_tensors="np")
        feats = out["input_features"][0]
        n = int(out["attention_mask"][0].sum())
        return np.ascontiguousarray(feats[:, :n], dtype=np.float32)


_default_extractors: dict[int, FeatureExtractor] = {}


def load_features(datadir, utt: str, extractor: FeatureExtractor | None = None) -> np.ndarray:
    """Features (n_mels, T) of one utterance: from feats.scp (kaldiio, reads only that matrix) if the dir has
    one, else computed from its audio by `extractor` (default: 80 mel bins)."""
    import kaldiio

    from zipasr.data.audio import load_audio
    from zipasr.data.datadir import DataDir

    if not isinstance(datadir, DataDir):
        datadir = DataDir.load(datadir)
    if datadir.feats_scp is not None:
        if utt not in datadir.feats_scp:
            raise KeyError(f"utterance {utt!r} not in {datadir.path}/feats.scp")
        try:
            mat = kaldiio.load_mat(datadir.feats_scp[utt])  # (T, n_mels)
        except Exception as err:  # kaldiio raises several types for a bad ark offset / missing ark
            raise OSError(f"utterance {utt!r}: cannot read {datadir.feats_scp[utt]} "
                          f"(from {datadir.path}/feats.scp): {err}") from None
        if extractor is not None and mat.shape[1] != extractor.n_mels:
            raise ValueError(f"utterance {utt!r}: feats.scp of {datadir.path} has {mat.shape[1]} mel bins, "
                             f"the model expects {extractor.n_mels}")
        return np.ascontiguousarray(mat.T, dtype=np.float32)
    if extractor is None:
        extractor = _default_extractors.setdefault(80, FeatureExtractor(80))
    return extractor.compute(load_audio(datadir, utt))
