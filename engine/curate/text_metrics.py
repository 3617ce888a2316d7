"""The text measures of FLD-5B Table 3, from spaCy ``Doc``s, and loading the configured pipeline.

Per text (definitions of the paper, section 4.2 / Table 3):

* objects = tokens with POS ``NOUN``; attributes = ``ADJ``; actions = ``VERB``;
  proper_nouns = ``PROPN``;
* the dependency tree is taken as an undirected graph; a token's degree is its number of
  children plus one for its head (none for a sentence root);
* object_complexity = mean degree over the nouns (0 when there are none);
  action_complexity = mean degree over the verbs (0 when there are none).

Production parses with a trained pipeline named in config (a package such as
``en_core_web_sm`` or a pipeline directory); it needs a POS tagger (``tagger`` +
``attribute_ruler`` or ``morphologizer``) and a ``parser``. Tests build ``Doc``s directly
with words, heads, deps and POS, or train a tiny pipeline and load it by path.

When the configured pipeline is the default (``en_core_web_sm``) and it (or spaCy) is not
installed, :func:`metrics_function` measures texts with the rule-based stand-in
(:mod:`engine.curate.rule_text_metrics`) after one warning line that says how to install it;
any other pipeline that cannot load is a :class:`TextPipelineError` (a ``ValueError``: one line).
"""

from __future__ import annotations

import functools
import importlib.util
import sys
import threading
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import pyarrow as pa

from engine.curate.rule_text_metrics import rule_based_metrics
from filters.text_complexity import DEFAULT_PIPELINE
from storage.schema import TEXT_METRICS

MEASURES = TEXT_METRICS.names[1:]


class TextPipelineError(ValueError):
    """The configured spaCy pipeline is missing or cannot parse (the user's to fix: one line)."""


class PipelineNotInstalled(TextPipelineError):
    """spaCy, or the named pipeline, is not installed (and the name is no pipeline directory)."""


def falls_back(name: str, error: TextPipelineError) -> bool:
    """Whether curation measures texts with the rule-based stand-in instead of failing with
    ``error``: the pipeline is the default one and it (or spaCy) is not installed."""
    return name == DEFAULT_PIPELINE and isinstance(error, PipelineNotInstalled)


def fallback_warning(name: str) -> str:
    """The one line curation prints when it falls back from pipeline ``name``."""
    return (f"warning: spaCy pipeline {name!r} (curation.text.pipeline) is not installed; captions are measured "
            f"by the rule-based noun-phrase chunker instead. For the parser's measures: "
            f"python -m spacy download {name}")


def token_degrees(doc: Any) -> np.ndarray:
    """Undirected degree of every token of ``doc`` in its dependency tree (int64 ``(len,)``)."""
    n = len(doc)
    if n == 0:
        return np.zeros(0, np.int64)
    rel = doc.to_array(["HEAD"]).astype(np.int64).reshape(-1)  # head offset; 0 = root
    heads = np.arange(n) + rel
    has_head = rel != 0
    return np.bincount(heads[has_head], minlength=n) + has_head


def doc_metrics(doc: Any) -> dict[str, float]:
    """The Table 3 measures of one parsed ``Doc`` (keys: :data:`MEASURES`)."""
    from spacy.symbols import ADJ, NOUN, PROPN, VERB

    if len(doc) and not doc.has_annotation("DEP"):
        raise TextPipelineError("the Doc has no dependency parse: the pipeline needs a 'parser'")
    pos = doc.to_array(["POS"]).astype(np.int64).reshape(-1) if len(doc) else np.zeros(0, np.int64)
    degree = token_degrees(doc)
    nouns, verbs = pos == NOUN, pos == VERB
    return {
        "objects": int(nouns.sum()),
        "attributes": int((pos == ADJ).sum()),
        "actions": int(verbs.sum()),
        "proper_nouns": int((pos == PROPN).sum()),
        "object_complexity": float(degree[nouns].mean()) if nouns.any() else 0.0,
        "action_complexity": float(degree[verbs].mean()) if verbs.any() else 0.0,
    }


def metrics_table(texts: Sequence[str], docs: Iterable[Any]) -> pa.Table:
    """A :data:`TEXT_METRICS` table, one row per ``(text, doc)`` pair."""
    rows = [doc_metrics(doc) for doc in docs]
    if len(rows) != len(texts):
        raise ValueError(f"{len(texts)} texts but {len(rows)} docs")
    columns = {"text": list(texts)} | {m: [r[m] for r in rows] for m in MEASURES}
    return pa.Table.from_pydict(columns, schema=TEXT_METRICS)


@functools.lru_cache(maxsize=4)
def load_pipeline(name: str) -> Any:
    """Load the spaCy pipeline ``name`` (package name or directory), cached per name.

    Raises :class:`TextPipelineError` saying what to install when spaCy or the pipeline is
    missing, or when the pipeline cannot give POS and dependencies.
    """
    if importlib.util.find_spec("spacy") is None:
        raise PipelineNotInstalled("the text filter needs spaCy: `pip install 'fld-engine[text]'`")
    import spacy

    try:
        nlp = spacy.load(Path(name) if Path(name).expanduser().is_dir() else name)
    except OSError as err:
        raise PipelineNotInstalled(
            f"spaCy pipeline {name!r} is not installed and is not a pipeline directory; install the "
            f"package (e.g. `python -m spacy download {name}` where the network allows it) or set "
            f"text.pipeline in the curation config to a local pipeline directory ({err.__class__.__name__})"
        ) from None
    if "parser" not in nlp.pipe_names:
        raise TextPipelineError(f"spaCy pipeline {name!r} has no 'parser' (components: {nlp.pipe_names})")
    if not {"tagger", "morphologizer"} & set(nlp.pipe_names):
        raise TextPipelineError(f"spaCy pipeline {name!r} has no POS tagger (components: {nlp.pipe_names})")
    return nlp


def parse_metrics(texts: Sequence[str], nlp: Any, batch_size: int = 256) -> pa.Table:
    """Parse ``texts`` with ``nlp`` (components it does not need disabled) -> metrics table."""
    unneeded = [p for p in nlp.pipe_names if p in ("ner", "lemmatizer", "textcat", "textcat_multilabel")]
    with nlp.select_pipes(disable=unneeded):
        docs = list(nlp.pipe(texts, batch_size=batch_size))
    return metrics_table(texts, docs)


def _print_warning(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def metrics_function(pipeline: str, batch_size: int = 256,
                     warn: Callable[[str], None] = _print_warning) -> Callable[[Sequence[str]], pa.Table]:
    """A ``texts -> metrics table`` callable for ``FilterContext.text_metrics``; the pipeline
    is loaded on the first call (so curation without captions never needs spaCy). Where
    :func:`falls_back` says so, texts get the rule-based measures and ``warn`` gets
    :func:`fallback_warning` once. Calls from several threads (curation partitions) take turns:
    a spaCy pipeline is not shared."""
    lock = threading.Lock()
    fallback: list[bool] = []  # decided on the first call: [True] measures by rules

    def compute(texts: Sequence[str]) -> pa.Table:
        with lock:
            if not fallback:
                try:
                    load_pipeline(pipeline)
                    fallback.append(False)
                except TextPipelineError as error:
                    if not falls_back(pipeline, error):
                        raise
                    warn(fallback_warning(pipeline))
                    fallback.append(True)
            if fallback[0]:
                return rule_based_metrics(texts)
            return parse_metrics(texts, load_pipeline(pipeline), batch_size)

    return compute
