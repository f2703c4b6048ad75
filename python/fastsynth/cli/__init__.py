"""The ``fastsynth`` command line.

Each sub-command lives in its own module under ``fastsynth.cli`` and exposes
``register(subparsers)``, which adds its parser and sets ``func``. Heavy imports
(torch, matplotlib) happen inside ``func`` so ``fastsynth --help`` stays instant.

User errors (:class:`fastsynth.errors.FastsynthError`, missing files) print one line
naming the file and line/row and exit with status 2; no traceback.
"""
from __future__ import annotations

import argparse
import importlib
import re
import sys

from fastsynth._version import __version__
from fastsynth.errors import FastsynthError

# Sub-command modules, in the order the data flows.
COMMANDS = ["score", "dedup", "synth", "generate", "serve", "plan", "tokenize", "train", "sweep", "run"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fastsynth",
        description="Plan, build and train on data for small language models.",
    )
    parser.add_argument("--version", action="version", version=f"fastsynth {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"fastsynth.cli.{name}").register(sub)
    for command in sub.choices.values():     # module docstrings double as --help text
        if command.description:
            command.description = plain_text(command.description)
    return parser


def plain_text(doc: str) -> str:
    """A docstring's reStructuredText markup as a terminal shows it: ``:class:`a.b.C``` and
    ````x```` become ``a.b.C`` and ``x`` without the backticks."""
    doc = re.sub(r":[a-z]+:`~?([^`]+)`", r"\1", doc)
    return re.sub(r"``([^`]+)``", r"\1", doc)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except FastsynthError as e:
        print(f"fastsynth {args.command}: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # missing/unreadable files named by the user
        name = f"{e.filename}: " if getattr(e, "filename", None) else ""
        print(f"fastsynth {args.command}: error: {name}{e.strerror or e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"fastsynth {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
