"""SpeechLLM: prompt ⊕ speech ⊕ transcript, loss masking, packing, generate, stages, checkpoints."""
import math

import pytest
import torch

from zipasr.adapters import adapter_layers
from zipasr.model.llm import llm_lora_targets, load_llm
from zipasr.model.speech_llm import (
    IGNORE_INDEX,
    EncoderAdapterConfig,
    ModelConfig,
    SpeechBatch,
    SpeechLLM,
    packed_causal_mask,
    seconds_to_frames,
)

LANGS = ["en", "de", "fr", "zh"]
TEXTS = ["the cat sat on the mat", "guten morgen", "bonjour tout le monde", "你好世界"]


@pytest.fixture
def config(tiny_whisper_dir, tiny_llm_dir):
    return ModelConfig(encoder_dir=str(tiny_whisper_dir), llm_dir=str(tiny_llm_dir), languages=list(LANGS),
                       train_segment_seconds=[1.0, 2.0], decode_segment_seconds=2.0)


@pytest.fixture
def model(config):
    torch.manual_seed(0)
    return SpeechLLM.from_config(config).eval()


def _batch(model, lengths=(250, 130, 90, 61), seed=0, rows=None):
    g = torch.Generator().manual_seed(seed)
    n = len(lengths)
    feats = torch.randn(n, 80, max(lengths), generator=g)
    text_ids = [model.tokenizer(TEXTS[i % 4], add_special_tokens=False)["input_ids"] for i in range(n)]
    return SpeechBatch(feats, torch.tensor(lengths), torch.arange(n) % 4, text_ids, rows)


def _reference_loss(model, batch, i, segment_frames):
    """HF's own loss (labels -100 on prompt and speech) on one utterance built by hand."""
    speech, lens = model.encode(batch.feats[i:i + 1], batch.feat_lens[i:i + 1], batch.lang_ids[i:i + 1],
                                segment_frames)
    embed = model.llm.get_input_embeddings()
    prompt = model.prompt_ids[int(batch.lang_ids[i])]
    text = batch.text_ids[i] + [model.tokenizer.eos_token_id]
    inputs = torch.cat([embed(torch.tensor(prompt)), speech[0, : lens[0]], embed(torch.tensor(text))])[None]
    labels = torch.tensor([IGNORE_INDEX] * (len(prompt) + int(lens[0])) + text)[None]
    return model.llm(inputs_embeds=inputs, labels=labels).loss, labels


def test_loss_only_on_transcript_and_eos(model):
    batch = _batch(model, lengths=(250,))
    out = model(batch, segment_frames=200)
    reference, labels = _reference_loss(model, batch, 0, 200)
    assert out.n_tokens == len(batch.text_ids[0]) + 1
    torch.testing.assert_close(out.loss, reference, atol=1e-5, rtol=1e-5)
    # the comparison can fail: counting prompt/speech positions as targets changes the loss
    speech, lens = model.encode(batch.feats[:1], batch.feat_lens[:1], batch.lang_ids[:1], 200)
    n_prefix = len(model.prompt_ids[0]) + int(lens[0])
    wrong = labels.clone()
    wrong[0, 1:n_prefix] = 5
    embed = model.llm.get_input_embeddings()
    text = batch.text_ids[0] + [model.tokenizer.eos_token_id]
    inputs = torch.cat([embed(torch.tensor(model.prompt_ids[0])), speech[0, : lens[0]],
                        embed(torch.tensor(text))])[None]
    assert not torch.isclose(model.llm(inputs_embeds=inputs, labels=wrong).loss, out.loss, atol=1e-3)


