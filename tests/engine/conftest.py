"""Shared fixtures of the engine tests: the two-round root of the report and release tests."""

from tests.engine.report_root import report_root  # noqa: F401  (the two-round root of report and release tests)
