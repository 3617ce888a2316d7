"""Prefect artifact keys name the data root too: two roots never share ``fld-round-0``."""

from __future__ import annotations

import re

from flows.artifacts import artifact_key


def test_keys_differ_per_root_and_are_valid():
    a, b = artifact_key("/data/a", 0), artifact_key("/data/b", 0)
    assert a != b and artifact_key("/data/a", 0) == a and artifact_key("/data/a", 1) != a
    assert all(re.fullmatch(r"[a-z0-9-]+", key) for key in (a, b))
