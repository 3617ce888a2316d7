"""Shared fixtures of the engine tests: the two-round root of the report and release tests, and a new
user's own photographs through the command line (issue 32)."""

from tests.engine.own_images import own_images  # noqa: F401  (photographs with .txt captions, round 7 curated)
from tests.engine.report_root import report_root  # noqa: F401  (the two-round root of report and release tests)
