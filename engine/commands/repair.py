"""``fld repair``: rebuild the engine's catalog from the data root's own files.

For a private catalog (``ROOT/.engine/catalog.duckdb``) that DuckDB cannot open, the error says
to run this. The former file is kept beside it (``catalog.duckdb.damaged-<UTC time>``), never
deleted; rounds, round steps, models, shards and releases are read back from the root's files
(``engine.rounds.rebuild``) and the catalog is published again.
"""

from __future__ import annotations

import argparse

from engine.cli import add_root_argument, command, existing_root


@command("repair", help="rebuild the engine's catalog from the data root's files (a damaged catalog is kept aside)")
def declare(parser: argparse.ArgumentParser):
    add_root_argument(parser)

    def run(args: argparse.Namespace) -> int:
        from engine.rounds.rebuild import repair

        root = existing_root(args.root)
        result = repair(root)
        if result.set_aside is None:
            print(f"no catalog was there; built one from the files of {root.path}")
        else:
            state = "damaged" if result.damaged else "it still opened"
            print(f"the former catalog ({state}) is kept as {result.set_aside}")
        print("rebuilt from the root's files: " + ", ".join(f"{n} {table}" for table, n in result.rows.items()))
        for problem in result.problems:
            print(f"  left out (cannot be read): {problem}")
        print(f"published {root.catalog}")
        return 0

    return run
