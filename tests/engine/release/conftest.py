"""Fixtures of the release tests: a new user's photographs released once per session."""

from tests.engine.release.user_photos import user_release  # noqa: F401  (a release of photos with real names)
