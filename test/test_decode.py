"""Decoding: batched = one at a time, KV-cache greedy = step-by-step argmax, the CLI's outputs."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from test_train_helpers import one_thread, trained_experiments  # noqa: F401  (one_thread: fixture)
from zipasr.data.datadir import read_kaldi_map
from zipasr.train.dataset import SpeechDataset

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_whisper_dir, tiny_llm_dir):
    return trained_experiments(tmp_path_factory.mktemp("runs"), tiny_whisper_dir, tiny_llm_dir)


@pytest.fixture(scope="module")
def model_and_data(runs):
    from zipasr.train.inference import load_model

    model, _ = load_model(runs["stage2"])
    data = SpeechDataset(runs["data"], model.languages, None, cache=True)
    return model, data


def _generate(model, data, indices, **kwargs):
    batch = data.collate([[i] for i in indices])
    return model.generate(batch.feats, batch.feat_lens, batch.lang_ids, **kwargs)


def test_batched_equals_one_at_a_time(model_and_data):
    model, data = model_and_data
    indices = list(range(0, len(data), 2))  # mixed languages and lengths
    for segment in (0, None):  # full context, then the model's chunked decoding regime
        batched = _generate(model, data, indices, max_new_tokens=8, segment_frames=segment)
        single = [_generate(model, data, [i], max_new_tokens=8, segment_frames=segment)[0] for i in indices]
        assert batched == single
        assert any(batched)


def test_kv_cache_greedy_equals_stepwise_argmax_and_beam_runs(model_and_data):
    model, data = model_and_data
    i = 3
    batch = data.collate([[i]])
    with torch.no_grad():
        speech, lens = model.encode(batch.feats, batch.feat_lens, batch.lang_ids)
        embed = model.llm.get_input_embeddings()
        prefix = torch.cat([embed(torch.tensor(model.prompt_ids[int(batch.lang_ids[0])])), speech[0, :int(lens[0])]])
        tokens = []
        for _ in range(8):
            inputs = torch.cat([prefix, embed(torch.tensor(tokens, dtype=torch.long))])[None]
            next_id = int(model.llm(inputs_embeds=inputs).logits[0, -1].argmax())
            if next_id == model.eos_id:
                break
            tokens.append(next_id)
    expected = model.tokenizer.decode(tokens, skip_special_tokens=True).strip()
    assert _generate(model, data, [i], max_new_tokens=8, num_beams=1) == [expected]
    beams = _generate(model, data, [i, i + 1], max_new_tokens=8, num_beams=3)
    assert len(beams) == 2 and all(isinstance(t, str) for t in beams)


def test_decode_cli_writes_sorted_text_and_embeddings(runs, tmp_path):
    from zipasr.bin.decode import main

    out = tmp_path / "decode"
    conf = tmp_path / "decode.yaml"
    conf.write_text("beam: 1\nbatch_size: 5\nmax_new_tokens: 6\n")
    assert main(["--config", str(conf), "--exp_dir", str(runs["stage2"]), "--data_dir", str(runs["data"]),
                 "--out_dir", str(out), "--dump_embeddings", "--threads", "1"]) == 0
    lines = (out / "text").read_text(encoding="utf-8").splitlines()
    utts = [line.split(maxsplit=1)[0] for line in lines]
    ref = read_kaldi_map(runs["data"] / "text")
    assert utts == sorted(ref)
    emb = np.load(out / "embeddings.npz")
    assert emb["embeddings"].shape == (len(ref), 32)
    assert list(emb["utts"]) == sorted(ref)
    utt2lang = read_kaldi_map(runs["data"] / "utt2lang")
    assert list(emb["langs"]) == [utt2lang[u] for u in sorted(ref)]
    assert "utt/s" in (out / "decode.log").read_text()
    # same hypotheses with a different batch size and another attention kernel
    out2 = tmp_path / "decode2"
    assert main(["--exp_dir", str(runs["stage2"]), "--data_dir", str(runs["data"]), "--out_dir", str(out2),
                 "--batch_size", "3", "--max_new_tokens", "6", "--attn_implementation", "eager"]) == 0
    assert "attention eager" in (out2 / "decode.log").read_text()
    assert "attention sdpa" in (out / "decode.log").read_text()
    assert (out2 / "text").read_text(encoding="utf-8") == (out / "text").read_text(encoding="utf-8")


def test_decode_config_with_unknown_key_is_an_error(tmp_path):
    from zipasr.bin.decode import main

    conf = tmp_path / "decode.yaml"
    conf.write_text("beams: 4\n")
    with pytest.raises(SystemExit):
        main(["--config", str(conf), "--exp_dir", "x", "--data_dir", "y", "--out_dir", "z"])


@pytest.fixture
def generate_calls(monkeypatch):
    """The keyword arguments of every SpeechLLM.generate call (which still runs)."""
    from zipasr.model.speech_llm import SpeechLLM

    calls = []
    original = SpeechLLM.generate

    def spy(self, *args, **kwargs):
        calls.append(kwargs)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(SpeechLLM, "generate", spy)
    return calls


def _decode_args(runs):
    return ["--exp_dir", str(runs["stage2"]), "--data_dir", str(runs["data"]), "--max_new_tokens", "6",
            "--batch_size", "4"]


def test_decode_cli_passes_the_length_penalty_to_beam_search(runs, tmp_path, generate_calls):
    from zipasr.bin.decode import main

    calls, common = generate_calls, _decode_args(runs)
    assert main([*common, "--out_dir", str(tmp_path / "beam"), "--beam", "3", "--length_penalty", "0.5"]) == 0
    assert calls and all(c["num_beams"] == 3 and c["length_penalty"] == 0.5 for c in calls)
    assert "beam 3 (length penalty 0.5)" in (tmp_path / "beam" / "decode.log").read_text()
    calls.clear()  # greedy search has no length penalty: none is passed (transformers would warn)
    assert main([*common, "--out_dir", str(tmp_path / "greedy"), "--length_penalty", "0.5"]) == 0
    assert calls and all(c["num_beams"] == 1 and "length_penalty" not in c for c in calls)


def test_decode_cli_passes_no_repeat_ngram_size(runs, tmp_path, generate_calls):
    from zipasr.bin.decode import main

    calls, common = generate_calls, _decode_args(runs)
    assert main([*common, "--out_dir", str(tmp_path / "ngram"), "--no_repeat_ngram_size", "4"]) == 0
    assert calls and all(c["no_repeat_ngram_size"] == 4 for c in calls)
    assert "no repeated 4-grams" in (tmp_path / "ngram" / "decode.log").read_text()
    calls.clear()  # 0 (the default) passes nothing: transformers' own default applies
    assert main([*common, "--out_dir", str(tmp_path / "plain")]) == 0
    assert calls and all("no_repeat_ngram_size" not in c for c in calls)


def test_lexicon_constrained_decoding_writes_lexicon_words_only(runs, model_and_data, tmp_path):
    from transformers import LogitsProcessorList

    from zipasr.bin.decode import main
    from zipasr.model.lexicon import LexiconConstraint, write_lexicon

    model, data = model_and_data
    ref = read_kaldi_map(runs["data"] / "text")
    utt2lang = read_kaldi_map(runs["data"] / "utt2lang")
    lexicon: dict[str, set[str]] = {}
    for utt, line in ref.items():
        lexicon.setdefault(utt2lang[utt], set()).update(line.split())
    free_lang = sorted(lexicon)[-1]  # one language stays unconstrained

    def in_lexicon(text, words):  # the last word may be cut by max_new_tokens: a prefix of a word then
        *whole, last = text.split() or [""]
        return all(w in words for w in whole) and any(w.startswith(last) for w in words)

    constrained = {lang: words for lang, words in lexicon.items() if lang != free_lang}
    constraint = LexiconConstraint.from_tokenizer(constrained, model.tokenizer)
    indices = list(range(len(data)))
    langs = [model.languages[int(i)] for i in data.collate([[i] for i in indices]).lang_ids]
    free = _generate(model, data, indices, max_new_tokens=12)
    assert any(w not in lexicon[lang] for text, lang in zip(free, langs) for w in text.split())  # random model
    for beams in (1, 3):
        texts = _generate(model, data, indices, max_new_tokens=12, num_beams=beams,
                          logits_processor=LogitsProcessorList([constraint.processor(langs, beams)]))
        for k, (text, lang) in enumerate(zip(texts, langs)):
            if lang in constrained:
                assert in_lexicon(text, constrained[lang]), (lang, text)
            elif beams == 1:
                assert text == free[k]  # no lexicon: the same greedy hypothesis
    write_lexicon(constrained, tmp_path / "lex")
    out = tmp_path / "decode"
    assert main(_decode_args(runs) + ["--out_dir", str(out), "--lexicon", str(tmp_path / "lex")]) == 0
    assert "lexicon" in (out / "decode.log").read_text()
    for utt, text in read_kaldi_map(out / "text").items():
        if utt2lang[utt] in constrained:
            assert in_lexicon(text, constrained[utt2lang[utt]]), (utt, text)


def _ctc_dir(tmp_path, runs, d_enc=32):
    """A CTC head (random) over the characters of the tiny data's transcripts, as an encoder dir holds it."""
    import json

    from safetensors.torch import save_file

    from zipasr.model.ctc import CTC_HEAD_FILE, CTC_VOCAB_FILE, CharVocab

    vocab = CharVocab.from_texts(read_kaldi_map(runs["data"] / "text").values())
    torch.manual_seed(0)
    head = torch.nn.Linear(d_enc, len(vocab))
    path = tmp_path / "ctc"
    path.mkdir()
    save_file({k: v.contiguous() for k, v in head.state_dict().items()}, str(path / CTC_HEAD_FILE))
    (path / CTC_VOCAB_FILE).write_text(json.dumps(vocab.chars, ensure_ascii=False), encoding="utf-8")
    return path


