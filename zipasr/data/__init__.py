"""Kaldi-style data dirs, audio I/O, Whisper features, subsets and corpus preparation.

    dd = DataDir.load("data/train"); dd.validate()
    audio = load_audio(dd, utt)                     # float32 (n,) 16 kHz mono
    feats = load_features(dd, utt, extractor)       # float32 (n_mels, T), 100 frames/s
"""
from zipasr.data.audio import AudioError, load_audio, read_audio, resample
from zipasr.data.datadir import DataDir, DataDirError, Segment, combine, fix, read_kaldi_map, write_kaldi_map
from zipasr.data.features import FRAME_RATE, FeatureExtractor, load_features
from zipasr.data.subset import (normalize_utt_id, read_id_list, subset_by_count, subset_by_hours, subset_by_ids,
                                subset_by_lang)

__all__ = [
    "AudioError", "load_audio", "read_audio", "resample",
    "DataDir", "DataDirError", "Segment", "combine", "fix", "read_kaldi_map", "write_kaldi_map",
    "FRAME_RATE", "FeatureExtractor", "load_features",
    "normalize_utt_id", "read_id_list", "subset_by_count", "subset_by_hours", "subset_by_ids", "subset_by_lang",
]
