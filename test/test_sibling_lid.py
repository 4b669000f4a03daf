"""Language-agnostic inference: LID classifier, Whisper's language head, decoding with predicted languages."""
import pytest
import torch

from zipasr.adapters import adapter_layers
from zipasr.model.speech_llm import EncoderAdapterConfig, ModelConfig, SpeechLLM
from zipasr.sibling.lid_classifier import (
    LIDClassifier,
    WhisperLanguageDetector,
    adapters_bypassed,
    encoder_embeddings,
    lid_report,
    load_language_detector,
    predict_languages,
    train_lid_classifier,
    write_lid_report,
)

LANGS = ["en", "de", "fr", "zh"]


def _model(whisper_dir, llm_dir, method=None, seed=0):
    cfg = ModelConfig(encoder_dir=str(whisper_dir), llm_dir=str(llm_dir), languages=list(LANGS),
                      regime="full", encoder_adapter=EncoderAdapterConfig(method=method, rank=4, alpha=8.0))
    torch.manual_seed(seed)
    model = SpeechLLM.from_config(cfg).eval()
    with torch.no_grad():
        for layer in adapter_layers(model.encoder).values():
            for name, p in layer.named_parameters():
                if name.startswith(("lora_B", "B_spec", "B_shared")):
                    p.normal_(0, 0.3)  # language-dependent, non-trivial adapters
    return model


def _utterances(n_per_lang=4, seed=0):
    """Synthetic log-mels whose spectral shape depends on the language (a learnable LID task)."""
    g = torch.Generator().manual_seed(seed)
    items = []
    for i, lang in enumerate(LANGS):
        profile = torch.zeros(80, 1)
        profile[i * 20:(i + 1) * 20] = 3.0
        for _ in range(n_per_lang):
            T = int(torch.randint(60, 140, (1,), generator=g))
            items.append((0.3 * torch.randn(80, T, generator=g) + profile, lang))
    return items


def _pad(items):
    lens = torch.tensor([f.shape[-1] for f, _ in items])
    feats = torch.nn.utils.rnn.pad_sequence([f.T for f, _ in items], batch_first=True).transpose(1, 2)
    return feats, lens, torch.tensor([LANGS.index(lang) for _, lang in items])


def test_classifier_sees_the_stage1_encoder(tiny_whisper_dir, tiny_llm_dir):
    plain = _model(tiny_whisper_dir, tiny_llm_dir)
    adapted = _model(tiny_whisper_dir, tiny_llm_dir, method="independent")
    feats, lens, ids = _pad(_utterances(1))
    ref = encoder_embeddings(plain.encoder, feats, lens)
    assert torch.allclose(encoder_embeddings(adapted.encoder, feats, lens), ref, atol=1e-5)
    # the adapters are back afterwards (and they do change the output)
    with adapted.lang_state.bound(ids):
        hidden, _ = adapted.encoder(feats, lens)
    with adapters_bypassed(adapted.encoder):
        bypassed, _ = adapted.encoder(feats, lens)
    assert not torch.allclose(hidden, bypassed, atol=1e-3)


def test_train_save_load_classifier(tiny_whisper_dir, tiny_llm_dir, tmp_path):
    model = _model(tiny_whisper_dir, tiny_llm_dir, method="zipper_soft")
    clf, acc = train_lid_classifier(model.encoder, _utterances(), LANGS)
    assert acc == 1.0
    clf.save(tmp_path / "lid")
    model.language_detector = load_language_detector(tmp_path / "lid", LANGS)
    feats, lens, ids = _pad(_utterances(2, seed=1))  # unseen utterances
    assert torch.equal(predict_languages(model, feats, lens), ids)
    with pytest.raises(ValueError, match="differ"):
        predict_languages(model, feats, lens, detector=LIDClassifier(32, ["en", "de"]))


@pytest.mark.parametrize("method", ["independent", "zipper_soft"])
def test_agnostic_decoding_with_perfect_lid_equals_aware(tiny_whisper_dir, tiny_llm_dir, method):
    model = _model(tiny_whisper_dir, tiny_llm_dir, method=method)
    clf, _ = train_lid_classifier(model.encoder, _utterances(), LANGS)
    feats, lens, ids = _pad(_utterances(1, seed=2))
    predicted = predict_languages(model, feats, lens, detector=clf)
    assert torch.equal(predicted, ids)  # a perfect LID prediction
    aware = model.generate(feats, lens, ids, max_new_tokens=6)
    agnostic = model.generate(feats, lens, predicted, max_new_tokens=6)
    assert agnostic == aware
    # the comparison can fail: a wrong language changes the prompt and the routing
    wrong = model.generate(feats, lens, (ids + 1) % 4, max_new_tokens=6)
    assert wrong != aware


def test_whisper_language_head(tiny_whisper_dir):
    from transformers import WhisperForConditionalGeneration

    detector = WhisperLanguageDetector.from_pretrained(tiny_whisper_dir, LANGS)
    feats, lens, _ = _pad(_utterances(1))
    post = detector.posteriors(None, feats, lens)
    assert post.shape == (4, 4) and torch.allclose(post.sum(-1), torch.ones(4))
    # the same decision computed directly with HF's model on a 30-s input
    hf = WhisperForConditionalGeneration.from_pretrained(str(tiny_whisper_dir)).eval()
    token_ids = [90, 92, 95, 91]  # en de fr zh in the fixture's lang_to_id
    for b in range(4):
        x = feats[b, :, : lens[b]]
        x = torch.nn.functional.pad(x, (0, 3000 - x.shape[-1]), value=float(x.min()))[None]
        logits = hf(input_features=x, decoder_input_ids=torch.tensor([[1]])).logits[0, -1]
        assert int(post[b].argmax()) == int(logits[token_ids].argmax())
    assert isinstance(load_language_detector(tiny_whisper_dir, LANGS), WhisperLanguageDetector)


def test_lid_report(tmp_path):
    ref = {"u1": "en", "u2": "en", "u3": "de", "u4": "fr"}
    pred = {"u1": "en", "u2": "de", "u3": "de"}
    text, numbers = lid_report(pred, ref)
    assert text.splitlines()[0] == "%LID 50.00 [ 2 / 4 ]"
    assert numbers["per_language"] == {"en": 0.5, "de": 1.0, "fr": 0.0}
    write_lid_report(tmp_path, pred, ref)
    assert (tmp_path / "lid_accuracy.txt").read_text().startswith("%LID 50.00")
    assert (tmp_path / "utt2lang.pred").read_text().splitlines()[0] == "u1 en"