def test_ctc_rescoring_picks_by_the_combined_score(runs, model_and_data, tmp_path, monkeypatch):
    import zipasr.model.speech_llm as speech_llm
    from zipasr.model.ctc import CTCScorer

    model, data = model_and_data
    scorer = CTCScorer.from_dir(_ctc_dir(tmp_path, runs))
    indices = list(range(6))
    calls = []

    def spy(llm_scores, ctc, n_tokens, weight, length_penalty):
        best = speech_llm_rescore(llm_scores, ctc, n_tokens, weight, length_penalty)
        calls.append((llm_scores, ctc, n_tokens, weight, best))
        return best

    speech_llm_rescore = speech_llm.rescore
    monkeypatch.setattr(speech_llm, "rescore", spy)
    plain = _generate(model, data, indices, max_new_tokens=8, num_beams=3, length_penalty=0.5)
    tiny = _generate(model, data, indices, max_new_tokens=8, num_beams=3, length_penalty=0.5,
                     ctc_scorer=scorer, ctc_weight=1e-9)
    assert tiny == plain  # a vanishing CTC weight keeps the LLM's best
    assert calls and all(c[-1] == int(c[0].argmax()) for c in calls)
    calls.clear()
    ctc_only = _generate(model, data, indices, max_new_tokens=8, num_beams=3, length_penalty=0.5,
                         ctc_scorer=scorer, ctc_weight=1.0)
    assert len(ctc_only) == len(indices)
    for llm_scores, ctc, n_tokens, _, best in calls:
        assert torch.isfinite(ctc).all() and (ctc < 0).all()
        assert best == int((ctc / n_tokens.float() ** 0.5).argmax())
    assert any(c[-1] != int(c[0].argmax()) for c in calls)  # the random head disagrees with the LLM somewhere
    with pytest.raises(ValueError, match="beam"):
        _generate(model, data, indices, max_new_tokens=8, num_beams=1, ctc_scorer=scorer, ctc_weight=0.5)