def test_loss_does_not_depend_on_padding_or_batchmates(model):
    batch = _batch(model)
    out = model(batch, segment_frames=200)
    sums = []
    for i in range(4):
        alone = SpeechBatch(batch.feats[i:i + 1, :, : batch.feat_lens[i]], batch.feat_lens[i:i + 1],
                            batch.lang_ids[i:i + 1], [batch.text_ids[i]])
        single = model(alone, segment_frames=200)
        sums.append(single.loss * single.n_tokens)
    assert out.n_tokens == sum(len(t) + 1 for t in batch.text_ids)
    torch.testing.assert_close(out.loss * out.n_tokens, sum(sums), atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_packed_samples_do_not_attend_to_each_other(model, attn):
    model.llm.set_attn_implementation(attn)
    unpacked = model(_batch(model), segment_frames=200)
    packed = model(_batch(model, rows=[[0, 2], [3, 1]]), segment_frames=200)
    one_row = model(_batch(model, rows=[[3, 2, 1, 0]]), segment_frames=200)
    assert packed.n_tokens == unpacked.n_tokens == one_row.n_tokens
    torch.testing.assert_close(packed.loss, unpacked.loss, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(one_row.loss, unpacked.loss, atol=1e-5, rtol=1e-5)


def test_attn_implementation_reaches_encoder_and_llm(config, model):
    """model.attn_implementation: eager in both models, the same loss and hypotheses as sdpa (the default)."""
    torch.manual_seed(0)
    eager = SpeechLLM.from_config(ModelConfig(**{**vars(config), "attn_implementation": "eager"})).eval()
    assert eager.encoder.whisper.config._attn_implementation == "eager"
    assert eager.llm.config._attn_implementation == "eager"
    assert model.encoder.whisper.config._attn_implementation == "sdpa"
    batch = _batch(model, rows=[[0, 2], [3, 1]])
    with torch.no_grad():
        torch.testing.assert_close(eager(batch).loss, model(batch).loss, atol=1e-4, rtol=1e-4)
    args = (batch.feats, batch.feat_lens, batch.lang_ids)
    assert eager.generate(*args, max_new_tokens=5) == model.generate(*args, max_new_tokens=5)
    eager.set_attn_implementation("sdpa")
    assert eager.encoder.whisper.config._attn_implementation == eager.llm.config._attn_implementation == "sdpa"
    with pytest.raises(ValueError, match="attention implementation"):
        eager.set_attn_implementation("fast")


def test_packed_mask_is_block_diagonal_causal():
    mask = packed_causal_mask(torch.tensor([[0, 0, 1, 1, 1, -1]]), torch.float32)
    allowed = (mask[0, 0] == 0).int()
    expected = torch.tensor([
        [1, 0, 0, 0, 0, 0],
        [1, 1, 0, 0, 0, 0],
        [0, 0, 1, 0, 0, 0],
        [0, 0, 1, 1, 0, 0],
        [0, 0, 1, 1, 1, 0],
        [0, 0, 0, 0, 0, 1],
    ])
    assert torch.equal(allowed, expected)


def test_bad_rows_are_an_error(model):
    with pytest.raises(ValueError, match="exactly once"):
        model(_batch(model, rows=[[0, 1], [1, 2, 3]]))


def test_speech_rate_is_one_eighth_of_mel_rate(model):
    batch = _batch(model, lengths=(800, 333, 16))
    for seg in (0, 200, 800):
        speech, lens = model.encode(batch.feats, batch.feat_lens, batch.lang_ids, seg)
        assert lens.tolist() == [100, 42, 2]
        assert speech.shape[-1] == model.llm.config.hidden_size


def test_segment_regimes(model, config):
    assert model.segment_frames() == 200  # eval: the decoding length
    model.train()
    assert {model.segment_frames() for _ in range(50)} == {100, 200}
    assert model.segment_frames(0) is None and model.segment_frames(400) == 400
    model.regime = "full"
    assert model.segment_frames() is None
    assert seconds_to_frames(8) == 800
    with pytest.raises(ValueError, match="even"):
        seconds_to_frames(0.01)


def _greedy_by_hand(model, feats, lens, lang_ids, steps, seg):
    """Greedy decoding with full recomputation (no cache) of one utterance."""
    speech, speech_lens = model.encode(feats, lens, lang_ids, seg)
    embed = model.llm.get_input_embeddings()
    seq = torch.cat([embed(torch.tensor(model.prompt_ids[int(lang_ids[0])])), speech[0, : speech_lens[0]]])
    out = []
    for _ in range(steps):
        token = int(model.llm(inputs_embeds=seq[None]).logits[0, -1].argmax())
        if token == model.tokenizer.eos_token_id:
            break
        out.append(token)
        seq = torch.cat([seq, embed(torch.tensor([token]))])
    return model.tokenizer.decode(out, skip_special_tokens=True).strip()


def test_generate_returns_only_the_transcript(model):
    batch = _batch(model)
    hyps = model.generate(batch.feats, batch.feat_lens, batch.lang_ids, max_new_tokens=6, segment_frames=200)
    assert len(hyps) == 4
    for i in range(4):
        n = int(batch.feat_lens[i])
        expected = _greedy_by_hand(model, batch.feats[i:i + 1, :, :n], batch.feat_lens[i:i + 1],
                                   batch.lang_ids[i:i + 1], 6, 200)
        assert hyps[i] == expected  # left padding does not change the result
    beams = model.generate(batch.feats, batch.feat_lens, batch.lang_ids, max_new_tokens=6, num_beams=3)
    assert len(beams) == 4 and all(isinstance(h, str) for h in beams)


def test_beam_search_prefills_each_utterance_once(model, monkeypatch):
    """Beam search runs prompt + speech through the LLM once per utterance, not once per beam, and finds
    what transformers' own prefill of every beam (generate(cache=None)) finds."""
    batch = _batch(model)
    torch.manual_seed(1)
    for layer in adapter_layers(model.llm).values():  # a non-zero LoRA update, as after training
        torch.nn.init.normal_(layer.lora_B, std=0.5)
    decoder = model.llm.get_decoder()
    shapes, real = [], decoder.forward

    def forward(*args, **kwargs):  # records the (rows, positions) of every LLM call
        x = kwargs["inputs_embeds"] if kwargs.get("inputs_embeds") is not None else kwargs["input_ids"]
        shapes.append(tuple(x.shape[:2]))
        return real(*args, **kwargs)

    monkeypatch.setattr(decoder, "forward", forward)
    ours = model.generate(batch.feats, batch.feat_lens, batch.lang_ids, max_new_tokens=8, num_beams=3)
    prefix = shapes[0][1] + 1  # the longest prompt + speech
    assert shapes[:2] == [(4, prefix - 1), (12, 1)]  # 4 utterances once, then the last position per beam
    shapes.clear()
    theirs = model.generate(batch.feats, batch.feat_lens, batch.lang_ids, max_new_tokens=8, num_beams=3, cache=None)
    assert shapes[0] == (12, prefix)
    assert ours == theirs and any(ours)


def test_beam_search_cache_layer_matches_transformers_dynamic_layer():
    """BeamSearchCacheLayer (in-place appends, reordering the generated positions only) holds what
    transformers' DynamicLayer holds after the same appends and within-utterance reorderings, also past
    its planned room."""
    from transformers.cache_utils import DynamicLayer

    from zipasr.model.speech_llm import BeamSearchCacheLayer

    torch.manual_seed(0)
    n_utt, beams, heads, dim, prefix = 3, 4, 2, 5, 6
    theirs = DynamicLayer()
    theirs.update(*(torch.randn(n_utt, heads, prefix, dim).repeat_interleave(beams, 0) for _ in range(2)))
    ours = BeamSearchCacheLayer(theirs, room=3)
    assert torch.equal(ours.keys, theirs.keys) and ours.get_seq_length() == prefix
    for step in range(6):  # 6 steps > room 3: the buffer grows
        k, v = torch.randn(n_utt * beams, heads, 1, dim), torch.randn(n_utt * beams, heads, 1, dim)
        got, expected = ours.update(k, v), theirs.update(k, v)
        assert all(torch.equal(a, b) for a, b in zip(got, expected))
        beam_idx = (torch.randint(0, beams, (n_utt, beams)) + beams * torch.arange(n_utt)[:, None]).flatten()
        ours.reorder_cache(beam_idx), theirs.reorder_cache(beam_idx)
        assert torch.equal(ours.keys, theirs.keys) and torch.equal(ours.values, theirs.values)
        assert ours.get_seq_length() == theirs.get_seq_length() == prefix + step + 1
    with pytest.raises(NotImplementedError):
        ours.crop(-1)


def test_generate_max_len_ratio_bounds_the_new_tokens(model, monkeypatch):
    """max_len_ratio caps the new tokens at ratio x the longest speech-embedding sequence of the batch."""
    batch = _batch(model)
    _, speech_lens = model.encode(batch.feats, batch.feat_lens, batch.lang_ids, 200)
    longest = int(speech_lens.max())
    seen = []
    real = model.llm.generate
    monkeypatch.setattr(model.llm, "generate", lambda **kw: seen.append(kw["max_new_tokens"]) or real(**kw))
    model.generate(batch.feats, batch.feat_lens, batch.lang_ids, max_new_tokens=500, segment_frames=200,
                   max_len_ratio=0.5)
    model.generate(batch.feats, batch.feat_lens, batch.lang_ids, max_new_tokens=3, segment_frames=200,
                   max_len_ratio=0.5)
    model.generate(batch.feats, batch.feat_lens, batch.lang_ids, max_new_tokens=7, segment_frames=200)
    assert seen == [math.ceil(0.5 * longest), min(3, math.ceil(0.5 * longest)), 7]


def test_overfit_one_utterance_then_transcribe(model):
    """End to end: train on one utterance; generate must give back exactly its transcript."""
    model.set_stage(1)
    batch = _batch(model, lengths=(120,))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=5e-3)
    model.train()
    for _ in range(80):
        loss = model(batch, segment_frames=200).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    assert model(batch, segment_frames=200).loss < 0.2
    hyp = model.generate(batch.feats, batch.feat_lens, batch.lang_ids, max_new_tokens=20, segment_frames=200)
    assert hyp == [TEXTS[0]]


def test_stage_flags(model, config):
    model.set_stage(1)
    assert all(p.requires_grad for n, p in model.encoder.named_parameters() if "embed_positions" not in n)
    assert all(p.requires_grad for p in model.projector.parameters())
    llm_trainable = [n for n, p in model.llm.named_parameters() if p.requires_grad]
    assert llm_trainable and all("lora" in n for n in llm_trainable)
    assert not any("base_layer" in n for n in llm_trainable)
    # Stage 1 with a frozen encoder (not the paper's): projector and LLM LoRA only, nothing of the
    # encoder is saved with the checkpoint
    model.set_stage(1, train_encoder=False)
    assert not any(p.requires_grad for p in model.encoder.parameters())
    assert model.trainable_parameter_count()["encoder"] == 0 and model.trainable_parameter_count()["projector"] > 0
    model.set_stage(1)
    with pytest.raises(RuntimeError, match="insert it first"):
        model.set_stage(2)
    model.insert_encoder_adapters(EncoderAdapterConfig(method="flylora", rank=8, method_kwargs={"k": 2}))
    with pytest.raises(RuntimeError, match="no encoder adapter"):
        model.set_stage(1)
    model.set_stage(2)
    enc_trainable = [n for n, p in model.encoder.named_parameters() if p.requires_grad]
    assert enc_trainable and all(".base_layer." not in n for n in enc_trainable)
    assert not any(n.endswith("lora_A") for n in enc_trainable)  # FlyLoRA's A stays frozen
    assert all(p.requires_grad for p in model.projector.parameters())


def test_stage1_then_stage2_checkpoints(model, config, tmp_path):
    # Stage 1: change encoder, projector and LLM LoRA, save, and rebuild from the checkpoint.
    model.set_stage(1)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.01 * torch.randn_like(p))
    batch = _batch(model)
    loss1 = model(batch, segment_frames=200).loss
    model.save_trainable(tmp_path / "stage1")
    assert sorted(p.name for p in (tmp_path / "stage1").iterdir()) == [
        "encoder.safetensors", "llm_lora", "projector.safetensors", "speech_llm.json"]
    config.init_from = str(tmp_path / "stage1")
    rebuilt = SpeechLLM.from_config(config).eval()
    torch.testing.assert_close(rebuilt(batch, segment_frames=200).loss, loss1)

    # Stage 2: Zipper-Soft with the Whisper LID source; mixed-language batch = one language at a time.
    config.encoder_adapter = EncoderAdapterConfig(method="zipper_soft", rank=4, alpha=8.0)
    stage2 = SpeechLLM.from_config(config).eval()
    assert len(adapter_layers(stage2.encoder)) == 2 * 6
    stage2.set_stage(2)
    with torch.no_grad():
        for n, p in stage2.encoder.named_parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn_like(p))
    mixed = stage2(batch, segment_frames=200)
    assert not torch.isclose(mixed.loss, loss1)
    total = 0
    for i in range(4):
        one = SpeechBatch(batch.feats[i:i + 1, :, : batch.feat_lens[i]], batch.feat_lens[i:i + 1],
                          batch.lang_ids[i:i + 1], [batch.text_ids[i]])
        out = stage2(one, segment_frames=200)
        total = total + out.loss * out.n_tokens
    torch.testing.assert_close(mixed.loss * mixed.n_tokens, total, atol=1e-4, rtol=1e-5)
    stage2.save_trainable(tmp_path / "stage2")
    assert not (tmp_path / "stage2" / "encoder.safetensors").exists()  # frozen encoder is not saved again
    again = SpeechLLM.from_config(config).eval()
    assert again.load_trainable(tmp_path / "stage2") == ["projector", "encoder_adapter", "llm_lora"]
    torch.testing.assert_close(again(batch, segment_frames=200).loss, mixed.loss)
    with pytest.raises(RuntimeError, match="before inserting encoder adapters"):
        again.load_trainable(tmp_path / "stage1")


