"""Adding a language to a trained Zipper-LoRA model: the others stay bit-identical, only new banks train."""
import pytest
import torch

from zipasr.adapters import adapter_layers, load_adapters, save_adapters
from zipasr.model.lid import whisper_lid_embeddings
from zipasr.model.speech_llm import EncoderAdapterConfig, ModelConfig, SpeechBatch, SpeechLLM
from zipasr.sibling.add_language import add_language, added_parameters, bake_added_languages, nearest_language
from zipasr.sibling.common import train_parameters

LANGS = ["en", "de", "fr", "zh"]


def _model(whisper_dir, llm_dir, method):
    cfg = ModelConfig(encoder_dir=str(whisper_dir), llm_dir=str(llm_dir), languages=list(LANGS), regime="full",
                      encoder_adapter=EncoderAdapterConfig(method=method, rank=4, alpha=8.0))
    torch.manual_seed(0)
    model = SpeechLLM.from_config(cfg).eval()
    with torch.no_grad():  # a "trained" model: every bank and router non-trivial
        for layer in adapter_layers(model.encoder).values():
            for name, p in layer.named_parameters():
                if not name.startswith("base_layer."):
                    p.normal_(0, 0.3)
    return model


def _batch(model, langs, seed=0):
    g = torch.Generator().manual_seed(seed)
    n = len(langs)
    text = [model.tokenizer("hello world", add_special_tokens=False)["input_ids"]] * n
    ids = torch.tensor([model.languages.index(lang) for lang in langs])
    return SpeechBatch(torch.randn(n, 80, 48, generator=g), torch.tensor([48, 40, 30, 44][:n]), ids, text)


def _outputs(model, batch):
    with torch.no_grad():
        speech, _ = model.encode(batch.feats, batch.feat_lens, batch.lang_ids)
        return speech, model(batch).loss


@pytest.mark.parametrize("method", ["zipper_soft", "zipper_hard", "zipper_static"])
def test_other_languages_bit_identical_and_only_new_bank_trains(tiny_whisper_dir, tiny_llm_dir, method):
    model = _model(tiny_whisper_dir, tiny_llm_dir, method)
    # Compare in the same execution setting: add_language freezes the model, and torch's CPU conv
    # picks another kernel (other rounding) when its weight requires grad, even under no_grad.
    model.requires_grad_(False)
    old = _batch(model, LANGS)
    speech_before, loss_before = _outputs(model, old)
    snapshot = {k: v.clone() for k, v in model.state_dict().items()}

    e_es = whisper_lid_embeddings(tiny_whisper_dir, ["es"])[0]
    info = add_language(model, "es", lid_embedding=e_es, init="shared")
    assert model.languages == LANGS + ["es"] and len(model.prompt_ids) == 5
    speech_after, loss_after = _outputs(model, old)
    assert torch.equal(speech_after, speech_before) and torch.equal(loss_after, loss_before)

    # a mixed batch with the new language: gradients reach the new banks only
    mixed = _batch(model, ["es", "de", "es"], seed=1)
    model.train()
    model(mixed, segment_frames=0).loss.backward()
    with_grad = {n for n, p in model.named_parameters() if p.grad is not None}
    assert with_grad == set(info["new_parameters"])
    nonzero = [float(p.grad.abs().sum()) > 0 for p in added_parameters(model)]
    # Hard uses a new bank's column only where the frozen router's gate is open for the new language
    assert any(nonzero) if method == "zipper_hard" else all(nonzero)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == set(info["new_parameters"])

    # training the new language leaves the others untouched, bit for bit
    new_only = _batch(model, ["es", "es"], seed=2)
    losses = train_parameters(added_parameters(model), [new_only] * 3, lambda b: model(b, segment_frames=0).loss,
                              lr=1e-2, progress=False)
    assert losses[-1] < losses[0]
    model.eval()
    speech_trained, loss_trained = _outputs(model, old)
    assert torch.equal(speech_trained, speech_before) and torch.equal(loss_trained, loss_before)
    # every tensor the model had is unchanged (the banks now sit under B_spec.trained)
    state = model.state_dict()
    for key, value in snapshot.items():
        new_key = key.replace("B_spec", "B_spec.trained") if key.endswith("B_spec") else key
        if ".router." in key and method != "zipper_static":
            new_key = key.replace(".router.", ".router.trained.")
        assert torch.equal(state[new_key], value), key


def test_nearest_init_and_baked_checkpoint(tiny_whisper_dir, tiny_llm_dir, tmp_path):
    model = _model(tiny_whisper_dir, tiny_llm_dir, "zipper_soft").requires_grad_(False)
    old = _batch(model, LANGS)
    speech_before, _ = _outputs(model, old)
    table = next(iter(adapter_layers(model.encoder).values())).router.lid_embeddings.clone()
    e_new = table[2] + 0.01 * torch.randn(table.shape[1])  # closest to fr
    assert nearest_language(e_new, table, LANGS) == "fr"
    add_language(model, "es", lid_embedding=e_new, init="nearest")
    for layer in adapter_layers(model.encoder).values():
        assert torch.equal(layer.B_spec.added[0], layer.B_spec.trained[2])
    new = _batch(model, ["es"], seed=3)
    speech_new, _ = _outputs(model, new)

    bake_added_languages(model)
    layer = next(iter(adapter_layers(model.encoder).values()))
    assert isinstance(layer.B_spec, torch.nn.Parameter) and layer.B_spec.shape[0] == 5
    speech_baked, _ = _outputs(model, old)
    assert torch.allclose(speech_baked, speech_before, atol=1e-5)
    assert torch.allclose(_outputs(model, new)[0], speech_new, atol=1e-5)
    save_adapters(model.encoder, tmp_path / "enc")
    load_adapters(model.encoder, tmp_path / "enc")  # the standard format, now with five languages


def test_bad_requests(tiny_whisper_dir, tiny_llm_dir):
    model = _model(tiny_whisper_dir, tiny_llm_dir, "zipper_soft")
    with pytest.raises(ValueError, match="already"):
        add_language(model, "de", lid_embedding=torch.zeros(32))
    with pytest.raises(ValueError, match="LID embedding"):
        add_language(model, "es")
    plain = _model(tiny_whisper_dir, tiny_llm_dir, "independent")
    with pytest.raises(ValueError, match="Zipper"):
        add_language(plain, "es", lid_embedding=torch.zeros(32))