def test_ctc_log_likelihood_sums_over_alignments():
    import itertools
    import math

    from zipasr.model.ctc import CharVocab, CTCScorer

    vocab = CharVocab(["a", "b"])  # blank 0, a 1, b 2
    scorer = CTCScorer(torch.nn.Linear(4, 3), vocab)
    torch.manual_seed(0)
    log_probs = torch.randn(4, 3).log_softmax(-1)  # T = 4 frames, one padding frame after length 3

    def brute(text):
        target = vocab.encode(text)
        total = 0.0
        for path in itertools.product(range(3), repeat=3):
            collapsed = [k for j, k in enumerate(path) if k != 0 and (j == 0 or k != path[j - 1])]
            if collapsed == target:
                total += math.exp(sum(float(log_probs[t, k]) for t, k in enumerate(path)))
        return math.log(total)

    got = scorer.log_likelihood(log_probs, 3, ["ab", "a", "aa", "b"])
    assert torch.allclose(got, torch.tensor([brute(t) for t in ["ab", "a", "aa", "b"]]), atol=1e-5)
    assert vocab.covers("ab ba") is False and vocab.covers("abba") is True


class _PieceTokenizer:
    """The part of a sentencepiece tokenizer CTCPrefixScorer reads: ids 0 (pad) and 1 (EOS) special."""

    all_special_ids = [0, 1]

    def __init__(self, pieces):
        self.pieces = pieces

    def __len__(self):
        return len(self.pieces)

    def convert_ids_to_tokens(self, ids):
        return [self.pieces[i] for i in ids]


