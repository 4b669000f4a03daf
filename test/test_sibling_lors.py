"""LoRS-Merging: pruning invariants and task arithmetic on small tensors and on adapter layers."""
import math

import pytest
import torch
from torch import nn

from zipasr.adapters.base import LangState
from zipasr.adapters.independent import IndependentLoRA
from zipasr.sibling.lors import (
    LorsConfig,
    adapter_task_vectors,
    delta_to_lora,
    lors_merge,
    lors_merge_state_dicts,
    prune_task_vector,
)


def _low_rank(d_out, d_in, rank, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(d_out, rank, generator=g) @ torch.randn(rank, d_in, generator=g)


def test_rank_ratio_one_no_sparsity_is_task_arithmetic():
    taus = [torch.randn(12, 10) for _ in range(3)]
    merged = lors_merge(taus, rank_ratio=1.0, sparsity=0.0, scale=0.7)
    assert torch.allclose(merged, 0.7 * sum(taus), atol=1e-6)
    # default lambda is 1/L: the average
    assert torch.allclose(lors_merge(taus, 1.0, 0.0), sum(taus) / 3, atol=1e-6)


@pytest.mark.parametrize("rank_ratio,sparsity", [(0.25, 0.9), (0.5, 0.0), (1.0, 0.5)])
def test_pruned_parts_have_requested_rank_and_sparsity(rank_ratio, sparsity):
    tau = _low_rank(16, 24, 8, seed=1) + 0.01 * torch.randn(16, 24)  # full rank 16, dominant rank 8
    low, sparse = prune_task_vector(tau, rank_ratio, sparsity)
    expected_rank = math.ceil(rank_ratio * 16)
    assert torch.linalg.matrix_rank(low) == expected_rank
    n_keep = round((1 - sparsity) * tau.numel())
    assert int((sparse != 0).sum()) <= n_keep
    if rank_ratio < 1.0:
        residual = tau - low
        assert int((sparse != 0).sum()) == n_keep
        # the kept entries are the largest residual entries, copied exactly
        kept = sparse != 0
        assert torch.equal(sparse[kept], residual[kept])
        if n_keep < tau.numel():
            assert residual[kept].abs().min() >= residual[~kept].abs().max()


def test_rank_is_relative_to_the_task_vectors_own_rank():
    tau = _low_rank(20, 30, 4, seed=2)  # a LoRA-like update of rank 4
    low, _ = prune_task_vector(tau, rank_ratio=0.5, sparsity=1.0)
    assert torch.linalg.matrix_rank(low) == 2
    # the best rank-2 approximation: error = the discarded singular values
    s = torch.linalg.svdvals(tau)
    assert torch.allclose(torch.linalg.norm(tau - low), s[2:4].norm(), rtol=1e-4)


def test_one_language_recovers_its_model():
    base = {"w": torch.randn(6, 5), "b": torch.randn(6), "steps": torch.tensor(3)}
    ft = {"en": {"w": base["w"] + torch.randn(6, 5), "b": base["b"] + 1.0, "steps": torch.tensor(3)}}
    merged = lors_merge_state_dicts(base, ft, rank_ratio=1.0, sparsity=0.0)
    for k in base:
        assert torch.allclose(merged[k], ft["en"][k], atol=1e-6)


def test_state_dict_mismatch_names_language_and_key():
    base = {"w": torch.zeros(2, 2)}
    with pytest.raises(KeyError, match="'de'.*missing \\['w'\\]"):
        lors_merge_state_dicts(base, {"de": {"v": torch.zeros(2, 2)}}, 1.0, 0.0)
    with pytest.raises(ValueError, match="rank_ratio"):
        LorsConfig(rank_ratio=0.0)
    with pytest.raises(ValueError, match="sparsity"):
        lors_merge([torch.zeros(2, 2)], 0.5, 1.5)


def test_adapter_task_vectors_and_lora_factorisation():
    torch.manual_seed(0)
    langs = ["en", "de", "fr"]
    state = LangState(langs)
    layer = IndependentLoRA(nn.Linear(10, 8), langs, state, rank=4, alpha=8.0)
    with torch.no_grad():
        layer.lora_B.normal_()
    model = nn.Sequential(layer)
    tvs = adapter_task_vectors(model)
    assert list(tvs) == ["0"] and list(tvs["0"]) == langs
    for lang in langs:
        assert torch.allclose(tvs["0"][lang], layer.delta_weight(lang))
    merged = lors_merge(tvs["0"], rank_ratio=1.0, sparsity=0.0, scale=1.0)
    a, b, r = delta_to_lora(merged, rank=None, alpha=16.0)
    assert r == 8  # sum of three rank-4 updates in an 8x10 matrix: full rank 8
    assert torch.allclose(16.0 / r * b @ a, merged, atol=1e-5)
    a2, b2, r2 = delta_to_lora(merged, rank=2, alpha=16.0)
    assert a2.shape == (2, 10) and b2.shape == (8, 2) and torch.linalg.matrix_rank(b2 @ a2) == 2
