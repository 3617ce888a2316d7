"""Issue 32: a new user's folder of photographs with ``.txt`` captions through the command line,
with no config: captions by convention, curation without the default spaCy pipeline installed,
and one-line errors for a missing pipeline and for an image folder named as the data root."""

from __future__ import annotations

import contextlib
import io

import pytest
import spacy

from filters.text_complexity import DEFAULT_PIPELINE
from storage.catalog import Catalog
from storage.layout import DataRoot
from tests.engine.own_images import ROUND, fld


def _run(*args: str) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = fld(*args)
    return code, err.getvalue()


@pytest.mark.skipif(spacy.util.is_package(DEFAULT_PIPELINE), reason=f"{DEFAULT_PIPELINE} is installed")
def test_txt_captions_are_read_and_curated_without_the_spacy_model(own_images):
    with Catalog(DataRoot(own_images["root"]), read_only=True) as catalog:
        raw = catalog.query("select count(*) from annotations where round = ? and source = 'sidecar_captions'", [ROUND])
        curated = catalog.query("select count(*) from curated where curated_round = ? and kind = 'caption'", [ROUND])
    assert raw[0][0] == len(own_images["keys"])  # every KEY.txt became a caption, no `field` set
    assert curated[0][0] == len(own_images["keys"])  # plain captions pass the rule-based text measures
    lines = own_images["curate_err"].strip().splitlines()
    assert len(lines) == 1 and "python -m spacy download en_core_web_sm" in lines[0], lines


def test_a_missing_pipeline_that_is_not_the_default_is_one_line(own_images, tmp_path):
    config = tmp_path / "engine.toml"
    config.write_text(f'[curation.text]\npipeline = "{tmp_path / "no-such-pipeline"}"\n')
    code, err = _run("curate", "--root", str(own_images["root"]), "--round", str(ROUND), "--config", str(config))
    assert code == 2 and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1 and "no-such-pipeline" in err


@pytest.mark.parametrize("command", [["stats"], ["curate", "--round", "0"], ["annotate", "--annotator", "ocr"]])
def test_an_image_folder_named_as_the_root_says_how_to_ingest_it(own_images, command):
    photos = str(own_images["photos"])
    code, err = _run(command[0], "--root", photos, *command[1:])
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert "looks like a folder of images, not a data root" in err
    assert f"fld ingest --root fld-data {photos}" in err
    assert not (own_images["photos"] / ".fld-root").exists() and not (own_images["photos"] / "catalog.duckdb").exists()


def test_the_source_suffixes_cover_every_image_the_readers_read():
    from storage.layout import SOURCE_SUFFIXES
    from storage.readers.base import IMAGE_EXTENSIONS

    assert {f".{ext}" for ext in IMAGE_EXTENSIONS} <= set(SOURCE_SUFFIXES)


def test_review_of_captions_only_queues_nothing_and_says_so(own_images, tmp_path, capsys):
    root = str(own_images["root"])
    assert fld("review", "plan", "--root", root, "--round", str(ROUND)) == 0
    line = capsys.readouterr().out.splitlines()[0]
    n = len(own_images["keys"])
    assert line.startswith(f"review queue of round {ROUND}: 0 images (0 of {n} curated images have a reason"), line
    assert fld("review", "export", "--root", root, "--round", str(ROUND), "--out", str(tmp_path / "ls")) == 0
    assert "0 tasks" in capsys.readouterr().out