def test_ctc_prefix_scores_sum_over_alignments():
    """Joint decoding's CTC part: summed over the steps, a hypothesis' CTC scores are its prefix score
    log p_ctc(chars, ...) (all alignments whose labels start with them), and after EOS its CTC
    log-likelihood; checked against enumerating every alignment, for multi-character pieces, word
    boundaries, repeated characters and a batch of two utterances of different lengths."""
    import itertools
    import math

    from zipasr.model.ctc import CharVocab, CTCPrefixScorer, CTCScorer

    pieces = ["<pad>", "</s>", "\u2581a", "b", "a", "\u2581", "ab", "bb"]
    vocab = CharVocab([" ", "a", "b"])
    torch.manual_seed(0)
    scorer = CTCScorer(torch.nn.Linear(4, len(vocab)), vocab)
    hidden, lens = torch.randn(2, 5, 4), torch.tensor([5, 4])
    with torch.no_grad():
        log_probs = scorer.log_probs(hidden)

    def brute(utt, text, exact):
        target, total = vocab.encode(text), []
        for path in itertools.product(range(len(vocab)), repeat=int(lens[utt])):
            labels = [k for j, k in enumerate(path) if k != 0 and (j == 0 or k != path[j - 1])]
            if labels == target if exact else labels[:len(target)] == target:
                total.append(sum(float(log_probs[utt, t, k]) for t, k in enumerate(path)))
        return torch.tensor(total).logsumexp(0).item() if total else -math.inf

    for tokens in ([2, 3, 1], [4, 4, 1], [6, 7, 1], [2, 5, 4, 1], [3, 3, 3, 1]):
        joint = CTCPrefixScorer(scorer, hidden, lens, num_beams=1, weight=1.0, tokenizer=_PieceTokenizer(pieces),
                                eos_id=1, pre_beam=len(pieces))
        ids, total, text = torch.zeros(2, 0, dtype=torch.long), torch.zeros(2), ""
        for token in tokens:
            total += joint(ids, torch.zeros(2, len(pieces)))[:, token]  # LLM log-probs 0: CTC alone
            text += pieces[token].replace("\u2581", " ") if token != 1 else ""
            for utt in range(2):
                expected = brute(utt, text, exact=token == 1)
                assert math.isclose(total[utt], expected, abs_tol=1e-4) or total[utt] == expected == -math.inf
            ids = torch.cat([ids, torch.full((2, 1), token)], 1)
        # "abbb" and "bbb" need 6 and 5 frames: impossible on the 4 frames of utterance 1
        assert bool(total[1] == -math.inf) == (tokens in ([6, 7, 1], [3, 3, 3, 1]))


