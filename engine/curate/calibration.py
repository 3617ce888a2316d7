"""The calibrated score thresholds curation applies: per source, the one measured for the
checkpoint that produced the round's rows of that source.

After training, ``engine.retrain`` measures the per-box precision of the new model and of the
model it started from against the curated labels of the held-out split and stores, in the
round's ``models.metrics`` (``new`` / ``current`` -> ``score_threshold``; the current model's
version as ``current_version``), the lowest score at which their boxes reach the configured
precision; a checkpoint that is kept annotating (not replaced) is thus calibrated too. A round annotated by that checkpoint (its
``source_version`` is the checkpoint's version) is curated with that threshold. No ground
truth is read.
"""

from __future__ import annotations

import json

import pyarrow as pa

from filters.base import dictionary, unique
from storage.catalog import Catalog
from storage.layout import DataRoot

#: the key of the calibrated threshold in a model's metrics
THRESHOLD_KEY = "score_threshold"
#: the key of the stricter threshold a box needs to be added where no curated box is
NEW_BOX_KEY = "new_box_threshold"


def producers(raw: pa.Table) -> dict[str, set[str]]:
    """``{source: {source_version, ...}}`` of the raw rows (from the dictionary codes: raw
    shards are read with both columns encoded)."""
    if raw.num_rows == 0:
        return {}
    (source, sources), (version, versions) = dictionary(raw["source"]), dictionary(raw["source_version"])
    pairs = unique(source * (len(versions) + 1) + version + 1)
    out: dict[str, set[str]] = {}
    for pair in pairs.tolist():
        s, v = divmod(pair, len(versions) + 1)
        if s >= 0 and v >= 1:
            out.setdefault(sources[s], set()).add(versions[v - 1])
    return out


def calibrated_thresholds(root: DataRoot, raw: pa.Table, key: str = THRESHOLD_KEY) -> dict[str, float]:
    """Source -> calibrated threshold (``key``: the score threshold, or :data:`NEW_BOX_KEY`),
    for every source whose rows all come from one checkpoint with a recorded threshold
    (several checkpoints in one source: none)."""
    return thresholds_of(root, producers(raw), key)


def thresholds_of(root: DataRoot, producing: dict[str, set[str]], key: str = THRESHOLD_KEY) -> dict[str, float]:
    """:func:`calibrated_thresholds` of a round whose rows come from ``producing`` (``{source:
    {source_version, ...}}``, :func:`producers` of all its rows)."""
    return applied(recorded_thresholds(root) if _single(producing) else {}, producing, key)


def recorded_thresholds(root: DataRoot) -> dict[str, dict[str, float]]:
    """``{key: {checkpoint version: threshold}}`` of every threshold the models table records
    (one catalog read; later rounds' measurements of a checkpoint replace earlier ones)."""
    with Catalog.reading(root) as catalog:
        rows = catalog.query("select version, metrics from models order by round")
    out: dict[str, dict[str, float]] = {}
    for version, metrics in rows:
        payload = json.loads(metrics or "{}")
        for which, model_version in (("current", payload.get("current_version")), ("new", version)):
            for key, value in (payload.get(which) or {}).items():
                if model_version and isinstance(value, (int, float)) and not isinstance(value, bool):
                    out.setdefault(key, {})[model_version] = float(value)
    return out


def applied(recorded: dict[str, dict[str, float]], producing: dict[str, set[str]], key: str = THRESHOLD_KEY
            ) -> dict[str, float]:
    """Source -> the ``key`` threshold of ``recorded`` (:func:`recorded_thresholds`) for every
    source of ``producing`` whose rows all come from one checkpoint with such a threshold."""
    threshold_of = recorded.get(key, {})
    return {s: threshold_of[next(iter(v))] for s, v in _single(producing).items() if next(iter(v)) in threshold_of}


def _single(producing: dict[str, set[str]]) -> dict[str, set[str]]:
    return {s: v for s, v in producing.items() if len(v) == 1}
