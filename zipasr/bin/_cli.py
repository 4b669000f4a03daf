"""What every entry point of zipasr.bin shares: its parser, logging, and one clean line for an
expected error.

    def get_parser() -> argparse.ArgumentParser:
        p = cli_parser("score", __doc__)      # prog "python -m zipasr.bin.score", docstring as description
        ...

    @cli_main("score")
    def main(argv: list[str] | None = None) -> int:
        args = get_parser().parse_args(argv)
        ...
        return 0

    if __name__ == "__main__":
        sys.exit(main())

Exit status: 0 done; 1 the input is wrong (a data dir, a file, a checkpoint, a language code: every
zipasr error class is a ValueError, missing files are OSErrors, missing keys KeyErrors); 2 the command
line or a config is wrong (argparse's own status, and ConfigError). The message goes to stderr as
`<prog>: error: <message>`, without a traceback; any other exception is a bug and keeps its
traceback. ZIPASR_TRACEBACK=1 in the environment re-raises expected errors too (to debug them).
"""
from __future__ import annotations

import argparse
import functools
import logging
import os
import sys
from typing import TYPE_CHECKING, Callable

from zipasr.config import ConfigError

if TYPE_CHECKING:
    import torch

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# ConfigError, DataDirError, CorpusError, AudioError and UnknownLanguageError are all ValueErrors.
EXPECTED_ERRORS: tuple[type[BaseException], ...] = (ValueError, OSError, KeyError)


def error_message(err: BaseException) -> str:
    """The text of `err` for people: a KeyError's own message without the quotes str() adds."""
    if isinstance(err, KeyError) and len(err.args) == 1 and isinstance(err.args[0], str):
        return err.args[0]
    return str(err)


def cli_main(prog: str, also: tuple[type[BaseException], ...] = ()) -> Callable:
    """Decorate `main(argv) -> int`: set up INFO logging, and turn EXPECTED_ERRORS (plus `also`) into
    `<prog>: error: ...` on stderr and exit status 2 (ConfigError) or 1 (the rest)."""
    caught = EXPECTED_ERRORS + tuple(also)

    def decorate(main: Callable[..., int | None]) -> Callable[..., int]:
        @functools.wraps(main)
        def wrapped(argv: list[str] | None = None) -> int:
            logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
            try:
                return main(argv) or 0
            except caught as err:
                if os.environ.get("ZIPASR_TRACEBACK"):
                    raise
                print(f"{prog}: error: {error_message(err)}", file=sys.stderr)
                return 2 if isinstance(err, ConfigError) else 1

        return wrapped

    return decorate


def cli_parser(prog: str, doc: str | None) -> argparse.ArgumentParser:
    """The parser of `python -m zipasr.bin.<prog>`, with the module docstring (its examples kept as
    written) as the description."""
    return argparse.ArgumentParser(prog=f"python -m zipasr.bin.{prog}", description=doc,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)


def add_device_arguments(parser: argparse.ArgumentParser) -> None:
    """--device and --threads, read by `torch_device`."""
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")


def torch_device(args: argparse.Namespace) -> "torch.device":
    """Apply --threads and return the torch device of --device (default: cuda if available, else cpu)."""
    import torch  # here, so that --help does not wait for torch

    if args.threads:
        torch.set_num_threads(args.threads)
    return torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
