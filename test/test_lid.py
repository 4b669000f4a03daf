"""LID embeddings e(l): whisper (lang_to_id), acoustic, file sources; the lid_embed entry point."""
import json
import shutil

import numpy as np
import pytest
import soundfile as sf
import torch
from transformers import WhisperModel

from conftest import TINY_LANG_TO_ID
from zipasr.bin import lid_embed
from zipasr.model.encoder import WhisperSpeechEncoder
from zipasr.model.lid import (
    acoustic_lid_embeddings,
    cosine_similarity_matrix,
    lid_embeddings_for_model,
    load_lid_embeddings,
    save_lid_embeddings,
    whisper_language_token_ids,
    whisper_lid_embeddings,
)


def test_whisper_source_uses_lang_to_id(tiny_whisper_dir):
    langs = ["fr", "en", "de"]
    ids = whisper_language_token_ids(tiny_whisper_dir, langs)
    assert ids == [TINY_LANG_TO_ID["<|fr|>"], TINY_LANG_TO_ID["<|en|>"], TINY_LANG_TO_ID["<|de|>"]]
    table = WhisperModel.from_pretrained(tiny_whisper_dir).get_decoder().embed_tokens.weight.detach()
    emb = whisper_lid_embeddings(tiny_whisper_dir, langs)
    assert torch.equal(emb, table[ids])
    assert not torch.equal(emb, table[[0, 1, 2]])


def test_whisper_source_errors(tiny_whisper_dir, tmp_path):
    with pytest.raises(KeyError, match=r"it \(<\|it\|>\)"):
        whisper_lid_embeddings(tiny_whisper_dir, ["en", "it"])
    copy = tmp_path / "no_gen"
    shutil.copytree(tiny_whisper_dir, copy)
    (copy / "generation_config.json").unlink()
    with pytest.raises(FileNotFoundError, match="generation_config.json"):
        whisper_lid_embeddings(copy, ["en"])
    (copy / "generation_config.json").write_text(json.dumps({"eos_token_id": 2}))
    with pytest.raises(KeyError, match="lang_to_id"):
        whisper_lid_embeddings(copy, ["en"])
    with pytest.raises(FileNotFoundError, match="not found"):
        whisper_lid_embeddings(tmp_path / "missing", ["en"])


def test_file_roundtrip_reorders_rows(tmp_path):
    emb = torch.randn(3, 5)
    path = save_lid_embeddings(emb, ["en", "de", "fr"], tmp_path / "e.safetensors", source="whisper")
    back, langs = load_lid_embeddings(path)
    assert langs == ["en", "de", "fr"] and torch.equal(back, emb)
    picked = lid_embeddings_for_model("file", ["fr", "en"], file=path)
    assert torch.equal(picked, emb[[2, 0]])
    with pytest.raises(KeyError, match="zh"):
        load_lid_embeddings(path, ["en", "zh"])
    with pytest.raises(ValueError, match="lid_file"):
        lid_embeddings_for_model("acoustic", ["en"])


def test_acoustic_source_is_mean_of_utterance_means(tiny_whisper_dir):
    encoder = WhisperSpeechEncoder.from_pretrained(tiny_whisper_dir)
    g = torch.Generator().manual_seed(0)
    items = [(torch.randn(80, n, generator=g), lang) for n, lang in
             [(100, "en"), (60, "de"), (140, "en"), (80, "it"), (30, "de")]]
    emb = acoustic_lid_embeddings(encoder, iter(items), ["de", "en"], batch_size=2)
    pooled = [encoder.utterance_embeddings(f[None], torch.tensor([f.shape[1]]))[0] for f, _ in items]
    torch.testing.assert_close(emb[0], (pooled[1] + pooled[4]) / 2, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(emb[1], (pooled[0] + pooled[2]) / 2, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="fr"):
        acoustic_lid_embeddings(encoder, iter(items), ["en", "fr"])


def test_cosine_matrix():
    sim = cosine_similarity_matrix(torch.tensor([[1.0, 0.0], [2.0, 0.0], [0.0, 3.0]]))
    torch.testing.assert_close(sim, torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 1.0]]))


def test_cli_whisper_source(tiny_whisper_dir, tmp_path, capsys):
    out = tmp_path / "lid" / "whisper.safetensors"
    lid_embed.main(["--source", "whisper", "--whisper_dir", str(tiny_whisper_dir),
                    "--languages", "en", "zh", "--out", str(out)])
    emb, langs = load_lid_embeddings(out)
    assert langs == ["en", "zh"] and emb.shape == (2, 32)
    assert out.with_suffix(".png").stat().st_size > 0
    assert "cosine similarity" in capsys.readouterr().out


def test_cli_acoustic_source_from_data_dir(tiny_whisper_dir, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    rng = np.random.default_rng(0)
    utts = {"u1": "en", "u2": "de", "u3": "en"}
    for utt in utts:
        sf.write(tmp_path / f"{utt}.wav", 0.1 * rng.standard_normal(8000).astype(np.float32), 16000)
    (data / "wav.scp").write_text("".join(f"{u} {tmp_path / u}.wav\n" for u in utts))
    (data / "text").write_text("".join(f"{u} hello\n" for u in utts))
    (data / "utt2spk").write_text("".join(f"{u} {u}\n" for u in utts))
    (data / "utt2lang").write_text("".join(f"{u} {lang}\n" for u, lang in utts.items()))
    out = tmp_path / "acoustic.safetensors"
    lid_embed.main(["--source", "acoustic", "--encoder_dir", str(tiny_whisper_dir), "--data_dir", str(data),
                    "--languages", "de", "en", "--out", str(out), "--heatmap", str(tmp_path / "h.png")])
    emb, langs = load_lid_embeddings(out)
    assert langs == ["de", "en"] and emb.shape == (2, 32) and torch.isfinite(emb).all()
    assert (tmp_path / "h.png").is_file()
    with pytest.raises(SystemExit):
        lid_embed.main(["--source", "acoustic", "--languages", "en", "--out", str(out)])