def test_stage2_trains_the_encoder_convolutions_on_request(model, config, tmp_path):
    # Not the paper's: Stage 2 with stage2_convs also trains conv1/conv2 (shared by all languages), saved as
    # their own checkpoint part; every other base weight of the encoder stays frozen.
    config.encoder_adapter = EncoderAdapterConfig(method="vanilla", rank=4, alpha=8.0)
    stage2 = SpeechLLM.from_config(config).eval()
    stage2.set_stage(2, stage2_convs=True)
    base = [n for n, p in stage2.encoder.named_parameters() if p.requires_grad and "lora" not in n]
    assert sorted(base) == ["whisper.conv1.bias", "whisper.conv1.weight", "whisper.conv2.bias",
                            "whisper.conv2.weight"]
    batch = _batch(model)
    stage2(batch, segment_frames=200).loss.backward()
    assert stage2.encoder.whisper.conv1.weight.grad.abs().sum() > 0
    with torch.no_grad():
        for p in stage2.parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn_like(p))
    loss = stage2(batch, segment_frames=200).loss
    stage2.save_trainable(tmp_path / "stage2")
    assert (tmp_path / "stage2" / "encoder_convs.safetensors").is_file()
    assert not (tmp_path / "stage2" / "encoder.safetensors").exists()
    again = SpeechLLM.from_config(config).eval()
    assert again.load_trainable(tmp_path / "stage2") == ["projector", "encoder_convs", "encoder_adapter", "llm_lora"]
    torch.testing.assert_close(again(batch, segment_frames=200).loss, loss)
    # without the flag the convolutions are frozen again: the paper's Stage 2
    stage2.set_stage(2)
    assert not any(p.requires_grad for n, p in stage2.encoder.named_parameters() if "lora" not in n)
    # a base weight other than the convolutions trainable beside adapters is still an error
    stage2.encoder.whisper.layer_norm.weight.requires_grad_(True)
    with pytest.raises(RuntimeError, match="trainable base weights"):
        stage2.save_trainable(tmp_path / "bad")


