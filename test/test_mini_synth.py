"""The mini recipe's synthetic corpus: language plan, budgets, data dirs, determinism."""
from __future__ import annotations

import shutil
import unicodedata
from pathlib import Path

import pytest
import soundfile

from zipasr.config import from_dict, load_config
from zipasr.data.datadir import DataDir
from zipasr.languages import uses_cer
from zipasr.mini.synth import CorpusConfig, plan_corpus, synthesize_corpus
from zipasr.mini.text import SentenceSampler, script_of, word_list

RECIPE = Path(__file__).resolve().parents[1] / "egs" / "mini_multilingual" / "asr1"
CORPUS_CONFIGS = sorted((RECIPE / "conf").glob("corpus*.yaml"))

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")


def _set(cfg: CorpusConfig, name: str):
    return next(s for s in cfg.sets if s.name == name)


@pytest.mark.parametrize("path", CORPUS_CONFIGS, ids=lambda p: p.name)
def test_recipe_language_plan(path):
    """The paper's structure (Table I) holds in every corpus config of the recipe."""
    cfg = load_config(CorpusConfig, path)
    source = _set(cfg, "train_source")
    target = _set(cfg, "train_target")
    assert len(source.utts_per_lang) == 4
    assert len(target.utts_per_lang) >= 10
    high = max(target.utts_per_lang.values())
    low = {lang: n for lang, n in target.utts_per_lang.items() if n <= 0.05 * high}
    assert len(low) >= 4, "at least 4 extremely-low-resource target languages"
    for lang, n in low.items():
        assert 0.02 * high <= n <= 0.05 * high, f"{lang}: {n} utterances is not 2-5 % of {high}"
    both = set(source.utts_per_lang) & set(target.utts_per_lang)
    assert len(both) >= 2 and source.domain != target.domain, "languages in both sets with a domain shift"
    src_dom, tgt_dom = cfg.domains[source.domain], cfg.domains[target.domain]
    assert set(src_dom.variants).isdisjoint(tgt_dom.variants) and src_dom.speed != tgt_dom.speed
    assert len({script_of(lang) for lang in cfg.languages()}) >= 4
    assert uses_cer("ja") and uses_cer("ko") and {"ja", "ko"} <= set(target.utts_per_lang)
    test_dirs = {d for s in cfg.sets if s.split_by_lang for d in cfg.dir_names(s).values()}
    for lang in target.utts_per_lang:
        assert f"test_{lang}" in test_dirs
    for lang in source.utts_per_lang:
        assert f"test_src_{lang}" in test_dirs
    assert set(cfg.stands_in_for) == set(cfg.languages())


def test_word_lists_are_in_script():
    ja = word_list("ja", 200)
    assert all(unicodedata.name(c).startswith(("HIRAGANA", "KATAKANA")) for w in ja for c in w)
    el = word_list("el", 300)
    assert not any(w.endswith("σ") for w in el) and any(w.endswith("ς") for w in el)
    assert all(len(w) >= 2 for w in word_list("fr", 200))
    # Chinese: pinyin with tone marks (the text espeak-ng's cmn-latn-pinyin reads), NFC, no hanzi
    zh = word_list("zh", 300)
    assert all(unicodedata.name(c).startswith("LATIN") for w in zh for c in w)
    assert all(unicodedata.is_normalized("NFC", w) for w in zh)
    assert {"shì", "wǒmen", "zhōngguó"} <= set(zh) and len(set(zh)) == 300
    assert sum(any(c in w for c in "āáǎà") for w in zh) > 30  # the four tones are written
    with pytest.raises(ValueError, match="no word list"):
        word_list("xx", 10)


def test_sentence_sampler_unique_and_excludes():
    import numpy as np

    first = SentenceSampler("en", 50, 1, 2, np.random.default_rng(0)).sample_many(200)
    assert len(set(first)) == 200
    again = SentenceSampler("en", 50, 1, 2, np.random.default_rng(0), exclude=set(first[:100])).sample_many(50)
    assert not set(again) & set(first[:100])


def _tiny_config(seed=0, train_en=6) -> CorpusConfig:
    return from_dict(CorpusConfig, _tiny_config_dict(seed, train_en))


def _tiny_config_dict(seed=0, train_en=6) -> dict:
    return {
        "seed": seed, "vocab_words": 100, "min_words": 2, "max_words": 3, "lm_sentences_per_lang": 5,
        "domains": {
            "a": {"variants": ["m1", "f2"], "speed": [150, 180], "pitch": [30, 60], "amplitude": [90, 110],
                  "speakers_per_lang": 2},
            "b": {"variants": ["klatt"], "speed": [130, 200], "pitch": [20, 80], "amplitude": [80, 120],
                  "speakers_per_lang": 2},
        },
        "sets": [
            {"name": "train", "domain": "a", "utts_per_lang": {"en": train_en, "ru": 4, "ja": 2}},
            {"name": "test", "domain": "b", "held_out_speakers": True, "split_by_lang": True,
             "utts_per_lang": {"en": 2, "ja": 2}},
        ],
    }


def test_held_out_sentences_do_not_depend_on_training_budget(tmp_path):
    small, _ = plan_corpus(_tiny_config(train_en=6), tmp_path)
    large, _ = plan_corpus(_tiny_config(train_en=40), tmp_path)
    assert [u.text for u in small["test_en"]] == [u.text for u in large["test_en"]]
    assert {u.text for u in large["train"]}.isdisjoint(u.text for u in large["test_en"])
    other_seed, _ = plan_corpus(_tiny_config(seed=1), tmp_path)
    assert [u.text for u in other_seed["test_en"]] != [u.text for u in small["test_en"]]


