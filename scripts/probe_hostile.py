"""Replay every class of hostile input against the real ``fld`` and count what went wrong.

Each ``tests/hostile/cases_<topic>.py`` module exposes ``run_all(workdir) -> [(probe, outcome)]``
where the outcome is ``ok`` (refused with one line, recorded as a reason, or handled),
``traceback``, ``accepted-bad`` or ``hang`` (every probe runs ``fld`` in a subprocess with a
timeout, most under a memory cap). This script runs them all (or ``--only TOPIC ...``), prints
one line per probe that is not ``ok`` and, as its last line::

    probes N, tracebacks T, accepted-bad A, hangs H

It exits 1 when anything but ``ok`` was seen. Run it from the repository root::

    .venv/bin/python scripts/probe_hostile.py            # every class (about 20 minutes on 2 cores)
    .venv/bin/python scripts/probe_hostile.py --only ingest_readers review_release
"""

from __future__ import annotations

import argparse
import collections
import importlib
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUTCOMES = ("ok", "traceback", "accepted-bad", "hang")


def topics() -> list[str]:
    """The topics of ``tests/hostile/cases_<topic>.py``, sorted."""
    return sorted(p.stem.removeprefix("cases_") for p in (REPO / "tests" / "hostile").glob("cases_*.py"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=topics(), help="topics to run (default: all)")
    parser.add_argument("--verbose", action="store_true", help="print every probe, not only the failed ones")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(REPO))
    # the deep-folder probe leaves a 1,200-level tree; removing it recurses once per level
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 20_000))
    counts: collections.Counter[str] = collections.Counter()
    for topic in args.only or topics():
        module = importlib.import_module(f"tests.hostile.cases_{topic}")
        start = time.monotonic()
        with tempfile.TemporaryDirectory(prefix=f"fld-probe-{topic}-") as scratch:
            results = module.run_all(Path(scratch))
        for probe, outcome in results:
            counts[outcome if outcome in OUTCOMES else "traceback"] += 1
            counts["probes"] += 1
            if outcome != "ok" or args.verbose:
                print(f"{outcome:>13}  {topic}/{probe}")
        print(f"[{topic}] {len(results)} probes in {time.monotonic() - start:.0f} s", flush=True)
    print(f"probes {counts['probes']}, tracebacks {counts['traceback']}, accepted-bad {counts['accepted-bad']}, "
          f"hangs {counts['hang']}")
    return 0 if counts["probes"] == counts["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
