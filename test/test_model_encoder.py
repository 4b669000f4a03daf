"""WhisperSpeechEncoder, GatedConvProjector and CTCCompressProjector: variable length, padding, segments, rates."""
import pytest
import torch
from safetensors.torch import save_file
from transformers import WhisperModel

from zipasr.model.encoder import WhisperSpeechEncoder, length_groups, merge_segments, split_segments
from zipasr.model.projector import CTC_HEAD_FILE, PROJECTORS, CTCCompressProjector, GatedConvProjector, build_projector


@pytest.fixture(scope="module")
def encoder(tiny_whisper_dir):
    return WhisperSpeechEncoder.from_pretrained(tiny_whisper_dir).eval()


def _feats(lengths, n_mels=80, seed=0):
    g = torch.Generator().manual_seed(seed)
    T = max(lengths)
    feats = torch.randn(len(lengths), n_mels, T, generator=g)
    lens = torch.tensor(lengths)
    for b, n in enumerate(lengths):
        feats[b, :, n:] = 7.0  # non-zero padding must not leak into the outputs
    return feats, lens


def test_weights_are_the_checkpoint_not_random(encoder, tiny_whisper_dir):
    reference = WhisperModel.from_pretrained(tiny_whisper_dir).get_encoder()
    for (name, p), (_, q) in zip(encoder.whisper.state_dict().items(), reference.state_dict().items()):
        assert torch.equal(p, q), name


def test_equals_hf_at_3000_frames(encoder, tiny_whisper_dir):
    reference = WhisperModel.from_pretrained(tiny_whisper_dir).get_encoder().eval()
    feats, lens = _feats([3000, 3000])
    with torch.no_grad():
        ours, out_lens = encoder(feats, lens)
        theirs = reference(feats).last_hidden_state
    assert ours.shape == theirs.shape == (2, 1500, 32)
    assert out_lens.tolist() == [1500, 1500]
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)


