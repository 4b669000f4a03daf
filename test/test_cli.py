"""zipasr.bin._cli: what every entry point shares (parser, error line, exit status)."""
import importlib
import re
from pathlib import Path

import pytest
import torch

from zipasr.bin._cli import add_device_arguments, cli_main, cli_parser, torch_device
from zipasr.config import ConfigError
from zipasr.data.datadir import DataDirError


def make_main(exc: BaseException | None, also=()):
    @cli_main("demo", also=also)
    def main(argv=None):
        if exc is not None:
            raise exc
        return None  # None counts as success

    return main


@pytest.mark.parametrize("exc, status, text", [
    (DataDirError("data/x", ["text: u1: duplicate id (line 2)"]), 1, "text: u1: duplicate id (line 2)"),
    (FileNotFoundError("checkpoint file not found: a/b.safetensors"), 1, "a/b.safetensors"),
    (KeyError("utterance 'u7' not in data/x/feats.scp"), 1, "demo: error: utterance 'u7' not in"),
    (ConfigError("unknown key optim.lrr"), 2, "optim.lrr"),
])
def test_expected_errors_are_one_clean_line(exc, status, text, capsys):
    assert make_main(exc)([]) == status
    err = capsys.readouterr().err
    assert err.startswith("demo: error: ") and text in err and "Traceback" not in err


def test_success_unexpected_errors_and_debugging(capsys, monkeypatch):
    assert make_main(None)([]) == 0
    with pytest.raises(ZeroDivisionError):  # a bug keeps its traceback
        make_main(ZeroDivisionError("bug"))([])
    assert make_main(RuntimeError("job runner failed"), also=(RuntimeError,))([]) == 1
    assert "job runner failed" in capsys.readouterr().err
    monkeypatch.setenv("ZIPASR_TRACEBACK", "1")
    with pytest.raises(ValueError, match="shown with its traceback"):
        make_main(ValueError("shown with its traceback"))([])


def test_parser_and_device_arguments():
    p = cli_parser("demo", "Usage text.\n\n    keep   this layout")
    add_device_arguments(p)
    assert p.prog == "python -m zipasr.bin.demo" and "    keep   this layout" in p.format_help()
    args = p.parse_args(["--device", "cpu", "--threads", str(torch.get_num_threads())])
    assert torch_device(args) == torch.device("cpu")


# The entry points built on _cli (train, decode, export and the mini recipe's makers are to follow).
ENTRY_POINTS = ["prepare", "validate_data_dir", "fix_data_dir", "combine_data", "subset_data_dir", "dump_feats",
                "lid_embed", "param_table", "score", "show_results", "plot", "lors_merge", "experts",
                "add_language", "train_lid", "train", "decode", "export"]


@pytest.mark.parametrize("name", ENTRY_POINTS)
def test_entry_point_help(name, capsys):
    """--help exits 0 and names the command as it is run: python -m zipasr.bin.<name>."""
    module = importlib.import_module(f"zipasr.bin.{name}")
    with pytest.raises(SystemExit) as exit_info:
        module.main(["--help"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: python -m zipasr.bin.{name} ")
    # In the source, a lone backslash ending a docstring line joins it with the next one in --help.
    docstring_source = Path(module.__file__).read_text(encoding="utf-8").split('"""')[1]
    assert not re.search(r"(?<!\\)\\\n", docstring_source), "write '\\\\' for a shell line continuation"
