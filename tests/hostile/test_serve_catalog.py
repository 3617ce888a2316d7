"""Issue 30, classes 2, 5, 6 and part of 10, replayed through ``tests/hostile/cases_serve_catalog.py``:
``fld serve`` serves only regular files inside ``reports/`` (checked on the opened file) and answers
any path without a traceback; a user's client of the published ``catalog.duckdb`` (writing, killed,
deleting or overwriting it) breaks no fld command; a damaged private catalog is one line that says
``fld repair``, and ``fld repair`` rebuilds rounds, steps, models, shards and releases from the
root's files after a real round; a copied root opened with plain DuckDB answers from its own files."""

from __future__ import annotations

import os

import pytest

from tests.hostile import cases_serve_catalog as cases


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """One work folder for the module, so the cases share the root with a finished round."""
    return tmp_path_factory.mktemp("hostile-serve-catalog")


def _params(group: str, only: tuple[str, ...] = ()):
    """The group's cases; with ``only``, just those in the suite (every case with FLD_LONG_PROBES=1
    and in ``scripts/probe_hostile.py``)."""
    return [pytest.param(case, id=name) for name, case in cases.CLASSES[group].items()
            if not only or name in only or os.environ.get("FLD_LONG_PROBES") == "1"]


@pytest.mark.parametrize("case", _params("serve"))
def test_serve_serves_only_regular_files_inside_reports(workdir, case):
    assert cases.run_case(workdir, case) == "ok"


@pytest.mark.parametrize("case", _params("published"))
def test_a_users_client_of_the_published_catalog_breaks_nothing(workdir, case):
    assert cases.run_case(workdir, case) == "ok"


@pytest.mark.parametrize("case", _params("damaged-message"))
def test_a_damaged_private_catalog_says_fld_repair(workdir, case):
    assert cases.run_case(workdir, case) == "ok"


@pytest.mark.parametrize("case", _params("repair", only=("garbage",)))  # each rebuild ~20 s: one damage in the suite
def test_fld_repair_rebuilds_the_catalog_from_the_roots_files(workdir, case):
    assert cases.run_case(workdir, case) == "ok"


@pytest.mark.parametrize("case", _params("copied-root"))
def test_a_copied_root_answers_from_its_own_files(workdir, case):
    assert cases.run_case(workdir, case) == "ok"
