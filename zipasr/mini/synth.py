"""Synthesise the mini recipe's multilingual corpus with espeak-ng and write Kaldi data dirs.

A corpus is described by a `CorpusConfig` (the recipe's conf/corpus*.yaml):
- domains: speaker populations (espeak-ng voice variants, speed, pitch, amplitude ranges). Two
  domains with different variants and speeds give the paper's source/target domain shift.
- sets: data sets with an utterance budget per language. A set with `split_by_lang: true`
  (test sets) becomes one data dir per language, `<name>_<lang>`. A set with
  `held_out_speakers: true` gets speakers of its own, never seen in training.
- lm_sentences_per_lang: text-only sentences for the LLM's text pretraining (never a dev/test
  sentence), written to `<data_dir>/local/lm_text/{text,utt2lang}`.
- segmented_languages: languages written without spaces (Japanese) whose transcripts and LLM text
  separate words by spaces here.

Everything is a function of `seed`: the same config gives the same sentences, speakers and audio
samples. Sentences are unique per language across all sets; held-out sets are drawn first, so
their sentences do not change when a training budget changes.

espeak-ng is driven through its C library (libespeak-ng.so.1) with ctypes: one synthesis costs a
few milliseconds, while starting an `espeak-ng` process per utterance would cost more than the
synthesis itself. Audio is resampled from espeak-ng's 22.05 kHz to `sample_rate` and written as
16-bit PCM wav files with soundfile.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import logging
import multiprocessing
import shutil
import zlib
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np
import soundfile
from scipy.signal import resample_poly
from tqdm import tqdm

from zipasr.languages import get_language
from zipasr.mini.text import SentenceSampler

logger = logging.getLogger(__name__)


@dataclass
class Domain:
    """A speaker population. Ranges are inclusive [min, max]."""

    variants: list[str]  # espeak-ng voice variants ("m3", "f2", "klatt", ...)
    speed: list[int]  # words per minute
    pitch: list[int]  # 0..99
    amplitude: list[int]  # 0..200, 100 = espeak-ng's default
    speakers_per_lang: int = 16


@dataclass
class SetConfig:
    name: str  # data dir name (with split_by_lang: prefix of one dir per language)
    domain: str  # key of CorpusConfig.domains
    utts_per_lang: dict[str, int]
    split_by_lang: bool = False
    held_out_speakers: bool = False


@dataclass
class CorpusConfig:
    domains: dict[str, Domain]
    sets: list[SetConfig]
    seed: int = 0
    sample_rate: int = 16000
    vocab_words: int = 1500  # per language, most frequent first
    min_words: int = 3
    max_words: int = 8
    lm_sentences_per_lang: int = 0
    # Languages written without spaces (zipasr.languages.NO_SPACE) whose transcripts and LLM text
    # separate words by spaces here (word-segmented, as Japanese corpora's transcripts often are).
    segmented_languages: list[str] = field(default_factory=list)
    # Which paper language each mini language stands in for (documentation, printed in logs).
    stands_in_for: dict[str, str] = field(default_factory=dict)

    def __post_init__(self):
        for s in self.sets:
            if s.domain not in self.domains:
                raise ValueError(f"set {s.name!r}: unknown domain {s.domain!r}; known: {sorted(self.domains)}")
            for lang, n in s.utts_per_lang.items():
                if get_language(lang).espeak_voice is None:
                    raise ValueError(f"set {s.name!r}: espeak-ng cannot synthesise language {lang!r}")
                if n < 0:
                    raise ValueError(f"set {s.name!r}: negative budget {n} for {lang!r}")
        unknown = sorted(set(self.segmented_languages) - set(self.languages()))
        if unknown:
            raise ValueError(f"segmented_languages: {unknown} not in any set; languages: {self.languages()}")
        names = [s.name for s in self.sets]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate set names in {names}")
        for name, d in self.domains.items():
            for key in ("speed", "pitch", "amplitude"):
                lo_hi = getattr(d, key)
                if len(lo_hi) != 2 or lo_hi[0] > lo_hi[1]:
                    raise ValueError(f"domain {name!r}: {key} must be [min, max], got {lo_hi}")

    def languages(self) -> list[str]:
        """Every language of the corpus, in first-seen order."""
        langs: list[str] = []
        for s in self.sets:
            langs += [lang for lang in s.utts_per_lang if lang not in langs]
        return langs

    def dir_names(self, s: SetConfig) -> dict[str, str]:
        """lang -> data dir name of set `s`."""
        return {lang: f"{s.name}_{lang}" if s.split_by_lang else s.name for lang in s.utts_per_lang}


@dataclass(frozen=True)
class Speaker:
    spk_id: str
    voice: str  # espeak-ng voice name with variant, e.g. "de+m3"
    speed: int
    pitch: int
    amplitude: int


@dataclass(frozen=True)
class Utterance:
    utt_id: str
    lang: str
    text: str
    speaker: Speaker
    path: str


def _rng(seed: int, *keys: str) -> np.random.Generator:
    """An independent random stream per (seed, keys); crc32 keeps it stable across Python runs."""
    return np.random.default_rng([seed] + [zlib.crc32(k.encode()) for k in keys])


def make_speakers(cfg: CorpusConfig, domain: str, lang: str, tag: str) -> list[Speaker]:
    """`speakers_per_lang` speakers of `domain` for `lang`; `tag` separates held-out populations."""
    d = cfg.domains[domain]
    rng = _rng(cfg.seed, "speakers", domain, lang, tag)
    base = get_language(lang).espeak_voice
    speakers = []
    for k in range(d.speakers_per_lang):
        variant = d.variants[int(rng.integers(len(d.variants)))]
        speakers.append(Speaker(
            spk_id=f"{lang}_{domain}{tag}{k:03d}",
            voice=f"{base}+{variant}",
            speed=int(rng.integers(d.speed[0], d.speed[1] + 1)),
            pitch=int(rng.integers(d.pitch[0], d.pitch[1] + 1)),
            amplitude=int(rng.integers(d.amplitude[0], d.amplitude[1] + 1)),
        ))
    return speakers


def plan_corpus(cfg: CorpusConfig, audio_dir: str | Path) -> tuple[dict[str, list[Utterance]], dict[str, list[str]]]:
    """Decide every utterance (text, speaker, file) and the LLM text, without synthesising.

    Returns ({data dir name: utterances}, {lang: LLM pretraining sentences}).
    """
    audio_dir = Path(audio_dir).resolve()
    used: dict[str, set[str]] = {lang: set() for lang in cfg.languages()}
    held_out_text: dict[str, set[str]] = {lang: set() for lang in cfg.languages()}
    dirs: dict[str, list[Utterance]] = {}
    # Held-out sets first: their sentences must not depend on the training budgets.
    order = sorted(cfg.sets, key=lambda s: not s.held_out_speakers)
    for s in order:
        for lang, n in s.utts_per_lang.items():
            sampler = SentenceSampler(lang, cfg.vocab_words, cfg.min_words, cfg.max_words,
                                      _rng(cfg.seed, "text", s.name, lang), exclude=used[lang],
                                      segmented=lang in cfg.segmented_languages)
            sentences = sampler.sample_many(n)
            used[lang].update(sentences)
            if s.held_out_speakers:
                held_out_text[lang].update(sentences)
            speakers = make_speakers(cfg, s.domain, lang, tag=f"{s.name}_" if s.held_out_speakers else "")
            pick = _rng(cfg.seed, "pick", s.name, lang).integers(len(speakers), size=n)
            dir_name = cfg.dir_names(s)[lang]
            utts = dirs.setdefault(dir_name, [])
            for i, (text, k) in enumerate(zip(sentences, pick)):
                spk = speakers[int(k)]
                utt_id = f"{spk.spk_id}-{s.name}-{i:06d}"
                utts.append(Utterance(utt_id, lang, text, spk, str(audio_dir / s.name / f"{utt_id}.wav")))
    lm_text = {}
    if cfg.lm_sentences_per_lang > 0:
        for lang in cfg.languages():
            sampler = SentenceSampler(lang, cfg.vocab_words, cfg.min_words, cfg.max_words,
                                      _rng(cfg.seed, "text", "lm", lang), exclude=held_out_text[lang],
                                      segmented=lang in cfg.segmented_languages)
            lm_text[lang] = sampler.sample_many(cfg.lm_sentences_per_lang)
    for utts in dirs.values():
        utts.sort(key=lambda u: u.utt_id)
    return dirs, lm_text


class Espeak:
    """espeak-ng's C library in synchronous mode: text -> int16 samples at `self.sample_rate`.

    The library keeps global state, so use one instance per process (see synthesize_corpus).
    """

    _AUDIO_OUTPUT_SYNCHRONOUS = 2
    _RATE, _VOLUME, _PITCH = 1, 2, 3  # espeak_PARAMETER
    _POS_CHARACTER, _CHARS_UTF8 = 1, 1

    def __init__(self):
        name = ctypes.util.find_library("espeak-ng") or "libespeak-ng.so.1"
        try:
            self.lib = ctypes.CDLL(name)
        except OSError as err:
            raise RuntimeError(
                "the espeak-ng library (libespeak-ng.so.1) is missing: install espeak-ng "
                "(tools/setup.sh does it with apt-get)") from err
        self.sample_rate = self.lib.espeak_Initialize(self._AUDIO_OUTPUT_SYNCHRONOUS, 0, None, 0)
        if self.sample_rate <= 0:
            raise RuntimeError(f"espeak_Initialize failed ({self.sample_rate})")
        self._chunks: list[np.ndarray] = []
        callback_type = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int,
                                         ctypes.c_void_p)
        self._callback = callback_type(self._collect)  # keep a reference: the library calls it later
        self.lib.espeak_SetSynthCallback(self._callback)
        self.lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        self._srand = ctypes.CDLL(None).srand  # the C library's, whose rand() libespeak-ng calls

    def _collect(self, wav, n_samples, events):
        if n_samples > 0 and wav:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(n_samples,)).copy())
        return 0  # 0 = continue synthesis

    def synthesize(self, text: str, voice: str, speed: int, pitch: int, amplitude: int,
                   noise_seed: int = 0) -> np.ndarray:
        """int16 samples (n,) at self.sample_rate.

        noise_seed: seeds the C library's rand(), which espeak-ng draws its noise from (the `breath`
        of voice variants such as f2 and f3). That state is global to the process and inherited
        through fork, so without a seed an utterance's audio depended on how often anything in the
        process had called rand() before it (measured: 5 calls in the parent process changed 16 of
        the 160 utterances of the mini recipe's dev_source).
        """
        self._srand(ctypes.c_uint(noise_seed & 0xFFFFFFFF))
        if self.lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise ValueError(f"espeak-ng has no voice {voice!r}")
        self.lib.espeak_SetParameter(self._RATE, speed, 0)
        self.lib.espeak_SetParameter(self._PITCH, pitch, 0)
        self.lib.espeak_SetParameter(self._VOLUME, amplitude, 0)
        self._chunks = []
        data = text.encode() + b"\0"
        err = self.lib.espeak_Synth(data, len(data), 0, self._POS_CHARACTER, 0, self._CHARS_UTF8, None, None)
        self.lib.espeak_Synchronize()
        if err != 0:
            raise RuntimeError(f"espeak_Synth failed ({err}) on {text!r} with voice {voice!r}")
        return np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.int16)


def _synth_batch(args: tuple[list[Utterance], int]) -> list[tuple[str, int]]:
    """Synthesise and write utterances in a fresh worker process; returns (utt_id, n_samples) each."""
    utts, sample_rate = args
    engine = Espeak()
    ratio = Fraction(sample_rate, engine.sample_rate)
    out = []
    for u in utts:
        sp = u.speaker
        audio = engine.synthesize(u.text, sp.voice, sp.speed, sp.pitch, sp.amplitude,
                                  noise_seed=zlib.crc32(u.utt_id.encode()))
        if audio.size == 0:
            raise RuntimeError(f"espeak-ng produced no audio for utterance {u.utt_id} ({u.text!r})")
        wav = audio.astype(np.float32) / 32768.0
        if ratio != 1:
            wav = resample_poly(wav, ratio.numerator, ratio.denominator).astype(np.float32)
        try:
            soundfile.write(u.path, np.clip(wav, -1.0, 1.0), sample_rate, subtype="PCM_16")
        except (soundfile.LibsndfileError, OSError) as e:
            # libsndfile says only "System error." when the disk is full: name the file and the likely cause
            existing = next(d for d in Path(u.path).absolute().parents if d.exists())
            free = shutil.disk_usage(existing).free / 2**30
            raise OSError(f"cannot write {u.path} for utterance {u.utt_id} ({e}; {free:.2f} GiB free there): "
                          "is the disk full?") from e
        out.append((u.utt_id, len(wav)))
    return out


def write_data_dir(data_dir: Path, utts: list[Utterance], n_samples: dict[str, int], sample_rate: int) -> None:
    """Kaldi data dir: wav.scp, text, utt2spk, spk2utt, utt2lang, utt2dur (sorted by utt id)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    spk2utt: dict[str, list[str]] = {}
    for u in utts:
        spk2utt.setdefault(u.speaker.spk_id, []).append(u.utt_id)
    files = {
        "wav.scp": [f"{u.utt_id} {u.path}" for u in utts],
        "text": [f"{u.utt_id} {u.text}" for u in utts],
        "utt2spk": [f"{u.utt_id} {u.speaker.spk_id}" for u in utts],
        "utt2lang": [f"{u.utt_id} {u.lang}" for u in utts],
        "utt2dur": [f"{u.utt_id} {n_samples[u.utt_id] / sample_rate:.3f}" for u in utts],
        "spk2utt": [f"{spk} {' '.join(ids)}" for spk, ids in sorted(spk2utt.items())],
    }
    for name, lines in files.items():
        (data_dir / name).write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def write_lm_text(out_dir: Path, lm_text: dict[str, list[str]]) -> None:
    """`text` and `utt2lang` of the LLM pretraining sentences (ids `lm_<lang>_<i>`)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    ids = [(f"lm_{lang}_{i:07d}", lang, s) for lang, sents in lm_text.items() for i, s in enumerate(sents)]
    ids.sort()
    (out_dir / "text").write_text("".join(f"{i} {s}\n" for i, _, s in ids), encoding="utf-8")
    (out_dir / "utt2lang").write_text("".join(f"{i} {lang}\n" for i, lang, _ in ids), encoding="utf-8")


def synthesize_corpus(cfg: CorpusConfig, audio_dir: str | Path, data_dir: str | Path, nj: int = 2,
                      batch_size: int = 64) -> dict[str, int]:
    """Synthesise the corpus of `cfg`: wav files under `audio_dir/<set>/`, data dirs under `data_dir`.

    Returns {data dir name: number of utterances}.
    """
    audio_dir, data_dir = Path(audio_dir), Path(data_dir)
    dirs, lm_text = plan_corpus(cfg, audio_dir)
    for s in cfg.sets:
        (audio_dir / s.name).mkdir(parents=True, exist_ok=True)
    # espeak-ng keeps internal state from one synthesis to the next (the same text synthesised twice
    # in one process differs by a few samples, even with the same noise seed), so every batch runs in
    # a fresh process
    # (maxtasksperchild=1): a batch's audio then depends only on its own utterances, whatever the
    # number of processes. Batches never cross data dirs, so a test set's audio does not depend on
    # the training budgets.
    batches = [(utts[i:i + batch_size], cfg.sample_rate)
               for name in sorted(dirs) for utts in [dirs[name]] for i in range(0, len(utts), batch_size)]
    n_utts = sum(len(utts) for utts in dirs.values())
    logger.info("synthesising %d utterances in %d data dirs with %d process(es)", n_utts, len(dirs), nj)
    n_samples: dict[str, int] = {}
    with tqdm(total=n_utts, desc="espeak-ng", unit="utt") as bar, \
            multiprocessing.get_context("fork").Pool(max(1, nj), maxtasksperchild=1) as pool:
        for res in pool.imap_unordered(_synth_batch, batches):
            n_samples.update(res)
            bar.update(len(res))
    for name, utts in dirs.items():
        write_data_dir(data_dir / name, utts, n_samples, cfg.sample_rate)
        hours = sum(n_samples[u.utt_id] for u in utts) / cfg.sample_rate / 3600
        logger.info("%-22s %6d utterances %6.2f h", name, len(utts), hours)
    if lm_text:
        write_lm_text(data_dir / "local" / "lm_text", lm_text)
        logger.info("LLM text: %d sentences per language", cfg.lm_sentences_per_lang)
    return {name: len(utts) for name, utts in dirs.items()}