def test_ctc_prefix_scorer_splits_pieces_into_nfd_characters():
    """With an NFD head a piece "é" extends the prefix by two labels (e, U+0301), and "e" then "\u0301"
    reach the same score: the score of the text's NFD characters."""
    import math

    from zipasr.model.ctc import CharVocab, CTCPrefixScorer, CTCScorer

    pieces = ["<pad>", "</s>", "\u00e9", "e", "\u0301", "\u2581"]
    vocab = CharVocab([" ", "e", "\u0301"], "NFD")
    torch.manual_seed(0)
    scorer = CTCScorer(torch.nn.Linear(4, len(vocab)), vocab)
    hidden, lens = torch.randn(1, 6, 4), torch.tensor([6])
    with torch.no_grad():
        expected = float(scorer.log_likelihood(scorer.log_probs(hidden)[0], 6, ["\u00e9e\u0301"])[0])
    totals = []
    for tokens in ([2, 3, 4, 1], [3, 4, 2, 1]):  # "é" "e" "◌́" and "e" "◌́" "é": both e ◌́ e ◌́
        joint = CTCPrefixScorer(scorer, hidden, lens, num_beams=1, weight=1.0, tokenizer=_PieceTokenizer(pieces),
                                eos_id=1, pre_beam=len(pieces))
        ids, total = torch.zeros(1, 0, dtype=torch.long), 0.0
        for token in tokens:
            total += float(joint(ids, torch.zeros(1, len(pieces)))[0, token])
            ids = torch.cat([ids, torch.full((1, 1), token)], 1)
        totals.append(total)
    assert math.isclose(totals[0], expected, abs_tol=1e-4) and math.isclose(totals[1], expected, abs_tol=1e-4)


def test_appends_unchanged_is_exact_for_both_unicode_forms():
    """The CTC prefix scorer's shortcut: a piece `appends_unchanged` says so for adds its own normal form
    to any text not ending in white space (random texts and pieces of accents, combining marks, tone
    marks, Hangul syllables and jamo, kana with voicing marks, Greek, Arabic, Bengali); the pieces that
    start with a character that composes or reorders are refused."""
    import random

    from zipasr.model.ctc import appends_unchanged, normalize_chars

    alphabet = list("aeouyAEns ßøœ") + ["\u00e9", "\u1ec7", "\u0301", "\u0302", "\u0323", "\u0300", "\u0308",
                                        "\ud55c", "\uac00", "\u1100", "\u1161", "\u11a8", "\u3057", "\u3099",
                                        "\u304b", "\u03ac", "\u03b1", "\u0644", "\u0622", "\u0653", "\u09c7",
                                        "\u09be", "\u0b47", "\u0b3e"]
    rng = random.Random(0)
    pieces = alphabet + ["".join(rng.choice(alphabet) for _ in range(rng.randint(2, 3))) for _ in range(300)]
    for form in ("NFC", "NFD"):
        ok = [p for p in pieces if appends_unchanged(p, form)]
        assert "a" in ok and "\u00e9" in ok and "\u0301" not in ok and " " not in ok and "a b" not in ok
        assert ("\u1161" in ok) == ("\u09be" in ok) == (form == "NFD")  # jamo / vowel sign: compose in NFC
        for _ in range(1500):
            text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 6))).rstrip()
            for piece in ok:
                assert (normalize_chars(text + piece, form)
                        == normalize_chars(text, form) + normalize_chars(piece, form)), (form, text, piece)


