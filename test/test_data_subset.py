"""Subsets: the paper authors' released id lists select exactly the listed ids (MLS ids normalised), and
random subsets by hours stay within one utterance of the budget, the same seed giving the same subset."""
from __future__ import annotations

from pathlib import Path

import pytest

from zipasr.bin import subset_data_dir
from zipasr.data import DataDir, DataDirError, normalize_utt_id, read_id_list, subset_by_hours, subset_by_ids

LISTS = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures" / "zipper_lora_utt_lists"


def _fake_dir(utts: list[str], lang: str, durs: list[float] | None = None) -> DataDir:
    """A data dir in memory (audio paths are never opened by subsetting)."""
    durs = durs or [1.0 + (i % 7) for i in range(len(utts))]
    return DataDir(wav_scp={u: f"/nonexistent/{u}.flac" for u in utts}, text={u: "t" for u in utts},
                   utt2spk={u: u.split("_")[0] for u in utts}, utt2lang={u: lang for u in utts},
                   utt2dur=dict(zip(utts, durs)), path=Path("mem"))


def test_normalize_utt_id():
    assert normalize_utt_id("02422_03333_001654") == "2422_3333_1654"
    assert normalize_utt_id("2422_3333_001654") == "2422_3333_1654"
    assert normalize_utt_id("common_voice_ko_0035844068") == "common_voice_ko_35844068"
    assert normalize_utt_id("1089-134686-0000") == "1089-134686-0"
    assert normalize_utt_id("spk_a01") == "spk_a01"


@pytest.mark.skipif(not LISTS.is_dir(), reason="released id lists not present")
def test_released_mls_list_with_padded_ids():
    """A toolkit that zero-pads MLS speakers/books still matches the authors' unpadded list exactly."""
    ids = read_id_list(LISTS / "train" / "lite_1h" / "mls" / "train_mls_de_ids.txt")
    assert len(ids) == 2000
    padded = [f"0{s}_0{b}_{seg}" for s, b, seg in (i.split("_") for i in ids)]
    extra = ["99999_00001_000001", "99999_00001_000002"]
    dd = _fake_dir(padded[::-1] + extra, "de")
    sub, missing = subset_by_ids(dd, ids)
    assert missing == []
    assert sub.utt_ids == sorted(padded) and not set(extra) & set(sub.text)
    # without normalisation nothing matches, and require_all makes that an error
    assert len(subset_by_ids(dd, ids, normalize=False)[0]) == 0
    with pytest.raises(DataDirError, match="2000 of 2000 listed ids are not in"):
        subset_by_ids(dd, ids, normalize=False, require_all=True)


@pytest.mark.skipif(not LISTS.is_dir(), reason="released id lists not present")
def test_released_commonvoice_list_cli(tmp_path):
    list_file = LISTS / "train" / "lite_1h" / "commo-voice" / "train_com_voice_ko_ids.txt"
    ids = read_id_list(list_file)
    others = [f"common_voice_ko_{n}" for n in range(1, 301)]
    dd = _fake_dir(sorted(ids + others), "ko")
    dd.write(tmp_path / "train_ko", validate=False)
    assert subset_data_dir.main([str(tmp_path / "train_ko"), str(tmp_path / "ko_1h"), "--ids", str(list_file),
                                 "--require_all"]) == 0
    assert DataDir.load(tmp_path / "ko_1h").utt_ids == sorted(set(ids))


def test_repeated_ids_upsample():
    dd = _fake_dir(["1595_2012_001403", "1595_2012_001404"], "it")
    sub, _ = subset_by_ids(dd, ["1595_2012_001403", "1595_2012_001404", "1595_2012_001403"])
    assert sub.utt_ids == ["1595_2012_001403", "1595_2012_001403-rep2", "1595_2012_001404"]
    assert sub.wav_scp["1595_2012_001403-rep2"] == sub.wav_scp["1595_2012_001403"]
    assert len(subset_by_ids(dd, ["1595_2012_001403"] * 2, repeats=False)[0]) == 1


def test_subset_by_hours_budget_and_seed():
    utts = [f"spk{i % 5}_u{i:04d}" for i in range(400)]
    durs = [2.0 + (i * 37 % 13) for i in range(400)]  # 2..14 s
    dd = _fake_dir(utts, "en", durs)
    hours = 0.5
    a = subset_by_hours(dd, hours, seed=3)
    total = sum(a.dur.values())
    assert total <= hours * 3600 < total + max(durs)  # within one utterance of the budget
    assert subset_by_hours(dd, hours, seed=3).utt_ids == a.utt_ids
    assert subset_by_hours(dd, hours, seed=4).utt_ids != a.utt_ids
    # the choice depends on the dir's content, not on dict order
    shuffled = dd.select(dd.text)
    shuffled.text = dict(reversed(list(shuffled.text.items())))
    assert subset_by_hours(shuffled, hours, seed=3).utt_ids == a.utt_ids
    # a budget above the total keeps everything
    assert len(subset_by_hours(dd, 100.0)) == 400


def test_subset_cli_hours_and_lang(tmp_path):
    en = _fake_dir([f"en_{i:03d}" for i in range(50)], "en", [30.0] * 50)
    ko = _fake_dir([f"ko_{i:03d}" for i in range(50)], "ko", [30.0] * 50)
    both = en.select(en.text)
    for m in ("wav_scp", "text", "utt2spk", "utt2lang", "utt2dur"):
        getattr(both, m).update(getattr(ko, m))
    both.write(tmp_path / "all", validate=False)
    assert subset_data_dir.main([str(tmp_path / "all"), str(tmp_path / "ko_10m"), "--lang", "ko",
                                 "--hours", str(10 / 60), "--seed", "1"]) == 0
    sub = DataDir.load(tmp_path / "ko_10m")
    assert set(sub.lang.values()) == {"ko"} and len(sub) == 20


@pytest.mark.skipif(not LISTS.is_dir(), reason="released id lists not present")
def test_released_list_with_repeats_keeps_every_line():
    """The 30 h Korean list names some clips twice (upsampling): every line becomes one utterance."""
    ids = read_id_list(LISTS / "train" / "lite_30h" / "common-voice" / "train_com_voice_ko_ids.txt")
    assert len(set(ids)) < len(ids)
    sub, missing = subset_by_ids(_fake_dir(sorted(set(ids)), "ko"), ids)
    assert missing == [] and len(sub) == len(ids)
    sub.validate()
