"""The adapter family: one table runs every method through the same invariants, then per-method facts."""
import copy
import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from zipasr.adapters import (
    ADAPTERS,
    AdapterLayer,
    FlyLoRA,
    LangState,
    adapter_layers,
    format_parameter_table,
    init_b_from_checkpoint,
    inject_adapters,
    inject_from_checkpoint,
    load_adapter_config,
    load_adapter_kwargs,
    load_adapters,
    merge_adapters,
    merged_adapters,
    save_adapters,
    trainable_parameter_table,
    unmerge_adapters,
)
from zipasr.languages import UnknownLanguageError

LANGS = ["en", "de", "zh"]
D, D_FF, D_LID, RANK = 16, 32, 8, 8
TARGETS = ["q_proj", "fc1", "re:.*\\.fc2"]
METHODS = list(ADAPTERS)
ROUTED = ("zipper_hard", "zipper_soft")


class Block(nn.Module):
    """A transformer-like block: attention-style projection and FFN, enough to host every target."""

    def __init__(self):
        super().__init__()
        self.q_proj = nn.Linear(D, D)
        self.fc1 = nn.Linear(D, D_FF)
        self.fc2 = nn.Linear(D_FF, D)
        self.norm = nn.LayerNorm(D)

    def forward(self, x):
        x = x + self.q_proj(x)
        return self.norm(x + self.fc2(torch.relu(self.fc1(x))))


