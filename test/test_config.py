from dataclasses import dataclass, field

import pytest

from zipasr.config import ConfigError, from_dict, load_config, save_config


@dataclass
class Inner:
    rank: int = 32
    alpha: float = 64.0
    targets: list[str] = field(default_factory=lambda: ["q_proj"])


@dataclass
class Outer:
    name: str = "x"
    inner: Inner = field(default_factory=Inner)
    seed: int | None = None


def test_defaults_and_nested():
    cfg = from_dict(Outer, {"inner": {"rank": 8, "alpha": 16}})
    assert cfg.inner.rank == 8 and cfg.inner.alpha == 16.0 and isinstance(cfg.inner.alpha, float)


def test_unknown_key_names_dotted_path():
    with pytest.raises(ConfigError, match="inner.rnak"):
        from_dict(Outer, {"inner": {"rnak": 8}})


def test_wrong_type_names_key():
    with pytest.raises(ConfigError, match="inner.rank"):
        from_dict(Outer, {"inner": {"rank": "big"}})
    with pytest.raises(ConfigError, match="inner.rank"):
        from_dict(Outer, {"inner": {"rank": True}})


def test_overrides_and_roundtrip(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("name: exp\ninner:\n  rank: 4\n")
    cfg = load_config(Outer, path, ["inner.alpha=8", "seed=3", "inner.targets=[a, b]"])
    assert (cfg.name, cfg.inner.rank, cfg.inner.alpha, cfg.seed, cfg.inner.targets) == ("exp", 4, 8.0, 3, ["a", "b"])
    save_config(cfg, tmp_path / "out.yaml")
    assert load_config(Outer, tmp_path / "out.yaml") == cfg
    with pytest.raises(ConfigError, match="nope"):
        load_config(Outer, path, ["nope=1"])
    with pytest.raises(ConfigError, match="not found"):
        load_config(Outer, tmp_path / "missing.yaml")


def test_invalid_yaml_names_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="bad.yaml"):
        load_config(Outer, path)


def test_float_written_without_dot_is_accepted():
    cfg = from_dict(Inner, {"alpha": "1e-3"})
    assert cfg.alpha == 1e-3
    with pytest.raises(ConfigError, match="alpha"):
        from_dict(Inner, {"alpha": "big"})