def test_stage1_checkpoint_loads_for_other_languages_stage2_does_not(model, config, tmp_path):
    # Stage 1 holds nothing language-specific: it loads into a model of other (target) languages.
    model.save_trainable(tmp_path / "stage1")
    config.languages = ["en", "de"]
    parts = SpeechLLM.from_config(config).load_trainable(tmp_path / "stage1")
    assert "projector" in parts and "encoder_adapter" not in parts
    # An encoder adapter is per language: loading it for another language set is an error.
    config.encoder_adapter = EncoderAdapterConfig(method="independent", rank=4, alpha=8.0)
    two = SpeechLLM.from_config(config)
    two.set_stage(2)
    two.save_trainable(tmp_path / "stage2")
    config.languages = ["en", "fr"]
    with pytest.raises(ValueError, match="languages"):
        SpeechLLM.from_config(config).load_trainable(tmp_path / "stage2")


def test_missing_checkpoint_dirs(tmp_path, config):
    with pytest.raises(FileNotFoundError, match="LLM checkpoint directory not found"):
        load_llm(tmp_path / "missing")
    config.encoder_dir = str(tmp_path / "no_whisper")
    with pytest.raises(FileNotFoundError, match="Whisper checkpoint directory not found"):
        SpeechLLM.from_config(config)


