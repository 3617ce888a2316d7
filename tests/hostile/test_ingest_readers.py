"""Issue 30, classes 1, 3a and 8, replayed through ``tests/hostile/cases_ingest_readers.py``:
a folder's links (to files, folders, ``/dev/zero``) and FIFOs are error rows, never opened or
followed, and a named FIFO is a one-line refusal (class 1); an oversized sidecar in a small
``.tar.gz``, a 200,000-deep JSON sidecar, an unconvertible number, an oversized pax header and a
chain of GNU long-name headers are each one recorded reason, never a read past a limit or a
crash (class 3a); a member, file or folder named with undecodable bytes is one error row, and
every other item and source is ingested (class 8). Each case runs the real ``fld ingest`` in a
child process (time and address-space limits, so a hang or an unbounded read fails the test)."""

from __future__ import annotations

import pytest

from tests.hostile import cases_ingest_readers as cases


@pytest.mark.parametrize("name", list(cases.CLASSES["1"]))
def test_only_regular_files_inside_the_sources_are_opened(tmp_path, name):
    assert cases.run_case(name, tmp_path) == "ok"


@pytest.mark.parametrize("name", list(cases.CLASSES["3a"]))
def test_every_read_is_bounded_by_a_size_checked_first(tmp_path, name):
    assert cases.run_case(name, tmp_path) == "ok"


@pytest.mark.parametrize("name", list(cases.CLASSES["8"]))
def test_a_bad_name_is_one_items_error_row(tmp_path, name):
    assert cases.run_case(name, tmp_path) == "ok"
