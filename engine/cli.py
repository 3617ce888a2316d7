"""The ``fld`` command line: a registry of subcommands, one module each in ``engine/commands``.

Each subcommand module decorates a function with :func:`command`; the function receives its
argparse sub-parser to declare arguments and returns the handler that runs it. Usage errors
(a missing source, an unwritable root, a bad config value) print one line and exit 2; no
traceback is shown for them; nor for Ctrl-C or SIGTERM (``engine.rounds.interrupt``): one line,
exit code 130 / 143.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import logging
import os
import sys
from typing import Callable

from annotators.base import AnnotatorError
from engine.collector import collect_in_larger_steps
from engine.rounds.interrupt import Interrupted, interruption, stop_on_signals
from engine.rounds.lock import RoundBusy
from storage.catalog_file import CatalogBusy
from storage.layout import DataRoot

# Beam logs these on the root logger at import / run time on every machine without GCP
# libraries; they say nothing to an fld user.
_BEAM_NOISE = ("apitools not found", "Resource module is not available")
logging.getLogger().addFilter(lambda record: not str(record.msg).startswith(_BEAM_NOISE))

Handler = Callable[[argparse.Namespace], int | None]
Declare = Callable[[argparse.ArgumentParser], Handler]

_COMMANDS: dict[str, tuple[str, Declare]] = {}
COMMAND_MODULES = (
    "engine.commands.sample",
    "engine.commands.ingest",
    "engine.commands.stats",
    "engine.commands.annotators",
    "engine.commands.annotate",
    "engine.commands.curate",
    "engine.commands.export",
    "engine.commands.train",
    "engine.commands.dashboard",
    "engine.commands.release",
    "engine.commands.review",
    "engine.commands.repair",
)


class UsageError(Exception):
    """A problem with what the user asked for; printed as one line, exit code 2."""


#: the exceptions :func:`main` answers with one line (and the flows log without a traceback)
USER_ERRORS: tuple[type[BaseException], ...] = (UsageError, RoundBusy, CatalogBusy, AnnotatorError, ValueError)


def data_root(path: str) -> DataRoot:
    """The data root at ``path`` (created on first write); for the flows, which import engine/ only."""
    return DataRoot(path)


def command(name: str, help: str) -> Callable[[Declare], Declare]:
    """Register a subcommand ``name``; ``help`` is its one-line description."""

    def wrap(declare: Declare) -> Declare:
        _COMMANDS[name] = (help, declare)
        return declare

    return wrap


def add_root_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--root", default=os.environ.get("FLD_ROOT", "./fld-data"),
                        help="data root of this engine (default: $FLD_ROOT or ./fld-data)")


def catalog_root(path: str) -> DataRoot:
    """The data root at ``path`` with a catalog; otherwise a usage error (one line) that says to
    ingest first, and, for a folder of images named as the root, how to ingest it into one."""
    root = DataRoot(path)
    if root.has_catalog:
        return root
    if root.holds_images():
        raise UsageError(f"--root {path} looks like a folder of images, not a data root; ingest it into one "
                         f"with `fld ingest --root fld-data {path}`, then give --root fld-data")
    raise UsageError(f"no catalog at {root.catalog}; run `fld ingest --root {path} SRC...` first")


def existing_root(path: str) -> DataRoot:
    """The data root at ``path``; a missing one is a usage error (one line)."""
    root = DataRoot(path)
    if not root.path.is_dir():
        raise UsageError(f"data root {root.path} does not exist")
    return root


def accept_pass_through(parser: argparse.ArgumentParser) -> None:
    """Let a subcommand receive arguments it does not declare (e.g. Beam pipeline flags)."""
    parser.set_defaults(pass_through=True)


def load_commands() -> None:
    """Import the engine's command modules (each registers its subcommands)."""
    for module in COMMAND_MODULES:
        importlib.import_module(module)


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, Handler]]:
    load_commands()
    parser = argparse.ArgumentParser(
        prog="fld",
        description="fld-engine: build, curate and refine FLD-5B-style (Florence-2) annotations "
                    "for your own images.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    handlers: dict[str, Handler] = {}
    for name, (help_text, declare) in _COMMANDS.items():
        sub = subparsers.add_parser(name, help=help_text, description=help_text)
        handlers[name] = declare(sub)
    return parser, handlers


#: errno -> what to do, after the system's own words
_OS_ADVICE = {errno.ENOSPC: "the disk is full; free space, then run the same command again (it resumes)",
              errno.EDQUOT: "the disk quota is used up; free space, then run the same command again (it resumes)",
              errno.EROFS: "the file system is read-only; give a writable --root",
              errno.EACCES: "no permission; give a --root you can write to, or fix its permissions"}


def os_error_line(exc: OSError) -> str:
    """One line for an ``OSError``: its message and, for the common causes, what to do."""
    advice = _OS_ADVICE.get(exc.errno or 0)
    return f"{exc}; {advice}" if advice else str(exc)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``fld`` console script; returns the exit code."""
    collect_in_larger_steps()
    parser, handlers = build_parser()
    args, extra = parser.parse_known_args(argv)
    if not args.command:
        parser.print_help()
        return 2
    if extra and not getattr(args, "pass_through", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.extra = extra
    try:
        with stop_on_signals():  # SIGINT/SIGTERM: Interrupted, however a library wrapped it
            return int(handlers[args.command](args) or 0)
    except USER_ERRORS as exc:
        print(f"fld {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a missing path, a read-only root, a full disk: the user's to fix
        print(f"fld {args.command}: error: {os_error_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:  # Ctrl-C or SIGTERM: one line, exit 130 / 143
        stopped = interruption(exc) or Interrupted()
        print(f"fld {args.command}: {stopped.line()}", file=sys.stderr)
        return stopped.exit_code