def test_config_errors(config):
    with pytest.raises(ValueError, match="regime"):
        ModelConfig(regime="streaming")
    with pytest.raises(ValueError, match="unknown language"):
        ModelConfig(languages=["en", "xx"])
    with pytest.raises(ValueError, match="attn_implementation"):
        ModelConfig(attn_implementation="fast")
    llm, _ = load_llm(config.llm_dir)
    assert llm_lora_targets(llm) == ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    llm.config.model_type = "exotic"
    with pytest.raises(ValueError, match="target_modules"):
        llm_lora_targets(llm)


def test_gradient_checkpointing_keeps_languages_and_gradients(model):
    """Recomputation in backward runs outside `bound()`; the encoder re-binds each segment's language."""
    model.insert_encoder_adapters(EncoderAdapterConfig(method="zipper_static", rank=4, alpha=8.0))
    model.set_stage(2)
    with torch.no_grad():
        for p in model.encoder.parameters():
            if p.requires_grad:
                p.add_(0.1 * torch.randn_like(p))
    model.train()
    batch = _batch(model)
    grads = []
    for checkpointing in (False, True):
        model.encoder.gradient_checkpointing = checkpointing
        model.zero_grad()
        model(batch, segment_frames=100).loss.backward()
        grads.append({n: p.grad.clone() for n, p in model.encoder.named_parameters() if p.requires_grad})
    assert grads[0].keys() == grads[1].keys()
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name], atol=1e-6, rtol=1e-4)
    assert any(g.abs().sum() > 0 for n, g in grads[1].items() if "B_spec" in n)


