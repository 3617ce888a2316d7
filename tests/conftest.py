"""Suite-wide settings (offline Hugging Face, one torch thread), the tiny spaCy pipeline and
a data root with sample shards ingested.

Trained pipelines cannot be downloaded here, so the suite trains one for a few dozen
iterations (about 2 s on one core) on ``tests.filters.spacy_docs``, saves it with
``nlp.to_disk`` and the tests load it by path through the production loader,
``engine.curate.text_metrics.load_pipeline``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.filters.spacy_docs import gold_docs

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def tiny_spacy_pipeline(tmp_path_factory) -> Path:
    """Directory of a spaCy pipeline that reproduces the gold parses of GOLD_SENTENCES."""
    import spacy
    from spacy.training import Example

    spacy.util.fix_random_seed(0)
    nlp = spacy.blank("en")
    nlp.add_pipe("morphologizer")
    nlp.add_pipe("parser", config={"min_action_freq": 1})
    examples = [Example(nlp.make_doc(doc.text), doc) for doc in gold_docs(nlp.vocab)]
    optimizer = nlp.initialize(lambda: examples)
    for _ in range(40):
        nlp.update(examples, sgd=optimizer)
    path = tmp_path_factory.mktemp("spacy") / "tiny_en"
    nlp.to_disk(path)
    return path


@pytest.fixture(scope="session")
def sample_dir(tmp_path_factory) -> Path:
    """24 synthetic images (with words) in 4 tar shards, plus ground truth."""
    from engine.demo.sample_data import SampleConfig, write_sample

    out = tmp_path_factory.mktemp("sample")
    write_sample(out, SampleConfig(images=24, images_per_shard=6, seed=5))
    return out


@pytest.fixture
def ingested_root(sample_dir, tmp_path):
    """A fresh data root (``DataRoot``) with the sample shards (copied, so tests may alter
    them) ingested."""
    from engine.ingest.shards import IngestConfig, ingest
    from storage.layout import DataRoot

    shards = tmp_path / "shards"
    shutil.copytree(sample_dir / "shards", shards)
    root = DataRoot(tmp_path / "root")
    ingest(root, [str(shards)], IngestConfig(progress=False))
    return root
