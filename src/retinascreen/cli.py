"""The ``retinascreen`` command: a thin skin over the library.

Each sub-command lives in ``retinascreen/commands/<name>.py`` and exposes ``register(subparsers)``
(adds its parser and sets ``func``) so that commands can be added without touching this file.
Library errors (:class:`retinascreen.errors.RetinascreenError`) become one ``error: ...`` line
and exit status 2; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys
from collections.abc import Sequence

from retinascreen.errors import RetinascreenError
from retinascreen.version import __version__

# The order commands appear in --help.
COMMAND_ORDER = (
    "synth",
    "quality",
    "preprocess",
    "train",
    "evaluate",
    "calibrate",
    "compare",
    "predict",
    "segment",
    "export",
    "screen",
    "serve",
    "demo",
    "admin",
)


def _command_modules() -> list[str]:
    import retinascreen.commands as package

    found = {m.name for m in pkgutil.iter_modules(package.__path__) if not m.name.startswith("_")}
    ordered = [n for n in COMMAND_ORDER if n in found]
    return ordered + sorted(found - set(ordered))


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser with every registered sub-command."""
    parser = argparse.ArgumentParser(
        prog="retinascreen",
        description="Screen colour fundus photographs for diabetic retinopathy (ICDR grades 0-4).",
    )
    parser.add_argument("--version", action="version", version=f"retinascreen {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _command_modules():
        module = importlib.import_module(f"retinascreen.commands.{name}")
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit status."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except RetinascreenError as exc:
        if args.debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except (FileNotFoundError, IsADirectoryError, PermissionError) as exc:
        if args.debug:
            raise
        print(f"error: {exc.strerror or exc}: {exc.filename}", file=sys.stderr)
        return 2
