"""``fld annotators``: the registered annotators, what each emits and which rows of the round it reads."""

from __future__ import annotations

import argparse
import json

from annotators.registry import annotator_class, annotator_names
from engine.cli import command


def describe(name: str) -> dict:
    cls = annotator_class(name)
    doc = (cls.__doc__ or "").strip().splitlines()
    return {"name": name, "emits": list(cls.kinds), "emitted_rows": [str(r) for r in cls.emitted_rows()],
            "reads": [str(r) for r in cls.reads], "needs": list(cls.needs), "about": doc[0] if doc else ""}


@command("annotators", help="list the registered annotators, what they emit and what they read")
def declare(parser: argparse.ArgumentParser):
    parser.add_argument("--json", action="store_true", help="print JSON")

    def run(args: argparse.Namespace) -> int:
        rows = [describe(name) for name in annotator_names()]
        if args.json:
            print(json.dumps(rows, indent=2))
            return 0
        for row in rows:
            emits = ", ".join(row["emitted_rows"]) or "nothing"
            reads = ", ".join(row["reads"]) or "no row of the round"
            needs = f" (context: {', '.join(row['needs'])})" if row["needs"] else ""
            print(f"{row['name']:<22} emits {emits}; reads {reads}{needs}\n{'':<22} {row['about']}")
        return 0

    return run