def make_base(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(Block(), Block())


LID = torch.randn(len(LANGS), D_LID, generator=torch.Generator().manual_seed(1))


def method_kwargs(method):
    kwargs = {"rank": RANK, "alpha": 2.0 * RANK}
    if method in ROUTED:
        kwargs["lid_embeddings"] = LID
    if method == "flylora":
        kwargs.update(k=2, seed=3)
    return kwargs


def make_adapted(method, base=None, lang_state=None):
    model = copy.deepcopy(base if base is not None else make_base())
    state = lang_state or LangState(LANGS)
    inject_adapters(model, method, TARGETS, LANGS, state, **method_kwargs(method))
    return model, state


def randomize(model, seed=0):
    """Non-zero values for every adapter tensor (B included), so the invariants are not trivial."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in adapter_layers(model).values():
            for key, t in layer.adapter_state_dict().items():
                if key == "lora_A" and isinstance(layer, FlyLoRA):
                    continue  # keep FlyLoRA's sparse pattern
                t.copy_(torch.randn(t.shape, generator=gen) * 0.3)


def run(model, state, x, ids):
    with state.bound(torch.as_tensor(ids, dtype=torch.long)):
        return model(x)


X = torch.randn(4, 5, D, generator=torch.Generator().manual_seed(2))
IDS = [0, 1, 2, 1]


# ------------------------------------------------------------------ the invariants table
@pytest.mark.parametrize("method", METHODS)
def test_zero_b_equals_frozen_model(method):
    base = make_base()
    model, state = make_adapted(method, base)
    assert len(adapter_layers(model)) == 6
    torch.testing.assert_close(run(model, state, X, IDS), base(X), rtol=0, atol=0)


@pytest.mark.parametrize("method", METHODS)
def test_only_adapter_and_router_params_get_gradients(method):
    base = make_base().requires_grad_(False)  # Stage 2 freezes the encoder; injection adds trainable adapters
    model, state = make_adapted(method, base)
    randomize(model)
    run(model, state, X, IDS).square().sum().backward()
    adapter_names = set(adapter_layers(model))
    for name, p in model.named_parameters():
        in_adapter = any(name.startswith(a + ".") and ".base_layer." not in name for a in adapter_names)
        if not in_adapter:
            assert not p.requires_grad and p.grad is None, name
        else:
            assert p.requires_grad and p.grad is not None and p.grad.abs().sum() > 0, name
    for layer in adapter_layers(model).values():
        if isinstance(layer, FlyLoRA):
            assert "lora_A" in dict(layer.named_buffers()) and not layer.lora_A.requires_grad


@pytest.mark.parametrize("method", METHODS)
def test_merged_equals_unmerged_per_language(method):
    model, state = make_adapted(method)
    randomize(model)
    model.eval()
    base_weights = {n: l.base_layer.weight.clone() for n, l in adapter_layers(model).items()}
    if not ADAPTERS[method].mergeable:
        with pytest.raises(RuntimeError, match="cannot be merged"):
            merge_adapters(model, "en")
        return
    for i, lang in enumerate(LANGS):
        ids = [i] * X.shape[0]
        expected = run(model, state, X, ids)
        with merged_adapters(model, lang):
            assert all(layer.merged for layer in adapter_layers(model).values())
            torch.testing.assert_close(run(model, state, X, ids), expected, rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(model(X), expected, rtol=1e-5, atol=1e-5)  # no language needed
    for name, layer in adapter_layers(model).items():
        torch.testing.assert_close(layer.base_layer.weight, base_weights[name], rtol=0, atol=1e-6)


@pytest.mark.parametrize("method", METHODS)
def test_merge_language_free_adapters_only_merges_shared_ones(method):
    """Decoding folds the adapters into the weights only when one update serves every language."""
    from zipasr.adapters.inject import merge_language_free_adapters

    model, state = make_adapted(method)
    randomize(model)
    model.eval()
    expected = run(model, state, X, IDS)
    shared = ADAPTERS[method].mergeable and not ADAPTERS[method].needs_language
    assert merge_language_free_adapters(model) == (6 if shared else 0)
    assert all(layer.merged == shared for layer in adapter_layers(model).values())
    torch.testing.assert_close(run(model, state, X, IDS), expected, rtol=1e-5, atol=1e-5)
    assert merge_language_free_adapters(model) == 0  # nothing left to merge


@pytest.mark.parametrize("method", METHODS)
def test_save_load_gives_identical_outputs(method, tmp_path):
    base = make_base()
    model, state = make_adapted(method, base)
    randomize(model)
    model.eval()
    expected = run(model, state, X, IDS)
    save_adapters(model, tmp_path / "ckpt", extra_config={"lid_source": "test"})
    cfg = load_adapter_config(tmp_path / "ckpt")
    assert cfg["method"] == method and cfg["rank"] == RANK and cfg["languages"] == LANGS
    assert cfg["target_modules"] == TARGETS and len(cfg["layers"]) == 6 and cfg["extra"] == {"lid_source": "test"}

    rebuilt = copy.deepcopy(base)  # a clean model: rebuild from the checkpoint alone
    inject_from_checkpoint(rebuilt, tmp_path / "ckpt", state)
    rebuilt.eval()
    torch.testing.assert_close(run(rebuilt, state, X, IDS), expected, rtol=0, atol=0)

    again, _ = make_adapted(method, base, state)  # fresh random adapters, then load over them
    load_adapters(again, tmp_path / "ckpt")
    again.eval()
    torch.testing.assert_close(run(again, state, X, IDS), expected, rtol=0, atol=0)


@pytest.mark.parametrize("method", METHODS)
def test_mixed_language_batch_equals_one_language_at_a_time(method):
    model, state = make_adapted(method)
    randomize(model)
    model.eval()
    mixed = run(model, state, X, IDS)
    for b, lang_id in enumerate(IDS):
        alone = run(model, state, X[b : b + 1], [lang_id])
        torch.testing.assert_close(mixed[b : b + 1], alone, rtol=1e-5, atol=1e-6)
    if ADAPTERS[method].needs_language:  # the language matters: a different id changes the output
        assert not torch.allclose(run(model, state, X[:1], [1]), run(model, state, X[:1], [2]))


@pytest.mark.parametrize("method", METHODS)
def test_two_dim_input_and_missing_language(method):
    model, state = make_adapted(method)
    randomize(model)
    model.eval()  # FlyLoRA's balance bias must not move between the two runs
    x2 = X[:, 0]  # (B, d_in)
    torch.testing.assert_close(run(model, state, x2, IDS), run(model, state, X[:, :1], IDS)[:, 0])
    if ADAPTERS[method].needs_language:
        with pytest.raises(RuntimeError, match="no lang_ids are bound"):
            model(X)
        with pytest.raises(RuntimeError, match="batch of 4"):
            run(model, state, X, [0, 1])


# ------------------------------------------------------------------ Zipper: Eqs. (10)-(18)
def _layer(method, **kwargs):
    state = LangState(LANGS)
    torch.manual_seed(5)
    base = nn.Linear(D, D_FF)
    kw = method_kwargs(method)
    kw.update(kwargs)
    layer = ADAPTERS[method](base, LANGS, state, **kw)
    randomize(layer, seed=7)
    return layer, state


def _router_p(layer):
    """Eqs. (16)-(18) from the router's own parameters."""
    r = layer.router
    e = F.layer_norm(LID, (D_LID,), r.norm.weight, r.norm.bias, r.norm.eps)
    return torch.sigmoid(e @ r.proj.weight.T + r.proj.bias)


def _b_merged_direct(layer, l):
    if layer.method == "zipper_static":
        return torch.cat([layer.B_shared, layer.B_spec[l]], dim=1)  # Eq. (11)
    p = _router_p(layer)[l]
    if layer.method == "zipper_soft":
        return layer.B_shared @ torch.diag(1 - p) + layer.B_spec[l] @ torch.diag(p)  # Eq. (14)
    s = p >= layer.tau  # Eq. (12); column i from B_spec where s_i = 1 (design.md's resolution), Eq. (13)
    return torch.stack([layer.B_spec[l][:, i] if s[i] else layer.B_shared[:, i] for i in range(layer.rank)], dim=1)


@pytest.mark.parametrize("method", ["zipper_static", "zipper_hard", "zipper_soft"])
def test_zipper_equals_direct_equations(method):
    layer, state = _layer(method)
    x = torch.randn(3, 4, D)
    ids = [2, 0, 1]
    out = run(layer, state, x, ids)
    for b, l in enumerate(ids):
        delta = layer.alpha / layer.rank * _b_merged_direct(layer, l) @ layer.lora_A  # Eq. (10)
        expected = x[b] @ (layer.base_layer.weight + delta).T + layer.base_layer.bias
        torch.testing.assert_close(out[b], expected, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(layer.delta_weight(LANGS[l]), delta, rtol=1e-5, atol=1e-6)


def test_zipper_hard_uses_binary_mask_and_straight_through_gradient():
    layer, state = _layer("zipper_hard")
    with torch.no_grad():  # spread p so that both banks are used and p is far from {0, 1}
        layer.router.proj.bias.copy_(torch.linspace(-1.5, 1.5, RANK))
    p = _router_p(layer)
    assert ((p > 0.05) & (p < 0.95)).all() and (p >= 0.5).any() and (p < 0.5).any()
    x = torch.randn(2, 4, D)
    assert set(layer.gate().unique().tolist()) <= {0.0, 1.0}  # exactly binary, not p
    out = run(layer, state, x, [0, 1])
    # The forward is the binary selection, not the soft mixture.
    soft = layer.B_shared @ torch.diag(1 - p[0]) + layer.B_spec[0] @ torch.diag(p[0])
    soft_out = x[0] @ (layer.base_layer.weight + layer.scaling * soft @ layer.lora_A).T + layer.base_layer.bias
    assert not torch.allclose(out[0], soft_out, atol=1e-4)
    out.square().sum().backward()
    assert layer.router.proj.weight.grad.abs().sum() > 0 and layer.router.proj.bias.grad.abs().sum() > 0


def test_zipper_static_splits_columns():
    layer, _ = _layer("zipper_static")
    assert layer.B_shared.shape == (D_FF, RANK // 2) and layer.B_spec.shape == (3, D_FF, RANK // 2)
    layer, _ = _layer("zipper_static", r_s=2, r_p=6)
    assert layer.B_shared.shape == (D_FF, 2) and layer.B_spec.shape == (3, D_FF, 6)
    with pytest.raises(ValueError, match="r_s \\+ r_p = rank"):
        _layer("zipper_static", r_s=2, r_p=2)


def test_routed_zipper_needs_lid_embeddings_per_language():
    with pytest.raises(ValueError, match="lid_embeddings of shape"):
        _layer("zipper_soft", lid_embeddings=torch.randn(2, D_LID))


# ------------------------------------------------------------------ FlyLoRA
def test_flylora_a_frozen_sparse_and_k_active_ranks():
    state = LangState(LANGS)
    rank, k, d_in = 8, 2, 64
    layer = FlyLoRA(nn.Linear(d_in, rank), LANGS, state, rank=rank, k=k, seed=0)
    assert not layer.lora_A.requires_grad and "lora_A" not in dict(layer.named_parameters())
    assert ((layer.lora_A != 0).sum(dim=1) == d_in * k // rank).all()  # density k/r in every row
    again = FlyLoRA(nn.Linear(d_in, rank), LANGS, state, rank=rank, k=k, seed=0)
    assert torch.equal(layer.lora_A, again.lora_A)  # the seed fixes the pattern
    with torch.no_grad():
        layer.lora_B.copy_(torch.eye(rank))  # the update then shows α/r · mask ⊙ A x itself
        layer.base_layer.weight.zero_()
        layer.base_layer.bias.zero_()
    layer.eval()
    delta = layer(torch.randn(3, 10, d_in))
    assert ((delta != 0).sum(dim=-1) == k).all()


def test_flylora_balance_bias_moves_toward_underused_ranks_only_in_training():
    rank, k, d_in = 8, 2, 16
    layer = FlyLoRA(nn.Linear(d_in, d_in), [], None, rank=rank, k=k, seed=1)
    x = torch.randn(2, 50, d_in)
    layer.eval()
    layer(x)
    assert torch.equal(layer.balance_bias, torch.zeros(rank))  # eval: untouched
    counts = layer.topk_mask(x @ layer.lora_A.T).sum(dim=(0, 1))
    layer.train()
    layer(x)
    d = layer.balance_bias
    torch.testing.assert_close(d, layer.bias_update_rate * torch.sign(counts.mean() - counts))
    assert d[counts.argmin()] > 0 and d[counts.argmax()] < 0
    assert (d[counts < counts.mean()] > 0).all() and (d[counts > counts.mean()] < 0).all()
    layer.to(torch.bfloat16)  # d stays float32: its small steps would vanish in bf16
    assert layer.lora_B.dtype == torch.bfloat16 and layer.balance_bias.dtype == torch.float32


def test_flylora_balance_bias_updates_once_under_gradient_checkpointing():
    rank, k, d_in = 8, 2, 16

    def make():
        torch.manual_seed(0)
        layer = FlyLoRA(nn.Linear(d_in, d_in), [], None, rank=rank, k=k, seed=3, bias_update_rate=5.0)
        with torch.no_grad():
            layer.lora_B.normal_()  # non-zero B: the input gradient depends on the routing
        return nn.Sequential(layer, nn.Tanh()).train()  # tanh saves its output: recompute reaches FlyLoRA

    x = torch.randn(2, 30, d_in)
    plain, ckpt = make(), make()
    calls = []
    ckpt[0].register_forward_hook(lambda *_: calls.append(1))
    x_plain, x_ckpt = x.clone().requires_grad_(), x.clone().requires_grad_()
    plain(x_plain).square().sum().backward()
    checkpoint(ckpt, x_ckpt, use_reentrant=False).square().sum().backward()
    assert len(calls) == 2  # the forward really ran again in backward
    assert plain[0].balance_bias.abs().sum() > 0
    torch.testing.assert_close(ckpt[0].balance_bias, plain[0].balance_bias)  # one update, not two
    # the recomputation routed with the bias of the real forward (u = 5 would reroute every token)
    torch.testing.assert_close(x_ckpt.grad, x_plain.grad)
    torch.testing.assert_close(ckpt[0].lora_B.grad, plain[0].lora_B.grad)


# ------------------------------------------------------------------ injection
def test_inject_patterns_suffix_regex_and_no_double_wrap():
    model = make_base()
    names = inject_adapters(model, "vanilla", "fc1", [], None)
    assert names == ["0.fc1", "1.fc1"]
    assert inject_adapters(model, "vanilla", ["fc1", "re:1\\.q_proj"], [], None) == ["1.q_proj"]  # fc1: skipped
    assert isinstance(model[0].fc1.base_layer, nn.Linear) and not isinstance(model[0].fc1.base_layer, AdapterLayer)
    with pytest.raises(ValueError, match="match no nn.Linear"):
        inject_adapters(model, "vanilla", "proj", [], None)  # suffix must sit on a '.' boundary
    with pytest.raises(ValueError, match="'attn'"):
        inject_adapters(make_base(), "vanilla", ["fc1", "attn"], [], None)


def test_inject_rejects_unknown_method_kwargs_and_missing_state():
    with pytest.raises(ValueError, match="known methods"):
        inject_adapters(make_base(), "dora", "fc1", LANGS, LangState(LANGS))
    with pytest.raises(TypeError, match="tau"):
        inject_adapters(make_base(), "zipper_soft", "fc1", LANGS, LangState(LANGS), lid_embeddings=LID, tau=0.3)
    with pytest.raises(ValueError, match="needs a LangState"):
        inject_adapters(make_base(), "independent", "fc1", LANGS, None)
    with pytest.raises(ValueError, match="differ from the LangState"):
        inject_adapters(make_base(), "independent", "fc1", LANGS, LangState(["en", "de"]))


def test_llm_side_plain_lora_needs_no_language():
    base = make_base()
    model = copy.deepcopy(base)
    inject_adapters(model, "vanilla", ["q_proj", "fc1", "fc2"], [], None, rank=4, alpha=8)
    torch.testing.assert_close(model(X), base(X))
    randomize(model)
    model(X).sum().backward()
    assert all(layer.lora_B.grad is not None for layer in adapter_layers(model).values())


def test_low_precision_base_keeps_fp32_adapters():
    base = nn.Linear(D, D).to(torch.bfloat16)
    layer = ADAPTERS["zipper_soft"](base, LANGS, LangState(LANGS), **method_kwargs("zipper_soft"))
    assert layer.lora_A.dtype == layer.B_spec.dtype == layer.router.proj.weight.dtype == torch.float32
    x = torch.randn(2, 3, D, dtype=torch.bfloat16)
    out = run(layer, layer.lang_state, x, [0, 2])
    assert out.dtype == torch.bfloat16 and torch.equal(out, base(x))


def test_dropout_acts_on_the_adapter_input_in_training_only():
    torch.manual_seed(0)
    base = nn.Linear(D, D)
    with_dropout = ADAPTERS["zipper_static"](copy.deepcopy(base), LANGS, LangState(LANGS), rank=RANK, dropout=0.5)
    randomize(with_dropout)
    plain = ADAPTERS["zipper_static"](copy.deepcopy(base), LANGS, with_dropout.lang_state, rank=RANK)
    plain.load_adapter_state_dict(with_dropout.adapter_state_dict())
    ids = [0, 1, 2, 0]
    with_dropout.eval()
    torch.testing.assert_close(run(with_dropout, with_dropout.lang_state, X, ids), run(plain, plain.lang_state, X, ids))
    with_dropout.train()
    assert not torch.allclose(run(with_dropout, with_dropout.lang_state, X, ids), run(plain, plain.lang_state, X, ids))


def test_lang_state_binding_nests_and_restores():
    state = LangState(LANGS)
    with state.bound(torch.tensor([0, 1])):
        with state.bound(torch.tensor([2])):
            assert state.lang_ids.tolist() == [2]
        assert state.lang_ids.tolist() == [0, 1]
    assert state.lang_ids is None
    with pytest.raises(TypeError, match="1-D LongTensor"):
        with state.bound(torch.tensor([0.0])):
            pass


# ------------------------------------------------------------------ bad input
def test_unknown_language_code_lists_known_ones():
    with pytest.raises(UnknownLanguageError, match="'xx'; known codes: .*en"):
        inject_adapters(make_base(), "independent", "fc1", ["en", "xx"], LangState())
    with pytest.raises(UnknownLanguageError, match="'xx'; known codes"):
        LangState(["en", "xx"])
    with pytest.raises(ValueError, match="not among the model's languages"):
        LangState(LANGS).ids(["en", "fr"])
    assert LangState(LANGS).ids(["zh", "en"]).tolist() == [2, 0]
    model, _ = make_adapted("zipper_static")
    with pytest.raises(ValueError, match="not among this adapter's languages \\['en', 'de', 'zh'\\]"):
        merge_adapters(model, "fr")
    with pytest.raises(ValueError, match="out of range"):
        with LangState(LANGS).bound(torch.tensor([0, 3])):
            pass


def test_merged_layer_refuses_other_languages():
    model, state = make_adapted("independent")
    merge_adapters(model, "de")
    with pytest.raises(RuntimeError, match="merged for 'de'"):
        run(model, state, X, IDS)
    with pytest.raises(RuntimeError, match="already merged"):
        merge_adapters(model, "en")
    assert unmerge_adapters(model) == 6


@pytest.mark.parametrize(
    "method, kwargs, langs, mismatch",
    [
        ("vanilla", {}, LANGS, "method: checkpoint 'zipper_soft' vs model 'vanilla'"),
        ("zipper_soft", {"rank": 4}, LANGS, "rank: checkpoint 8 vs model 4"),
        ("zipper_soft", {}, ["en", "zh", "de"], "languages: checkpoint \\['en', 'de', 'zh'\\]"),
    ],
)
def test_load_checkpoint_mismatch_names_it(tmp_path, method, kwargs, langs, mismatch):
    model, _ = make_adapted("zipper_soft")
    save_adapters(model, tmp_path)
    other = make_base()
    kw = dict(method_kwargs(method), **kwargs)
    inject_adapters(other, method, TARGETS, langs, LangState(langs), **kw)
    with pytest.raises(ValueError, match=mismatch):
        load_adapters(other, tmp_path)


def test_load_checkpoint_other_targets_and_missing_files(tmp_path):
    model, _ = make_adapted("vanilla")
    save_adapters(model, tmp_path / "a")
    other = make_base()
    inject_adapters(other, "vanilla", ["fc1"], LANGS, LangState(LANGS), **method_kwargs("vanilla"))
    with pytest.raises(ValueError, match="target_modules"):
        load_adapters(other, tmp_path / "a")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_adapters(model, tmp_path / "nowhere")
    (tmp_path / "a" / "adapter.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="no adapter.safetensors"):
        load_adapters(model, tmp_path / "a")


def test_lid_embeddings_saved_once(tmp_path):
    from safetensors.torch import load_file

    model, _ = make_adapted("zipper_hard")
    save_adapters(model, tmp_path)
    tensors = load_file(str(tmp_path / "adapter.safetensors"))
    assert [k for k in tensors if "lid" in k] == ["lid_embeddings"] and torch.equal(tensors["lid_embeddings"], LID)
    assert torch.equal(load_adapter_kwargs(tmp_path)["lid_embeddings"], LID)
    assert json.loads((tmp_path / "adapter_config.json").read_text())["method_kwargs"] == {"tau": 0.5}


# ------------------------------------------------------------------ Initial-B
@pytest.mark.parametrize("target", ROUTED)
def test_initial_b_copies_exactly(tmp_path, target):
    soft, _ = make_adapted("zipper_soft")
    randomize(soft, seed=11)
    save_adapters(soft, tmp_path)
    langs = ["zh", "en"]  # a subset in another order: matched by code
    model = make_base()
    inject_adapters(model, target, TARGETS, langs, LangState(langs), **dict(method_kwargs(target), lid_embeddings=LID[[2, 0]]))
    a_before = {n: l.lora_A.clone() for n, l in adapter_layers(model).items()}
    copied = init_b_from_checkpoint(model, tmp_path, router=True)
    src = adapter_layers(soft)
    for name, layer in adapter_layers(model).items():
        assert torch.equal(layer.B_shared, src[name].B_shared)
        assert torch.equal(layer.B_spec, src[name].B_spec[[2, 0]])
        assert torch.equal(layer.router.proj.weight, src[name].router.proj.weight)
        assert torch.equal(layer.lora_A, a_before[name])  # A keeps its own init
    assert len(copied) == 6 * 6


def test_initial_b_errors(tmp_path):
    static, _ = make_adapted("zipper_static")
    save_adapters(static, tmp_path / "static")
    soft, _ = make_adapted("zipper_soft")
    save_adapters(soft, tmp_path / "soft")
    model, _ = make_adapted("zipper_hard")
    with pytest.raises(ValueError, match="needs a zipper_soft checkpoint"):
        init_b_from_checkpoint(model, tmp_path / "static")
    with pytest.raises(ValueError, match="zipper_hard/zipper_soft"):
        init_b_from_checkpoint(static, tmp_path / "soft")
    langs = ["en", "fr"]
    other = make_base()
    inject_adapters(other, "zipper_hard", TARGETS, langs, LangState(langs), **dict(method_kwargs("zipper_hard"), lid_embeddings=LID[:2]))
    with pytest.raises(ValueError, match="no B_spec for languages \\['fr'\\]"):
        init_b_from_checkpoint(other, tmp_path / "soft")
    wide = make_base()
    inject_adapters(wide, "zipper_hard", TARGETS, LANGS, LangState(LANGS), **dict(method_kwargs("zipper_hard"), rank=4))
    with pytest.raises(ValueError, match="checkpoint shape"):
        init_b_from_checkpoint(wide, tmp_path / "soft")


# ------------------------------------------------------------------ parameter table
def test_trainable_parameter_table_counts():
    base = make_base()
    rows = {r["method"]: r for r in trainable_parameter_table(base, TARGETS, LANGS, lid_dim=D_LID, rank=RANK)}
    assert list(rows) == METHODS
    shapes = [(D, D), (D, D_FF), (D_FF, D)] * 2  # (d_in, d_out) of each wrapped layer
    lora = sum(RANK * (i + o) for i, o in shapes)
    router = RANK * D_LID + RANK + 2 * D_LID  # W_r, b_r, LayerNorm
    assert rows["vanilla"]["trainable"] == lora
    assert rows["independent"]["trainable"] == 3 * lora
    assert rows["flylora"]["trainable"] == sum(RANK * o for _, o in shapes)
    assert rows["zipper_static"]["trainable"] == sum(RANK * i + RANK // 2 * o * 4 for i, o in shapes)
    assert rows["zipper_soft"]["trainable"] == sum(RANK * i + RANK * o * 4 + router for i, o in shapes)
    total = sum(p.numel() for p in base.parameters())
    assert rows["vanilla"]["percent_of_encoder"] == pytest.approx(100 * lora / total)
    assert not adapter_layers(base)  # the encoder itself is untouched
    assert "zipper_hard" in format_parameter_table(list(rows.values()))


def test_read_safetensors_names_a_bad_file(tmp_path):
    from zipasr.adapters import read_safetensors

    (tmp_path / "junk.safetensors").write_bytes(b"junk")
    with pytest.raises(ValueError, match="junk.safetensors: not a readable safetensors file"):
        read_safetensors(tmp_path / "junk.safetensors")
    with pytest.raises(FileNotFoundError, match="nope.safetensors"):
        read_safetensors(tmp_path / "nope.safetensors")
