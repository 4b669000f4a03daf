"""LoRA language experts: fusion and knowledge distillation on small layers and a tiny model."""
import pytest
import torch
from torch import nn

from zipasr.adapters.base import LangState
from zipasr.adapters.inject import inject_adapters, load_adapters, save_adapters
from zipasr.adapters.lora import VanillaLoRA
from zipasr.sibling.experts import (
    ExpertFusionLoRA,
    attach_students,
    detach_students,
    distill,
    distill_mode,
    fused_delta,
    independent_to_fusion,
    layer_mse,
    load_experts,
    token_kl,
)

LANGS = ["en", "de", "fr"]


class TinyNet(nn.Module):
    """Two linear layers and a vocabulary head: enough structure for token-level KL."""

    def __init__(self, d=12, vocab=20):
        super().__init__()
        self.fc1 = nn.Linear(d, 16)
        self.fc2 = nn.Linear(16, d)
        self.head = nn.Linear(d, vocab)

    def forward(self, x):
        return self.head(torch.tanh(self.fc2(torch.tanh(self.fc1(x)))))


def _experts_model(seed=0):
    torch.manual_seed(seed)
    state = LangState(LANGS)
    model = TinyNet()
    inject_adapters(model, "independent", ["fc1", "fc2"], LANGS, state, rank=4, alpha=8.0)
    with torch.no_grad():
        for layer in (model.fc1, model.fc2):
            layer.lora_B.normal_(0, 0.5)
    return model.eval(), state


def test_fusion_identity_and_one_hot_equal_single_expert():
    model, state = _experts_model()
    x = torch.randn(3, 5, 12)
    ids = state.ids(["en", "de", "fr"])
    with state.bound(ids):
        expected = model(x)
    independent_to_fusion(model)
    assert isinstance(model.fc1, ExpertFusionLoRA)
    with state.bound(ids):
        assert torch.allclose(model(x), expected, atol=1e-6)
    # a one-hot row selecting another language's expert equals that expert alone
    with torch.no_grad():
        model.fc1.fusion[0] = torch.tensor([0.0, 0.0, 1.0])
        model.fc2.fusion[0] = torch.tensor([0.0, 0.0, 1.0])
    with state.bound(state.ids(["en"])):
        as_en = model(x[:1])
    with state.bound(state.ids(["fr"])):
        as_fr = model(x[:1])
    assert torch.allclose(as_en, as_fr, atol=1e-6)


def test_fused_delta_matches_forward_and_weights():
    model, state = _experts_model()
    independent_to_fusion(model)
    layer = model.fc1
    with torch.no_grad():
        layer.fusion.copy_(torch.tensor([[0.5, 0.3, 0.2], [0.0, 1.0, 0.0], [0.1, 0.1, 0.8]]))
    deltas = layer.expert_deltas()
    w = layer.fusion[0].detach()
    assert torch.allclose(layer.delta_weight("en"), fused_delta(deltas, w), atol=1e-6)
    assert torch.allclose(fused_delta(deltas, torch.tensor([0.0, 1.0, 0.0])), deltas[1])
    x = torch.randn(2, 4, 12)
    with state.bound(state.ids(["en", "fr"])):
        y = layer(x)
    for b, lang in enumerate(["en", "fr"]):
        direct = layer.base_layer(x[b]) + x[b] @ layer.delta_weight(lang).T
        assert torch.allclose(y[b], direct, atol=1e-5)
    with pytest.raises(ValueError, match="weights must be"):
        fused_delta(deltas, torch.ones(2))


def test_only_fusion_weights_train_and_checkpoint_round_trip(tmp_path):
    model, state = _experts_model()
    save_adapters(model, tmp_path / "independent")
    # the Stage-2 "experts_fusion" path: inject fusion layers, then load the experts by language code
    torch.manual_seed(1)
    fresh = TinyNet()
    fresh.load_state_dict({k.replace("base_layer.", ""): v for k, v in model.state_dict().items()
                           if "lora_" not in k}, strict=True)
    fstate = LangState(LANGS)
    for name in ("fc1", "fc2"):
        setattr(fresh, name, ExpertFusionLoRA(getattr(fresh, name), LANGS, fstate, rank=4, alpha=8.0))
    load_experts(fresh, tmp_path / "independent")
    x = torch.randn(2, 3, 12)
    with state.bound(state.ids(["de", "fr"])):
        expected = model(x)
    with fstate.bound(fstate.ids(["de", "fr"])):
        out = fresh(x)
        out.sum().backward()
    assert torch.allclose(out, expected, atol=1e-6)
    trainable = {n for n, p in fresh.named_parameters() if p.grad is not None and not n.startswith("head.")}
    assert trainable == {"fc1.fusion", "fc2.fusion"}
    save_adapters(fresh, tmp_path / "fusion")
    for name in ("fc1", "fc2"):
        getattr(fresh, name).fusion.data.zero_()
    load_adapters(fresh, tmp_path / "fusion")
    assert torch.equal(fresh.fc1.fusion.data, torch.eye(3))