def test_padded_batch_equals_single_runs(encoder):
    lengths = [301, 160, 57, 2]
    feats, lens = _feats(lengths)
    with torch.no_grad():
        batch, out_lens = encoder(feats, lens)
        assert out_lens.tolist() == [(n + 1) // 2 for n in lengths]
        for b, n in enumerate(lengths):
            alone, _ = encoder(feats[b:b + 1, :, :n], lens[b:b + 1])
            torch.testing.assert_close(batch[b, : out_lens[b]], alone[0], atol=1e-5, rtol=1e-5)
            assert torch.all(batch[b, out_lens[b]:] == 0)


def test_segment_wise_equals_segments_encoded_alone(encoder):
    lengths = [530, 200, 99]
    seg = 200
    feats, lens = _feats(lengths, seed=1)
    with torch.no_grad():
        chunked, out_lens = encoder(feats, lens, segment_frames=seg)
        assert out_lens.tolist() == [(n + 1) // 2 for n in lengths]
        for b, n in enumerate(lengths):
            parts = []
            for start in range(0, n, seg):
                piece = feats[b:b + 1, :, start:min(start + seg, n)]
                out, _ = encoder(piece, torch.tensor([piece.shape[-1]]))
                parts.append(out[0])
            torch.testing.assert_close(chunked[b, : out_lens[b]], torch.cat(parts), atol=1e-5, rtol=1e-5)
        # segments differ from full context (each segment sees only itself)
        full, _ = encoder(feats, lens)
        assert not torch.allclose(full[0, :265], chunked[0, :265], atol=1e-4)


def test_split_merge_roundtrip():
    feats, lens = _feats([5, 9, 4], n_mels=2)
    segs, seg_lens, counts = split_segments(feats, lens, 4)
    assert counts.tolist() == [2, 3, 1] and seg_lens.tolist() == [4, 1, 4, 4, 1, 4]
    merged, merged_lens = merge_segments(segs.transpose(1, 2), seg_lens, counts)
    assert merged_lens.tolist() == [5, 9, 4]
    for b, n in enumerate([5, 9, 4]):
        assert torch.equal(merged[b, :n], feats[b, :, :n].T)


def test_segment_lang_ids_follow_segments(encoder):
    from zipasr.adapters import LangState

    state = LangState(["en", "de", "fr"])
    encoder.lang_state = state
    seen = []
    hook = encoder.whisper.layers[0].register_forward_pre_hook(lambda m, a: seen.append(state.lang_ids.clone()))
    try:
        feats, lens = _feats([450, 100])
        with torch.no_grad(), state.bound(torch.tensor([2, 1])):
            encoder(feats, lens, segment_frames=200)
        assert seen[-1].tolist() == [2, 2, 2, 1]
        assert state.lang_ids is None
    finally:
        hook.remove()
        encoder.lang_state = None


def test_length_groups_minimise_padding_plus_cost():
    lengths = [95, 300, 100, 290, 98]
    assert length_groups(lengths, cost=50) == [[1, 3], [2, 4, 0]]  # 2 x 300 + 3 x 100 + 2 x 50
    assert length_groups(lengths, cost=10_000) == [[1, 3, 2, 4, 0]]  # a call costs more than the padding saved
    assert length_groups(lengths, cost=0) == [[1], [3], [2], [4], [0]]
    assert length_groups([200] * 6, cost=1) == [list(range(6))]  # ties keep batch order, nothing to save
    assert length_groups([]) == []


def test_length_grouping_equals_one_padded_batch(tiny_whisper_dir):
    from zipasr.adapters import LangState

    grouped = WhisperSpeechEncoder.from_pretrained(tiny_whisper_dir, length_grouping=True).eval()
    padded = WhisperSpeechEncoder.from_pretrained(tiny_whisper_dir).eval()
    lengths = [301, 40, 290, 57, 2, 300, 36]
    assert len(length_groups(lengths)) > 1
    for segment in (None, 200):
        results = []
        for enc in (grouped, padded):
            feats, lens = _feats(lengths, seed=2)
            feats.requires_grad_(True)
            hidden, out_lens = enc(feats, lens, segment_frames=segment)
            (hidden * torch.linspace(-1, 1, hidden.shape[-1])).sum().backward()
            results.append((hidden.detach(), out_lens, feats.grad))
        (h1, l1, g1), (h2, l2, g2) = results
        assert h1.shape == h2.shape and l1.tolist() == l2.tolist()
        torch.testing.assert_close(h1, h2, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(g1, g2, atol=1e-5, rtol=1e-5)
        for b, n in enumerate(l1.tolist()):
            assert torch.all(h1[b, n:] == 0)

    # each group runs with the language ids of its own utterances
    state = LangState(["en", "de", "fr", "ja", "ko", "ru", "es"])
    grouped.lang_state = state
    seen = []
    hook = grouped.whisper.layers[0].register_forward_pre_hook(
        lambda m, a: seen.append((state.lang_ids.tolist(), a[0].shape[0])))
    try:
        feats, lens = _feats(lengths)
        with torch.no_grad(), state.bound(torch.arange(7)):
            grouped(feats, lens)
        assert seen == [(g, len(g)) for g in length_groups(lengths)]
        assert state.lang_ids is None
    finally:
        hook.remove()


def test_bad_segment_and_too_long_input(encoder):
    feats, lens = _feats([3002])
    with pytest.raises(ValueError, match="3000-frame window"):
        encoder(feats, lens)
    with pytest.raises(ValueError, match="even"):
        encoder(feats, lens, segment_frames=101)
    out, out_lens = encoder(feats, lens, segment_frames=800)  # long inputs work segment-wise
    assert out_lens.tolist() == [1501]


def test_missing_checkpoint_dir(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        WhisperSpeechEncoder.from_pretrained(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="config.json"):
        WhisperSpeechEncoder.from_pretrained(tmp_path)


def test_utterance_embeddings_are_masked_means(encoder):
    feats, lens = _feats([120, 40])
    emb = encoder.utterance_embeddings(feats, lens)
    alone = encoder.utterance_embeddings(feats[1:, :, :40], lens[1:])
    assert emb.shape == (2, 32)
    torch.testing.assert_close(emb[1], alone[0], atol=1e-5, rtol=1e-5)


def test_projector_rate_padding_and_registry(encoder):
    projector = build_projector("gated_conv", 32, 24, hidden=16)
    assert isinstance(projector, GatedConvProjector) and "gated_conv" in PROJECTORS
    lengths = [800, 333, 8]
    feats, lens = _feats(lengths)
    with torch.no_grad():
        h, h_lens = encoder(feats, lens, segment_frames=200)
        out, out_lens = projector(h, h_lens)
        # 8x overall: 100 Hz mel frames -> 12.5 Hz
        assert out_lens.tolist() == [-(-n // 8) for n in lengths]
        assert out.shape == (3, 100, 24)
        for b in range(3):
            alone, _ = projector(h[b:b + 1, : h_lens[b]], h_lens[b:b + 1])
            torch.testing.assert_close(out[b, : out_lens[b]], alone[0], atol=1e-5, rtol=1e-5)
            assert torch.all(out[b, out_lens[b]:] == 0)
    with pytest.raises(ValueError, match="gated_conv"):
        build_projector("mlp", 32, 24)



def _ctc_projector(tmp_path, d_enc=6, vocab=4):
    """A ctc_compress projector whose CTC head reads the label off the first `vocab` hidden dims."""
    weight = torch.zeros(vocab, d_enc)
    weight[:, :vocab] = torch.eye(vocab)
    save_file({"weight": weight, "bias": torch.zeros(vocab)}, str(tmp_path / CTC_HEAD_FILE))
    torch.manual_seed(0)
    projector = build_projector("ctc_compress", d_enc, 5, hidden=8, encoder_dir=tmp_path)
    with torch.no_grad():
        projector.end.normal_()
    return projector


def _frames(labels, d_enc=6, seed=0):
    """Hidden frames whose CTC argmax is `labels` (B, S), with random values elsewhere; lens = S."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(*labels.shape, d_enc, generator=g) * 0.1
    x[..., :4] = 0
    x.scatter_(-1, labels[..., None], 1.0)
    return x


def test_ctc_compress_averages_each_predicted_character(tmp_path):
    projector = _ctc_projector(tmp_path)
    assert isinstance(projector, CTCCompressProjector) and "ctc_compress" in PROJECTORS
    # the head is fixed: a buffer, saved with the projector, not a parameter
    assert {"head_weight", "head_bias", "label_embed"} <= set(projector.state_dict())
    assert not any("head" in name for name, _ in projector.named_parameters())
    with torch.no_grad():
        projector.begin.normal_()
    # blank, a, a, blank, a, b, b, blank | padding: three segments (a repeated character is split by a blank)
    labels = torch.tensor([[0, 1, 1, 0, 1, 2, 2, 0, 3, 3], [2, 2, 0, 3, 0, 0, 0, 0, 0, 0]])
    x, lens = _frames(labels), torch.tensor([8, 4])
    with torch.no_grad():
        out, out_lens = projector(x, lens)
        assert out_lens.tolist() == [5, 4]  # begin + characters + end; the padding's 3s are not read
        assert out.shape == (2, 5, 5)
        segments = [x[0, 1:3].mean(0), x[0, 4], x[0, 5:7].mean(0)]
        torch.testing.assert_close(out[0, 0], projector.begin)
        torch.testing.assert_close(out[0, 1:4], projector.mlp(torch.stack(segments)))
        torch.testing.assert_close(out[0, 4], projector.end)
        torch.testing.assert_close(out[1, 0], projector.begin)
        torch.testing.assert_close(out[1, 1:3], projector.mlp(torch.stack([x[1, 0:2].mean(0), x[1, 3]])))
        torch.testing.assert_close(out[1, 3], projector.end)
        assert torch.all(out[1, 4:] == 0)
        # an utterance alone gives what it gives in the batch
        alone, _ = projector(x[1:, :4], lens[1:])
        torch.testing.assert_close(alone[0], out[1, :4])
        B, E = CTCCompressProjector.BEGIN, CTCCompressProjector.END
        assert projector.output_labels(x, lens)[0].tolist() == [[B, 1, 1, 2, E], [B, 2, 3, E, E]]
        # nothing but blanks: one vector, the mean of the valid frames
        silent = _frames(torch.zeros(1, 5, dtype=torch.long))
        out, out_lens = projector(silent, torch.tensor([3]))
        assert out_lens.tolist() == [3]
        torch.testing.assert_close(out[0, 1], projector.mlp(silent[0, :3].mean(0)))
        # the cut is made in fp32 under autocast too (training and decoding cut alike)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert projector(x, lens)[1].tolist() == [5, 4]
        # with the LLM's embedding of each label, the output starts as exactly those embeddings
        table, begin, end = torch.randn(4, 5), torch.randn(5), torch.randn(5)
        projector.set_label_embeddings(table, begin, end)
        out, _ = projector(x, lens)
        torch.testing.assert_close(out[0], torch.cat([begin[None], table[[1, 1, 2]], end[None]]))
        torch.testing.assert_close(out[1, :4], torch.cat([begin[None], table[[2, 3]], end[None]]))
        with pytest.raises(ValueError, match="expected"):
            projector.set_label_embeddings(torch.zeros(3, 5))
    # gradients reach the encoder frames of the kept segments and the begin/end vectors
    x.requires_grad_(True)
    out, _ = projector(x, lens)
    out.sum().backward()
    assert x.grad[0, 1].abs().sum() == 0  # the MLP's last layer is zero after set_label_embeddings ...
    torch.nn.init.normal_(projector.mlp[-1].weight)  # ... and it trains away from zero
    out, _ = projector(x, lens)
    x.grad = None
    out.sum().backward()
    assert x.grad[0, 1].abs().sum() > 0 and x.grad[0, 0].abs().sum() == 0
    assert projector.begin.grad is not None and projector.end.grad is not None


def test_ctc_compress_needs_the_encoders_ctc_head(tmp_path):
    with pytest.raises(FileNotFoundError, match="CTC head"):
        build_projector("ctc_compress", 6, 5, encoder_dir=tmp_path)
    with pytest.raises(FileNotFoundError, match="CTC head"):
        build_projector("ctc_compress", 6, 5)
    _ctc_projector(tmp_path, d_enc=6)
    with pytest.raises(ValueError, match="width 6"):
        build_projector("ctc_compress", 8, 5, encoder_dir=tmp_path)


def test_loads_encoder_of_a_conditional_generation_checkpoint(tiny_whisper_dir, tmp_path):
    """Real Whisper releases are WhisperForConditionalGeneration checkpoints (keys `model.encoder.*`)."""
    from transformers import WhisperForConditionalGeneration

    full = WhisperForConditionalGeneration.from_pretrained(tiny_whisper_dir)
    full.save_pretrained(tmp_path)
    encoder = WhisperSpeechEncoder.from_pretrained(tmp_path)
    for name, value in full.model.encoder.state_dict().items():
        assert torch.equal(encoder.whisper.state_dict()[name], value), name