def test_ctc_prefix_scorer_prunes_to_the_pre_beam_of_what_is_allowed():
    from zipasr.model.ctc import CharVocab, CTCPrefixScorer, CTCScorer

    pieces = ["<pad>", "</s>", "a", "b", "c", "<0x41>", "\u2581ab"]  # "c" and the byte piece: not scoreable
    scorer = CTCScorer(torch.nn.Linear(4, 3), CharVocab(["a", "b"]))
    joint = CTCPrefixScorer(scorer, torch.randn(1, 6, 4), torch.tensor([6]), num_beams=2, weight=0.4,
                            tokenizer=_PieceTokenizer(pieces), eos_id=1, pre_beam=3)
    llm = torch.tensor([[-9.0, -1.0, -2.0, -3.0, -0.5, -0.1, -4.0],
                        [-9.0, -1.0, -2.0, float("-inf"), -0.5, -0.1, -4.0]]).log_softmax(-1)
    out = joint(torch.zeros(2, 0, dtype=torch.long), llm)
    # Row 0: the 3 best (byte piece, c, EOS): only EOS is scoreable. Row 1 the same.
    assert torch.isfinite(out).nonzero().tolist() == [[0, 1], [1, 1]]
    joint = CTCPrefixScorer(scorer, torch.randn(1, 6, 4), torch.tensor([6]), num_beams=2, weight=0.4,
                            tokenizer=_PieceTokenizer(pieces), eos_id=1, pre_beam=5)
    out = joint(torch.zeros(2, 0, dtype=torch.long), llm)
    assert torch.isfinite(out[0]).nonzero().flatten().tolist() == [1, 2, 3]  # EOS, a, b; not ▁ab (6th best)
    assert torch.isfinite(out[1]).nonzero().flatten().tolist() == [1, 2, 6]  # b was ruled out before (the lexicon)
    finite = torch.isfinite(out)  # (1 - w) x LLM + w x a CTC score change, which is never positive
    assert (out[finite] <= 0.6 * llm[finite] + 1e-6).all()
    # Next step: hypothesis "a" is known; "zz" never was scored (a beam out of the search): LLM scores only.
    nxt = joint(torch.tensor([[2], [4]]), llm)
    assert torch.isfinite(nxt[0]).any() and torch.equal(nxt[1], llm[1])


def test_ctc_prefix_scorer_extends_identical_beams_once(monkeypatch):
    """At step 0 an utterance's beams hold the same (empty) ids: their candidates are extended once
    and every row still gets the scores a one-beam scorer gives it, at step 0 and after."""
    from zipasr.model.ctc import CharVocab, CTCPrefixScorer, CTCScorer

    pieces = ["<pad>", "</s>", "a", "b", "\u2581ab", "\u2581"]
    scorer = CTCScorer(torch.nn.Linear(4, 4), CharVocab([" ", "a", "b"]))
    torch.manual_seed(1)
    hidden, lens = torch.randn(2, 7, 4), torch.tensor([7, 5])
    llm = torch.randn(6, len(pieces)).log_softmax(-1)  # 2 utterances x 3 beams

    def make(n_beams, h=hidden, n=lens):
        return CTCPrefixScorer(scorer, h, n, num_beams=n_beams, weight=0.5, tokenizer=_PieceTokenizer(pieces),
                               eos_id=1, pre_beam=len(pieces))

    widths = []
    extend = CTCPrefixScorer._extend
    monkeypatch.setattr(CTCPrefixScorer, "_extend", lambda self, r_n, *a: widths.append(r_n.shape[1]) or
                        extend(self, r_n, *a))
    joint = make(3)
    out = joint(torch.zeros(6, 0, dtype=torch.long), llm)
    # 2 utterances x the pieces adding characters (a, b, ▁ab: "ab" at the start; ▁ adds none), the
    # second character of "ab" next; not 3 times that (one per beam)
    assert widths == [2 * 3, 2 * 1]
    assert len(joint.states) == 2 * 4
    nxt_ids = torch.tensor([[2], [3], [4], [2], [3], [5]])
    nxt = joint(nxt_ids, llm)
    for row in range(6):
        utt = row // 3
        single = make(1, hidden[utt:utt + 1], lens[utt:utt + 1])
        assert torch.allclose(out[row], single(torch.zeros(1, 0, dtype=torch.long), llm[row:row + 1])[0])
        assert torch.allclose(nxt[row], single(nxt_ids[row:row + 1], llm[row:row + 1])[0])