def test_distillation_lowers_student_teacher_kl():
    model, state = _experts_model()
    torch.manual_seed(3)
    feats = torch.randn(24, 6, 12)
    ids = torch.arange(24) % 3
    batches = [(feats[i:i + 6], ids[i:i + 6]) for i in range(0, 24, 6)]
    attach_students(model, rank=4, alpha=8.0, init="lora")

    def kl(model, batch):
        x, lang_ids = batch
        with state.bound(lang_ids):
            with distill_mode(model, "teacher"):
                with torch.no_grad():
                    teacher = model(x)
            with distill_mode(model, "student"):
                student = model(x)
        return token_kl(teacher, student, torch.ones(x.shape[:2], dtype=torch.bool))

    with torch.no_grad():
        before = sum(float(kl(model, b)) for b in batches)
    distill(model, batches * 8, kl, lr=3e-2, progress=False)
    with torch.no_grad():
        after = sum(float(kl(model, b)) for b in batches)
    assert after < 0.8 * before
    # only the students changed; the result is a plain language-free Vanilla-LoRA model
    detach_students(model)
    assert isinstance(model.fc1, VanillaLoRA) and isinstance(model.fc2, VanillaLoRA)
    model(feats)  # no language bound: works


def test_layer_level_distillation_and_svd_init():
    model, state = _experts_model()
    attach_students(model, rank=4, alpha=8.0, init="svd_mean")
    x = torch.randn(6, 5, 12)
    ids = torch.arange(6) % 3
    # SVD-of-the-mean init: the student's update is the experts' mean (rank <= 3 * 4 > 4, so truncated)
    mean = torch.stack([model.fc1.teacher.delta_weight(lang) for lang in LANGS]).mean(0)
    student_delta = model.fc1.student.delta_weight()
    assert torch.linalg.norm(student_delta - mean) < torch.linalg.norm(mean)

    def mse(model, batch):
        with state.bound(batch[1]), distill_mode(model, "both"):
            model(batch[0])
        return layer_mse(model)

    with torch.no_grad():
        before = float(mse(model, (x, ids)))
    distill(model, [(x, ids)] * 20, mse, lr=1e-2, progress=False)
    with torch.no_grad():
        assert float(mse(model, (x, ids))) < before
    for layer in (model.fc1, model.fc2):
        assert layer.teacher.lora_A.grad is None and layer.teacher.lora_B.grad is None


def test_fusion_saved_as_exact_independent_lora():
    from zipasr.sibling.experts import fusion_to_independent

    model, state = _experts_model()
    independent_to_fusion(model)
    with torch.no_grad():
        model.fc1.fusion.copy_(torch.tensor([[0.6, 0.3, 0.1], [0.2, 0.7, 0.1], [0.0, 0.5, 0.5]]))
    x = torch.randn(3, 4, 12)
    ids = state.ids(["en", "de", "fr"])
    with state.bound(ids):
        expected = model.fc1(x)
    wide = fusion_to_independent(model.fc1)
    assert wide.rank == 12 and wide.alpha == 24.0
    with state.bound(ids):
        assert torch.allclose(wide(x), expected, atol=1e-5)


def _speech_model(whisper_dir, llm_dir, method="independent"):
    from zipasr.adapters import adapter_layers
    from zipasr.model.speech_llm import EncoderAdapterConfig, ModelConfig, SpeechLLM

    cfg = ModelConfig(encoder_dir=str(whisper_dir), llm_dir=str(llm_dir), languages=["en", "de", "fr", "zh"],
                      regime="full", encoder_adapter=EncoderAdapterConfig(method=method, rank=4, alpha=8.0))
    torch.manual_seed(0)
    model = SpeechLLM.from_config(cfg).eval()
    with torch.no_grad():
        for layer in adapter_layers(model.encoder).values():
            layer.lora_B.normal_(0, 0.5)
    return model


def test_speech_llm_distillation_lowers_kl(tiny_whisper_dir, tiny_llm_dir):
    from zipasr.model.speech_llm import SpeechBatch
    from zipasr.sibling.experts import speech_kd_loss

    model = _speech_model(tiny_whisper_dir, tiny_llm_dir)
    g = torch.Generator().manual_seed(0)
    texts = ["the cat sat", "guten morgen", "bonjour tout", "你好世界"]
    batch = SpeechBatch(torch.randn(4, 80, 64, generator=g), torch.tensor([64, 50, 40, 30]), torch.arange(4),
                        [model.tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts])
    attach_students(model, rank=4, alpha=8.0, init="lora")
    with torch.no_grad():
        before = float(speech_kd_loss(model, batch))
    losses = distill(model, [batch] * 8, lambda m, b: speech_kd_loss(m, b), lr=2e-2, progress=False)
    with torch.no_grad():
        after = float(speech_kd_loss(model, batch))
    assert before > 0 and after < 0.8 * before, (before, after, losses)
    detach_students(model)
    # the student needs no language: its encoder runs with any (or no) language bound
    hidden, _ = model.encoder(batch.feats, batch.feat_lens)
    assert hidden.shape[0] == 4
