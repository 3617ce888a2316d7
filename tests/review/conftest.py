"""One real Label Studio server for the review tests (starting one costs about a minute of migrations)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.review.label_studio_server import LabelStudioClient, running_label_studio
from tests.review.test_label_studio_server import require_label_studio


@pytest.fixture(scope="session")
def label_studio(tmp_path_factory) -> tuple[LabelStudioClient, Path]:
    """``(client, document_root)``: a running server whose local files are served from ``document_root``;
    each test puts its files in a folder of its own there."""
    require_label_studio()
    document_root = tmp_path_factory.mktemp("label-studio-documents")
    with running_label_studio(tmp_path_factory.mktemp("label-studio-server"), document_root) as client:
        yield client, document_root
