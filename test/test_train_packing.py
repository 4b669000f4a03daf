"""Packing, batch order and lr schedule: pure logic, no model."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from zipasr.train.packing import BatchOrder, language_sample, pack_rows
from zipasr.train.schedule import build_scheduler, warmup_cosine


def _corpus(n=300, seed=0):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(20, 400, size=n).tolist()
    langs = rng.choice(["en", "de", "fr", "zh"], size=n, p=[0.6, 0.2, 0.15, 0.05]).tolist()
    return lengths, langs


def test_pack_rows_same_language_within_budget_and_complete():
    lengths, langs = _corpus()
    rows = pack_rows(lengths, langs, 1024, np.random.default_rng(1))
    flat = sorted(i for row in rows for i in row)
    assert flat == list(range(len(lengths)))  # every utterance exactly once
    for row in rows:
        assert len({langs[i] for i in row}) == 1
        assert sum(lengths[i] for i in row) <= 1024
    # best-fit decreasing leaves little room: real tokens / (rows * budget)
    fill = sum(lengths) / (len(rows) * 1024)
    assert fill > 0.9, fill


def test_pack_rows_overlong_utterance_gets_own_row():
    rows = pack_rows([5000, 10, 10], ["en"] * 3, 100, np.random.default_rng(0))
    assert sorted(map(sorted, rows)) == [[0], [1, 2]]


def test_batch_order_is_deterministic_and_resumable():
    lengths, langs = _corpus()
    a = BatchOrder(lengths, langs, 1024, batch_size=4, seed=3)
    seq = [a.next() for _ in range(3 * a.batches_per_epoch() // 2)]  # crosses an epoch boundary
    b = BatchOrder(lengths, langs, 1024, batch_size=4, seed=3)
    for _ in range(7):
        b.next()
    state = b.state_dict()
    c = BatchOrder(lengths, langs, 1024, batch_size=4, seed=3)
    c.load_state_dict(state)
    assert [c.next() for _ in range(len(seq) - 7)] == seq[7:]
    assert a.peek(2) == [a.next(), a.next()]
    # another epoch is another order
    assert a.global_batches(0)[1] != a.global_batches(1)[1]


def test_batch_order_ranks_split_the_global_batch():
    lengths, langs = _corpus()
    single = BatchOrder(lengths, langs, 1024, batch_size=4, world_size=1, rank=0, seed=0)
    ranks = [BatchOrder(lengths, langs, 1024, batch_size=2, world_size=2, rank=r, seed=0) for r in range(2)]
    for _ in range(5):
        whole = single.local_rows(single.next())
        parts = [o.local_rows(o.next()) for o in ranks]
        assert parts[0] + parts[1] == whole


def test_batch_order_too_little_data_is_an_error():
    with pytest.raises(ValueError, match="global batch"):
        BatchOrder([10, 10], ["en", "de"], 100, batch_size=4)


def test_language_sample_follows_tempered_shares_and_repeats_evenly():
    langs = ["en"] * 1000 + ["pt"] * 30 + ["ja"] * 10
    rng = np.random.default_rng(0)
    assert language_sample(langs, 1.0, rng) == list(range(len(langs)))  # alpha 1: every utterance once
    picked = language_sample(langs, 0.5, rng)
    counts = {lang: sum(langs[i] == lang for i in picked) for lang in ("en", "pt", "ja")}
    shares = np.sqrt(np.array([1000, 30, 10]) / 1040)
    expected = np.rint(1040 * shares / shares.sum()).astype(int).tolist()
    assert [counts["en"], counts["pt"], counts["ja"]] == expected == [817, 141, 82]
    # the rare languages are repeated evenly: each utterance floor or ceil of count / n times
    ja_times = np.bincount([i - 1030 for i in picked if langs[i] == "ja"], minlength=10)
    assert ja_times.max() - ja_times.min() <= 1 and ja_times.min() == 82 // 10
    # the common one is subsampled without repeats
    en = [i for i in picked if langs[i] == "en"]
    assert len(set(en)) == len(en)
    equal = language_sample(langs, 0.0, rng)  # alpha 0: the same share for every language
    assert [sum(langs[i] == lang for i in equal) for lang in ("en", "pt", "ja")] == [347, 347, 347]
    with pytest.raises(ValueError, match="alpha"):
        language_sample(langs, 1.5, rng)


def test_language_sample_lang_weights_multiply_shares():
    langs = ["en"] * 500 + ["vi"] * 500 + ["pt"] * 40
    rng = np.random.default_rng(0)
    picked = language_sample(langs, 1.0, rng, {"vi": 2.0})  # with alpha 1: shares 500 : 1000 : 40
    counts = [sum(langs[i] == lang for i in picked) for lang in ("en", "vi", "pt")]
    assert counts == np.rint(1040 * np.array([500, 1000, 40]) / 1540).astype(int).tolist() == [338, 675, 27]
    vi_times = np.bincount([i - 500 for i in picked if langs[i] == "vi"], minlength=500)
    assert vi_times.min() == 1 and vi_times.max() == 2  # every vi utterance once, 175 of them twice
    assert language_sample(langs, 1.0, rng, {}) == list(range(len(langs)))
    with pytest.raises(ValueError, match=r"without training data: \['xx'\]"):
        language_sample(langs, 0.5, rng, {"xx": 2.0})
    with pytest.raises(ValueError, match="positive"):
        language_sample(langs, 0.5, rng, {"vi": 0.0})
    lengths = [100] * len(langs)
    weighted = BatchOrder(lengths, langs, 1024, batch_size=4, seed=0, lang_weights={"vi": 3.0})
    flat = [i for row in weighted.global_batches(0)[0] for i in row]
    assert sum(langs[i] == "vi" for i in flat) > 2.5 * sum(langs[i] == "en" for i in flat)


def test_batch_order_lang_alpha_keeps_rows_monolingual_and_upsamples_rare_languages():
    lengths, langs = _corpus(n=600)
    plain = BatchOrder(lengths, langs, 1024, batch_size=4, seed=0)
    # alpha 1 is the unsampled order: every utterance once, as pack_rows gives it
    rows = plain.global_batches(0)[0]
    assert rows == pack_rows(lengths, langs, 1024, np.random.default_rng([0, 0]))
    tempered = BatchOrder(lengths, langs, 1024, batch_size=4, seed=0, lang_alpha=0.3)
    rows = tempered.global_batches(0)[0]
    flat = [i for row in rows for i in row]
    for row in rows:
        assert len({langs[i] for i in row}) == 1 and sum(lengths[i] for i in row) <= 1024
    share = lambda items, lang: sum(langs[i] == lang for i in items) / len(items)
    assert share(flat, "zh") > 2 * share(range(len(langs)), "zh")
    assert share(flat, "en") < share(range(len(langs)), "en")
    assert tempered.global_batches(1)[0] != rows  # every epoch draws anew
    with pytest.raises(ValueError, match="alpha"):
        BatchOrder(lengths, langs, 1024, batch_size=4, lang_alpha=-0.1)


def test_warmup_cosine_schedule():
    total, warm = 100, 10
    values = [warmup_cosine(s, total, warm) for s in range(total + 5)]
    assert values[0] == pytest.approx(0.1) and values[9] == pytest.approx(1.0)
    assert values[10] == pytest.approx(1.0)
    assert values[55] == pytest.approx(0.5 * (1 + math.cos(math.pi * 45 / 90)))
    assert values[100] == pytest.approx(0.0, abs=1e-12) and values[104] == pytest.approx(0.0, abs=1e-12)
    assert all(a >= b for a, b in zip(values[10:], values[11:]))
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=2e-5)
    sched = build_scheduler(opt, total_steps=100, warmup_ratio=0.1)
    assert opt.param_groups[0]["lr"] == pytest.approx(2e-6)
    for _ in range(10):
        opt.step()
        sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(2e-5)


def test_prune_keeps_last_full_checkpoints_and_weights_for_averaging(tmp_path):
    from zipasr.train.checkpoint import STATE, WEIGHTS, list_checkpoints, prune_checkpoints, step_dir_name

    for step in range(1, 7):
        d = tmp_path / step_dir_name(step)
        d.mkdir()
        for name in (WEIGHTS, STATE, "mp_rank_00_model_states.pt", "rng_rank0.safetensors"):
            (d / name).write_text("x")
    (tmp_path / ".tmp-step_00000007").mkdir()  # a save that was killed: never listed
    prune_checkpoints(tmp_path, keep_last=2, keep_weights_last=4)
    assert [c.name for c in list_checkpoints(tmp_path)] == [step_dir_name(s) for s in (3, 4, 5, 6)]
    assert sorted(p.name for p in (tmp_path / step_dir_name(3)).iterdir()) == sorted([STATE, WEIGHTS])
    assert len(list((tmp_path / step_dir_name(5)).iterdir())) == 4