def test_llm_dir_without_tokenizer(tiny_llm_dir, tmp_path):
    import shutil

    for name in ("config.json", "model.safetensors"):
        shutil.copy(tiny_llm_dir / name, tmp_path / name)
    with pytest.raises(FileNotFoundError, match="no tokenizer"):
        load_llm(tmp_path)


def test_ctc_compress_projector_trains_decodes_and_checkpoints(config, tmp_path):
    import shutil

    from safetensors.torch import save_file

    from zipasr.model.projector import CTC_HEAD_FILE, CTCCompressProjector

    # the tiny Whisper plus a character CTC head (as zipasr.bin.pretrain_encoder writes it)
    encoder_dir = tmp_path / "whisper_ctc"
    shutil.copytree(config.encoder_dir, encoder_dir)
    torch.manual_seed(1)
    head = torch.nn.Linear(32, 6)
    save_file({k: v.contiguous() for k, v in head.state_dict().items()}, str(encoder_dir / CTC_HEAD_FILE))
    config.encoder_dir, config.projector = str(encoder_dir), "ctc_compress"
    torch.manual_seed(0)
    model = SpeechLLM.from_config(config)
    assert isinstance(model.projector, CTCCompressProjector)
    torch.testing.assert_close(model.projector.head_weight, head.weight.detach())
    batch = _batch(model)
    speech, lens = model.encode(batch.feats, batch.feat_lens, batch.lang_ids)
    assert lens.max() == speech.shape[1] and bool((lens >= 3).all())  # begin, >= 1 character, end
    model.set_stage(1)
    model.train()
    out = model(batch)
    out.loss.backward()
    assert torch.isfinite(out.loss) and model.projector.mlp[0].weight.grad is not None
    model.eval()
    hyps = model.generate(batch.feats, batch.feat_lens, batch.lang_ids, max_new_tokens=4)
    assert len(hyps) == 4
    # the checkpoint holds the head with the projector; another model loads it
    with torch.no_grad():
        model.projector.end.add_(1.0)
    model.save_trainable(tmp_path / "stage1")
    again = SpeechLLM.from_config(config)
    again.load_trainable(tmp_path / "stage1")
    for key, value in model.projector.state_dict().items():
        assert torch.equal(again.projector.state_dict()[key], value), key
    # a real Whisper checkpoint has no CTC head: a clear error
    (encoder_dir / CTC_HEAD_FILE).unlink()
    with pytest.raises(FileNotFoundError, match="CTC head"):
        SpeechLLM.from_config(config)
