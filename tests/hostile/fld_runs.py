"""Running the real ``fld`` for the hostile cases: in a child process (a time limit, optionally an
address-space cap) or in this process (an escaping exception printed as the traceback a user would see).
"""

from __future__ import annotations

import contextlib
import importlib
import io
import resource
import subprocess
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

ROOT_OF_REPO = Path(__file__).resolve().parents[2]
#: the ``fld`` console script beside this interpreter
FLD = Path(sys.executable).with_name("fld")
TIMEOUT_S = 180


@dataclass(frozen=True)
class Result:
    """What one fld command did: exit code (negative: killed by that signal), its output, timed out."""

    rc: int
    stdout: str
    stderr: str
    timed_out: bool = False


Runner = Callable[[list[str]], Result]


def fld_subprocess(args: list[str], memory_limit_bytes: int | None = None, timeout_s: float = TIMEOUT_S) -> Result:
    """``fld ARGS`` in a child process (cwd: the repository) with a time limit and, given
    ``memory_limit_bytes``, that much address space at most."""
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (memory_limit_bytes, memory_limit_bytes))

    try:
        done = subprocess.run([str(FLD), *args], capture_output=True, text=True, timeout=timeout_s,
                              preexec_fn=limit if memory_limit_bytes else None, cwd=ROOT_OF_REPO)
    except subprocess.TimeoutExpired as exc:
        return Result(-9, str(exc.stdout or ""), str(exc.stderr or ""), timed_out=True)
    return Result(done.returncode, done.stdout, done.stderr)


def fld_in_process(args: list[str], entry: str = "flows.main") -> Result:
    """``ENTRY.main(ARGS)`` in this process, its output captured (an escaping exception is a traceback)."""
    main = importlib.import_module(entry).main
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main(args)
        except SystemExit as exc:
            rc = exc.code if isinstance(exc.code, int) else 1
        except BaseException:  # noqa: BLE001 - what a user would see as a traceback
            traceback.print_exc()
            rc = 1
    return Result(rc, out.getvalue(), err.getvalue())


def crashed(result: Result) -> str | None:
    """``hang`` (timed out), ``traceback`` (killed by a signal, or a traceback printed) or None."""
    if result.timed_out:
        return "hang"
    if result.rc < 0 or result.rc > 128 or "Traceback" in result.stderr or "Traceback" in result.stdout:
        return "traceback"
    return None


def refused(result: Result, *needles: str, case_sensitive: bool = True) -> str:
    """``ok`` when exit 2 and one line on stderr holding every needle, else what went wrong."""
    bad = crashed(result)
    if bad:
        return bad
    lines = result.stderr.strip().splitlines()
    fold = (lambda text: text) if case_sensitive else str.lower
    if result.rc == 2 and len(lines) == 1 and all(fold(n) in fold(lines[0]) for n in needles):
        return "ok"
    return "accepted-bad"
