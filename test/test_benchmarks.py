"""Smoke test of benchmarks/bench_speech_llm.py: every sub-command runs at a toy size and prints its table."""
from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "bench_speech_llm.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_speech_llm", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def run(bench, capsys, argv: list[str]) -> str:
    bench.main(argv)
    return capsys.readouterr().out


def test_step(bench, capsys):
    out = run(bench, capsys, ["step", "--size", "test", "--scale", "0.005", "--iters", "1", "--warmup", "0",
                              "--methods", "zipper_soft", "flylora"])
    ratios = dict(re.findall(r"^(\w+)\s+[\d.]+\s+([\d.]+)x", out, re.M))
    assert set(ratios) == {"vanilla", "zipper_soft", "flylora"}
    assert float(ratios["vanilla"]) == 1.0 and float(ratios["zipper_soft"]) > 0
    assert re.search(r"zipper_soft <= 1.05x vanilla\s+[\d.]+x\s+(met|NOT met)", out)


def test_throughput(bench, capsys):
    out = run(bench, capsys, ["throughput", "--size", "test", "--scale", "0.005", "--steps", "1"])
    rates = {name.strip(): (float(w), float(c)) for name, w, c in
             re.findall(r"^([A-Za-z][\w ()/,+-]*?)\s{2,}([\d.]+)%?\s+([\d.]+)%?$", out, re.M)}
    assert rates["LLM tokens/s (real, no pad)"][0] > 0 and rates["target tokens/s"][1] > 0
    assert any(name.startswith("MFU vs") for name in rates)
    assert 0.1 < float(re.search(r"executed / model FLOPs .*: ([\d.]+)", out).group(1)) < 10


def test_decode(bench, capsys):
    out = run(bench, capsys, ["decode", "--size", "test", "--scale", "0.005", "--batch", "3", "--iters", "1",
                              "--warmup", "0", "--new_tokens", "2"])
    times = dict(re.findall(r"^(batched|one at a time)\s+([\d.]+)\s+[\d.]+\s+[\d.]+$", out, re.M))
    assert set(times) == {"batched", "one at a time"}
    assert re.search(r"batched >= 4.0x one at a time\s+[\d.]+x\s+(met|NOT met)", out)


def test_attention(bench, capsys):
    out = run(bench, capsys, ["attention", "--size", "test", "--scale", "0.005", "--iters", "1", "--warmup", "0"])
    rows = re.findall(r"^(encoder CTC step|LLM text step|Stage-2 step|greedy decode) .*?\s+([\d.]+)\s+([\d.]+)\s+"
                      r"([\d.]+)x$", out, re.M)
    assert [r[0] for r in rows] == ["encoder CTC step", "LLM text step", "Stage-2 step", "greedy decode"]
    for _, sdpa, eager, ratio in rows:
        assert float(sdpa) > 0 and float(eager) > 0
        assert float(ratio) == pytest.approx(float(sdpa) / float(eager), rel=0.05, abs=0.02)


def test_grouping(bench, capsys):
    out = run(bench, capsys, ["grouping", "--size", "test", "--scale", "0.005", "--batches", "2", "--batch", "5",
                              "--iters", "1", "--warmup", "0"])
    rows = re.findall(r"^(Stage-2 step|greedy decode) \(.*?\)\s+(\d+)\s+(\d+)\s+(\d+)\s+([\d.]+)\s+([\d.]+)\s+"
                      r"([\d.]+)x$", out, re.M)
    assert [r[0] for r in rows] == ["Stage-2 step", "greedy decode"], out
    for _, real, padded, grouped, off, on, ratio in rows:
        assert int(real) <= int(grouped) <= int(padded)
        assert float(ratio) == pytest.approx(float(off) / float(on), rel=0.05, abs=0.02)


def test_beam(bench, capsys):
    out = run(bench, capsys, ["beam", "--size", "test", "--scale", "0.005", "--batch", "4", "--beam", "3",
                              "--new_tokens", "6", "--iters", "1", "--warmup", "0"])
    (row,) = re.findall(r"^\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)x  (.+)$", out, re.M)
    theirs, ours, ratio, verdict = row
    assert verdict == "the same", out  # zipasr's cache and lexicon processor: the hypotheses of transformers' own
    assert float(ratio) == pytest.approx(float(theirs) / float(ours), rel=0.05, abs=0.02)


def test_packing(bench, capsys):
    out = run(bench, capsys, ["packing", "--size", "test", "--scale", "0.02"])
    share = re.search(r"LLM real tokens / padded batch tokens\s+([\d.]+)%\s+([\d.]+)%", out)
    assert share and 50 < float(share.group(1)) <= 100 and 50 < float(share.group(2)) <= 100
    out = run(bench, capsys, ["packing", "--dist", "longtail", "--utts", "300", "--max_tokens", "2048",
                              "--batch_size", "4"])
    assert re.search(r"LLM real-token share >= 95% \(own prompt\)\s+[\d.]+%", out)


def test_jobs():
    # a script run (the worker processes are spawned, and import the script as its __main__)
    import subprocess
    proc = subprocess.run([sys.executable, str(SCRIPT), "jobs", "--size", "test", "--scale", "0.005", "--iters", "1",
                           "--rounds", "1", "--batch", "3"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = re.findall(r"^(Stage-2 step|decoding)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)x$", proc.stdout, re.M)
    assert [r[0] for r in rows] == ["Stage-2 step", "decoding"], proc.stdout
    for _, single, pair, ratio in rows:
        # (the ratio is of the unrounded times; a toy model's are a few ms, so it is not recomputed here)
        assert float(single) > 0 and float(pair) > 0 and float(ratio) > 0