def test_joint_ctc_decoding(runs, model_and_data, tmp_path):
    from zipasr.model.ctc import CharVocab, CTCScorer
    from zipasr.model.lexicon import piece_texts

    model, data = model_and_data
    indices = list(range(6))
    # A head over every character the tokenizer can write: a vanishing weight then changes no greedy step.
    scorer = CTCScorer.from_dir(_ctc_dir(tmp_path, runs))
    vocab = CharVocab(sorted(set("".join(piece_texts(model.tokenizer))) | set(scorer.vocab.chars)))
    scorer = CTCScorer.warm_start(vocab, scorer.head.in_features, scorer)
    plain = _generate(model, data, indices, max_new_tokens=8)
    assert _generate(model, data, indices, max_new_tokens=8, ctc_scorer=scorer, ctc_weight=1e-6,
                     ctc_mode="joint") == plain
    beam = _generate(model, data, indices, max_new_tokens=8, num_beams=3, length_penalty=0.5)
    ctc_only = _generate(model, data, indices, max_new_tokens=8, num_beams=3, length_penalty=0.5,
                         ctc_scorer=scorer, ctc_weight=1.0, ctc_mode="joint")
    assert len(ctc_only) == len(indices) and ctc_only != beam  # the random head steers the search
    with pytest.raises(ValueError, match="ctc_mode"):
        _generate(model, data, indices, max_new_tokens=8, ctc_scorer=scorer, ctc_weight=0.5, ctc_mode="prefix")


def test_decode_cli_ctc_rescoring_and_its_errors(runs, tmp_path, capsys, caplog):
    import json
    import logging

    from zipasr.bin.decode import main
    from zipasr.model.ctc import CTC_VOCAB_FILE

    ctc = _ctc_dir(tmp_path, runs)
    out = tmp_path / "decode"
    assert main(_decode_args(runs) + ["--out_dir", str(out), "--beam", "2", "--ctc_weight", "0.3",
                                      "--ctc_dir", str(ctc)]) == 0
    assert "CTC rescoring weight 0.3" in (out / "decode.log").read_text()
    assert len(read_kaldi_map(out / "text")) == len(read_kaldi_map(runs["data"] / "text"))
    assert main(_decode_args(runs) + ["--out_dir", str(out), "--ctc_weight", "0.3", "--ctc_dir", str(ctc)]) == 1
    assert "--beam 2 or more" in capsys.readouterr().err
    # Joint CTC/attention decoding needs no N-best: greedy works too.
    assert main(_decode_args(runs) + ["--out_dir", str(out), "--ctc_weight", "0.3", "--ctc_dir", str(ctc),
                                      "--ctc_mode", "joint"]) == 0
    assert "CTC joint decoding weight 0.3" in (out / "decode.log").read_text()
    assert len(read_kaldi_map(out / "text")) == len(read_kaldi_map(runs["data"] / "text"))
    # A head without some of the references' letters: joint decoding warns, naming the languages.
    vocab = json.loads((ctc / CTC_VOCAB_FILE).read_text(encoding="utf-8"))
    (ctc / CTC_VOCAB_FILE).write_text(json.dumps(vocab[:-1] + ["\u00e6"]), encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="zipasr.decode"):
        assert main(_decode_args(runs) + ["--out_dir", str(out), "--ctc_weight", "0.3", "--ctc_dir", str(ctc),
                                          "--ctc_mode", "joint"]) == 0
    assert "cannot spell every reference character" in caplog.text and vocab[-1] in caplog.text
    assert main(_decode_args(runs) + ["--out_dir", str(out), "--beam", "2", "--ctc_weight", "0.3"]) == 1
    assert "ctc_head.safetensors not found" in capsys.readouterr().err  # the tiny Whisper has no CTC head
