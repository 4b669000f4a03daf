"""python -m zipasr.bin.param_table: trainable parameters per method for a model config."""
import pytest
import yaml

from zipasr.bin import param_table
from zipasr.config import ConfigError


def test_param_table_counts(tiny_whisper_dir, tiny_llm_dir, tmp_path, capsys):
    config = tmp_path / "exp.yaml"
    config.write_text(yaml.safe_dump({
        "model": {"encoder_dir": str(tiny_whisper_dir), "llm_dir": str(tiny_llm_dir), "languages": ["en", "de"],
                  "encoder_adapter": {"method": "zipper_static", "rank": 4, "method_kwargs": {"r_s": 3, "r_p": 1}},
                  "llm_lora": {"rank": 2}},
        "train": {"stage": 2},
    }))
    param_table.main(["--config", str(config), "--method_kwargs", "{flylora: {k: 2}}"])
    out = capsys.readouterr().out
    rows = {line.split()[0]: int(line.split()[1].replace(",", "")) for line in out.splitlines()[3:9]}
    assert set(rows) == {"vanilla", "independent", "flylora", "zipper_static", "zipper_hard", "zipper_soft"}
    # tiny encoder: 2 layers x (4 attention projections 32->32 + fc1 32->64 + fc2 64->32)
    shapes = 2 * ([(32, 32)] * 4 + [(32, 64), (64, 32)])
    assert rows["vanilla"] == sum(4 * (i + o) for i, o in shapes)
    assert rows["independent"] == 2 * rows["vanilla"]
    assert rows["flylora"] == sum(4 * o for i, o in shapes)  # A is frozen: only B trains
    # static: shared A (r x d_in), B_shared (d_out x 3), B_spec (2 languages x d_out x 1)
    assert rows["zipper_static"] == sum(4 * i + 3 * o + 2 * o for i, o in shapes)
    # LLM LoRA of rank 2 on q,k,v,o,gate,up,down of 2 Qwen3 layers (d 32, 4 heads x 8, 2 kv heads, ffn 64)
    llm_shapes = [(32, 32), (32, 16), (32, 16), (32, 32), (32, 64), (32, 64), (64, 32)]
    assert f"LLM LoRA {2 * sum(2 * (i + o) for i, o in llm_shapes):,}" in out

    param_table.main(["--config", str(config), "--set", "encoder_adapter.rank=8", "--methods", "vanilla"])
    out = capsys.readouterr().out
    assert f"vanilla {2 * rows['vanilla']:,}".split() == out.splitlines()[3].split()[:2]
    with pytest.raises(ConfigError, match="rnak"):
        param_table.load_model_config(config, ["encoder_adapter.rnak=8"])
    assert param_table.main(["--config", str(config), "--set", "encoder_adapter.rnak=8"]) == 2  # a ConfigError
    err = capsys.readouterr().err
    assert err.startswith("param_table: error: ") and "rnak" in err
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [1\n")
    assert param_table.main(["--config", str(bad)]) == 2
    assert capsys.readouterr().err.strip().endswith("bad.yaml: not valid YAML: line 2, column 1: expected ',' or ']', "
                                                    "but got '<stream end>'")
