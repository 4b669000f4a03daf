"""WhisperSpeechEncoder and GatedConvProjector: variable length, padding, segments, rates."""
import pytest
import torch
from transformers import WhisperModel

from zipasr.model.encoder import WhisperSpeechEncoder, merge_segments, split_segments
from zipasr.model.projector import PROJECTORS, GatedConvProjector, build_projector


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


def test_loads_encoder_of_a_conditional_generation_checkpoint(tiny_whisper_dir, tmp_path):
    """Real Whisper releases are WhisperForConditionalGeneration checkpoints (keys `model.encoder.*`)."""
    from transformers import WhisperForConditionalGeneration

    full = WhisperForConditionalGeneration.from_pretrained(tiny_whisper_dir)
    full.save_pretrained(tmp_path)
    encoder = WhisperSpeechEncoder.from_pretrained(tmp_path)
    for name, value in full.model.encoder.state_dict().items():
        assert torch.equal(encoder.whisper.state_dict()[name], value), name
