"""The ``ltzoo`` command line. Each sub-command is a module here with ``register(subparsers)``;
modules are discovered, so a new command is a new module."""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import shlex
import sys
from collections.abc import Callable

from ltzoo.errors import LtzooError
from ltzoo.version import __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ltzoo",
        description="ltzoo: long-tailed image recognition models: train, evaluate, export, publish.",
        epilog="Run `ltzoo COMMAND --help` for a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"ltzoo {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        importlib.import_module(f"{__name__}.{module.name}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    # Every line a user reads (plans, epoch lines, tables, warnings) goes to stdout, as do the progress bars
    # (ltzoo.engine.progress); stderr carries only the one-line error a command fails with.
    # With --json, stdout is the JSON document alone and the log lines go to stderr.
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(message)s",
        stream=sys.stderr if getattr(args, "json", False) else sys.stdout,
    )
    for chatty in ("httpx", "httpx2", "httpcore", "httpcore2", "huggingface_hub", "filelock"):
        # one INFO line per HTTP request drowns the output; -v brings them back
        logging.getLogger(chatty).setLevel(logging.DEBUG if args.verbose else logging.WARNING)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except LtzooError as exc:
        print(f"ltzoo {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"ltzoo {args.command}: interrupted{_resume_hint(args, argv)}", file=sys.stderr)
        return 130


def _resume_hint(args: argparse.Namespace, argv: list[str]) -> str:
    """How to continue an interrupted ``ltzoo train``: the same command with ``--resume`` (every finished epoch
    is in its checkpoint)."""
    if args.command != "train":
        return ""
    command = " ".join(shlex.quote(part) for part in ["ltzoo", *argv, *([] if args.resume else ["--resume"])])
    return f"; the finished epochs are saved in {args.out}: continue with\n  {command}"


def script_main(
    description: str,
    add_arguments: Callable[[argparse.ArgumentParser], None],
    run: Callable[[argparse.Namespace], int],
    prog: str,
    argv: list[str] | None,
) -> int:
    """A command of ``ltzoo`` run as a script of its own (``export/to_onnx.py`` is ``ltzoo export``): the same
    arguments, output streams and one-line errors."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    add_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(message)s", stream=sys.stderr if getattr(args, "json", False) else sys.stdout
    )
    try:
        return run(args)
    except LtzooError as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
