"""bf16 autocast only where the hardware has it: a requested bf16 falls back to fp32 elsewhere, with a warning."""
from __future__ import annotations

import logging

import torch

from zipasr.train import precision


def test_bf16_falls_back_to_fp32_without_native_support(monkeypatch, caplog):
    monkeypatch.setattr(precision, "bf16_available", lambda device: False)
    with caplog.at_level(logging.WARNING):
        assert precision.use_bf16(True, "cpu") is False
    assert "fp32 instead" in caplog.text
    assert precision.use_bf16(False, "cpu") is False
    monkeypatch.setattr(precision, "bf16_available", lambda device: True)
    assert precision.use_bf16(True, "cpu") is True


def test_bf16_available_follows_onednn_on_cpu():
    native = torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()
    assert precision.bf16_available("cpu") == native
    with precision.autocast_context("cpu", True):
        assert torch.get_autocast_dtype("cpu") == torch.bfloat16 and torch.is_autocast_enabled("cpu")
    with precision.autocast_context("cpu", False):
        assert not torch.is_autocast_enabled("cpu")