def test_segmented_languages_space_japanese_words_and_score_the_same(tmp_path):
    """`segmented_languages: [ja]` writes Japanese transcripts and LLM text with spaces between words;
    CER removes whitespace, so a segmented hypothesis scores like an unsegmented one."""
    from zipasr.scoring import score_texts

    plain_cfg = _tiny_config()
    seg_cfg = _tiny_config()
    seg_cfg.segmented_languages = ["ja"]
    plain, plain_lm = plan_corpus(plain_cfg, tmp_path)
    seg, seg_lm = plan_corpus(seg_cfg, tmp_path)
    for dir_name in ("train", "test_ja"):
        ja_plain = [u.text for u in plain[dir_name] if u.lang == "ja"]
        ja_seg = [u.text for u in seg[dir_name] if u.lang == "ja"]
        assert all(" " not in t for t in ja_plain)
        assert all(" " in t for t in ja_seg)  # 2-3 words each
        assert [t.replace(" ", "") for t in ja_seg] == ja_plain
    assert all(" " in t for t in seg_lm["ja"]) and seg_lm["en"] == plain_lm["en"]
    assert [u.text for u in seg["test_en"]] == [u.text for u in plain["test_en"]]
    refs = {u.utt_id: u.text for u in seg["test_ja"]}
    unsegmented = score_texts(refs, {k: v.replace(" ", "") for k, v in refs.items()}, "ja")
    assert unsegmented.total.errors == 0
    with pytest.raises(ValueError, match="segmented_languages"):
        from_dict(CorpusConfig, {**_tiny_config_dict(), "segmented_languages": ["ko"]})


def test_bad_config_is_an_error():
    data = {"domains": {"a": {"variants": ["m1"], "speed": [150, 180], "pitch": [30, 60], "amplitude": [90, 110]}},
            "sets": [{"name": "train", "domain": "zz", "utts_per_lang": {"en": 2}}]}
    with pytest.raises(ValueError, match="unknown domain 'zz'"):
        from_dict(CorpusConfig, data)
    data["sets"][0]["domain"] = "a"
    data["sets"][0]["utts_per_lang"] = {"ar": 2}
    with pytest.raises(ValueError, match="cannot synthesise language 'ar'"):
        from_dict(CorpusConfig, data)


@needs_espeak
def test_synthesised_corpus_validates_and_is_deterministic(tmp_path):
    cfg = _tiny_config()
    counts = synthesize_corpus(cfg, tmp_path / "a" / "corpus", tmp_path / "a" / "data", nj=1)
    assert counts == {"train": 12, "test_en": 2, "test_ja": 2}
    data = tmp_path / "a" / "data"
    for name in counts:
        dd = DataDir.load(data / name)
        dd.validate(check_audio=True)
        assert len(dd) == counts[name]
        assert set(dd.spk2utt) == set(dd.utt2spk.values())
        for utt in dd.utt_ids:
            info = soundfile.info(dd.wav_scp[utt])
            assert info.samplerate == 16000 and info.subtype == "PCM_16" and info.channels == 1
            assert abs(info.duration - dd.utt2dur[utt]) < 2e-3
    train = DataDir.load(data / "train")
    assert sorted(train.utt2lang.values()).count("ru") == 4
    test_speakers = set(DataDir.load(data / "test_en").utt2spk.values())
    assert test_speakers.isdisjoint(train.utt2spk.values())
    assert (data / "local" / "lm_text" / "text").read_text().count("\n") == 15

    # the same seed gives the same corpus, also when synthesised by 2 processes
    synthesize_corpus(cfg, tmp_path / "b" / "corpus", tmp_path / "b" / "data", nj=2)
    again = DataDir.load(tmp_path / "b" / "data" / "train")
    assert again.text == train.text and again.utt2spk == train.utt2spk and again.utt2dur == train.utt2dur
    for utt in train.utt_ids:
        assert Path(train.wav_scp[utt]).read_bytes() == Path(again.wav_scp[utt]).read_bytes()


def _breathy_audio(rand_calls: int) -> bytes:
    """In a fresh process: call the C library's rand() `rand_calls` times, then synthesise with a voice
    whose `breath` noise espeak-ng draws from rand()."""
    import ctypes

    from zipasr.mini.synth import Espeak
    for _ in range(rand_calls):
        ctypes.CDLL(None).rand()
    return Espeak().synthesize("the same words again", "en+f3", 170, 50, 100, noise_seed=1234).tobytes()


@needs_espeak
def test_breath_noise_does_not_depend_on_earlier_rand_calls():
    """espeak-ng's noise comes from the process-global rand(), inherited through fork: the audio of an
    utterance must depend on its own seed only, not on what else ran in the process before it."""
    import multiprocessing
    with multiprocessing.get_context("fork").Pool(1, maxtasksperchild=1) as pool:
        audio = [pool.apply(_breathy_audio, (n,)) for n in (0, 5, 0)]
    assert audio[0] == audio[1] == audio[2]


def test_a_failed_audio_write_names_the_file_and_utterance(tmp_path):
    """libsndfile reports a full disk as "System error.": the error names the file, the utterance, the free space."""
    from zipasr.mini.synth import Speaker, Utterance, _synth_batch

    path = tmp_path / "no_such_dir" / "u1.wav"   # not writable: its directory does not exist
    utt = Utterance("en_u1", "en", "hello world", Speaker("spk1", "en+m1", 170, 50, 100), str(path))
    with pytest.raises(OSError, match=r"cannot write .*u1\.wav for utterance en_u1 .*GiB free there"):
        _synth_batch(([utt], 16000))
